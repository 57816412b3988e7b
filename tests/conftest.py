"""Shared fixtures: small ERP images in a temporary folder; torch on one thread."""

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def image_dir(tmp_path):
    """Five small 2:1 JPEG images with different content."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        pixels = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.jpg")
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run as fast on one thread, and do not slow down on a busy machine (OpenMP
    threads waiting for each other at every layer). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
