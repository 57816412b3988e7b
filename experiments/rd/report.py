"""The report of the RD study in ``<out>/results``: ``rd_points.csv``, ``bd_rates.csv``,
``rd_curves.png`` and ``report.md``."""

from __future__ import annotations

import csv
import io
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from experiments.rd.bd import BD_METRICS, SPREAD_COLUMNS, bd_rows, unsupported
from experiments.rd.curves import (
    Curve,
    all_rd_files,
    collect_curves,
    mean_curve,
    monotone_breaks,
    point_value,
)
from experiments.rd.layout import Inputs, Layout
from experiments.rd.methods import METHODS, Method
from experiments.rd.presets import Preset
from experiments.rd.steps import erp_width
from utils.errors import OsloError
from utils.healpix import npix_of
from utils.io import write_text
from utils.metrics import METRIC_NAMES
from utils.rd_plot import plot


def _number(value: float, digits: int) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def points_csv(curves: dict[str, list[Curve]]) -> str:
    """``rd_points.csv``: method, seed (empty for a classic codec), lambda (a classic codec's
    quality), bpp and every metric, one row per test-set mean."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "seed", "lambda", "bpp", *METRIC_NAMES])
    for key, own in curves.items():
        for curve in own:
            for label, point in curve.points:
                writer.writerow([key, "" if curve.seed is None else curve.seed,
                                 point_value(label), f"{point['bpp']:.6f}",
                                 *(f"{point[m]:.4f}" for m in METRIC_NAMES)])
    return buffer.getvalue()


def bd_csv(rows: Sequence[dict]) -> str:
    """``bd_rates.csv``: one row per (method, seed, interpolation, metric)."""
    buffer = io.StringIO()
    columns = ("method", "anchor", "seed", "interpolation", "metric", "bd_rate_percent",
               "bd_psnr_db", *SPREAD_COLUMNS, "note")
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        stats = {c: _number(row[c], 3 if c.startswith("bd_rate") else 4) if c in row else ""
                 for c in SPREAD_COLUMNS}
        writer.writerow({**row, "bd_rate_percent": _number(row["bd_rate_percent"], 3),
                         "bd_psnr_db": _number(row["bd_psnr_db"], 4), **stats})
    return buffer.getvalue()


def machine_description() -> str:
    """CPU, cores, torch threads, Python and package versions."""
    processor = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{processor}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"{device}; Python {platform.python_version()}, torch {torch.__version__}")


def _bd_cell(row: dict, key: str, digits: int) -> str:
    """A BD value of the report; where it is undefined, why: ``under 2 points`` (a Pareto
    front too short to interpolate, which also leaves the BD-PSNR undefined) or ``no overlap``
    (a BD-rate needs the two curves' quality ranges to overlap); on a mean-curve row, with the
    seeds' mean and range where some seed has one, and ``unsupported`` where the seeds'
    BD-rates have opposite signs."""
    if math.isnan(row[key]):
        text = "under 2 points" if math.isnan(row["bd_psnr_db"]) else "no overlap"
    else:
        text = _number(row[key], digits)
    name = "bd_rate" if key == "bd_rate_percent" else "bd_psnr"
    if f"{name}_mean" not in row or math.isnan(row[f"{name}_max"]):
        return text
    text += (f" (seeds: mean {_number(row[name + '_mean'], digits)}, "
             f"{_number(row[name + '_min'], digits)} to {_number(row[name + '_max'], digits)})")
    if name == "bd_rate" and unsupported(row):
        text += " unsupported"
    return text


def _bd_table(rows: Sequence[dict], labels: dict[str, str], seeds: Sequence[str],
              show_seed: bool) -> list[str]:
    """The BD table of the rows of the given ``seed`` fields, by method and interpolation."""
    lines = ["| method | seed | interpolation | BD-rate S-PSNR Y (%) | BD-rate WS-PSNR Y (%) "
             "| BD-PSNR S-PSNR Y (dB) | BD-PSNR WS-PSNR Y (dB) |",
             "|---|---|---|---:|---:|---:|---:|"] if show_seed else \
        ["| method | interpolation | BD-rate S-PSNR Y (%) | BD-rate WS-PSNR Y (%) "
         "| BD-PSNR S-PSNR Y (dB) | BD-PSNR WS-PSNR Y (dB) |",
         "|---|---|---:|---:|---:|---:|"]
    by_key = {(r["method"], r["seed"], r["interpolation"], r["metric"]): r for r in rows}
    for key, label in labels.items():
        for seed in seeds:
            for interpolation in ("pchip", "cubic", "akima"):
                found = [by_key.get((key, seed, interpolation, m)) for m in BD_METRICS]
                if None in found:
                    continue
                cells = [_bd_cell(r, "bd_rate_percent", 2) for r in found] \
                    + [_bd_cell(r, "bd_psnr_db", 3) for r in found]
                first = f"| {label} | {seed} | " if show_seed else f"| {label} | "
                lines.append(first + f"{interpolation} | " + " | ".join(cells) + " |")
    return lines


def monotone_lines(curves: dict[str, list[Curve]]) -> list[str]:
    """The report's table of the learned curves that are monotone (:func:`monotone_breaks`)."""
    learned = [curve for own in curves.values() for curve in own if curve.seed is not None]
    broken = {id(curve): monotone_breaks(curve) for curve in learned}
    lines = ["## Monotone curves", "",
             f"{sum(not b for b in broken.values())} of {len(learned)} learned curves are "
             "monotone: each higher lambda gives more bits and more S-PSNR Y.", "",
             "| method | seed | monotone | lambda steps that are not |", "|---|---|---|---|"]
    for curve in learned:
        steps = broken[id(curve)]
        lines.append(f"| {curve.method.label} | {curve.seed} | {'no' if steps else 'yes'} | "
                     f"{', '.join(steps)} |")
    return lines


def report_markdown(preset: Preset, layout: Layout, curves: dict[str, list[Curve]],
                    rows: Sequence[dict], anchor: Method, command: str, seconds: float,
                    inputs: Inputs) -> str:
    """``report.md``: the setting, the RD tables and the BD-rate tables."""
    size = (f"(N, M) = {preset.channels}" if preset.channels
            else "(N, M) of each point's quality")
    several = len(layout.seeds) > 1
    seeds = (f"seeds {', '.join(map(str, layout.seeds))} (every learned point trained once per "
             "seed)" if several else f"seed {layout.seeds[0]}")
    lines = [
        f"# RD study, preset `{preset.name}`", "",
        f"- Command: `{command}`",
        f"- Machine: {machine_description()}",
        f"- Compute time of all steps (sum of steps.csv): {seconds / 60:.1f} min",
        f"- Images: {image_description(layout, inputs)}",
        f"- HEALPix resolution {preset.healpix_res} "
        f"({npix_of(preset.healpix_res)} pixels), training / evaluation patches of resolution "
        f"{preset.patch_res} ({2**preset.patch_res} x {2**preset.patch_res}); ERP methods on "
        f"{erp_width(preset)} x {erp_width(preset) // 2} images, crops of "
        f"{2**preset.patch_res} x {2**preset.patch_res}",
        f"- Learned models: {size}, {preset.epochs} epoch(s) of {preset.patches_per_map} patches "
        f"per training map, batch {preset.batch_size}, Adam lr {preset.learning_rate:g} "
        + (f"divided by sqrt(10) after {preset.scheduler_patience} epochs without improvement "
           "of the training loss" if preset.lr_schedule == "plateau"
           else f"with the {preset.lr_schedule} schedule (--lr-schedule {preset.lr_schedule})")
        + (f", at lambda {preset.base_point[0]:g}: a base model per method and seed, from which "
           f"every point is fine-tuned for {preset.finetune_epochs} epoch(s) at lr "
           f"{preset.finetune_lr:g} (sphere-border models: on whole maps at "
           f"{preset.sphere_finetune_lr:g})" if preset.finetune_epochs else "")
        + f"; {seeds}",
        "- bpp: bits of the file (all strings) per HEALPix pixel at the study's resolution, "
        "for every method", "",
        "## Rate and quality (mean over the test images)", "",
        "| method | seed | point | bpp | S-PSNR Y (dB) | WS-PSNR Y (dB) | S-PSNR RGB (dB) "
        "| WS-PSNR RGB (dB) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for own in curves.values():
        shown = [*own, replace(mean_curve(own), seed="mean")] if len(own) > 1 else own
        for curve in shown:
            seed = "" if curve.seed is None else curve.seed
            for label, point in curve.points:
                lines.append(f"| {curve.method.label} | {seed} | {label} | {point['bpp']:.4f} | "
                             + " | ".join(f"{point[m]:.2f}" for m in METRIC_NAMES) + " |")
    labels = {own[0].method.key: own[0].method.label for own in curves.values()}
    lines += ["", *monotone_lines(curves)]
    lines += ["", f"## BD-rates against {anchor.label}", "",
              "Negative BD-rate: fewer bits than the anchor at equal quality. pchip "
              "interpolation (cubic where both curves have 4 points or more on their "
              "Pareto fronts), and akima."]
    if several:
        lines += ["", "The BD values of the mean curves (the mean bpp and PSNRs of each "
                  "lambda over the seeds), then the mean and the range (min to max) of the "
                  "per-seed values (each seed's curve against the anchor's of the same seed). "
                  "`unsupported`: the seeds' BD-rates have opposite signs, so the sign of the "
                  "BD-rate (the ranking against the anchor) is not supported by the seeds.", ""]
        lines += _bd_table(rows, labels, ["mean", ""], True)
        lines += ["", "### Per seed", ""]
        lines += _bd_table(rows, labels, [str(s) for s in layout.seeds], True)
    else:
        lines += ["", *_bd_table(rows, labels, [str(layout.seeds[0]), ""], False)]
    notes = sorted({n for r in rows for n in r["note"].split("; ")
                    if n and not n.startswith("ranking unsupported")})
    if notes:
        lines += ["", "Points below their curve's Pareto front (a higher lambda with a lower "
                  "PSNR) are left out of the BD values: " + "; ".join(notes) + ". A front "
                  "of fewer than 2 points, or curves that do not overlap, give nan."]
    lines += ["", "Plot: `rd_curves.png` (the mean curves); numbers: `rd_points.csv`, "
              "`bd_rates.csv`."]
    return "\n".join(lines) + "\n"


def write_report(preset: Preset, layout: Layout, methods: Sequence[Method], anchor_key: str,
                 command: str, inputs: Inputs) -> list[dict]:
    """Read the RD CSVs back; write ``rd_points.csv``, ``bd_rates.csv``, ``rd_curves.png`` and
    ``report.md`` in ``<out>/results``. Returns the BD rows."""
    missing = [str(path) for path in all_rd_files(preset, layout, methods)
               if not path.is_file()]
    if missing:
        raise OsloError(f"{len(missing)} RD file(s) missing, e.g. '{missing[0]}': run the "
                        "study (or commands.sh) first")
    curves = collect_curves(preset, layout, methods)
    rows = bd_rows(curves, anchor_key)
    results = layout.results
    results.mkdir(parents=True, exist_ok=True)
    write_text(results / "rd_points.csv", points_csv(curves))
    write_text(results / "bd_rates.csv", bd_csv(rows))
    line = {"sphere": "-", "erp": "--", "classic": ":"}
    means = [mean_curve(own) for own in curves.values()]
    plot({c.method.label: c.arrays() for c in means}, BD_METRICS, results / "rd_curves.png",
         f"RD study ({preset.name}): HEALPix resolution {preset.healpix_res}, "
         f"{len(read_list_lines(layout.data_list('test')))} test image(s)"
         + (f", mean of {len(layout.seeds)} seeds" if len(layout.seeds) > 1 else ""),
         styles={c.method.label: {"linestyle": line[c.method.kind]} for c in means},
         xlabel=f"bits per HEALPix pixel at resolution {preset.healpix_res} (bpp)")
    seconds = step_seconds(layout.root / "steps.csv")
    write_text(results / "report.md",
               report_markdown(preset, layout, curves, rows, METHODS[anchor_key], command,
                               seconds, inputs))
    return rows


def image_description(layout: Layout, inputs: Inputs) -> str:
    """Where the training and test images come from, and how many there are."""
    train = read_list_lines(layout.data_list("train"))
    test = read_list_lines(layout.data_list("test"))
    names = ", ".join(Path(entry).stem.split("_", 4)[-1] for entry in test)
    if inputs.train_image_dir is None:
        return (f"`{inputs.image_dir}`, split by step 1: {len(train)} training, {len(test)} test "
                f"({names})")
    sources = " and ".join(f"`{folder}`" for folder in inputs.train_sources)
    return (f"{len(train)} training images from {sources}, {len(test)} test "
            f"images from `{inputs.image_dir}` ({names})")


def read_list_lines(path: Path) -> list[str]:
    """The entries of a list of step 1."""
    return [line for line in path.read_text().splitlines() if line]


def step_seconds(path: Path) -> float:
    """Sum of the seconds of ``steps.csv`` (0 when it is missing)."""
    if not path.is_file():
        return 0.0
    with path.open(newline="") as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle))
