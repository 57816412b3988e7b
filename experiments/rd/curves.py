"""The RD curves of a study, read back from its RD CSVs: one per method and seed, their mean
over the seeds, their Pareto fronts and the lambda steps where they are not monotone."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from experiments.rd.layout import Layout, method_seeds
from experiments.rd.methods import Method
from experiments.rd.presets import Preset
from utils.classic_codecs import CODECS, quality_label
from utils.metrics import METRIC_NAMES
from utils.rd import read_point


@dataclass
class Curve:
    """The points of one method, sorted by bpp: ``(point label, RD mean row)``; ``seed``: the
    training seed of a learned method's points, :obj:`None` for a classic codec or the mean
    over the seeds (:func:`mean_curve`)."""

    method: Method
    points: list[tuple[str, dict[str, float]]]
    seed: int | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """``{"bpp": [n], metric: [n]}``, as misc/compute_bd_rate.py and plot_rd_curves.py
        take them."""
        return {key: np.array([p[key] for _, p in self.points]) for key in ("bpp", *METRIC_NAMES)}

    def front(self, metric: str) -> dict[str, np.ndarray]:
        """The Pareto front of the points in (bpp, ``metric``): those whose ``metric`` is above
        that of every point of lower or equal bpp, sorted by bpp, so that bpp and ``metric``
        strictly increase together, as Bjontegaard's interpolation needs."""
        values = self.arrays()
        bpp, quality = values["bpp"], values[metric]
        keep, best = [], -math.inf
        for i in np.lexsort((-quality, bpp)):  # by bpp, the best of equal rates first
            if quality[i] > best and (not keep or bpp[i] > bpp[keep[-1]]):
                keep.append(i)
                best = quality[i]
        return {key: array[keep] for key, array in values.items()}


def classic_points(preset: Preset, codec: str) -> list[str]:
    """The ``q<quality>`` labels of a classic codec's qualities."""
    return [quality_label(q) for q in CODECS[codec].parse_qualities(preset.qualities[codec])]


def rd_files(preset: Preset, layout: Layout, method: Method,
             seed: int = 0) -> list[tuple[str, Path]]:
    """``(point label, RD CSV)`` of every point of a method: ``q<quality>`` of a classic
    codec, ``lambda=<l>`` of a learned method (trained with ``seed``)."""
    if method.kind == "classic":
        return [(label, layout.rd_csv(method, label))
                for label in classic_points(preset, method.model)]
    return [(f"lambda={p[0]:g}", layout.rd_csv(method, p, seed)) for p in preset.points]


def all_rd_files(preset: Preset, layout: Layout, methods: Sequence[Method]) -> list[Path]:
    """The RD CSVs of every method, point and seed of the study."""
    return [path for method in methods
            for seed in (method_seeds(preset, layout, method) if method.kind != "classic" else (0,))
            for _, path in rd_files(preset, layout, method, seed)]


def read_curve_points(preset: Preset, layout: Layout, method: Method, seed: int | None) -> Curve:
    """The curve of a method (at ``seed``, :obj:`None` for a classic codec) from its RD CSVs."""
    rows = [(label, read_point(path))
            for label, path in rd_files(preset, layout, method, seed or 0)]
    rows.sort(key=lambda row: row[1]["bpp"])
    return Curve(method, rows, seed)


def collect_curves(preset: Preset, layout: Layout,
                   methods: Sequence[Method]) -> dict[str, list[Curve]]:
    """The RD points of every method, read back from their RD CSVs: by method, one curve per
    seed (a single curve, of seed :obj:`None`, for a classic codec)."""
    return {method.key: [read_curve_points(preset, layout, method, seed)
                         for seed in (method_seeds(preset, layout, method)
                                      if method.kind != "classic" else (None,))]
            for method in methods}


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """The curve of the mean bpp and metrics of each point over the seeds' curves (the curve
    itself if there is one)."""
    if len(curves) == 1:
        return replace(curves[0], seed=None)
    by_label: dict[str, list[dict[str, float]]] = {}
    for curve in curves:
        for label, point in curve.points:
            by_label.setdefault(label, []).append(point)
    rows = [(label, {key: float(np.mean([p[key] for p in points])) for key in points[0]})
            for label, points in by_label.items()]
    rows.sort(key=lambda row: row[1]["bpp"])
    return Curve(curves[0].method, rows, None)


def point_value(label: str) -> str:
    """The lambda of ``lambda=<l>`` or the quality of ``q<quality>``."""
    return label.split("=", 1)[1] if label.startswith("lambda=") else label.removeprefix("q")


def point_label(method: Method, value: str) -> str:
    """The point label of a lambda or a classic codec's quality (:func:`point_value`)."""
    return f"q{value}" if method.kind == "classic" else f"lambda={value}"


def monotone_breaks(curve: Curve) -> list[str]:
    """The steps ``lambda a -> b`` (consecutive lambdas of a learned curve) where the higher
    lambda does not give both more bits and more S-PSNR Y; empty for a monotone curve."""
    by_lambda = sorted(curve.points, key=lambda item: float(point_value(item[0])))
    return [f"{point_value(low)} -> {point_value(high)}"
            for (low, a), (high, b) in itertools.pairwise(by_lambda)
            if not (b["bpp"] > a["bpp"] and b["s_psnr_y"] > a["s_psnr_y"])]
