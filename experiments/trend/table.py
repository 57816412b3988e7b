"""The trend study's tables and plot: BD of every variant against the anchor per length and
seed, the mean and spread over the seeds, and BD-rate against base steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.trend.runs import METRICS
from experiments.trend.setting import ANCHOR
from utils.rd import bd_values

BD_METRICS = ("s_psnr_y", "ws_psnr_y")
POINT_COLUMNS = ("method", "seed", "steps", "lambda", "bpp", *METRICS)
BD_COLUMNS = ("method", "anchor", "steps", "seed", "metric", "bd_rate", "bd_psnr",
              "spread_bd_rate", "spread_bd_psnr", "monotone")


def curve_of(rows: Sequence[dict], method: str, seed: int, steps: int) -> dict[str, np.ndarray]:
    """A curve's points by increasing lambda: ``{"bpp": [...], metric: [...]}``."""
    mine = sorted((r for r in rows if (r["method"], r["seed"], r["steps"]) ==
                   (method, seed, steps)), key=lambda r: float(r["lambda"]))
    return {key: np.array([float(r[key]) for r in mine]) for key in ("bpp", *METRICS)}


def monotone(curve: dict[str, np.ndarray], metric: str) -> bool:
    """Rate and quality both increase with lambda."""
    return bool(np.all(np.diff(curve["bpp"]) > 0) and np.all(np.diff(curve[metric]) > 0))


def bd_table(rows: Sequence[dict], anchor: str = ANCHOR) -> list[dict]:
    """BD of every method against ``anchor`` (pchip) per length, seed and metric, then per
    method, length and metric a row of seed ``all``: the mean over the seeds and the spread
    (half the range). A curve that cannot be interpolated (a quality that repeats) gives
    NaN."""
    table = []
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != anchor]
    for method in methods:
        for steps in sorted({r["steps"] for r in rows if r["method"] == method}):
            for metric in BD_METRICS:
                values = []
                for seed in sorted({r["seed"] for r in rows if r["steps"] == steps}):
                    ours, theirs = curve_of(rows, method, seed, steps), \
                        curve_of(rows, anchor, seed, steps)
                    if min(len(ours["bpp"]), len(theirs["bpp"])) < 2:
                        continue
                    try:
                        rate, psnr = bd_values(theirs, ours, metric, "pchip")
                    except ValueError:
                        rate = psnr = math.nan
                    values.append((rate, psnr))
                    table.append({"method": method, "anchor": anchor, "steps": steps,
                                  "seed": seed, "metric": metric, "bd_rate": f"{rate:.2f}",
                                  "bd_psnr": f"{psnr:.3f}", "spread_bd_rate": "",
                                  "spread_bd_psnr": "",
                                  "monotone": monotone(ours, metric) and
                                  monotone(theirs, metric)})
                if values:
                    rates, psnrs = np.array(values).T
                    table.append({"method": method, "anchor": anchor, "steps": steps,
                                  "seed": "all", "metric": metric,
                                  "bd_rate": f"{np.mean(rates):.2f}",
                                  "bd_psnr": f"{np.mean(psnrs):.3f}",
                                  "spread_bd_rate": f"{np.ptp(rates) / 2:.2f}",
                                  "spread_bd_psnr": f"{np.ptp(psnrs) / 2:.3f}",
                                  "monotone": ""})
    return table


def plot(table: Sequence[dict], path: Path) -> None:
    """BD-rate against the anchor: by base steps, each seed (dots) and the mean with its
    spread per method and metric; at a single length, a bar per method and metric (the
    mean, the spread as an error bar, each seed a dot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [r for r in table if np.isfinite(float(r["bd_rate"]))]
    keys = list(dict.fromkeys((r["method"], r["metric"]) for r in finite))
    labels = [f"{method}, {metric.replace('_', ' ')}" for method, metric in keys]
    lengths = sorted({r["steps"] for r in finite})
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, (method, metric) in enumerate(keys):
        mine = [r for r in finite if (r["method"], r["metric"]) == (method, metric)]
        seeds = [r for r in mine if r["seed"] != "all"]
        means = [r for r in mine if r["seed"] == "all"]
        if len(lengths) == 1:
            ax.barh(k, [float(r["bd_rate"]) for r in means],
                    xerr=[float(r["spread_bd_rate"]) for r in means], color=f"C{k % 2}",
                    alpha=0.6, capsize=3)
            ax.plot([float(r["bd_rate"]) for r in seeds], [k] * len(seeds), "k.")
            continue
        ax.plot([r["steps"] for r in seeds], [float(r["bd_rate"]) for r in seeds], "o",
                color=f"C{k}", alpha=0.4)
        ax.errorbar([r["steps"] for r in means], [float(r["bd_rate"]) for r in means],
                    yerr=[float(r["spread_bd_rate"]) for r in means], color=f"C{k}",
                    marker="s", capsize=3, label=f"{labels[k]}: mean and spread")
    rate_axis = f"BD-rate against {ANCHOR} (%)"
    if len(lengths) == 1:
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(keys)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{rate_axis}, {lengths[0]} base steps")
    else:
        ax.axhline(0, color="grey", lw=0.8)
        if finite:
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=8)
        ax.set_xlabel("base training steps")
        ax.set_ylabel(rate_axis)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
