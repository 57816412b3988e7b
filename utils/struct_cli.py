"""Command-line parts shared by the two step-2 scripts (OSLO structures, DeepSphere graphs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION
from utils.structures import check_resolutions


def add_structure_arguments(parser: argparse.ArgumentParser, default_hops: int) -> None:
    """Add ``-o -hr -pr -nh`` to ``parser``."""
    parser.add_argument("-o", "--out-dir", required=True, help="folder of the structure files")
    parser.add_argument("-hr", "--healpix-res", type=int, required=True,
                        help=f"HEALPix resolution of the maps, 0..{MAX_RESOLUTION}")
    parser.add_argument("-pr", "--patch-res", type=int, required=True,
                        help="resolution of the patches (a 2**pr x 2**pr square of 4**pr "
                        "pixels); negative for the whole sphere")
    parser.add_argument("-nh", "--num-hops", type=int, choices=(1, 2), default=default_hops,
                        help="neighbourhood: 1 hop (8 neighbours, like 3x3) or 2 hops "
                        "(24, like 5x5; also serves 1-hop layers)")


def prepare_out_dir(args: argparse.Namespace) -> Path:
    """Check the resolutions and the output folder (created if missing)."""
    check_resolutions(args.healpix_res, args.patch_res)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OsloError(f"output path '{out_dir}' exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir
