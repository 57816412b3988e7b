"""Step 2: build the OSLO neighbour structure of one (HEALPix resolution, patch resolution)
pair and save it as one .npz file (see utils/structures.py for its content).

Example (the pairs of the paper):
    for p in "10 8" "9 7" "8 6" "7 5" "6 4" "5 3" "4 2"; do set -- $p
        python generate_and_save_healpix_oslo_struct.py -o structures -hr $1 -pr $2; done
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from spherical_models.cli import HelpFormatter, add_structure_arguments, structure_out_dir
from utils.cli import get_logger, run_main, setup_logging
from utils.structures import WEIGHT_TYPES, build_oslo_structure, save_oslo_structure


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    add_structure_arguments(parser, default_hops=2)
    parser.add_argument("-w", "--weight-type", choices=WEIGHT_TYPES, default="identity",
                        help="neighbour weights: 1 (identity, the OSLO convolution) or a "
                        "Gaussian of the distance (per patch; convolutions then take the "
                        "slower gather path)")
    parser.add_argument("--use-euclidean", action="store_true",
                        help="with -w gaussian: chord instead of geodesic distance")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    out_dir = structure_out_dir(args)
    start = time.perf_counter()
    structure = build_oslo_structure(
        args.healpix_res, args.patch_res, args.num_hops, args.weight_type, args.use_euclidean
    )
    path = save_oslo_structure(out_dir, structure)
    get_logger().info(
        "wrote %s: index %s, weight %s, %.2f s", path, list(structure.index.shape),
        list(structure.weight.shape), time.perf_counter() - start,
    )


if __name__ == "__main__":
    run_main(main)
