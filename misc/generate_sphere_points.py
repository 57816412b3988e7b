"""Write the S-PSNR sphere points: the vertices of an icosahedron subdivided -l times
(10 * 4**l + 2 points), count on the first line, then 'latitude longitude' in degrees per line.

Example (the 360Lib set used by misc/compute_spherical_psnr.py, about 2 s and 14 MB):
    python misc/generate_sphere_points.py -o misc/sphere_655362.txt
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from spherical_models.cli import HelpFormatter
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.sphere_points import DEFAULT_LEVEL, MAX_LEVEL, point_count, write_sphere_points


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-o", "--output", default=None,
                        help="file to write (default: misc/sphere_<count>.txt)")
    parser.add_argument("-l", "--level", type=int, default=DEFAULT_LEVEL,
                        help=f"subdivision level, 0..{MAX_LEVEL}")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    if not 0 <= args.level <= MAX_LEVEL:
        raise OsloError(f"level {args.level} is outside 0..{MAX_LEVEL}")
    default = Path(__file__).resolve().parent / f"sphere_{point_count(args.level)}.txt"
    output = Path(args.output) if args.output else default
    if output.is_dir():
        raise OsloError(f"output '{output}' is a folder")
    if not output.parent.is_dir():
        raise OsloError(f"output folder '{output.parent}' does not exist")
    write_sphere_points(output, args.level)
    get_logger().info("wrote %d points to %s", point_count(args.level), output)


if __name__ == "__main__":
    run_main(main)
