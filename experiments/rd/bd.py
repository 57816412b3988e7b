"""Bjontegaard deltas of the RD study: BD-rate and BD-PSNR of every curve against the anchor,
per seed and of the mean curves, with the seeds' spread."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from experiments.rd.curves import Curve, mean_curve
from utils.rd import bd_values

BD_METRICS = ("s_psnr_y", "ws_psnr_y")
"""Metrics of the BD-rate table and of the plot (the RGB ones are in ``rd_points.csv``)."""


def pair_rows(curve: Curve, anchor: Curve, seed: str) -> list[dict]:
    """BD-rate and BD-PSNR of ``curve`` against ``anchor`` on :data:`BD_METRICS`, with pchip
    (and cubic where both fronts have 4 points or more), then akima; ``seed``: the rows'
    ``seed`` field."""
    rows = []
    for metric in BD_METRICS:
        fronts = [(c.method.key, c.front(metric), len(c.points)) for c in (anchor, curve)]
        notes = [f"{key}: {len(front['bpp'])} of {total} points on the front in {metric}"
                 for key, front, total in fronts if len(front["bpp"]) < total]
        sizes = [len(front["bpp"]) for _, front, _ in fronts]
        methods = ["pchip", "cubic", "akima"] if min(sizes) >= 4 else ["pchip", "akima"]
        for interpolation in methods:
            rate = quality = math.nan
            note = list(notes)
            if min(sizes) >= 2:
                rate, quality = bd_values(fronts[0][1], fronts[1][1], metric, interpolation)
                if math.isnan(rate):
                    note.append(f"{curve.method.key}: no overlap with the anchor in {metric}")
            rows.append({"method": curve.method.key, "anchor": anchor.method.key, "seed": seed,
                         "interpolation": interpolation, "metric": metric,
                         "bd_rate_percent": rate, "bd_psnr_db": quality,
                         "note": "; ".join(note)})
    return rows


SPREAD_COLUMNS = ("bd_rate_mean", "bd_rate_min", "bd_rate_max", "bd_psnr_mean", "bd_psnr_min",
                  "bd_psnr_max")
"""Columns of ``bd_rates.csv`` on the rows of the mean curve: the per-seed values' statistics."""


def spread(rows: Sequence[dict]) -> dict[str, float]:
    """Mean, min and max of the finite per-seed BD-rates and BD-PSNRs (nan if none)."""
    values = {}
    for name, key in (("bd_rate", "bd_rate_percent"), ("bd_psnr", "bd_psnr_db")):
        finite = [r[key] for r in rows if math.isfinite(r[key])]
        for stat, function in (("mean", np.mean), ("min", np.min), ("max", np.max)):
            values[f"{name}_{stat}"] = float(function(finite)) if finite else math.nan
    return values


def unsupported(row: dict) -> bool:
    """Whether the seeds' BD-rates have opposite signs (the ranking is not supported)."""
    low, high = row.get("bd_rate_min", math.nan), row.get("bd_rate_max", math.nan)
    return low < 0 < high


def bd_rows(curves: dict[str, list[Curve]], anchor_key: str) -> list[dict]:
    """BD-rate and BD-PSNR of every method against the anchor (:func:`pair_rows`).

    An under-trained model can land below the curve of its neighbours (a higher lambda giving
    a lower PSNR). The deltas are computed on each curve's Pareto front (:meth:`Curve.front`),
    and a note says which curves lost points to it; ``nan`` where a front has fewer than 2
    points.

    Per seed ``s``: the method's curve of seed ``s`` against the anchor's of seed ``s``, for
    the seeds both have (a classic codec's curve is the same for every seed; two classic
    codecs: one row, seed ``""``). With several seeds, then the rows of seed ``mean``: the BD
    values of the mean curves (:func:`mean_curve`) with the mean, min and max of the per-seed values
    (:data:`SPREAD_COLUMNS`); a note where the min and max BD-rates have opposite signs."""
    anchors = curves[anchor_key]
    rows = []
    for key, own in curves.items():
        if key == anchor_key:
            continue
        if len(own) == 1 and len(anchors) == 1 and own[0].seed is None \
                and anchors[0].seed is None:
            rows += pair_rows(own[0], anchors[0], "")
            continue
        if own[0].seed is None:
            pairs = [(own[0], anchor, anchor.seed) for anchor in anchors]
        elif anchors[0].seed is None:
            pairs = [(curve, anchors[0], curve.seed) for curve in own]
        else:  # two learned methods: the curves of the seeds both have
            by_seed = {anchor.seed: anchor for anchor in anchors}
            pairs = [(curve, by_seed[curve.seed], curve.seed) for curve in own
                     if curve.seed in by_seed]
        seeded = [pair_rows(curve, anchor, str(seed)) for curve, anchor, seed in pairs]
        for group in seeded:
            rows += group
        if max(len(own), len(anchors)) == 1:
            continue
        for row in pair_rows(mean_curve(own), mean_curve(anchors), "mean"):
            same = [r for group in seeded for r in group
                    if (r["interpolation"], r["metric"]) == (row["interpolation"],
                                                             row["metric"])]
            row.update(spread(same))
            if unsupported(row):
                row["note"] = "; ".join(n for n in (row["note"], "ranking unsupported: the "
                                        "seeds' BD-rates have opposite signs") if n)
            rows.append(row)
    return rows
