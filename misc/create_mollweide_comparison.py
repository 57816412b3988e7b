"""Write the Mollweide views of an original HEALPix map and of its reconstruction, one above the
other with their names, as one PNG (colour by default, grayscale with --gray).

Example:
    python misc/create_mollweide_comparison.py \\
        -a data/healpix_res_8/healpix_sampling_res_8_moon.npy \\
        -b run/reconstruction/healpix_sampling_res_8_moon_reconstructed.npy -o moon.png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # healpy may import pyplot; never ask for a display

import numpy as np
from PIL import Image, ImageDraw

from spherical_models.cli import HelpFormatter
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.io import atomic_path, load_map
from utils.visualization import mollweide_image

LABEL_HEIGHT = 24


def labelled(view: np.ndarray, label: str) -> np.ndarray:
    """``view`` ``[H, W, 3]`` with a white band holding ``label`` above it."""
    band = Image.new("RGB", (view.shape[1], LABEL_HEIGHT), "white")
    ImageDraw.Draw(band).text((8, 6), label, fill="black")
    return np.concatenate([np.asarray(band), view])


def comparison_image(original: np.ndarray, reconstruction: np.ndarray, width: int,
                     gray: bool = False, labels: tuple[str, str] = ("original",
                                                                  "reconstruction")) -> np.ndarray:
    """The two labelled views stacked vertically, ``[2 (width // 2 + 24), width, 3]``."""
    views = []
    for hp_map, label in zip((original, reconstruction), labels, strict=True):
        view = mollweide_image(hp_map, width, gray)
        if view.ndim == 2:
            view = np.repeat(view[..., None], 3, axis=2)
        views.append(labelled(view, label))
    return np.concatenate(views)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-a", "--original", required=True, help="original HEALPix map (.npy)")
    parser.add_argument("-b", "--reconstruction", required=True,
                        help="reconstructed HEALPix map (.npy) of the same resolution")
    parser.add_argument("-o", "--output", required=True, help="image to write (.png)")
    parser.add_argument("-w", "--width", type=int, default=1200,
                        help="width of each view in pixels (height = width / 2)")
    parser.add_argument("--gray", action="store_true", help="grayscale (BT.601 luma)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.width < 16:
        raise OsloError(f"width {args.width} is too small (at least 16)")
    original, reconstruction = load_map(args.original), load_map(args.reconstruction)
    if original.shape != reconstruction.shape:
        raise OsloError(f"the maps have shapes {list(original.shape)} and "
                        f"{list(reconstruction.shape)}: not the same resolution")
    output = Path(args.output)
    if not output.parent.is_dir():
        raise OsloError(f"output folder '{output.parent}' does not exist")
    image = Image.fromarray(comparison_image(original, reconstruction, args.width, args.gray))
    with atomic_path(output, output.suffix) as tmp:
        image.save(tmp, format="PNG")
    get_logger().info("wrote %s", output)


if __name__ == "__main__":
    run_main(main)
