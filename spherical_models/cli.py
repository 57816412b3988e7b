"""The command line's one boundary: the parser helpers every script shares, and the checks
that turn the flags of the two training scripts into their typed configurations
(:mod:`spherical_models.config`).

Scripts parse their flags and hand the :class:`argparse.Namespace` here; past this module,
only the ``from_args`` of those configurations, which it calls, reads it. :func:`run` checks
the flag combinations of ``main_sphere_compression.py``, turns them into a frozen
:class:`~spherical_models.config.RunConfig` and runs :func:`spherical_models.pipeline.run` on
it, which builds the model (:mod:`spherical_models.models.registry`), the geometries and the
loaders from the typed values; :func:`run_erp` does the same for
``baselines/train_erp_compressai.py`` (:class:`~spherical_models.config.ErpRunConfig`,
:func:`spherical_models.planar.pipeline.run`). Both trainings run the one epoch loop of
:class:`spherical_models.training.trainer.Trainer`, whose flags are a
:class:`~spherical_models.config.TrainingConfig`. No module of the library imports this one.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from spherical_models.config import (
    PAD_MULTIPLE,
    ErpRunConfig,
    RunConfig,
    crop_size_of,
    erp_width_of,
    face_patch_res_of,
    valtest_patch_res_of,
)
from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION
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
    refuse_file(args.out_dir, f"output path '{args.out_dir}' exists and is not a folder")
    out_dir = Path(args.out_dir)
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
"""``--lr-schedule`` (:data:`spherical_models.training.optim.LR_SCHEDULES`, without importing
torch)."""


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


def add_clamp_reconstruction_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
) -> None:
    """``--clamp-reconstruction`` of the training scripts
    (:func:`spherical_models.training.epoch.clamped_reconstruction`)."""
    parser.add_argument(
        "--clamp-reconstruction", action="store_true",
        help="train on the distortion of the reconstruction clamped to [0, 1], as the decoder "
        "writes it, with a straight-through gradient: a pixel's error is at most 1, so a rare "
        "latent that the inverse GDNs blow far out of range cannot multiply a step's loss "
        "(default: off, CompressAI's loss of the unclamped output)")


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
# main_sphere_compression.py


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, with one clear line, flag combinations that cannot run."""
    if not args.train_data and not args.test_data:
        raise OsloError("nothing to do: give -i/--train-data to train and/or -t/--test-data to "
                        "evaluate")
    if args.init_from and not args.train_data:
        raise OsloError("--init-from needs -i/--train-data (it starts a training)")
    if args.icnr and (args.unpool_func != "pixel_shuffle" or args.conv_name != "SDPAConv"):
        raise OsloError(f"--icnr needs -upf pixel_shuffle and SDPAConv, not -upf "
                        f"{args.unpool_func} with {args.conv_name}")
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
    if valtest_patch_res_of(args) > args.healpix_res:
        raise OsloError(f"-prvt/--patch-res-valtest {args.patch_res_valtest} is above "
                        f"-hr/--healpix-res {args.healpix_res}")
    if 0 <= args.tile_res < 4:
        raise OsloError(f"--tile-res must be at least 4 (the level of y), or -1 for the whole "
                        f"sphere at once, got {args.tile_res}")
    refuse_file(args.out_dir, f"output path '{args.out_dir}' exists and is not a folder")


