"""Plot the RD curves of several methods (bpp against S-PSNR and WS-PSNR, Y and RGB) in one PNG.

A curve is a label and the CSVs of misc/compute_spherical_psnr.py --csv, one per rate point;
each CSV gives one point, its 'mean' row. One panel per metric (--metric), one line per curve.

Example:
    python misc/plot_rd_curves.py -c jpeg runs/jpeg_q*/rd.csv -c oslo runs/oslo_l*/rd.csv \\
        -o rd.png
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never ask for a display

import matplotlib.pyplot as plt
import numpy as np

from misc.compute_bd_rate import read_point
from utils.cli import HelpFormatter, get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.io import atomic_path
from utils.metrics import METRIC_NAMES

TITLES = {"s_psnr_y": "S-PSNR, Y", "ws_psnr_y": "WS-PSNR, Y",
          "s_psnr_rgb": "S-PSNR, RGB", "ws_psnr_rgb": "WS-PSNR, RGB"}


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


def read_points(label: str, paths: Sequence[str]) -> dict[str, np.ndarray]:
    """The points of a curve, sorted by bpp."""
    if not paths:
        raise OsloError(f"curve '{label}' has no RD file")
    points = [read_point(p) for p in paths]
    points.sort(key=lambda p: p["bpp"])
    return {key: np.array([p[key] for p in points]) for key in ("bpp", *METRIC_NAMES)}


SHARED_LEGEND_FROM = 5
"""From this many curves on, one legend below the panels instead of one in each panel."""


def plot(curves: dict[str, dict[str, np.ndarray]], metrics: Sequence[str], output: Path,
         title: str = "", styles: dict[str, dict] | None = None,
         xlabel: str = "bits per pixel (bpp)") -> None:
    """One panel per metric (bpp on x, PSNR in dB on y), one line per curve, atomically saved.

    ``styles`` gives extra ``Axes.plot`` keywords by label (e.g. ``{"linestyle": "--"}``)."""
    styles = styles or {}
    columns = min(2, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    shared = len(curves) >= SHARED_LEGEND_FROM
    legend_rows = math.ceil(len(curves) / 3) if shared else 0
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(5.5 * columns, 4.2 * rows + 0.3 * legend_rows))
    for axis, metric in zip(axes.ravel(), metrics, strict=False):
        for label, curve in curves.items():
            axis.plot(curve["bpp"], curve[metric], **{"marker": "o", **styles.get(label, {})},
                      label=label)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(f"{TITLES[metric]} (dB)")
        axis.set_title(TITLES[metric])
        axis.grid(True, alpha=0.3)
        if not shared:
            axis.legend()
    for axis in axes.ravel()[len(metrics):]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title)
    if shared:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
        figure.tight_layout(rect=(0, 0.3 * legend_rows / figure.get_figheight() + 0.01, 1, 1))
    else:
        figure.tight_layout()
    with atomic_path(output, ".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


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
    curves = {c[0]: read_points(c[0], c[1:]) for c in args.curve}
    plot(curves, list(dict.fromkeys(args.metric)), output, args.title)
    get_logger().info("wrote %s", output)


if __name__ == "__main__":
    run_main(main)
