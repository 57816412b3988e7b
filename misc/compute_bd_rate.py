"""Bjontegaard deltas (BD-rate in %, BD-PSNR in dB) of RD curves against an anchor curve, on
S-PSNR and WS-PSNR, Y and RGB, with the bjontegaard package (cubic and pchip interpolation).

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
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import bjontegaard
import numpy as np

from utils.cli import HelpFormatter, get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.io import write_text
from utils.metrics import METRIC_NAMES

METHODS = ("cubic", "pchip")
RESULT_COLUMNS = ("curve", "anchor", "method", "metric", "bd_rate_percent", "bd_psnr_db")


def read_point(path: str | Path) -> dict[str, float]:
    """The ``mean`` row of a compute_spherical_psnr.py CSV: ``bpp`` and the PSNRs."""
    try:
        with open(path, newline="") as handle:
            rows = {row["name"]: row for row in csv.DictReader(handle)}
        point = {key: float(rows["mean"][key]) for key in ("bpp", *METRIC_NAMES)}
    except (OSError, UnicodeDecodeError) as error:
        raise OsloError(f"cannot read RD file '{path}': {error}") from None
    except (KeyError, ValueError, TypeError):
        raise OsloError(f"RD file '{path}' is not a compute_spherical_psnr.py CSV with a 'mean' "
                        f"row and the columns bpp,{','.join(METRIC_NAMES)}") from None
    if not all(math.isfinite(v) for v in point.values()) or point["bpp"] <= 0:
        raise OsloError(f"RD file '{path}': the mean row needs a positive bpp and finite PSNRs")
    return point


def read_curve(label: str, paths: Sequence[str], monotonic: bool = True) -> dict[str, np.ndarray]:
    """Points of a curve sorted by bpp: ``{"bpp": [n], metric: [n], ...}``; with ``monotonic``,
    :class:`OsloError` unless bpp and every PSNR strictly increase together."""
    if len(paths) < 2:
        raise OsloError(f"curve '{label}' has {len(paths)} RD file(s), at least 2 are needed")
    points = [read_point(p) for p in paths]
    curve = {key: np.array([p[key] for p in points]) for key in ("bpp", *METRIC_NAMES)}
    order = np.argsort(curve["bpp"])
    curve = {key: values[order] for key, values in curve.items()}
    for metric in METRIC_NAMES if monotonic else ():
        if np.any(np.diff(curve["bpp"]) <= 0) or np.any(np.diff(curve[metric]) <= 0):
            raise OsloError(f"curve '{label}' is not strictly increasing in bpp and {metric} "
                            "(Bjontegaard interpolation needs monotonic curves)")
    return curve


def bd_values(anchor: dict[str, np.ndarray], curve: dict[str, np.ndarray], metric: str,
              method: str) -> tuple[float, float]:
    """``(BD-rate in %, BD-PSNR in dB)`` of ``curve`` against ``anchor`` on ``metric``;
    the package's warnings (too little overlap) are logged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rate = bjontegaard.bd_rate(anchor["bpp"], anchor[metric], curve["bpp"], curve[metric],
                                   method=method, require_matching_points=False)
        quality = bjontegaard.bd_psnr(anchor["bpp"], anchor[metric], curve["bpp"], curve[metric],
                                      method=method, require_matching_points=False)
    for warning in caught:
        get_logger().warning("%s, %s: %s", metric, method, warning.message)
    return float(rate), float(quality)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-c", "--curve", nargs="+", action="append", required=True,
                        metavar=("LABEL", "CSV"),
                        help="a label and its RD CSVs (one point each); the first is the anchor")
    parser.add_argument("-M", "--method", nargs="+", choices=METHODS, default=list(METHODS),
                        help="interpolations (cubic needs at least 4 points per curve)")
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