def refuse_file(folder: str, message: str) -> None:
    """:class:`OsloError` with ``message`` if the output folder ``folder`` exists as a file."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise OsloError(message)


def run(args: argparse.Namespace):
    """Train (``-i``) and/or evaluate (``-t``) as the flags of ``main_sphere_compression.py``
    say: :func:`check_arguments`, then :func:`spherical_models.pipeline.run` on the
    :class:`~spherical_models.config.RunConfig`. Returns the model."""
    from spherical_models.pipeline import run as run_pipeline  # torch: not for step 1/2

    check_arguments(args)
    return run_pipeline(RunConfig.from_args(args))


# ---------------------------------------------------------------------------------------------
# baselines/train_erp_compressai.py: the planar models on ERP images


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
    width = erp_width_of(args)
    if width < 2 or width % 2:
        raise OsloError(f"--erp-width must be even and positive, got {width}")
    if args.channels is not None and min(args.channels) < 1:
        raise OsloError(f"--channels must be positive, got {args.channels}")
    for flag, value in (("-e/--epochs", args.epochs), ("-np/--crops-per-image",
                        args.crops_per_image), ("-bst/--batch-size-train",
                        args.batch_size_train)):
        if value < 1:
            raise OsloError(f"{flag} must be >= 1, got {value}")
    for flag, value in (("--seed", args.seed), ("--scheduler-patience",
                        args.scheduler_patience), ("--checkpoint-interval",
                        args.checkpoint_interval)):
        if value < 0:
            raise OsloError(f"{flag} must be >= 0, got {value}")
    check_lr_schedule(args)
    check_layout(args)
    if args.patch_size_valtest < 0 or args.patch_size_valtest % PAD_MULTIPLE:
        raise OsloError(f"--patch-size-valtest must be 0 or a positive multiple of "
                        f"{PAD_MULTIPLE}, got {args.patch_size_valtest}")
    if args.train_data is not None and args.layout == "erp":
        crop = crop_size_of(args)
        if crop < PAD_MULTIPLE or crop % PAD_MULTIPLE:
            raise OsloError(f"--crop-size must be a positive multiple of {PAD_MULTIPLE}, got "
                            f"{crop}")
        if crop > width // 2:
            raise OsloError(f"--crop-size {crop} is larger than the ERP images "
                            f"({width} x {width // 2}; see --erp-width)")
    refuse_file(args.out_dir, f"-O/--out-dir '{args.out_dir}' is not a folder")


ERP_ONLY_FLAGS = {
    "--erp-width": ("erp_width", None),
    "--crop-size": ("crop_size", None),
    "--distortion-weight": ("distortion_weight", "none"),
    "--patch-size-valtest": ("patch_size_valtest", 0),
    "--train-original-dir": ("train_original_dir", None),
}
"""The flags of ``baselines/train_erp_compressai.py`` that only ``--layout erp`` reads: their
destinations and defaults (a value other than the default is refused with ``healpix``)."""

FACE_ONLY_FLAGS = {"-prt/--patch-res-train": "patch_res_train",
                   "-prvt/--patch-res-valtest": "patch_res_valtest"}
"""The flags that only ``--layout healpix`` reads, and their destinations (default None)."""


def check_layout(args: argparse.Namespace) -> None:
    """Refuse, with one line naming the flag, the flags of the other ``--layout``, and patch
    resolutions of ``--layout healpix`` out of ``log2(PAD_MULTIPLE) .. -r`` (the planar models
    code images whose sides are multiples of :data:`~spherical_models.config.PAD_MULTIPLE`)."""
    if args.layout == "erp":
        for flag, dest in FACE_ONLY_FLAGS.items():
            if getattr(args, dest) is not None:
                raise OsloError(f"{flag} needs --layout healpix")
        return
    for flag, (dest, default) in ERP_ONLY_FLAGS.items():
        if getattr(args, dest) != default:
            raise OsloError(f"{flag} is a flag of --layout erp, not of --layout {args.layout}")
    lowest = PAD_MULTIPLE.bit_length() - 1
    for flag, res in zip(FACE_ONLY_FLAGS, face_patch_res_of(args), strict=True):
        if res > args.healpix_res:
            raise OsloError(f"{flag} {res} is above -r/--healpix-res {args.healpix_res}")
        if res < lowest:
            raise OsloError(f"{flag} {res} is below {lowest}: the planar models code images "
                            f"of {PAD_MULTIPLE} x {PAD_MULTIPLE} pixels or more")


def run_erp(args: argparse.Namespace):
    """Train (``-i``) and/or evaluate (``-t``) as the flags of
    ``baselines/train_erp_compressai.py`` say: :func:`check_erp_arguments`, then
    :func:`spherical_models.planar.pipeline.run` on the
    :class:`~spherical_models.config.ErpRunConfig`. Returns the evaluation's rows."""
    from spherical_models.planar.pipeline import run as run_pipeline

    check_erp_arguments(args)
    return run_pipeline(ErpRunConfig.from_args(args))
