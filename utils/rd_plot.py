"""Plot RD curves: bpp against the spherical PSNRs, one panel per metric, into one PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never ask for a display

import matplotlib.pyplot as plt
import numpy as np

from utils.io import atomic_path

TITLES = {"s_psnr_y": "S-PSNR, Y", "ws_psnr_y": "WS-PSNR, Y",
          "s_psnr_rgb": "S-PSNR, RGB", "ws_psnr_rgb": "WS-PSNR, RGB"}

SHARED_LEGEND_FROM = 5
"""From this many curves on, one legend below the panels instead of one in each panel."""


def plot(curves: dict[str, dict[str, np.ndarray]], metrics: Sequence[str], output: Path,
         title: str = "", styles: dict[str, dict] | None = None,
         xlabel: str = "bits per pixel (bpp)") -> None:
    """One panel per metric (bpp on x, PSNR in dB on y), one line per curve, atomically saved.

    ``styles`` gives extra ``Axes.plot`` keywords by label (e.g. ``{"linestyle": "--"}``).
    Every curve gets its own colour (``tab10``, or ``tab20`` beyond 10 curves) unless its style
    sets one."""
    styles = styles or {}
    palette = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors
    colors = {label: palette[i % len(palette)] for i, label in enumerate(curves)}
    columns = min(2, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    shared = len(curves) >= SHARED_LEGEND_FROM
    legend_rows = math.ceil(len(curves) / 3) if shared else 0
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(5.5 * columns, 4.2 * rows + 0.3 * legend_rows))
    for axis, metric in zip(axes.ravel(), metrics, strict=False):
        for label, curve in curves.items():
            axis.plot(curve["bpp"], curve[metric],
                      **{"marker": "o", "color": colors[label], **styles.get(label, {})},
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
