"""The command line's one boundary: the parser helpers every script shares, and the typed run
configurations that the flags of the two training scripts become.

Scripts parse their flags and hand the :class:`argparse.Namespace` here; nothing past this
module reads it. :func:`run` checks the flag combinations of ``main_sphere_compression.py``,
turns them into a frozen :class:`RunConfig` and runs :func:`spherical_models.pipeline.run` on
it, which builds the model (:mod:`spherical_models.models.registry`), the geometries and the
loaders from the typed values; :func:`run_erp` does the same for
``baselines/train_erp_compressai.py`` (:class:`ErpRunConfig`,
:func:`spherical_models.erp_pipeline.run`). Both trainings run the one epoch loop of
:class:`spherical_models.trainer.Trainer`, whose flags are a :class:`TrainingConfig`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION, nside_of
from utils.structures import check_resolutions

DEFAULT_SPHERE_POINTS = Path(__file__).resolve().parent.parent / "misc" / "sphere_655362.txt"
"""360Lib's 655,362 points, generated on first use (:func:`utils.sphere_points.load_or_create`)."""


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default as it would be typed (``0.6 0.9`` for a list),
    or ``none`` for an option without one (an input not given, an output not written, an
    empty prefix). Required options, switches (off unless given) and helps that state their
    default themselves (``default: the preset's``) are left as they are."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.required or action.nargs == 0 or not action.option_strings
                or action.default is argparse.SUPPRESS or STATED_DEFAULT.search(text)):
            return text
        value = action.default
        if isinstance(value, (list, tuple)):
            value = " ".join(map(str, value))
        shown = "none" if value is None or value == "" else str(value).replace("%", "%%")
        return f"{text} (default: {shown})"


STATED_DEFAULT = re.compile(r"\bdefault:|%\(default\)", re.IGNORECASE)
"""A help that states its default (:class:`HelpFormatter` adds none)."""


# ---------------------------------------------------------------------------------------------
# Arguments shared by several scripts


def add_structure_arguments(parser: argparse.ArgumentParser, default_hops: int) -> None:
    """Add ``-o -hr -pr -nh`` (the two step-2 scripts) to ``parser``."""
    parser.add_argument("-o", "--out-dir", required=True, help="folder of the structure files")
    parser.add_argument("-hr", "--healpix-res", type=int, required=True,
                        help=f"HEALPix resolution of the maps, 0..{MAX_RESOLUTION}")
    parser.add_argument("-pr", "--patch-res", type=int, required=True,
                        help="resolution of the patches (a 2**pr x 2**pr square of 4**pr "
                        "pixels); negative for the whole sphere")
    parser.add_argument("-nh", "--num-hops", type=int, choices=(1, 2), default=default_hops,
                        help="neighbourhood: 1 hop (8 neighbours, like 3x3) or 2 hops "
                        "(24, like 5x5; also serves 1-hop layers)")


