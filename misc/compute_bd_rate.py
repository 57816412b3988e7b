"""Bjontegaard deltas (BD-rate in %, BD-PSNR in dB) of RD curves against an anchor curve, on
S-PSNR and WS-PSNR, Y and RGB, with the bjontegaard package (cubic and pchip interpolation,
akima on request: -M akima).

A curve is a label and the CSVs of misc/compute_spherical_psnr.py --csv, one per rate point
(e.g. one per lambda); each CSV gives one point, its 'mean' row (bpp and PSNRs). The first -c is
the anchor. BD-rate < 0 and BD-PSNR > 0 mean the curve is better than the anchor.

Example:
    python misc/compute_bd_rate.py -c jpeg runs/jpeg_q*/rd.csv -c oslo runs/oslo_l*/rd.csv
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence

from spherical_models.cli import HelpFormatter
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.io import write_text
from utils.metrics import METRIC_NAMES
from utils.rd import bd_values, read_curve

METHODS = ("cubic", "pchip", "akima")
DEFAULT_METHODS = ("cubic", "pchip")
RESULT_COLUMNS = ("curve", "anchor", "method", "metric", "bd_rate_percent", "bd_psnr_db")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-c", "--curve", nargs="+", action="append", required=True,
                        metavar=("LABEL", "CSV"),
                        help="a label and its RD CSVs (one point each); the first is the anchor")
    parser.add_argument("-M", "--method", nargs="+", choices=METHODS,
                        default=list(DEFAULT_METHODS),
                        help="interpolations (cubic needs at least 4 points per curve; "
                        "akima, also from 2 points, is linear with 2)")
    parser.add_argument("--csv", default=None,
                        help=f"write the results ({','.join(RESULT_COLUMNS)})")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    setup_logging()
    if len(args.curve) < 2:
        raise OsloError("give at least two curves (-c LABEL CSV CSV ...), the first is the anchor")
    labels = [c[0] for c in args.curve]
    if len(set(labels)) != len(labels):
        raise OsloError(f"curve labels must differ, got {labels}")
    curves = {c[0]: read_curve(c[0], c[1:]) for c in args.curve}
    if "cubic" in args.method and min(len(c["bpp"]) for c in curves.values()) < 4:
        raise OsloError("cubic interpolation needs at least 4 points per curve (use -M pchip)")
    anchor_label = labels[0]
    results = []
    for label in labels[1:]:
        for method in args.method:
            for metric in METRIC_NAMES:
                rate, quality = bd_values(curves[anchor_label], curves[label], metric, method)
                results.append({"curve": label, "anchor": anchor_label, "method": method,
                                "metric": metric, "bd_rate_percent": rate,
                                "bd_psnr_db": quality})
    print(f"{'curve':<12} {'method':<6} {'metric':<12} {'BD-rate %':>10} {'BD-PSNR dB':>11}"
          f"   (anchor: {anchor_label})")
    for r in results:
        print(f"{r['curve']:<12} {r['method']:<6} {r['metric']:<12} "
              f"{r['bd_rate_percent']:10.3f} {r['bd_psnr_db']:11.4f}")
    if args.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, "bd_rate_percent": f"{r['bd_rate_percent']:.4f}",
                          "bd_psnr_db": f"{r['bd_psnr_db']:.5f}"} for r in results)
        write_text(args.csv, buffer.getvalue())
        get_logger().info("wrote %s", args.csv)
    return results


if __name__ == "__main__":
    run_main(main)
