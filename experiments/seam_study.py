"""Seam-free whole-sphere coding against the paper's patch coding, in one command.

Runs the RD study (:mod:`experiments.rd_study`) of the OSLO scale hyperprior in its two
training modes, each model coded both ways:

* ``oslo_sh``: trained with ``--patch-border cut`` (the paper), coded by patch (the anchor);
* ``oslo_sh_whole``: the same models coded on the whole sphere (``-prvt -1``);
* ``oslo_sh_sphere``: trained with ``--patch-border sphere``, coded on the whole sphere;
* ``oslo_sh_sphere_patches``: the same models coded by patch;

then reports, in ``<out>/seam_results/seams.md`` and ``seams.csv`` beside the study's report of
these four curves (and on the terminal; ``<out>/results`` stays the RD study's):

* the BD-rates (S-PSNR Y, WS-PSNR Y) of each curve against the anchor, per seed with their
  mean and range (``bd_rates.csv`` of the study);
* the seam ratio of every coding (:func:`utils.seams.seam_ratio`: mean absolute error of the
  pixels on the borders of the patches of the preset's resolution over that of the interior
  pixels, mean over the test maps): about 1.0 without seams;
* the bits of whole-sphere coding over those of patch coding of the same models;
* the encode and decode seconds per map (``test_results.csv`` of the evaluations);
* the training seconds per 1000 patches of each mode (``log.csv`` of the runs: the sphere
  mode's epoch is ``ceil(maps * np / P)`` whole maps of ``P`` patches).

The study's steps resume where they stopped (see :mod:`experiments.rd.runner`).

Example:
    python experiments/seam_study.py --small -O runs/seams --seeds 0 1
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from experiments import rd_study
from experiments.rd.bd import BD_METRICS
from experiments.rd.layout import Layout, method_seeds
from experiments.rd.methods import METHODS as RD_METHODS
from experiments.rd.presets import PRESETS, Preset
from spherical_models.cli import HelpFormatter
from utils.cli import run_main, setup_logging
from utils.healpix import num_patches
from utils.io import load_map, read_list, rows_csv, write_text
from utils.seams import seam_ratio

METHODS = ("oslo_sh", "oslo_sh_whole", "oslo_sh_sphere", "oslo_sh_sphere_patches")
"""The four codings, the anchor first."""

RESULTS = "seam_results"
"""The folder of the reports inside the study's folder."""

WHOLE_OVER_PATCH = (("oslo_sh_whole", "oslo_sh"), ("oslo_sh_sphere", "oslo_sh_sphere_patches"))
"""``(whole-sphere coding, patch coding)`` of the same trained models."""


def evaluation_rows(folder: Path) -> dict[str, dict[str, str]]:
    """The rows of an evaluation's ``test_results.csv``, by map name."""
    with (folder / "test_results.csv").open(newline="") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def coding_rows(preset: Preset, layout: Layout, test_maps: Sequence[Path]) -> list[dict]:
    """One row per method, seed and lambda: actual bpp, seam ratio, encode and decode seconds,
    each the mean over the test maps."""
    originals = {path.stem: load_map(path) for path in test_maps}
    rows = []
    for key in METHODS:
        method = RD_METHODS[key]
        for seed in method_seeds(preset, layout, method):
            for lmbda, _ in preset.points:
                folder = layout.run(method, lmbda, seed) / method.reconstruction
                results = evaluation_rows(folder)
                seams = [seam_ratio(original, load_map(folder / f"{name}_reconstructed.npy"),
                                    preset.patch_res) for name, original in originals.items()]
                rows.append({
                    "method": key, "seed": seed, "lambda": lmbda,
                    "bpp": np.mean([float(results[n]["bpp_actual"]) for n in originals]),
                    "seam_ratio": float(np.mean(seams)),
                    "encode_seconds": np.mean([float(results[n]["encode_seconds"])
                                               for n in originals]),
                    "decode_seconds": np.mean([float(results[n]["decode_seconds"])
                                               for n in originals]),
                })
    return rows


def training_rows(preset: Preset, layout: Layout, num_train_maps: int) -> list[dict]:
    """Per trained method, seed and lambda: mean seconds of an epoch, patches of an epoch
    (whole maps count ``P = 12 * 4**(hr - pr)`` patches) and seconds per 1000 patches."""
    per_map = num_patches(preset.healpix_res, preset.patch_res)
    rows = []
    for key in ("oslo_sh", "oslo_sh_sphere"):
        method = RD_METHODS[key]
        patches = num_train_maps * preset.patches_per_map
        if method.patch_border == "sphere":
            patches = math.ceil(patches / per_map) * per_map
        for seed in method_seeds(preset, layout, method):
            for lmbda, _ in preset.points:
                with (layout.run(method, lmbda, seed) / "log.csv").open(newline="") as handle:
                    seconds = float(np.mean([float(r["seconds"])
                                             for r in csv.DictReader(handle)]))
                rows.append({"method": key, "seed": seed, "lambda": lmbda,
                             "epoch_seconds": seconds, "epoch_patches": patches,
                             "seconds_per_1000_patches": 1000 * seconds / patches})
    return rows


def whole_over_patch(rows: Sequence[dict]) -> list[dict]:
    """Bits of whole-sphere coding over patch coding of the same model, per seed and lambda."""
    bpp = {(r["method"], r["seed"], r["lambda"]): r["bpp"] for r in rows}
    return [{"models": patch, "seed": seed, "lambda": lmbda,
             "ratio": bpp[(whole, seed, lmbda)] / bpp[(patch, seed, lmbda)]}
            for whole, patch in WHOLE_OVER_PATCH
            for (method, seed, lmbda) in bpp if method == whole]


