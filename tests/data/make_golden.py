"""Write the golden files of tests/test_golden.py (seconds): the earth sample sampled at
resolution 6, its ``.oslo`` file from the committed scale hyperprior
(tests/data/checkpoints/scale_hyperprior.pth.tar; patches of resolution 6, batches of 4,
deterministic) and the decoded map.

Run it only when the format or the coding changes on purpose, and say so in the commit:

    python tests/data/make_golden.py
"""

from pathlib import Path

import numpy as np

from spherical_models.coding import codec

DATA = Path(__file__).resolve().parent
REPO = DATA.parent.parent
GOLDEN = DATA / "golden"
CHECKPOINT = DATA / "checkpoints" / "scale_hyperprior.pth.tar"


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    hp_map, shape = codec.read_input(REPO / "samples" / "earth_day.jpg", 6)
    loaded = codec.load_codec(CHECKPOINT)
    data = codec.encode_map(loaded, hp_map, 6, 4, image_shape=shape)
    np.save(GOLDEN / "earth_day_r6.npy", hp_map)
    (GOLDEN / "earth_day_r6.oslo").write_bytes(data)
    np.save(GOLDEN / "earth_day_r6_decoded.npy", codec.decode(loaded, codec.unpack(data)))
    print(f"wrote {GOLDEN}: {len(data)} bytes")


if __name__ == "__main__":
    main()
