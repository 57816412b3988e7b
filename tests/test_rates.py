""".oslo file sizes against the theoretical rate, for models trained a few minutes
(tests/data/checkpoints, made by tests/data/make_checkpoints.py) on the planet maps, coding the
four bundled samples (never seen in training) at resolution 7 with patches of resolution 6.

The bound is the issue's: file bytes <= 1.01 x theoretical bytes + 80. What lies between them
is the header (about 60 bytes with the model name), one rANS flush and alignment per latent
(8 to 11 bytes each), the rounding of y's scales up to the 256-level scale table, and the
16-bit quantisation of the CDFs.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from spherical_models.coding import codec
from spherical_models.evaluation.maps import code_map

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "tests" / "data" / "checkpoints"
SAMPLES = sorted((REPO / "samples").glob("*.jpg"))
HR, PR, BATCH = 7, 6, 12


@pytest.fixture(scope="module")
def sample_maps():
    """The four bundled samples at resolution 7, with their ERP shapes."""
    return [codec.read_input(path, HR) for path in SAMPLES]


@pytest.mark.parametrize("name", ["factorized_prior", "scale_hyperprior",
                                  "mean_scale_hyperprior", "joint_context"])
def test_file_bytes_are_within_1_percent_and_80_bytes_of_the_theoretical_rate(name,
                                                                               sample_maps):
    loaded = codec.load_codec(CHECKPOINTS / f"{name}.pth.tar")
    assert len(sample_maps) == 4
    for hp_map, shape in sample_maps:
        blob = codec.encode_map(loaded, hp_map, PR, BATCH, image_shape=shape)
        coded = codec.unpack(blob)
        # the evaluation of main_sphere_compression.py in the same mode: its theoretical rate,
        # and actual bits that are the file's payload
        reconstruction, stats = code_map(loaded.model, loaded.geometry(HR, PR), hp_map, PR,
                                         BATCH, torch.device("cpu"))
        assert 8 * coded.payload_bytes == stats["actual_bits"]
        np.testing.assert_array_equal(codec.decode(loaded, coded), reconstruction)
        theoretical_bytes = stats["theoretical_bits"] / 8
        assert len(blob) <= 1.01 * theoretical_bytes + 80, (len(blob), theoretical_bytes)
