"""Golden files: the codec's bytes and decoded map must stay what they were when written
(tests/data/make_golden.py, run at the commit before the command-line refactor), so that a
refactor cannot change the format, the coding or the synthesis unnoticed.

The decoder side is exact on any machine up to ``g_s``: the latents decode from the strings
and their CRC-32s (deterministic mode), and only the float32 synthesis could move a pixel by one
level on a CPU that sums in another order. The encoder's symbols come from the float32
analysis ``g_a``: on the machine that wrote the files they are the same to the bit; on another
CPU a value within a few ulps of a half-integer could round the other way. So a differing file
must still be a near twin: it decodes (its checksums hold), within 8 bytes of the golden size,
to a map within one level of the golden one.
"""

from pathlib import Path

import numpy as np
import pytest

from spherical_models.coding import codec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"


@pytest.fixture(scope="module")
def loaded():
    return codec.load_codec(DATA / "checkpoints" / "scale_hyperprior.pth.tar")


def assert_near(decoded: np.ndarray, expected: np.ndarray) -> None:
    """Equal, but for pixels moved by one level by float32 sums on another CPU (< 0.1%)."""
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3


def test_the_golden_file_decodes_to_the_golden_map(loaded):
    data = (GOLDEN / "earth_day_r6.oslo").read_bytes()
    coded = codec.unpack(data)
    assert codec.pack(coded.header, coded.strings) == data
    assert coded.header.model == "SphereScaleHyperprior" and coded.header.healpix_res == 6
    decoded = codec.decode(loaded, coded)
    assert_near(decoded, np.load(GOLDEN / "earth_day_r6_decoded.npy"))


def test_encoding_the_golden_map_gives_the_golden_file(loaded):
    golden = (GOLDEN / "earth_day_r6.oslo").read_bytes()
    header = codec.unpack(golden).header
    data = codec.encode_map(loaded, np.load(GOLDEN / "earth_day_r6.npy"), 6, 4,
                            image_shape=header.image_shape)
    if data != golden:  # another CPU's float32 analysis: a near twin (module docstring)
        assert abs(len(data) - len(golden)) <= 8
        assert_near(codec.decode(loaded, codec.unpack(data)),
                    np.load(GOLDEN / "earth_day_r6_decoded.npy"))
