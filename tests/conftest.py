"""Shared fixtures: small ERP images in a temporary folder, smooth noisy HEALPix maps; torch on
one thread."""

import os
import subprocess
import sys
from pathlib import Path

import healpy
import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent

DDP_LAUNCHER = """
import os, sys
import torch
sys.path.insert(0, {repo!r})
import main_sphere_compression as script
from spherical_models.cli import run
args = script.build_parser().parse_args(sys.argv[1:])
model = run(args)
torch.save(model.state_dict(), os.path.join(args.out_dir, f"rank{{os.environ['RANK']}}.pt"))
"""

ERP_DDP_LAUNCHER = """
import os, sys
import torch
sys.path.insert(0, {repo!r})
import baselines.train_erp_compressai as script
import spherical_models.planar.pipeline as pipeline
train = pipeline.train
def train_and_save(config, *args):
    model = train(config, *args)
    torch.save(model.state_dict(), os.path.join(config.out_dir, f"rank{{os.environ['RANK']}}.pt"))
    return model
pipeline.train = train_and_save
script.main(sys.argv[1:])
"""


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


def _write_smooth_maps(folder, res, count):
    """``count`` smooth noisy ``uint8`` maps ``[12 * 4**res, 3]`` (sinusoids of the pixel
    centres plus Gaussian noise of 8 levels), saved as
    ``<folder>/healpix_sampling_res_{res}_map{i}.npy``; returns their paths."""
    theta, phi = healpy.pix2ang(2**res, np.arange(12 * 4**res), nest=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        base = np.stack([np.sin((i + 1) * theta) * np.cos(phi), np.cos(2 * theta + i),
                         np.sin((i + 2) * phi)], axis=1)
        values = (0.4 * base + 0.5) * 255 + rng.normal(0, 8, base.shape)
        path = folder / f"healpix_sampling_res_{res}_map{i}.npy"
        np.save(path, np.clip(values, 0, 255).astype(np.uint8))
        files.append(path)
    return files


@pytest.fixture(scope="session")
def smooth_maps():
    """``smooth_maps(folder, res, count) -> [paths]``: smooth noisy HEALPix maps on disk."""
    return _write_smooth_maps


@pytest.fixture
def ddp_training(tmp_path):
    """``ddp_training(argv, out, erp=False) -> (rank0, rank1)``:
    ``main_sphere_compression.py argv`` (whose ``-o`` is ``out``), or with ``erp``
    ``baselines/train_erp_compressai.py argv`` (whose ``-O`` is ``out``), under ``torchrun``
    with 2 CPU processes of one thread each, and the state dicts of both processes' models at
    the end."""

    def train(argv, out, erp=False):
        launcher = tmp_path / "launch.py"
        launcher.write_text((ERP_DDP_LAUNCHER if erp else DDP_LAUNCHER).format(repo=str(REPO)))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
             "2", str(launcher), *argv],
            capture_output=True, text=True, check=False, env=env, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return tuple(torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))

    return train
