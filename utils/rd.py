"""Rate-distortion results: rows of bpp and spherical PSNRs, their CSV, rates.txt, RD curves and
Bjontegaard deltas.

* A :class:`Row` is an image (or the mean of several) with its bpp and metrics; a list of rows is
  written as the RD CSV of ``misc/compute_spherical_psnr.py --csv`` (:func:`results_csv`:
  ``name,bpp,s_psnr_y,ws_psnr_y,s_psnr_rgb,ws_psnr_rgb``, one row per image, then ``mean``).
* An RD point is the ``mean`` row of such a CSV (:func:`read_point`); an RD curve is the points
  of several CSVs sorted by bpp (:func:`read_curve`).
* ``rates.txt`` is step 4's rate file, ``name<TAB>theoretical<TAB>actual`` (total bits per
  image), ``#`` comment lines (:func:`read_rates`).
* :func:`bd_values` gives the Bjontegaard deltas of two curves (the ``bjontegaard`` package).
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bjontegaard
import numpy as np

from utils.cli import get_logger
from utils.errors import OsloError
from utils.metrics import METRIC_NAMES

CSV_COLUMNS = ("name", "bpp", *METRIC_NAMES)


@dataclass
class Row:
    """One line of the results: an image (or the mean) and its bpp and metrics."""

    name: str
    bpp: float
    metrics: dict[str, float]

    def values(self) -> list[float]:
        """The bpp, then the metrics in their order (:data:`METRIC_NAMES` first)."""
        return [self.bpp, *self.metrics.values()]


def mean_row(rows: Sequence[Row]) -> Row:
    """The arithmetic mean of the bpp and of each PSNR (in dB) over the images."""
    return Row("mean", float(np.mean([r.bpp for r in rows])),
               {m: float(np.mean([r.metrics[m] for r in rows])) for m in rows[0].metrics})


def format_metrics(values: Sequence[float]) -> list[str]:
    """Metrics as CSV fields: 4 decimals, ``inf`` if infinite, ``nan`` if undefined (a seam
    ratio of identical maps)."""
    return [f"{v:.4f}" if math.isfinite(v) else str(v) for v in values]


def results_csv(rows: Sequence[Row]) -> str:
    """CSV with :data:`CSV_COLUMNS` (then the optional metrics of the rows, if any); bpp with 6
    decimals, metrics with 4 (:func:`format_metrics`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("name", "bpp", *rows[0].metrics))
    for row in rows:
        writer.writerow([row.name, f"{row.bpp:.6f}", *format_metrics(row.values()[1:])])
    return buffer.getvalue()


def results_table(rows: Sequence[Row]) -> str:
    """A fixed-width table of the rows for the terminal."""
    width = max(len("name"), *(len(r.name) for r in rows))
    columns = [max(11, len(m)) for m in rows[0].metrics]
    header = f"{'name':<{width}}  {'bpp':>8}  " + "  ".join(
        f"{m:>{c}}" for m, c in zip(rows[0].metrics, columns, strict=True))
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row.name:<{width}}  {row.bpp:8.4f}  "
                     + "  ".join(f"{v:{c}.4f}" for v, c in zip(row.values()[1:], columns,
                                                                 strict=True)))
    return "\n".join(lines)


def _bits(text: str) -> int:
    """A bit count of ``rates.txt``: an integer (or a number, truncated)."""
    try:
        return int(text)
    except ValueError:
        return int(float(text))


def read_rates(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """``(theoretical, actual)`` bits by name from a step-4 ``rates.txt``
    (``name<TAB>theoretical<TAB>actual``; blank and ``#`` lines skipped); :class:`OsloError`
    naming the file (and the line) if it is unreadable or malformed."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise OsloError(f"cannot read rates file '{path}': {error}") from None
    rates = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        try:
            if len(fields) != 3:
                raise ValueError
            rates[fields[0]] = (_bits(fields[1]), _bits(fields[2]))
        except (ValueError, OverflowError):
            raise OsloError(f"rates file '{path}' line {number} is not "
                            "'name<TAB>theoretical<TAB>actual'") from None
    return rates


def read_point(path: str | os.PathLike) -> dict[str, float]:
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


def read_curve(label: str, paths: Sequence[str | os.PathLike],
               monotonic: bool = True) -> dict[str, np.ndarray]:
    """Points of a curve sorted by bpp (stable): ``{"bpp": [n], metric: [n], ...}``.

    With ``monotonic`` (Bjontegaard deltas), :class:`OsloError` unless there are at least 2
    points and bpp and every PSNR strictly increase together; without, at least 1 point."""
    if monotonic and len(paths) < 2:
        raise OsloError(f"curve '{label}' has {len(paths)} RD file(s), at least 2 are needed")
    if not paths:
        raise OsloError(f"curve '{label}' has no RD file")
    points = sorted((read_point(p) for p in paths), key=lambda p: p["bpp"])
    curve = {key: np.array([p[key] for p in points]) for key in ("bpp", *METRIC_NAMES)}
    for metric in METRIC_NAMES if monotonic else ():
        if np.any(np.diff(curve["bpp"]) <= 0) or np.any(np.diff(curve[metric]) <= 0):
            raise OsloError(f"curve '{label}' is not strictly increasing in bpp and {metric} "
                            "(Bjontegaard interpolation needs monotonic curves)")
    return curve


def bd_values(anchor: dict[str, np.ndarray], curve: dict[str, np.ndarray], metric: str,
              method: str) -> tuple[float, float]:
    """``(BD-rate in %, BD-PSNR in dB)`` of ``curve`` against ``anchor`` on ``metric``
    (``method``: ``cubic``, ``pchip`` or ``akima``
    interpolation); the package's warnings (too little
    overlap) are logged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rate = bjontegaard.bd_rate(anchor["bpp"], anchor[metric], curve["bpp"], curve[metric],
                                   method=method, require_matching_points=False)
        quality = bjontegaard.bd_psnr(anchor["bpp"], anchor[metric], curve["bpp"], curve[metric],
                                      method=method, require_matching_points=False)
    for warning in caught:
        get_logger().warning("%s, %s: %s", metric, method, warning.message)
    return float(rate), float(quality)
