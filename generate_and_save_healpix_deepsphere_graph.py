"""Step 2 (DeepSphere baseline): build the graph of one (HEALPix resolution, patch resolution)
pair for torch_geometric's ChebConv and save it as one .npz file (see utils/structures.py).

Example:
    python generate_and_save_healpix_deepsphere_graph.py -o structures -hr 10 -pr 8 -w gaussian
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from spherical_models.cli import HelpFormatter, add_structure_arguments, structure_out_dir
from utils.cli import get_logger, run_main, setup_logging
from utils.structures import WEIGHT_TYPES, build_deepsphere_graph, save_deepsphere_graph


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    add_structure_arguments(parser, default_hops=1)
    parser.add_argument("-w", "--weight-type", choices=WEIGHT_TYPES, default="gaussian",
                        help="edge weights: exp(-d^2 / (2 s^2)) with s the mean edge length "
                        "(gaussian), or 1 (identity)")
    parser.add_argument("--use-euclidean", action="store_true",
                        help="chord (Euclidean) distance between pixel centres instead of the "
                        "geodesic one")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    out_dir = structure_out_dir(args)
    start = time.perf_counter()
    graph = build_deepsphere_graph(
        args.healpix_res, args.patch_res, args.num_hops, args.weight_type, args.use_euclidean
    )
    path = save_deepsphere_graph(out_dir, graph)
    get_logger().info(
        "wrote %s: %d edges per graph, %d weight set(s), sigma %.4g, %.2f s", path,
        graph.edge_index.shape[1], graph.edge_weight.shape[0], graph.sigma,
        time.perf_counter() - start,
    )


if __name__ == "__main__":
    run_main(main)
