"""The paper's comparison in one command: rate-distortion curves of OSLO (SDPAConv), DeepSphere
(ChebConv), CompressAI on the ERP plane and the classic codecs, with BD-rates and a plot.

The study is a list of steps, each one run of a toolkit script with its own command line:

1. step 1 (sampling on HEALPix and the train / validation / test split);
2. step 2 (OSLO structures and DeepSphere graphs for every (hr, pr) pair a model needs);
3. per learned method and (lambda, quality) point: training (``main_sphere_compression.py`` or
   ``baselines/train_erp_compressai.py``), evaluation with real bitstreams, then S-PSNR and
   WS-PSNR (``misc/compute_spherical_psnr.py``), written as ``rd.csv``;
4. per classic codec: ``misc/compress_erp_baseline.py`` (JPEG, WebP, JPEG 2000 on the ERP image
   at the size of the planar baseline);
5. the report: ``rd_points.csv``, ``bd_rates.csv`` (``bjontegaard``, against ``--anchor``),
   ``rd_curves.png`` and ``report.md`` in ``<out>/results``.

Every step is written to ``<out>/commands.sh`` as a shell command, so the study can be rerun by
hand. A step whose output exists is skipped, so an interrupted study resumes where it stopped
(an interrupted training starts again from its first epoch). ``steps.csv`` keeps the seconds of
every step run. The methods share one bpp axis: bits per HEALPix pixel at the study's
resolution, also for the ERP methods. The learned models train on patches (ERP: crops of the
same size) and code a test image by patch, each patch its own strings (``oslo_sh_whole``,
``erp_fp_whole`` and ``erp_sh_whole`` code the same models on the whole sphere or image).

With ``--seeds s1 s2 ...``, every learned point is trained once per seed (run folders
``lambda<l>_seed<s>``); the report gives the BD values per seed, their mean and range, and those
of the mean curves, and marks a ranking the seeds' range does not support.

With ``--finetune-epochs E`` (the medium preset: 25), a base model of each method and seed is
trained from scratch at the highest lambda (``runs/<method>/base``), and every point of the
curve, that lambda included, is fine-tuned from its weights for E epochs (``--init-from``):
the points share their start and their steps, so that a higher lambda gives more bits and a
higher PSNR instead of the noise of independent short trainings.

Presets:

* ``--tiny``: resolution 6, tiny models and one epoch; for the tests (about a minute).
* ``--small``: resolution 7, patches of resolution 6 (64 x 64), small models, four lambdas; on
  the bundled samples in well under an hour on a 2-core CPU (docs/RESULTS.md).
* ``--medium``: the small setting with 24 training maps (``samples/planets`` and
  ``samples/photos``), a cosine schedule, two seeds (one for DeepSphere and the sphere-border
  OSLO), two trainings at a time, and every point fine-tuned for 25 epochs from a base model
  per method and seed; about 80 minutes on a 2-core CPU (docs/RESULTS.md).
* ``--paper``: resolution 10, patches of resolution 8, the ten (lambda, quality) pairs of the
  paper and 1000 epochs. It only writes ``commands.sh`` (training under ``torchrun`` on GPUs);
  run that script, then this command again with ``--report-only``.

Example:
    python experiments/rd_study.py --small -O runs/rd_small
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import itertools
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from spherical_models.cli import HelpFormatter
from utils.classic_codecs import CODECS, quality_label
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.healpix import npix_of
from utils.io import write_text
from utils.metrics import METRIC_NAMES
from utils.rd import bd_values, read_point
from utils.rd_plot import plot

REPO = Path(__file__).resolve().parent.parent
BD_METRICS = ("s_psnr_y", "ws_psnr_y")
"""Metrics of the BD-rate table and of the plot (the RGB ones are in ``rd_points.csv``)."""


@dataclass(frozen=True)
class Method:
    """One curve of the study.

    Attributes:
        key: name of its folder and of its rows in the CSVs.
        label: name in the plot and the tables.
        kind: ``sphere`` (main_sphere_compression.py), ``erp`` (the planar CompressAI baseline)
            or ``classic`` (a codec of misc/compress_erp_baseline.py).
        model: the model of the script (``-m``), or the codec name.
        conv: ``SDPAConv`` or ``ChebConv`` for ``sphere`` methods.
        patch_border: ``--patch-border`` of a ``sphere`` method's training (``cut``, the
            paper's, or ``sphere``).
        sphere_start: its ``--sphere-start`` (with ``patch_border="sphere"``).
        coding: how a learned method codes a test image: ``patch`` (independent patches
            of the preset's patch resolution, each with its own strings: ``-prvt pr`` of a
            ``sphere`` method, ``--patch-size-valtest 2**pr`` of an ``erp`` one) or
            ``sphere`` (whole: the whole sphere, ``-prvt -1``, or the whole ERP image).
            Models trained on patches (crops) are coded by patch by default, on both sides:
            coded whole, they meet real neighbours where they learned a zero border.
        trained_by: the key of the method whose trained models this one evaluates (another
            coding of the same models: no training of its own), or ``""``.
    """

    key: str
    label: str
    kind: str
    model: str
    conv: str = ""
    patch_border: str = "cut"
    sphere_start: float = 0.0
    coding: str = "patch"
    trained_by: str = ""

    @property
    def run_key(self) -> str:
        """The folder of the training runs this method evaluates."""
        return self.trained_by or self.key

    @property
    def reconstruction(self) -> str:
        """The evaluation folder in a run (one per coding of the run's model)."""
        return f"reconstruction_{self.key}" if self.trained_by else "reconstruction"


METHODS = {
    m.key: m
    for m in (
        Method("oslo_fp", "OSLO factorized", "sphere", "SphereFactorizedPrior", "SDPAConv"),
        Method("oslo_sh", "OSLO hyperprior", "sphere", "SphereScaleHyperprior", "SDPAConv"),
        Method("oslo_sh_whole", "OSLO hyperprior, coded whole", "sphere",
               "SphereScaleHyperprior", "SDPAConv", coding="sphere", trained_by="oslo_sh"),
        Method("oslo_sh_sphere", "OSLO hyperprior (sphere border), coded whole", "sphere",
               "SphereScaleHyperprior", "SDPAConv", patch_border="sphere", sphere_start=0.8,
               coding="sphere"),
        Method("oslo_sh_sphere_patches", "OSLO hyperprior (sphere border), coded by patch",
               "sphere", "SphereScaleHyperprior", "SDPAConv", patch_border="sphere",
               trained_by="oslo_sh_sphere"),
        Method("deepsphere_fp", "DeepSphere factorized", "sphere", "SphereFactorizedPrior",
               "ChebConv"),
        Method("deepsphere_sh", "DeepSphere hyperprior", "sphere", "SphereScaleHyperprior",
               "ChebConv"),
        Method("erp_fp", "ERP factorized (CompressAI)", "erp", "FactorizedPrior"),
        Method("erp_sh", "ERP hyperprior (CompressAI)", "erp", "ScaleHyperprior"),
        Method("erp_fp_whole", "ERP factorized (CompressAI), coded whole", "erp",
               "FactorizedPrior", coding="sphere", trained_by="erp_fp"),
        Method("erp_sh_whole", "ERP hyperprior (CompressAI), coded whole", "erp",
               "ScaleHyperprior", coding="sphere", trained_by="erp_sh"),
        Method("jpeg", "JPEG", "classic", "jpeg"),
        Method("webp", "WebP", "classic", "webp"),
        Method("jpeg2000", "JPEG 2000", "classic", "jpeg2000"),
    )
}
PAPER_POINTS = ((0.0005, 1), (0.0009, 1), (0.0018, 1), (0.0035, 2), (0.0067, 3), (0.0130, 4),
                (0.0250, 5), (0.0483, 6), (0.0932, 7), (0.1800, 8))


@dataclass(frozen=True)
class Preset:
    """The setting of a study.

    Attributes:
        name: ``tiny``, ``small`` or ``paper``.
        healpix_res: resolution ``r`` of the maps (``12 * 4**r`` pixels, the bpp denominator).
        patch_res: patch resolution of training and evaluation (``2**pr`` x ``2**pr`` pixels).
        points: ``(lambda, quality)`` pairs; the quality gives (N, M) unless ``channels``.
        channels: ``(N, M)`` of every learned model, or :obj:`None` for the quality's.
        epochs: training epochs of every learned model.
        patches_per_map: random training patches (ERP crops) per map and epoch.
        batch_size: training batch size; evaluation uses ``eval_batch_size``.
        ratio_train, ratio_validation: the split of step 1 (the rest is the test set).
        learning_rate: Adam learning rate of every learned model.
        scheduler_patience: epochs without improvement of the training loss before the
            learning rate is divided by sqrt(10) (``ReduceLROnPlateau``, every learned model).
        lr_schedule: ``--lr-schedule`` of every learned model: ``plateau`` (with
            ``scheduler_patience``), ``step`` or ``cosine`` (to 0 over the epochs).
        qualities: qualities of the classic codecs, by codec.
        train_image_dirs: folders of training images (then every image of ``-i`` is a test
            image and ``ratio_train`` is unused), or none for step 1's split of ``-i``.
        sphere_points: S-PSNR's points (``sphere_<10*4**k+2>.txt``, generated if missing).
        loader_workers: data loading processes of the sphere training.
        gpu: every learned run on CUDA (``-g``); training of the sphere models under
            ``torchrun``.
        run: whether the study runs its steps (``False``: it only writes ``commands.sh``).
        methods: the default ``--methods`` (:obj:`None`: every method).
        seeds: the default ``--seeds``.
        seed_limits: at most this many of the seeds for a method (by the key of the method
            whose models it codes), e.g. one seed of the slow DeepSphere models.
        jobs: the default ``--jobs`` (trainings at a time).
        finetune_epochs: 0: every point trains from scratch for ``epochs``. Else a base model
            of each method (and seed) trains from scratch for ``epochs`` at the highest
            lambda, and every point, that lambda too, is fine-tuned from its final weights
            (``--init-from``) for this many epochs with a new schedule from ``finetune_lr``:
            the points of a curve share their start and their steps, so that their
            differences come from lambda rather than from the noise of short trainings.
        finetune_lr: the learning rate of the fine-tunings.
        sphere_finetune_lr: that of the fine-tunings of sphere-border methods, which run on
            whole maps (steps of ``P`` patches): at 5e-4 their training PSNR jumped between 10
            and 26 dB from one epoch to the next, and their curve was not monotone.
    """

    name: str
    healpix_res: int
    patch_res: int
    points: tuple[tuple[float, int], ...]
    channels: tuple[int, int] | None
    epochs: int
    patches_per_map: int
    batch_size: int
    eval_batch_size: int
    ratio_train: float
    ratio_validation: float
    learning_rate: float
    scheduler_patience: int
    lr_schedule: str = "plateau"
    qualities: dict[str, str] = field(default_factory=dict)
    train_image_dirs: tuple[str, ...] = ()
    sphere_points: str = "misc/sphere_655362.txt"
    loader_workers: int = 2
    gpu: bool = False
    run: bool = True
    methods: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    seed_limits: dict[str, int] = field(default_factory=dict)
    jobs: int = 1
    finetune_epochs: int = 0
    finetune_lr: float = 5e-4
    sphere_finetune_lr: float = 1e-4

    @property
    def base_point(self) -> tuple[float, int]:
        """The (lambda, quality) of the base models of ``finetune_epochs``: the highest
        lambda."""
        return max(self.points)


PRESETS = {
    "tiny": Preset(
        "tiny", healpix_res=6, patch_res=6, points=((0.002, 1), (0.02, 1)), channels=(8, 8),
        epochs=1, patches_per_map=1, batch_size=4, eval_batch_size=12, ratio_train=0.0,
        ratio_validation=0.0, learning_rate=1e-4, scheduler_patience=20,
        qualities={"jpeg": "10,50", "webp": "10,50", "jpeg2000": "100,20"},
        train_image_dirs=("samples/planets",), sphere_points="misc/sphere_10242.txt",
        loader_workers=0),
    "small": Preset(
        "small", healpix_res=7, patch_res=6,
        points=((0.002, 1), (0.005, 1), (0.012, 1), (0.03, 1)), channels=(32, 48),
        epochs=100, patches_per_map=6, batch_size=8, eval_batch_size=12, ratio_train=0.0,
        ratio_validation=0.0, learning_rate=1e-3, scheduler_patience=15,
        qualities={"jpeg": "10,20,40,60,80", "webp": "5,20,40,60,80",
                   "jpeg2000": "200,100,50,25,12"},
        train_image_dirs=("samples/planets",)),
    "medium": Preset(
        "medium", healpix_res=7, patch_res=6,
        points=((0.002, 1), (0.005, 1), (0.012, 1), (0.03, 1)), channels=(64, 96),
        epochs=50, patches_per_map=6, batch_size=8, eval_batch_size=12, ratio_train=0.0,
        ratio_validation=0.0, learning_rate=1e-3, scheduler_patience=15, lr_schedule="cosine",
        qualities={"jpeg": "10,20,40,60,80", "webp": "5,20,40,60,80",
                   "jpeg2000": "200,100,50,25,12"},
        train_image_dirs=("samples/planets", "samples/photos"),
        methods=("oslo_fp", "oslo_sh", "oslo_sh_sphere", "deepsphere_sh", "erp_fp", "erp_sh",
                 "jpeg", "webp", "jpeg2000"),
        seeds=(0, 1), seed_limits={"deepsphere_sh": 1, "oslo_sh_sphere": 1}, jobs=2,
        finetune_epochs=25, finetune_lr=5e-4),
    "paper": Preset(
        "paper", healpix_res=10, patch_res=8, points=PAPER_POINTS, channels=None, epochs=1000,
        patches_per_map=12, batch_size=10, eval_batch_size=10, ratio_train=0.8,
        ratio_validation=0.1, learning_rate=1e-4, scheduler_patience=20,
        qualities={"jpeg": "5,10,20,40,60,80,95", "webp": "5,10,20,40,60,80,95",
                   "jpeg2000": "200,100,50,25,12"},
        loader_workers=4, gpu=True, run=False),
}


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


@dataclass(frozen=True)
class Inputs:
    """The images of a study.

    Attributes:
        image_dir: the ERP images; the test images when ``train_image_dir`` is given, else
            split by step 1 with the preset's ratios.
        image_ext: their extension (and that of ``train_image_dir``'s).
        train_image_dir: a separate folder of training images, or :obj:`None`.
        sphere_points: S-PSNR's points.
        train_sources: the folders whose images ``train_image_dir`` links
            (:func:`training_folder`), or ``(train_image_dir,)``.
    """

    image_dir: str
    image_ext: str
    train_image_dir: str | None
    sphere_points: str
    train_sources: tuple[str, ...] = ()


def training_folder(folders: Sequence[str], root: Path, image_ext: str) -> str:
    """The one folder of training images of the study: ``folders[0]`` if there is one, else
    ``root/train_images`` with a link ``<folder name>_<file name>`` to every ``*.image_ext``
    image of every folder (steps 1 and 3 read one folder)."""
    if len(folders) == 1:
        return folders[0]
    merged = root / "train_images"
    merged.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for image in sorted(Path(folder).glob(f"*.{image_ext}")):
            link = merged / f"{Path(folder).name}_{image.name}"
            if not link.exists():
                link.symlink_to(image.resolve())
    return str(merged)


@dataclass(frozen=True)
class Layout:
    """The folders and files of a study in ``root``; ``separate_training``: the training
    images come from their own folder (two runs of step 1, in ``data/train`` and
    ``data/test``), else from step 1's split in ``data``; ``seeds``: the training seeds of
    every learned point (its folder gets a ``_seed<s>`` suffix when there are several);
    ``results_name``: the folder of the report inside ``root``."""

    root: Path
    separate_training: bool = False
    seeds: tuple[int, ...] = (0,)
    results_name: str = "results"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def data_list(self, name: str) -> Path:
        """Step 1's list ``train``, ``validation`` or ``test``."""
        folder = self.data / ("test" if name == "test" else "train") \
            if self.separate_training else self.data
        return folder / f"{name}.txt"

    @property
    def structures(self) -> Path:
        return self.root / "structures"

    @property
    def classic(self) -> Path:
        return self.root / "classic"

    @property
    def results(self) -> Path:
        return self.root / self.results_name

    def _run_folder(self, method: Method, name: str, seed: int) -> Path:
        suffix = f"_seed{seed}" if len(self.seeds) > 1 else ""
        return self.root / "runs" / method.run_key / f"{name}{suffix}"

    def run(self, method: Method, lmbda: float, seed: int = 0) -> Path:
        """Folder of the training run of a learned method at ``lmbda`` with ``seed``
        (``lambda<l>``, or ``lambda<l>_seed<s>`` when the study has several seeds)."""
        return self._run_folder(method, f"lambda{lmbda:g}", seed)

    def base(self, method: Method, seed: int = 0) -> Path:
        """Folder of the base training of a learned method (``Preset.finetune_epochs``),
        whose weights start every point of its curve (``base``, ``base_seed<s>``)."""
        return self._run_folder(method, "base", seed)

    def rd_csv(self, method: Method, point: tuple[float, int] | str, seed: int = 0) -> Path:
        """The RD CSV (one point) of a learned method's run or a classic codec's quality."""
        if method.kind == "classic":
            return self.classic / method.model / f"{point}.csv"
        return self.run(method, point[0], seed) / method.reconstruction / "rd.csv"


def method_seeds(preset: Preset, layout: Layout, method: Method) -> tuple[int, ...]:
    """The training seeds of a learned method's points: the study's, cut to the preset's
    limit for the method's models."""
    return layout.seeds[:preset.seed_limits.get(method.run_key, len(layout.seeds))]


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


def classic_points(preset: Preset, codec: str) -> list[str]:
    """The ``q<quality>`` labels of a classic codec's qualities."""
    return [quality_label(q) for q in CODECS[codec].parse_qualities(preset.qualities[codec])]


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


_SCRIPT_MAINS: dict[str, Callable[[Sequence[str]], object]] = {}


def script_main(script: str) -> Callable[[Sequence[str]], object]:
    """The ``main(argv)`` of a toolkit script (imported once)."""
    if script not in _SCRIPT_MAINS:
        path = REPO / script
        name = "_rd_study_" + path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _SCRIPT_MAINS[script] = module.main
    return _SCRIPT_MAINS[script]


def run_in_subprocess(step: Step, threads: int, log_file: Path) -> None:
    """Run ``step`` as ``python <script> <argv>`` with ``threads`` torch threads, its output
    appended to ``log_file``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    with log_file.open("a") as out:
        out.write(f"$ {step.command()}\n")
        out.flush()
        code = subprocess.run([sys.executable, str(REPO / step.script), *step.argv], env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode
    if code:
        raise OsloError(f"step '{step.name}' failed (exit {code}); its output: {log_file}")


def run_steps(steps: Sequence[Step], log_path: Path, jobs: int = 1) -> float:
    """Run the steps whose output is missing; append each one's seconds to ``log_path``
    (``steps.csv``). Returns the seconds spent (summed over the steps).

    With ``jobs == 1`` every step runs in this process, in order. With more, the shared steps
    (``chain == ""``) run first in this process, then the chains run ``jobs`` at a time, each
    step in a subprocess with ``torch.get_num_threads() // jobs`` threads and its output in
    ``logs/<chain>.log`` beside ``log_path``: small models train faster as two one-thread
    processes than as one two-thread process."""
    log = get_logger()
    if not log_path.exists():
        write_text(log_path, "step,seconds\n")
    lock = threading.Lock()

    def run(number: int, step: Step, runner: Callable[[Step], object]) -> float:
        if step.output.exists():
            log.info("[%d/%d] %s: done before, skipped", number, len(steps), step.name)
            return 0.0
        log.info("[%d/%d] %s: %s", number, len(steps), step.name, step.command())
        start = time.perf_counter()
        runner(step)
        seconds = time.perf_counter() - start
        if not step.output.exists():
            raise OsloError(f"step '{step.name}' ended without writing '{step.output}'")
        with lock, log_path.open("a") as handle:
            handle.write(f"\"{step.name}\",{seconds:.1f}\n")
        return seconds

    def in_process(step: Step) -> object:
        return script_main(step.script)(list(step.argv))

    numbered = list(enumerate(steps, 1))
    if jobs == 1:
        return sum(run(number, step, in_process) for number, step in numbered)
    spent = sum(run(number, step, in_process) for number, step in numbered if not step.chain)
    chains: dict[str, list[tuple[int, Step]]] = {}
    for number, step in numbered:
        if step.chain:
            chains.setdefault(step.chain, []).append((number, step))
    threads = max(1, torch.get_num_threads() // jobs)
    logs = log_path.parent / "logs"
    logs.mkdir(exist_ok=True)

    def run_chain(chain: str, members: list[tuple[int, Step]]) -> float:
        log_file = logs / (re.sub(r"[^A-Za-z0-9.=_-]+", "_", chain) + ".log")
        return sum(run(number, step, lambda s: run_in_subprocess(s, threads, log_file))
                   for number, step in members)

    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_chain, chain, members) for chain, members in chains.items()]
        try:
            for future in as_completed(futures):
                spent += future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return spent


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


def _number(value: float, digits: int) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def point_value(label: str) -> str:
    """The lambda of ``lambda=<l>`` or the quality of ``q<quality>``."""
    return label.split("=", 1)[1] if label.startswith("lambda=") else label.removeprefix("q")


def point_label(method: Method, value: str) -> str:
    """The point label of a lambda or a classic codec's quality (:func:`point_value`)."""
    return f"q{value}" if method.kind == "classic" else f"lambda={value}"


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


def monotone_breaks(curve: Curve) -> list[str]:
    """The steps ``lambda a -> b`` (consecutive lambdas of a learned curve) where the higher
    lambda does not give both more bits and more S-PSNR Y; empty for a monotone curve."""
    by_lambda = sorted(curve.points, key=lambda item: float(point_value(item[0])))
    return [f"{point_value(low)} -> {point_value(high)}"
            for (low, a), (high, b) in itertools.pairwise(by_lambda)
            if not (b["bpp"] > a["bpp"] and b["s_psnr_y"] > a["s_psnr_y"])]


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    add = parser.add_argument
    preset = parser.add_mutually_exclusive_group(required=True)
    for name, text in (("tiny", "resolution 6, 1 epoch of (8, 8) models (tests)"),
                       ("small", "resolution 7, (32, 48) models, 4 lambdas, trained on "
                                 "samples/planets (2-core CPU, < 1 h)"),
                       ("medium", "resolution 7, (64, 96) models, 4 lambdas, 2 seeds, cosine, "
                                  "trained on samples/planets and samples/photos (2-core CPU, "
                                  "about 80 min)"),
                       ("paper", "resolution 10 / patch 8, the 10 (lambda, q) pairs, 1000 "
                                 "epochs on GPUs: writes commands.sh only")):
        preset.add_argument(f"--{name}", dest="preset", action="store_const", const=name,
                            help=text)
    add("-O", "--output-dir", required=True,
        help="folder of the study: data/, structures/, runs/, classic/, results/, "
             "commands.sh, steps.csv")
    add("-i", "--image-dir", default="samples",
        help="folder of the ERP images: the test images if there is a training folder, else "
             "split by step 1")
    add("--train-image-dir", nargs="+", default=None,
        help="folders of the training images (default: the preset's: samples/planets for "
             "--tiny and --small, samples/planets and samples/photos for --medium, none for "
             "--paper); several are linked into <out>/train_images; 'none': split -i instead")
    add("-e", "--image-ext", default="jpg", help="extension of the ERP images")
    add("--methods", nargs="+", choices=list(METHODS), default=None,
        help="the curves of the study (default: the preset's: all of them; --medium: oslo_fp "
             "oslo_sh oslo_sh_sphere deepsphere_sh erp_fp erp_sh and the classic codecs (the "
             "other codings of issue 13 are experiments/seam_study.py's); --paper: all but the "
             "sphere-border ones, whose training on whole resolution-10 maps does not fit a "
             "GPU)")
    add("--anchor", default="erp_sh", choices=list(METHODS),
        help="the curve the BD-rates are measured against")
    add("--epochs", type=int, default=None, help="override the preset's training epochs")
    add("--finetune-epochs", type=int, default=None, metavar="E",
        help="train a base model per method and seed at the highest lambda for --epochs, then "
             "fine-tune every point from it for E epochs (--init-from of the training scripts, "
             "learning rate 5e-4, the same schedule); 0: every point from scratch (default: the "
             "preset's: 25 for --medium, 0 for the others)")
    add("--lr-schedule", choices=("plateau", "step", "cosine"), default=None,
        help="override the preset's learning-rate schedule (--lr-schedule of every learned "
             "model; --medium: cosine, the other presets: plateau)")
    add("--seeds", type=int, nargs="+", default=None,
        help="train every learned point once per seed (--seed of its training); with several, "
             "the run folders get a _seed<s> suffix and the report gives the BD values per "
             "seed, their mean and range, and those of the mean curves (default: the preset's: "
             "0 1 for --medium, where DeepSphere and the sphere-border OSLO take the first "
             "only; 0 for the others)")
    add("-s", "--sphere-points", default=None,
        help="S-PSNR's sphere points (default: the preset's, generated if missing)")
    add("--results", default="results", metavar="NAME",
        help="folder of the report inside -O (another name keeps the report of another "
             "selection of --methods, e.g. experiments/seam_study.py's)")
    add("--report-only", action="store_true",
        help="only write the report from the RD files already there (after commands.sh)")
    add("-j", "--jobs", type=int, default=None,
        help="run this many trainings (with their evaluations) at a time, each in its own "
             "process with 1/jobs of this process's torch threads; 1: every step in this process "
             "(default: the preset's: 2 for --medium, 1 for the others)")
    add("--dry-run", action="store_true", help="only write commands.sh")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    setup_logging()
    preset = PRESETS[args.preset]
    if args.epochs is not None:
        if args.epochs < 1:
            raise OsloError(f"--epochs must be >= 1, got {args.epochs}")
        preset = replace(preset, epochs=args.epochs)
    if args.lr_schedule is not None:
        preset = replace(preset, lr_schedule=args.lr_schedule)
    if args.finetune_epochs is not None:
        if args.finetune_epochs < 0:
            raise OsloError(f"--finetune-epochs must be >= 0, got {args.finetune_epochs}")
        preset = replace(preset, finetune_epochs=args.finetune_epochs)
    jobs = preset.jobs if args.jobs is None else args.jobs
    if jobs < 1:
        raise OsloError(f"--jobs must be >= 1, got {jobs}")
    seeds = tuple(dict.fromkeys(preset.seeds if args.seeds is None else args.seeds))
    if min(seeds) < 0:
        raise OsloError(f"--seeds must be >= 0, got {min(seeds)}")
    if args.methods is None:
        args.methods = list(preset.methods) if preset.methods is not None else [
            key for key, m in METHODS.items()
            if preset.name != "paper" or METHODS[m.run_key].patch_border == "cut"]
    methods = [METHODS[key] for key in dict.fromkeys(args.methods)]
    if args.anchor not in args.methods:
        raise OsloError(f"the anchor '{args.anchor}' is not among --methods")
    if len(methods) < 2:
        raise OsloError("give at least two --methods (one of them the anchor)")
    for method in methods:
        if method.trained_by and method.trained_by not in args.methods:
            raise OsloError(f"--methods {method.key} codes the models of {method.trained_by}: "
                            f"add {method.trained_by}")
    train_dirs = preset.train_image_dirs if args.train_image_dir is None else \
        () if args.train_image_dir == ["none"] else tuple(args.train_image_dir)
    for folder in (args.image_dir, *train_dirs):
        if not Path(folder).is_dir():
            raise OsloError(f"image folder '{folder}' does not exist")
    train_dir = training_folder(train_dirs, Path(args.output_dir), args.image_ext) \
        if train_dirs else None
    inputs = Inputs(args.image_dir, args.image_ext, train_dir,
                    args.sphere_points or preset.sphere_points, train_dirs)
    if not args.results or Path(args.results).name != args.results or args.results in (
            ".", "..", "data", "structures", "runs", "classic", "logs", "train_images"):
        raise OsloError(f"--results must be the name of a new folder inside -O, got "
                        f"'{args.results}'")
    layout = Layout(Path(args.output_dir), separate_training=train_dir is not None, seeds=seeds,
                    results_name=args.results)
    steps = study_steps(preset, layout, methods, inputs)
    command = shlex.join(["python", "experiments/rd_study.py", f"--{preset.name}",
                          "-O", str(layout.root), "-i", args.image_dir,
                          "--train-image-dir", *(train_dirs or ("none",)), "-e", args.image_ext,
                          "--methods", *args.methods, "--anchor", args.anchor,
                          *(("--epochs", str(preset.epochs)) if args.epochs else ()),
                          *(("--lr-schedule", preset.lr_schedule) if args.lr_schedule else ()),
                          *(("--finetune-epochs", str(preset.finetune_epochs))
                            if args.finetune_epochs is not None else ()),
                          *(("--results", args.results) if args.results != "results" else ()),
                          *(("--seeds", *map(str, seeds)) if seeds != (0,) else ()),
                          "-s", inputs.sphere_points])
    layout.root.mkdir(parents=True, exist_ok=True)
    write_text(layout.root / "commands.sh", commands_script(steps, f"{command} --report-only"))
    log = get_logger()
    log.info("%d steps written to %s", len(steps), layout.root / "commands.sh")
    if args.dry_run or (not preset.run and not args.report_only):
        log.info("run 'bash %s', then '%s --report-only'", layout.root / "commands.sh", command)
        return []
    if not args.report_only:
        start = time.perf_counter()
        spent = run_steps(steps, layout.root / "steps.csv", jobs)
        log.info("steps ran for %.1f min (%.1f min wall clock, %d job(s) at a time)",
                 spent / 60, (time.perf_counter() - start) / 60, jobs)
    rows = write_report(preset, layout, methods, args.anchor, command, inputs)
    print((layout.results / "report.md").read_text())
    return rows


if __name__ == "__main__":
    run_main(main)