def structure_out_dir(args: argparse.Namespace) -> Path:
    """Check the resolutions and the output folder of a step-2 script (created if missing)."""
    check_resolutions(args.healpix_res, args.patch_res)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OsloError(f"output path '{out_dir}' exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def add_sphere_points_argument(parser: argparse.ArgumentParser) -> None:
    """``-s/--sphere-points``, the S-PSNR points file of every script that measures S-PSNR."""
    parser.add_argument(
        "-s", "--sphere-points", default=str(DEFAULT_SPHERE_POINTS),
        help="sphere points of S-PSNR (count, then 'lat lon' per line); a missing "
             "sphere_<10*4**k+2>.txt is generated (default: misc/sphere_655362.txt of the "
             "repository)")


PATIENCE_UNITS = ("epochs", "steps")
PATCH_BORDERS = ("cut", "sphere")
"""``--patience-unit``: what ``--scheduler-patience`` counts."""

DEFAULT_WARMUP_STEPS = 50
"""``--lr-warmup``: 50 steps bound the first 250 steps' loss to 1.1x to 1.4x the first step's
(3 seeds, lr 1e-3), against 2.4x to 8e5x without (docs/RESULTS.md, "Training start")."""

LR_SCHEDULE_CHOICES = ("plateau", "step", "cosine")
"""``--lr-schedule`` (:data:`spherical_models.training.LR_SCHEDULES`, without importing torch)."""


def add_lr_schedule_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                              monitored: str = "the validation loss (else the training loss)",
                              ) -> None:
    """``--lr-schedule --lr-step-at --lr-step-factor --lr-min`` (the training scripts), next to
    their ``-e`` and ``--scheduler-patience``; ``monitored`` is what ``plateau`` watches."""
    parser.add_argument(
        "--lr-schedule", choices=LR_SCHEDULE_CHOICES, default="plateau",
        help=f"learning-rate schedule. plateau: ReduceLROnPlateau on {monitored}, the rate "
        "divided by sqrt(10) after --scheduler-patience epochs without improvement; step: the "
        "rate times --lr-step-factor at each fraction --lr-step-at of -e, from epoch 1; "
        "cosine: cosine decay from the rate to --lr-min over -e epochs, from epoch 1 (step and "
        "cosine change the rate after every epoch; a resumed run follows the flags' -e)")
    parser.add_argument(
        "--lr-step-at", type=float, nargs="+", default=[0.6, 0.9], metavar="FRACTION",
        help="with --lr-schedule step: fractions of -e, in (0, 1), after whose epoch "
        "(round(fraction * e)) the rate is multiplied by --lr-step-factor")
    parser.add_argument(
        "--lr-step-factor", type=float, default=0.1,
        help="with --lr-schedule step: factor (> 0) of the learning rate at each --lr-step-at")
    parser.add_argument(
        "--lr-min", type=float, default=0.0,
        help="with --lr-schedule cosine: final learning rate, in [0, -lr]")
    parser.add_argument(
        "--lr-warmup", type=int, default=DEFAULT_WARMUP_STEPS, metavar="STEPS",
        help="linear warm-up: optimisation step t (from 0, counted by the optimiser, so also "
        "across a resume) runs at min(1, (t + 1) / STEPS) times the scheduled rate; it keeps "
        "Adam's first steps at -lr 1e-3 from blowing the decoder up; 0: none")


def check_lr_schedule(args: argparse.Namespace) -> None:
    """Refuse, with one line, values of the schedule flags out of range (the flags of
    :func:`add_lr_schedule_arguments`, ``--no-scheduler`` and ``-lr``)."""
    if args.no_scheduler and args.lr_schedule != "plateau":
        raise OsloError(f"--no-scheduler and --lr-schedule {args.lr_schedule} exclude each other")
    bad = [f for f in args.lr_step_at if not 0 < f < 1]
    if bad:
        raise OsloError(f"--lr-step-at fractions must be in (0, 1), got {bad[0]:g}")
    if not args.lr_step_factor > 0:
        raise OsloError(f"--lr-step-factor must be positive, got {args.lr_step_factor:g}")
    if args.lr_warmup < 0:
        raise OsloError(f"--lr-warmup must be 0 or more steps, got {args.lr_warmup}")
    if not 0 <= args.lr_min <= args.learning_rate:
        raise OsloError(f"--lr-min must be in [0, -lr {args.learning_rate:g}], got "
                        f"{args.lr_min:g}")


# ---------------------------------------------------------------------------------------------
# The epoch loop of both training scripts


@dataclass(frozen=True)
class TrainingConfig:
    """The flags of the epoch loop (:class:`spherical_models.trainer.Trainer`), the same for
    the sphere models and the planar ones: epochs, optimisers, clipping, warm-up, learning-rate
    schedule, checkpoints, logging, the checkpoint to resume from, and ``arguments``, every
    flag as given (recorded in the checkpoints).

    ``validation_start`` is the first epoch with validation and plateau steps (1 where there is
    no validation); ``print_freq`` logs the losses every this many batches (0: never).
    """

    max_epochs: int
    learning_rate: float
    aux_learning_rate: float
    clip_max_norm: float
    lr_warmup: int
    no_scheduler: bool
    lr_schedule: str
    scheduler_patience: int
    patience_unit: str
    lr_step_at: tuple[float, ...]
    lr_step_factor: float
    lr_min: float
    validation_start: int
    checkpoint_interval: int
    checkpoint_file: str | None
    print_freq: int
    no_progress: bool
    arguments: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# main_sphere_compression.py


