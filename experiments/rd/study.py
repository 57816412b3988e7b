"""One RD study from the settings of its command line: the preset with its overrides, the
methods, the steps written to ``commands.sh``, their run, then the report."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from experiments.rd.layout import Inputs, Layout, training_folder
from experiments.rd.methods import METHODS
from experiments.rd.presets import PRESETS, Preset
from experiments.rd.report import write_report
from experiments.rd.runner import run_steps
from experiments.rd.steps import commands_script, study_steps
from utils.cli import get_logger
from utils.errors import OsloError
from utils.io import write_text

RESERVED_NAMES = (".", "..", "data", "structures", "runs", "classic", "logs", "train_images")
"""Names ``--results`` cannot take: those of the folders the study writes, ``.`` and ``..``."""


def configured_preset(name: str, epochs: int | None, lr_schedule: str | None,
                      finetune_epochs: int | None) -> Preset:
    """The preset ``name`` with the given overrides (:obj:`None`: the preset's own)."""
    preset = PRESETS[name]
    if epochs is not None:
        if epochs < 1:
            raise OsloError(f"--epochs must be >= 1, got {epochs}")
        preset = replace(preset, epochs=epochs)
    if lr_schedule is not None:
        preset = replace(preset, lr_schedule=lr_schedule)
    if finetune_epochs is not None:
        if finetune_epochs < 0:
            raise OsloError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
        preset = replace(preset, finetune_epochs=finetune_epochs)
    return preset


def method_keys(preset: Preset, keys: Sequence[str] | None, anchor: str) -> list[str]:
    """The ``--methods`` of a study: ``keys``, or the preset's (:obj:`None`: every method; the
    paper's: all but the sphere-border ones), checked: the anchor among them, at least two,
    and with every method that codes another's models that other one."""
    if keys is None:
        keys = list(preset.methods) if preset.methods is not None else [
            key for key, m in METHODS.items()
            if preset.name != "paper" or METHODS[m.run_key].patch_border == "cut"]
    if anchor not in keys:
        raise OsloError(f"the anchor '{anchor}' is not among --methods")
    if len(set(keys)) < 2:
        raise OsloError("give at least two --methods (one of them the anchor)")
    for key in dict.fromkeys(keys):
        trained_by = METHODS[key].trained_by
        if trained_by and trained_by not in keys:
            raise OsloError(f"--methods {key} codes the models of {trained_by}: "
                            f"add {trained_by}")
    return list(keys)


def run_study(*, preset: str, output_dir: str, image_dir: str,
              train_image_dir: Sequence[str] | None, image_ext: str,
              methods: Sequence[str] | None, anchor: str, epochs: int | None,
              finetune_epochs: int | None, lr_schedule: str | None,
              seeds: Sequence[int] | None, sphere_points: str | None, results: str,
              report_only: bool, jobs: int | None, dry_run: bool) -> list[dict]:
    """Run the study the options of ``experiments/rd_study.py`` describe (same names): write
    ``commands.sh``, run the steps whose outputs are missing (unless ``dry_run``,
    ``report_only`` or a preset that does not run), then write the report and print
    ``report.md``. Returns the BD rows (none when the steps only were written)."""
    setting = configured_preset(preset, epochs, lr_schedule, finetune_epochs)
    jobs = setting.jobs if jobs is None else jobs
    if jobs < 1:
        raise OsloError(f"--jobs must be >= 1, got {jobs}")
    seeds = tuple(dict.fromkeys(setting.seeds if seeds is None else seeds))
    if min(seeds) < 0:
        raise OsloError(f"--seeds must be >= 0, got {min(seeds)}")
    keys = method_keys(setting, methods, anchor)
    train_dirs = setting.train_image_dirs if train_image_dir is None else \
        () if list(train_image_dir) == ["none"] else tuple(train_image_dir)
    for folder in (image_dir, *train_dirs):
        if not Path(folder).is_dir():
            raise OsloError(f"image folder '{folder}' does not exist")
    train_dir = training_folder(train_dirs, Path(output_dir), image_ext) if train_dirs else None
    inputs = Inputs(image_dir, image_ext, train_dir, sphere_points or setting.sphere_points,
                    train_dirs)
    if not results or Path(results).name != results or results in RESERVED_NAMES:
        raise OsloError(f"--results must be the name of a new folder inside -O, got '{results}'")
    layout = Layout(Path(output_dir), separate_training=train_dir is not None, seeds=seeds,
                    results_name=results)
    selected = [METHODS[key] for key in dict.fromkeys(keys)]
    steps = study_steps(setting, layout, selected, inputs)
    command = shlex.join(["python", "experiments/rd_study.py", f"--{setting.name}",
                          "-O", str(layout.root), "-i", image_dir,
                          "--train-image-dir", *(train_dirs or ("none",)), "-e", image_ext,
                          "--methods", *keys, "--anchor", anchor,
                          *(("--epochs", str(setting.epochs)) if epochs else ()),
                          *(("--lr-schedule", setting.lr_schedule) if lr_schedule else ()),
                          *(("--finetune-epochs", str(setting.finetune_epochs))
                            if finetune_epochs is not None else ()),
                          *(("--results", results) if results != "results" else ()),
                          *(("--seeds", *map(str, seeds)) if seeds != (0,) else ()),
                          "-s", inputs.sphere_points])
    layout.root.mkdir(parents=True, exist_ok=True)
    write_text(layout.root / "commands.sh", commands_script(steps, f"{command} --report-only"))
    log = get_logger()
    log.info("%d steps written to %s", len(steps), layout.root / "commands.sh")
    if dry_run or (not setting.run and not report_only):
        log.info("run 'bash %s', then '%s --report-only'", layout.root / "commands.sh", command)
        return []
    if not report_only:
        start = time.perf_counter()
        spent = run_steps(steps, layout.root / "steps.csv", jobs)
        log.info("steps ran for %.1f min (%.1f min wall clock, %d job(s) at a time)",
                 spent / 60, (time.perf_counter() - start) / 60, jobs)
    rows = write_report(setting, layout, selected, anchor, command, inputs)
    print((layout.results / "report.md").read_text())
    return rows
