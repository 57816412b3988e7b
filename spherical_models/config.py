"""The typed configurations of the two training scripts: :class:`RunConfig`
(``main_sphere_compression.py``), :class:`ErpRunConfig` (``baselines/train_erp_compressai.py``)
and the :class:`TrainingConfig` of their one epoch loop; what :mod:`spherical_models.cli`
makes of the flags (``from_args``, which it calls), and all that the pipelines and
:mod:`spherical_models.training` read of them. It imports none of them: the chain
cli -> pipeline -> training -> config runs one way."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from utils.healpix import nside_of

# ---------------------------------------------------------------------------------------------
# The epoch loop of both training scripts


@dataclass(frozen=True)
class TrainingConfig:
    """The flags of the epoch loop (:class:`spherical_models.training.trainer.Trainer`), the same
    for the sphere models and the planar ones: epochs, optimisers, clipping, warm-up, the clamp of
    the reconstruction in the loss, learning-rate schedule, checkpoints, logging, the checkpoint
    to resume from, and ``arguments``, every flag as given (recorded in the checkpoints).

    ``validation_start`` is the first epoch with validation and plateau steps (1 where there is
    no validation); ``print_freq`` logs the losses every this many batches (0: never).
    """

    max_epochs: int
    learning_rate: float
    aux_learning_rate: float
    clip_max_norm: float
    lr_warmup: int
    clamp_reconstruction: bool
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
    icnr: bool
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
    clamp_reconstruction: bool
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
        """The configuration of parsed flags (checked by
        :func:`~spherical_models.cli.check_arguments`)."""
        resolved = {
            "out_dir": Path(args.out_dir),
            "patch_res_valtest": valtest_patch_res_of(args),
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


def valtest_patch_res_of(args: argparse.Namespace) -> int:
    """``-prvt``, defaulting to ``-prt`` (-1 with ``--patch-border sphere``); -1 for the whole
    sphere."""
    default = -1 if args.patch_border == "sphere" else args.patch_res_train
    value = default if args.patch_res_valtest is None else args.patch_res_valtest
    return max(value, -1)


# ---------------------------------------------------------------------------------------------
# baselines/train_erp_compressai.py: the planar models on ERP images


PAD_MULTIPLE = 64
"""The planar codecs' images are padded to a multiple of this (their down-sampling, 2**6):
the sides of the training crops and of the coded patches are multiples of it."""

LAYOUTS = ("erp", "healpix")
"""``--layout`` of the planar models: ERP images, or the maps' HEALPix patches as images
(:mod:`spherical_models.planar.faces`)."""

DEFAULT_PATCH_RES = 8
"""``-prt`` of ``--layout healpix`` when not given (256 x 256 images, as ``--crop-size``)."""

DEFAULT_CROP_SIZE = 256
"""``--crop-size`` of ``--layout erp`` when not given."""

FACE_FLAGS = ("layout", "patch_res_train", "patch_res_valtest")
"""The flags of ``--layout healpix``, which a run with ``--layout erp`` does not record (its
``config.txt`` and checkpoints are those of before ``--layout``)."""

DISTORTION_WEIGHTS = ("none", "latitude")
"""``--distortion-weight`` of the planar models: plain MSE, or rows weighted by the sphere's
area (:func:`spherical_models.planar.erp.latitude_criterion`)."""


@dataclass(frozen=True)
class ErpRunConfig:
    """What a run of ``baselines/train_erp_compressai.py`` does, as typed values: the flags,
    with ``erp_width`` and ``files_prefix`` resolved from ``-r``, ``train_original_dir`` from
    ``-o``, ``channels`` ``(N, M)`` of ``--channels`` (:obj:`None`: those of ``-q``),
    ``patch_res_train`` and ``patch_res_valtest`` those of ``--layout healpix`` (``-prt``,
    default :data:`DEFAULT_PATCH_RES`; ``-prvt``, default ``-prt``; :obj:`None` with
    ``erp``), and the epoch loop's flags in ``training`` (``-e`` its ``max_epochs``; without
    validation, ``--scheduler-patience`` counts epochs and no batch is logged)."""

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
    layout: str
    patch_res_train: int | None
    patch_res_valtest: int | None
    gpu: bool
    training: TrainingConfig

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ErpRunConfig:
        """The configuration of parsed flags (checked by
        :func:`~spherical_models.cli.check_erp_arguments`)."""
        width, prefix = erp_width_of(args), _files_prefix(args)
        faces = args.layout != "erp"
        arguments = {k: v for k, v in vars(args).items() if faces or k not in FACE_FLAGS}
        loop = {"max_epochs": args.epochs, "lr_step_at": tuple(args.lr_step_at),
                "patience_unit": "epochs", "validation_start": 1, "print_freq": 0,
                "arguments": {**arguments, "erp_width": width, "files_prefix": prefix,
                              "crop_size": crop_size_of(args)}}
        resolved = {
            "original_dir": Path(args.original_dir),
            "train_original_dir": Path(args.train_original_dir or args.original_dir),
            "out_dir": Path(args.out_dir),
            "files_prefix": prefix,
            "erp_width": width,
            "crop_size": crop_size_of(args),
            "channels": tuple(args.channels) if args.channels else None,
            "patch_res_train": face_patch_res_of(args)[0],
            "patch_res_valtest": face_patch_res_of(args)[1],
            "training": TrainingConfig(**{
                f.name: loop[f.name] if f.name in loop else getattr(args, f.name)
                for f in fields(TrainingConfig)
            }),
        }
        return cls(**{
            f.name: resolved[f.name] if f.name in resolved else getattr(args, f.name)
            for f in fields(cls)
        })


def crop_size_of(args: argparse.Namespace) -> int:
    """``--crop-size``, else :data:`DEFAULT_CROP_SIZE`."""
    return DEFAULT_CROP_SIZE if args.crop_size is None else args.crop_size


def erp_width_of(args: argparse.Namespace) -> int:
    """``--erp-width``, by default ``4 * 2**r``."""
    return 4 * nside_of(args.healpix_res) if args.erp_width is None else args.erp_width


def face_patch_res_of(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """``(-prt, -prvt)`` of ``--layout healpix``, by default :data:`DEFAULT_PATCH_RES` and
    ``-prt``; ``(None, None)`` with ``--layout erp``."""
    if args.layout == "erp":
        return None, None
    train = DEFAULT_PATCH_RES if args.patch_res_train is None else args.patch_res_train
    return train, train if args.patch_res_valtest is None else args.patch_res_valtest


def _files_prefix(args: argparse.Namespace) -> str:
    """``--files-prefix``, by default ``healpix_sampling_res_{r}_``."""
    return args.files_prefix if args.files_prefix is not None else \
        f"healpix_sampling_res_{args.healpix_res}_"
