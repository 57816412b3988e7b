"""Write the Mollweide view of a HEALPix map (.npy, NESTED, [npix] or [npix, 3]) as a PNG:
colour by default, grayscale (BT.601 luma) with --gray.

Example:
    python misc/create_mollweide_projection.py -i data/healpix_sampling_res_6_earth_day.npy \\
        -o earth.png -w 2000
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # healpy may import pyplot; never ask for a display

from spherical_models.cli import HelpFormatter
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.healpix import res_of_npix
from utils.io import load_map
from utils.visualization import save_mollweide


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-i", "--input", required=True, help="HEALPix map (.npy, NESTED)")
    parser.add_argument("-o", "--output", required=True, help="image to write (.png)")
    parser.add_argument("-w", "--width", type=int, default=2000,
                        help="width of the view in pixels (height = width / 2)")
    parser.add_argument("--gray", action="store_true", help="grayscale (BT.601 luma)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.width < 4:
        raise OsloError(f"width {args.width} is too small (at least 4)")
    hp_map = load_map(args.input)
    if hp_map.ndim not in (1, 2) or (hp_map.ndim == 2 and hp_map.shape[1] not in (1, 3)):
        raise OsloError(f"map '{args.input}' has shape {hp_map.shape}, expected [npix] or "
                        "[npix, 1 or 3]")
    try:
        res_of_npix(len(hp_map))
    except ValueError as error:
        raise OsloError(f"map '{args.input}': {error}") from None
    output = Path(args.output)
    if output.is_dir():
        raise OsloError(f"output '{output}' is a folder")
    if not output.parent.is_dir():
        raise OsloError(f"output folder '{output.parent}' does not exist")
    save_mollweide(hp_map, output, args.width, args.gray)
    get_logger().info("wrote %s", output)


if __name__ == "__main__":
    run_main(main)
