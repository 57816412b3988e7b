"""Command-line parts shared by the scripts that measure S-PSNR: the sphere-points option."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SPHERE_POINTS = Path(__file__).resolve().parent.parent / "misc" / "sphere_655362.txt"
"""360Lib's 655,362 points, generated on first use (:func:`utils.sphere_points.load_or_create`)."""


def add_sphere_points_argument(parser: argparse.ArgumentParser) -> None:
    """``-s/--sphere-points``, the S-PSNR points file of every script that measures S-PSNR."""
    parser.add_argument(
        "-s", "--sphere-points", default=str(DEFAULT_SPHERE_POINTS),
        help="sphere points of S-PSNR (count, then 'lat lon' per line); a missing "
             "sphere_<10*4**k+2>.txt is generated")
