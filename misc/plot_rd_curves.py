"""Plot the RD curves of several methods (bpp against S-PSNR and WS-PSNR, Y and RGB) in one PNG.

A curve is a label and the CSVs of misc/compute_spherical_psnr.py --csv, one per rate point;
each CSV gives one point, its 'mean' row. One panel per metric (--metric), one line per curve.

Example:
    python misc/plot_rd_curves.py -c jpeg runs/jpeg_q*/rd.csv -c oslo runs/oslo_l*/rd.csv \\
        -o rd.png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from spherical_models.cli import HelpFormatter
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.metrics import METRIC_NAMES
from utils.rd import read_curve
from utils.rd_plot import plot


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-c", "--curve", nargs="+", action="append", required=True,
                        metavar=("LABEL", "CSV"), help="a label and its RD CSVs (one point each)")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    parser.add_argument("--metric", nargs="+", choices=METRIC_NAMES, default=list(METRIC_NAMES),
                        help="one panel per metric")
    parser.add_argument("--title", default="", help="title of the figure")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    labels = [c[0] for c in args.curve]
    if len(set(labels)) != len(labels):
        raise OsloError(f"curve labels must differ, got {labels}")
    output = Path(args.output)
    if output.is_dir():
        raise OsloError(f"output '{output}' is a folder")
    if not output.resolve().parent.is_dir():
        raise OsloError(f"output folder '{output.parent}' does not exist")
    curves = {c[0]: read_curve(c[0], c[1:], monotonic=False) for c in args.curve}
    plot(curves, list(dict.fromkeys(args.metric)), output, args.title)
    get_logger().info("wrote %s", output)


if __name__ == "__main__":
    run_main(main)