def _spread(values: Sequence[float], digits: int) -> str:
    """``mean (min .. max)``."""
    return (f"{np.mean(values):.{digits}f} ({min(values):.{digits}f} .. "
            f"{max(values):.{digits}f})")


def report(bd: Sequence[dict], rows: Sequence[dict], ratios: Sequence[dict],
           training: Sequence[dict], seeds: Sequence[int], command: str) -> str:
    """``seams.md``: BD-rates, seam ratios, bits ratios, coding and training times."""
    lines = ["# Seam-free whole-sphere coding against patch coding", "", f"`{command}`", "",
             "## BD-rate against `oslo_sh` (cut, coded by patch; pchip on the Pareto fronts)",
             "", "| method | metric | BD-rate % mean (min .. max over seeds) |", "|---|---|---|"]
    for key in METHODS[1:]:
        for metric in BD_METRICS:
            per_seed = [r["bd_rate_percent"] for r in bd
                        if (r["method"], r["metric"], r["interpolation"]) == (key, metric, "pchip")
                        and r["seed"] in {str(s) for s in seeds} | {""}]
            finite = [v for v in per_seed if math.isfinite(v)]
            lines.append(f"| {key} | {metric} | "
                         f"{_spread(finite, 2) if finite else 'nan'} |")
    lines += ["", "## Seam ratio, bpp and times (mean over the test maps; mean (min .. max) over "
              "seeds and lambdas)", "",
              "| method | seam ratio | encode s | decode s |", "|---|---|---|---|"]
    for key in METHODS:
        own = [r for r in rows if r["method"] == key]
        lines.append(f"| {key} | {_spread([r['seam_ratio'] for r in own], 3)} | "
                     f"{_spread([r['encode_seconds'] for r in own], 2)} | "
                     f"{_spread([r['decode_seconds'] for r in own], 2)} |")
    lines += ["", "| method | seed | lambda | bpp | seam ratio |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['seed']} | {r['lambda']:g} | {r['bpp']:.4f} | "
              f"{r['seam_ratio']:.3f} |" for r in rows]
    lines += ["", "## Bits of whole-sphere coding over patch coding of the same models", "",
              "| models | ratio mean (min .. max over seeds and lambdas) |", "|---|---|"]
    for _, patch in WHOLE_OVER_PATCH:
        lines.append(f"| {patch} | "
                     f"{_spread([r['ratio'] for r in ratios if r['models'] == patch], 3)} |")
    lines += ["", "## Training time (mean (min .. max) over seeds and lambdas)", "",
              "| method | patches an epoch | seconds an epoch | seconds per 1000 patches |",
              "|---|---|---|---|"]
    per_patch = {}
    for key in ("oslo_sh", "oslo_sh_sphere"):
        own = [r for r in training if r["method"] == key]
        per_patch[key] = float(np.mean([r["seconds_per_1000_patches"] for r in own]))
        lines.append(f"| {key} | {own[0]['epoch_patches']} | "
                     f"{_spread([r['epoch_seconds'] for r in own], 2)} | "
                     f"{_spread([r['seconds_per_1000_patches'] for r in own], 2)} |")
    lines += ["", f"Sphere over cut, seconds per patch: "
              f"{per_patch['oslo_sh_sphere'] / per_patch['oslo_sh']:.2f}x."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    preset = parser.add_mutually_exclusive_group(required=True)
    for name in ("tiny", "small", "medium"):
        preset.add_argument(f"--{name}", dest="preset", action="store_const", const=name,
                            help=f"rd_study.py's --{name} preset")
    parser.add_argument("-O", "--output-dir", required=True, help="folder of the study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="training seeds of every point (the medium preset's sphere-border "
                        "models: the first only)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs of every model (default: the preset's)")
    parser.add_argument("--lr-schedule", choices=("plateau", "step", "cosine"),
                        default="cosine",
                        help="learning-rate schedule of every model: the small preset's plateau "
                        "on the training loss of 9-step epochs leaves its curves non-monotone, "
                        "and a model stopped at a high rate is noisy; cosine ends at 0")
    parser.add_argument("--report-only", action="store_true",
                        help="only write the report from the runs already there")
    return parser


def main(argv: Sequence[str] | None = None) -> str:
    args = build_parser().parse_args(argv)
    setup_logging()
    study = [f"--{args.preset}", "-O", args.output_dir, "--methods", *METHODS,
             "--anchor", METHODS[0], "--seeds", *map(str, args.seeds), "--results", RESULTS,
             *(("--epochs", str(args.epochs)) if args.epochs else ()),
             "--lr-schedule", args.lr_schedule,
             *(("--report-only",) if args.report_only else ())]
    bd = rd_study.main(study)
    preset = PRESETS[args.preset]
    if args.epochs:
        preset = replace(preset, epochs=args.epochs)
    root = Path(args.output_dir)
    layout = Layout(root, separate_training=True, seeds=tuple(dict.fromkeys(args.seeds)),
                    results_name=RESULTS)
    rows = coding_rows(preset, layout, read_list(layout.data_list("test")))
    ratios = whole_over_patch(rows)
    training = training_rows(preset, layout, len(read_list(layout.data_list("train"))))
    command = " ".join(["python experiments/seam_study.py", *(argv or sys.argv[1:])])
    text = report(bd, rows, ratios, training, layout.seeds, command)
    write_text(layout.results / "seams.csv", rows_csv(rows))
    write_text(layout.results / "seams_training.csv", rows_csv(training))
    write_text(layout.results / "seams.md", text)
    print(text)
    return text


if __name__ == "__main__":
    run_main(main)