@dataclass(frozen=True)
class RunConfig:
    """What a run of ``main_sphere_compression.py`` does, as typed values (the flags, with
    their defaults resolved).

    Attributes are the flags' destinations; besides them: ``patch_res_valtest`` is ``-prvt``
    or ``-prt`` (-1: whole sphere), ``weight_type`` ``-w`` or the convolution's default,
    ``channels`` ``(N, M)`` of ``--channels`` (:obj:`None`: those of ``-q``),
    ``context_model`` :obj:`None` for ``none``, ``lr_step_at`` a tuple, and ``arguments``
    every flag as given (for ``config.txt`` and checkpoints).
    """

    # data and structures
    train_data: str | None
    validation_data: str | None
    test_data: str | None
    neighbor_struct_dir: str
    out_dir: Path
    healpix_res: int
    patch_res_train: int
    patch_res_valtest: int
    tile_res: int
    patch_border: str
    sphere_start: float
    n_patch_per_sample: int
    dataloader_num_workers: int
    # model
    model: str
    quality: int
    channels: tuple[int, int] | None
    lmbda: float
    conv_name: str
    conv_init: str
    weight_type: str
    use_euclidean: bool
    skip_conn_aggr: str
    single_conv: bool
    pool_func: str
    unpool_func: str
    non_linearity: str
    attention: bool
    context_model: str | None
    ar_hops: int
    # training
    max_epochs: int
    learning_rate: float
    aux_learning_rate: float
    clip_max_norm: float
    batch_size_train: int
    batch_size_valtest: int
    checkpoint_interval: int
    no_scheduler: bool
    scheduler_patience: int
    patience_unit: str
    plateau_patches: int
    lr_schedule: str
    lr_step_at: tuple[float, ...]
    lr_step_factor: float
    lr_min: float
    lr_warmup: int
    validation_start: int
    checkpoint_file: str | None
    init_from: str | None
    weight_transfer: str | None
    seed: int | None
    print_freq: int
    no_progress: bool
    # evaluation
    foldername_valtest: str
    only_npy_valtest: bool
    skip_tested: bool
    deterministic: bool | None
    scale_table_levels: int | None
    # device
    gpu: bool
    gpu_id: int
    arguments: dict[str, Any]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        """The configuration of parsed flags (checked by :func:`check_arguments`)."""
        resolved = {
            "out_dir": Path(args.out_dir),
            "patch_res_valtest": _valtest_patch_res(args),
            "weight_type": args.weight_type or ("gaussian" if args.conv_name == "ChebConv"
                                                else "identity"),
            "channels": tuple(args.channels) if args.channels else None,
            "lr_step_at": tuple(args.lr_step_at),
            "context_model": None if args.context_model == "none" else args.context_model,
            "arguments": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in vars(args).items()},
        }
        return cls(**{
            f.name: resolved[f.name] if f.name in resolved else getattr(args, f.name)
            for f in fields(cls)
        })

    @property
    def training(self) -> TrainingConfig:
        """The flags of the epoch loop."""
        return TrainingConfig(**{f.name: getattr(self, f.name) for f in fields(TrainingConfig)})


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, with one clear line, flag combinations that cannot run."""
    if not args.train_data and not args.test_data:
        raise OsloError("nothing to do: give -i/--train-data to train and/or -t/--test-data to "
                        "evaluate")
    if args.init_from and not args.train_data:
        raise OsloError("--init-from needs -i/--train-data (it starts a training)")
    if args.test_data and not args.train_data and not (args.checkpoint_file
                                                       or args.weight_transfer):
        raise OsloError("evaluation (-t) without training needs --checkpoint-file (or "
                        "--weight-transfer)")
    starts = [flag for flag, value in (("--checkpoint-file", args.checkpoint_file),
                                       ("--init-from", args.init_from),
                                       ("--weight-transfer", args.weight_transfer)) if value]
    if len(starts) > 1:
        raise OsloError(f"{' and '.join(starts)} exclude each other")
    if args.validation_data and not args.train_data:
        raise OsloError("-v/--validation-data needs -i/--train-data")
    if args.context_model != "none" and args.model != "SphereMeanScaleHyperprior":
        raise OsloError(f"-cm/--context-model needs -m SphereMeanScaleHyperprior, not "
                        f"{args.model}")
    positive = {
        "-bst/--batch-size-train": args.batch_size_train,
        "-bsvt/--batch-size-valtest": args.batch_size_valtest,
        "--checkpoint-interval": args.checkpoint_interval,
        "-np/--n-patch-per-sample": args.n_patch_per_sample,
    }
    for flag, value in positive.items():
        if value < 1:
            raise OsloError(f"{flag} must be at least 1, got {value}")
    if args.max_epochs < 0 or args.dataloader_num_workers < 0 or args.scheduler_patience < 0:
        raise OsloError("-e/--max-epochs, --dataloader-num-workers and --scheduler-patience "
                        "must not be negative")
    check_lr_schedule(args)
    if args.plateau_patches < 0:
        raise OsloError(f"--plateau-patches must not be negative, got {args.plateau_patches}")
    if args.plateau_patches and (args.no_scheduler or args.lr_schedule != "plateau"):
        raise OsloError("--plateau-patches needs the plateau scheduler (--lr-schedule plateau, "
                        "without --no-scheduler)")
    if args.scale_table_levels is not None and not 2 <= args.scale_table_levels <= 65536:
        raise OsloError(f"--scale-table-levels must be in 2..65536, got "
                        f"{args.scale_table_levels}")
    if args.channels is not None and min(args.channels) < 1:
        raise OsloError(f"--channels must be positive, got {args.channels}")
    if not 0 <= args.sphere_start < 1:
        raise OsloError(f"--sphere-start must be in [0, 1), got {args.sphere_start:g}")
    if args.sphere_start and args.patch_border != "sphere":
        raise OsloError("--sphere-start needs --patch-border sphere")
    if args.patch_border == "sphere" and args.patch_res_train < 0:
        raise OsloError("--patch-border sphere needs patches (-prt >= 0): -prt -1 trains on "
                        "whole maps already")
    if args.patch_res_train > args.healpix_res:
        raise OsloError(f"-prt/--patch-res-train {args.patch_res_train} is above "
                        f"-hr/--healpix-res {args.healpix_res}")
    if _valtest_patch_res(args) > args.healpix_res:
        raise OsloError(f"-prvt/--patch-res-valtest {args.patch_res_valtest} is above "
                        f"-hr/--healpix-res {args.healpix_res}")
    if 0 <= args.tile_res < 4:
        raise OsloError(f"--tile-res must be at least 4 (the level of y), or -1 for the whole "
                        f"sphere at once, got {args.tile_res}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OsloError(f"output path '{out_dir}' exists and is not a folder")


def _valtest_patch_res(args: argparse.Namespace) -> int:
    """``-prvt``, defaulting to ``-prt`` (-1 with ``--patch-border sphere``); -1 for the whole
    sphere."""
    default = -1 if args.patch_border == "sphere" else args.patch_res_train
    value = default if args.patch_res_valtest is None else args.patch_res_valtest
    return max(value, -1)


def run(args: argparse.Namespace):
    """Train (``-i``) and/or evaluate (``-t``) as the flags of ``main_sphere_compression.py``
    say: :func:`check_arguments`, then :func:`spherical_models.pipeline.run` on the
    :class:`RunConfig`. Returns the model."""
    from spherical_models.pipeline import run as run_pipeline  # torch: not for step 1/2

    check_arguments(args)
    return run_pipeline(RunConfig.from_args(args))


# ---------------------------------------------------------------------------------------------
# baselines/train_erp_compressai.py: the planar models on ERP images

PAD_MULTIPLE = 64
"""The planar codecs' images are padded to a multiple of this (their down-sampling, 2**6):
the sides of the training crops and of the coded patches are multiples of it."""

DISTORTION_WEIGHTS = ("none", "latitude")
"""``--distortion-weight`` of the planar models: plain MSE, or rows weighted by the sphere's
area (:func:`spherical_models.erp.latitude_criterion`)."""


@dataclass(frozen=True)
class ErpRunConfig:
    """What a run of ``baselines/train_erp_compressai.py`` does, as typed values: the flags,
    with ``erp_width`` and ``files_prefix`` resolved from ``-r``, ``train_original_dir`` from
    ``-o``, ``channels`` ``(N, M)`` of ``--channels`` (:obj:`None`: those of ``-q``), and the
    epoch loop's flags in ``training`` (``-e`` its ``max_epochs``; without validation,
    ``--scheduler-patience`` counts epochs and no batch is logged)."""

    original_dir: Path
    original_ext: str
    train_data: str | None
    train_original_dir: Path
    test_data: str | None
    files_prefix: str
    healpix_res: int
    out_dir: Path
    model: str
    quality: int
    channels: tuple[int, int] | None
    lmbda: float
    crops_per_image: int
    crop_size: int
    batch_size_train: int
    distortion_weight: str
    seed: int
    init_from: str | None
    erp_width: int
    sphere_points: str
    patch_size_valtest: int
    foldername_valtest: str
    gpu: bool
    training: TrainingConfig

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ErpRunConfig:
        """The configuration of parsed flags (checked by :func:`check_erp_arguments`)."""
        width, prefix = _erp_width(args), _files_prefix(args)
        loop = {"max_epochs": args.epochs, "lr_step_at": tuple(args.lr_step_at),
                "patience_unit": "epochs", "validation_start": 1, "print_freq": 0,
                "arguments": {**vars(args), "erp_width": width, "files_prefix": prefix}}
        resolved = {
            "original_dir": Path(args.original_dir),
            "train_original_dir": Path(args.train_original_dir or args.original_dir),
            "out_dir": Path(args.out_dir),
            "files_prefix": prefix,
            "erp_width": width,
            "channels": tuple(args.channels) if args.channels else None,
            "training": TrainingConfig(**{
                f.name: loop[f.name] if f.name in loop else getattr(args, f.name)
                for f in fields(TrainingConfig)
            }),
        }
        return cls(**{
            f.name: resolved[f.name] if f.name in resolved else getattr(args, f.name)
            for f in fields(cls)
        })


def _erp_width(args: argparse.Namespace) -> int:
    """``--erp-width``, by default ``4 * 2**r``."""
    return 4 * nside_of(args.healpix_res) if args.erp_width is None else args.erp_width


def _files_prefix(args: argparse.Namespace) -> str:
    """``--files-prefix``, by default ``healpix_sampling_res_{r}_``."""
    return args.files_prefix if args.files_prefix is not None else \
        f"healpix_sampling_res_{args.healpix_res}_"


def check_erp_arguments(args: argparse.Namespace) -> None:
    """Refuse, with one clear line, flags of ``baselines/train_erp_compressai.py`` out of
    range or that cannot run together."""
    if args.train_data is None and args.test_data is None:
        raise OsloError("nothing to do: give -i/--train-data (training) and/or -t/--test-data")
    if args.init_from is not None and (args.train_data is None or args.checkpoint_file):
        raise OsloError("--init-from needs -i/--train-data and excludes --checkpoint-file")
    if args.train_data is None and args.checkpoint_file is None:
        raise OsloError("evaluation without training needs --checkpoint-file")
    if not 0 <= args.healpix_res <= 13:
        raise OsloError(f"-r/--healpix-res must be in 0..13, got {args.healpix_res}")
    width = _erp_width(args)
    if width < 2 or width % 2:
        raise OsloError(f"--erp-width must be even and positive, got {width}")
    if args.channels is not None and min(args.channels) < 1:
        raise OsloError(f"--channels must be positive, got {args.channels}")
    for flag, value in (("-e/--epochs", args.epochs), ("-np/--crops-per-image",
                        args.crops_per_image), ("-bst/--batch-size-train",
                        args.batch_size_train)):
        if value < 1:
            raise OsloError(f"{flag} must be >= 1, got {value}")
    if args.seed < 0:
        raise OsloError(f"--seed must be >= 0, got {args.seed}")
    if args.scheduler_patience < 0:
        raise OsloError(f"--scheduler-patience must be >= 0, got {args.scheduler_patience}")
    check_lr_schedule(args)
    if args.checkpoint_interval < 0:
        raise OsloError(f"--checkpoint-interval must be >= 0, got {args.checkpoint_interval}")
    if args.patch_size_valtest < 0 or args.patch_size_valtest % PAD_MULTIPLE:
        raise OsloError(f"--patch-size-valtest must be 0 or a positive multiple of "
                        f"{PAD_MULTIPLE}, got {args.patch_size_valtest}")
    if args.train_data is not None:
        if args.crop_size < PAD_MULTIPLE or args.crop_size % PAD_MULTIPLE:
            raise OsloError(f"--crop-size must be a positive multiple of {PAD_MULTIPLE}, got "
                            f"{args.crop_size}")
        if args.crop_size > width // 2:
            raise OsloError(f"--crop-size {args.crop_size} is larger than the ERP images "
                            f"({width} x {width // 2}; see --erp-width)")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise OsloError(f"-O/--out-dir '{out}' is not a folder")


def run_erp(args: argparse.Namespace):
    """Train (``-i``) and/or evaluate (``-t``) as the flags of
    ``baselines/train_erp_compressai.py`` say: :func:`check_erp_arguments`, then
    :func:`spherical_models.erp_pipeline.run` on the :class:`ErpRunConfig`. Returns the
    evaluation's rows."""
    from spherical_models.erp_pipeline import run as run_pipeline

    check_erp_arguments(args)
    return run_pipeline(ErpRunConfig.from_args(args))
