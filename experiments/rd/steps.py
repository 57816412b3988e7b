"""The steps of the RD study: each one run of a toolkit script with its command line, in the
order the study runs them, and ``commands.sh``, which runs them by hand."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from experiments.rd.layout import Inputs, Layout, method_seeds
from experiments.rd.methods import Method
from experiments.rd.presets import Preset


@dataclass(frozen=True)
class Step:
    """One run of a toolkit script.

    Attributes:
        name: what the step does, for the logs and ``steps.csv``.
        script: the script, relative to the repository root.
        argv: its arguments.
        output: the file whose existence means the step is done.
        launcher: the command in front of ``python <script>`` in ``commands.sh`` (``torchrun``).
        chain: the steps of one chain run in order, one after the other (a training, then the
            evaluations of its model); different chains may run at the same time
            (``--jobs``). ``""``: a step every chain needs (sampling, structures), run first.
    """

    name: str
    script: str
    argv: tuple[str, ...]
    output: Path
    launcher: tuple[str, ...] = ()
    chain: str = ""

    def command(self) -> str:
        """The step as one shell command line."""
        program = self.launcher or ("python",)
        return shlex.join([*program, self.script, *self.argv])


def map_prefix(preset: Preset) -> str:
    """Prefix of the map names of step 1 (``healpix_sampling_res_{r}_``)."""
    return f"healpix_sampling_res_{preset.healpix_res}_"


def erp_width(preset: Preset) -> int:
    """Width ``4 * nside`` of the ERP images of the planar methods (height: half of it)."""
    return 4 * 2**preset.healpix_res


def sampling_step(preset: Preset, name: str, image_dir: str, image_ext: str, out: Path,
                  ratios: tuple[float, float], output: Path) -> Step:
    """Step 1 on ``image_dir`` into ``out`` with the ``(train, validation)`` ratios."""
    return Step(
        name, "generate_healpix_samples_and_split_to_train_and_test.py",
        ("-i", image_dir, "-e", image_ext, "-r", str(preset.healpix_res), "-s", "-o", str(out),
         "-t", f"{ratios[0]:g}", "-v", f"{ratios[1]:g}", "--seed", "0", "--workers", "2"),
        output)


def data_steps(preset: Preset, layout: Layout, inputs: Inputs,
               whole_sphere: bool = False) -> list[Step]:
    """Step 1 (the split, or the training and the test folders), then step 2 for the pairs
    ``(hr - k, pr - k)``, ``k = 0..min(pr, 6)``, and with ``whole_sphere`` the OSLO structures
    of the whole sphere at ``hr - k``, ``k = 0..6``."""
    test = layout.data_list("test")
    if inputs.train_image_dir is None:
        steps = [sampling_step(preset, "sampling and split", inputs.image_dir, inputs.image_ext,
                               layout.data, (preset.ratio_train, preset.ratio_validation),
                               test)]
    else:
        train = layout.data_list("train")
        steps = [sampling_step(preset, "sampling of the training images",
                               inputs.train_image_dir, inputs.image_ext, train.parent,
                               (1 - preset.ratio_validation, preset.ratio_validation), train),
                 sampling_step(preset, "sampling of the test images", inputs.image_dir,
                               inputs.image_ext, test.parent, (0, 0), test)]
    out = layout.structures
    for level in range(min(preset.patch_res, 6) + 1):
        hr, pr = preset.healpix_res - level, preset.patch_res - level
        pair = ("-o", str(out), "-hr", str(hr), "-pr", str(pr))
        steps.append(Step(f"OSLO structure ({hr}, {pr})",
                          "generate_and_save_healpix_oslo_struct.py", pair,
                          out / f"oslo_struct_hr{hr}_pr{pr}_hops2.npz"))
        steps.append(Step(f"DeepSphere graph ({hr}, {pr})",
                          "generate_and_save_healpix_deepsphere_graph.py", pair,
                          out / f"deepsphere_graph_hr{hr}_pr{pr}_hops1_gaussian.npz"))
    for level in range(min(preset.healpix_res, 6) + 1) if whole_sphere else ():
        hr = preset.healpix_res - level
        steps.append(Step(f"OSLO structure ({hr}, whole sphere)",
                          "generate_and_save_healpix_oslo_struct.py",
                          ("-o", str(out), "-hr", str(hr), "-pr", "-1"),
                          out / f"oslo_struct_hr{hr}_sphere_hops2.npz"))
    return steps


def model_size(preset: Preset, quality: int) -> tuple[str, ...]:
    """``--channels N M`` of the preset, or ``-q quality``."""
    if preset.channels is not None:
        return ("--channels", *map(str, preset.channels))
    return ("-q", str(quality))


def _script_and_common(preset: Preset, layout: Layout, method: Method, inputs: Inputs,
                       run: Path, point: tuple[float, int], seed: int) -> tuple[str, tuple]:
    """The script of a learned method and the flags its training and evaluation share."""
    lmbda, quality = point
    gpu = ("-g",) if preset.gpu else ()
    common = ("-O" if method.kind == "erp" else "-o", str(run), *model_size(preset, quality),
              "--lambda", f"{lmbda:g}", "--seed", str(seed), "--no-progress", *gpu)
    if method.kind == "erp":
        return "baselines/train_erp_compressai.py", (
            "-m", method.model, "-o", inputs.image_dir, "-oe", inputs.image_ext,
            "-r", str(preset.healpix_res), "--erp-width", str(erp_width(preset)),
            "-s", inputs.sphere_points, *common)
    coding = "-1" if method.coding == "sphere" else str(preset.patch_res)
    return "main_sphere_compression.py", (
        "-m", method.model, "-c", method.conv, "-nd", str(layout.structures),
        "-hr", str(preset.healpix_res), "-prt", str(preset.patch_res), "-prvt", coding,
        "--patch-border", method.patch_border,
        *(("--sphere-start", f"{method.sphere_start:g}") if method.sphere_start else ()),
        *common, "-bsvt", str(preset.eval_batch_size))


def training_step(preset: Preset, layout: Layout, method: Method, inputs: Inputs,
                  point: tuple[float, int], seed: int, *, base: bool = False) -> Step:
    """The training of a learned method at one (lambda, quality) with ``--seed seed``.

    With ``preset.finetune_epochs``, ``base`` is the training from scratch at the highest
    lambda (folder :meth:`Layout.base`), and the other trainings (every lambda) fine-tune its
    weights (``--init-from``) for ``finetune_epochs`` at ``finetune_lr``; those of a
    sphere-border method on whole maps from their first epoch (``--sphere-start 0``: the base
    made the many small steps on patches that ``sphere_start`` is for) at
    ``sphere_finetune_lr``."""
    finetuned = preset.finetune_epochs > 0 and not base
    run = layout.base(method, seed) if base else layout.run(method, point[0], seed)
    epochs, lr = (preset.finetune_epochs, preset.finetune_lr) if finetuned else \
        (preset.epochs, preset.learning_rate)
    if finetuned and method.patch_border == "sphere":
        method, lr = replace(method, sphere_start=0.0), preset.sphere_finetune_lr
    schedule = ("-e", str(epochs), "-np", str(preset.patches_per_map),
                "-bst", str(preset.batch_size), "-lr", f"{lr:g}",
                "--lr-schedule", preset.lr_schedule,
                "--scheduler-patience", str(preset.scheduler_patience),
                "--checkpoint-interval", str(epochs),
                *(("--init-from", str(layout.base(method, seed) / "final.pth.tar"))
                  if finetuned else ()))
    train_list = str(layout.data_list("train"))
    script, common = _script_and_common(preset, layout, method, inputs, run, point, seed)
    if method.kind == "erp":
        originals = ("--train-original-dir", inputs.train_image_dir) \
            if inputs.train_image_dir else ()
        train = ("-i", train_list, *originals, "--crop-size", str(2**preset.patch_res),
                 *schedule)
        launcher: tuple[str, ...] = ()
    else:
        validation = ("-v", str(layout.data_list("validation"))) \
            if preset.ratio_validation > 0 else ()
        train = ("-i", train_list, *validation, *schedule, "--print-freq", "0",
                 "--dataloader-num-workers", str(preset.loader_workers))
        launcher = ("torchrun", "--standalone", "--nproc_per_node=${NPROC:-1}") \
            if preset.gpu else ()
    what = "base training" if base else "training"
    return Step(f"{_tag(layout, method, point[0], seed)}: {what}", script, (*common, *train),
                run / "final.pth.tar", launcher, _chain(preset, method, point[0], seed))


def _tag(layout: Layout, method: Method, lmbda: float, seed: int) -> str:
    return f"{method.key} lambda={lmbda:g}" + (f" seed={seed}" if len(layout.seeds) > 1 else "")


def _chain(preset: Preset, method: Method, lmbda: float, seed: int) -> str:
    """The chain of a learned point's steps: its own, or with fine-tuning that of its method
    and seed (the fine-tunings wait for the base training)."""
    if preset.finetune_epochs:
        return f"{method.run_key} seed={seed}"
    return f"{method.run_key} lambda={lmbda:g} seed={seed}"


def learned_steps(preset: Preset, layout: Layout, method: Method, point: tuple[float, int],
                  inputs: Inputs, seed: int = 0) -> list[Step]:
    """Training (with ``--seed seed``; none for a method that codes another's models),
    evaluation and metrics of a learned method at one (lambda, quality)."""
    lmbda = point[0]
    run = layout.run(method, lmbda, seed)
    rd = layout.rd_csv(method, point, seed)
    test_list = str(layout.data_list("test"))
    tag, chain = _tag(layout, method, lmbda, seed), _chain(preset, method, lmbda, seed)
    training = [] if method.trained_by else [
        training_step(preset, layout, method, inputs, point, seed)]
    script, common = _script_and_common(preset, layout, method, inputs, run, point, seed)
    evaluate = ("-t", test_list, "--checkpoint-file", str(run / "final.pth.tar"))
    if method.kind == "erp":
        patches = "0" if method.coding == "sphere" else str(2**preset.patch_res)
        return [*training, Step(
            f"{tag}: evaluation and metrics", script,
            (*common, *evaluate, "--patch-size-valtest", patches,
             "--foldername-valtest", method.reconstruction), rd, chain=chain)]
    prefix = map_prefix(preset)
    metrics = ("-o", inputs.image_dir, "-oe", inputs.image_ext, "-po", "erp", "-t", test_list,
               "--test-files-prefix", prefix, "-r", str(run), "-rf", method.reconstruction,
               "-re", "npy", "-rp", prefix, "-rs", "_reconstructed", "-p", "healpix",
               "-ratef", prefix, "-s", inputs.sphere_points, "--csv", str(rd))
    return [
        *training,
        Step(f"{tag}: evaluation", script,
             (*common, *evaluate, "--foldername-valtest", method.reconstruction),
             run / method.reconstruction / "rates.txt", chain=chain),
        Step(f"{tag}: S-PSNR and WS-PSNR", "misc/compute_spherical_psnr.py", metrics, rd,
             chain=chain),
    ]


def classic_step(preset: Preset, layout: Layout, method: Method, inputs: Inputs) -> Step:
    """The classic codec ``method`` at all its qualities, on the ERP image of the planar size."""
    codec = method.model
    return Step(
        f"{codec} at qualities {preset.qualities[codec]}", "misc/compress_erp_baseline.py",
        ("-o", inputs.image_dir, "-oe", inputs.image_ext, "-t", str(layout.data_list("test")),
         "--test-files-prefix", map_prefix(preset), "-r", str(preset.healpix_res),
         "--erp-width", str(erp_width(preset)), "-O", str(layout.classic), "-c", codec,
         f"--{codec}-qualities", preset.qualities[codec], "-s", inputs.sphere_points),
        layout.classic / f"{codec}_summary.csv", chain=codec)


def study_steps(preset: Preset, layout: Layout, methods: Sequence[Method],
                inputs: Inputs) -> list[Step]:
    """Every step of the study, in order."""
    whole = any(m.kind == "sphere" and (m.coding == "sphere" or m.patch_border == "sphere")
                for m in methods)
    steps = data_steps(preset, layout, inputs, whole_sphere=whole)
    for method in sorted(methods, key=lambda m: bool(m.trained_by)):  # trained, then derived
        if method.kind == "classic":
            steps.append(classic_step(preset, layout, method, inputs))
            continue
        for seed in method_seeds(preset, layout, method):
            if preset.finetune_epochs and not method.trained_by:
                steps.append(training_step(preset, layout, method, inputs,
                                           preset.base_point, seed, base=True))
            for point in preset.points:
                steps += learned_steps(preset, layout, method, point, inputs, seed)
    return steps


def commands_script(steps: Sequence[Step], report_command: str) -> str:
    """``commands.sh``: every step, then the report."""
    lines = ["#!/usr/bin/env bash", "# Written by experiments/rd_study.py; run from the "
             "repository root. NPROC: GPUs per training run (torchrun).", "set -euo pipefail"]
    for step in steps:
        lines += [f"# {step.name}", step.command()]
    lines += ["# the report (rd_points.csv, bd_rates.csv, rd_curves.png, report.md)",
              report_command]
    return "\n".join(lines) + "\n"
