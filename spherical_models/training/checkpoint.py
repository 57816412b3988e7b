"""Checkpoints of ``main_sphere_compression.py``: writing, reading, checking them against the
flags, and the random states they carry.

A checkpoint (DESIGN.md section 7) holds the model, both optimisers, the scheduler, the epoch,
the per-epoch losses, the best loss, the configuration that shapes the model (checked against
the flags when loaded), the arguments, the seed, and the random states; a checkpoint written
when training is interrupted also holds the position inside the epoch, so that resuming from
it gives exactly the losses and weights of an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spherical_models.models.base import DEFAULT_SCALE_TABLE_LEVELS
from utils.errors import OsloError
from utils.io import atomic_path

CHECKPOINT_FORMAT = "oslo-sphere-compression-checkpoint"
CHECKPOINT_VERSION = 1


def rng_state(device: torch.device) -> dict[str, Any]:
    """The random states of torch (and CUDA on a CUDA ``device``), numpy and ``random``, as
    objects that ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state(legacy=False)  # noqa: NPY002
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state({  # noqa: NPY002
        "bit_generator": numpy_state["bit_generator"],
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------------------------------------
# Checkpoints

FLAG_OF_KEY = {
    "model": "-m/--model",
    "quality": "-q/--quality",
    "lambda": "--lambda",
    "N": "-q/--quality (or --channels) N",
    "M": "-q/--quality (or --channels) M",
    "conv": "-c/--conv-name",
    "hop": "the convolution hops",
    "skip_aggregation": "-sc/--skip-conn-aggr",
    "single_conv": "--single-conv",
    "pool": "-pf/--pool-func",
    "unpool": "-upf/--unpool-func",
    "nonlinearity": "-nl/--non-linearity",
    "attention": "-at/--attention",
    "context_model": "-cm/--context-model",
    "ar_hops": "-arhops/--ar-hops",
    "healpix_res": "-hr/--healpix-res",
    "patch_res_train": "-prt/--patch-res-train",
    "patch_border": "--patch-border",
    "sphere_start": "--sphere-start",
    "weight_type": "-w/--weight-type",
    "use_euclidean": "--use-euclidean",
    "lr_schedule": "--lr-schedule",
    "distortion_weight": "--distortion-weight",
    "layout": "--layout",
    "patience_unit": "--patience-unit",
    "plateau_patches": "--plateau-patches",
}
"""The flag that sets each entry of a checkpoint's configuration (for error messages)."""


def _describe(key: str, value: Any) -> str:
    flag = FLAG_OF_KEY.get(key, key)
    if isinstance(value, bool):
        return f"{flag} {'on' if value else 'off'}"
    return f"{flag} {value}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` with ``torch.save``, atomically (a temporary file renamed into place)."""
    path = Path(path)
    with atomic_path(path, ".tar") as tmp:
        torch.save(dict(state), tmp)
    return path


def read_torch_file(path: str | os.PathLike, what: str) -> Any:
    """``torch.load`` on the CPU with ``weights_only``; :class:`OsloError` naming ``what`` and
    the file if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise OsloError(f"{what} '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means a bad file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise OsloError(f"cannot read {what} '{path}': {first_line}") from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU, ``weights_only``).

    :class:`OsloError` if the file is missing, unreadable, or not a checkpoint of this toolkit.
    """
    path = Path(path)
    checkpoint = read_torch_file(path, "checkpoint file")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise OsloError(
            f"'{path}' is not a checkpoint of main_sphere_compression.py (a CompressAI "
            "checkpoint can initialise a model with --weight-transfer)"
        )
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise OsloError(
            f"checkpoint '{path}' has format version {checkpoint.get('version')}, this toolkit "
            f"reads version {CHECKPOINT_VERSION}"
        )
    return checkpoint


def check_checkpoint(
    checkpoint: Mapping[str, Any], expected: Mapping[str, Any], path: str | os.PathLike
) -> None:
    """Refuse a checkpoint whose configuration differs from ``expected`` (what the flags give).

    Raises :class:`OsloError` naming the first differing entry, its flag and both values.
    """
    config = checkpoint.get("config", {})
    for key, want in expected.items():
        got = config.get(key)
        if not _same(got, want):
            raise OsloError(
                f"checkpoint '{path}' does not match the flags: it was trained with "
                f"{_describe(key, got)}, the flags give {_describe(key, want)}"
            )


def checkpoint_state(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    aux_optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    *,
    epoch: int,
    history: list[dict[str, float]],
    best_loss: float,
    config: Mapping[str, Any],
    args: Mapping[str, Any],
    seed: int,
    rng: list[dict[str, Any]],
    position: Mapping[str, Any] | None = None,
    checkpoint_format: str = CHECKPOINT_FORMAT,
) -> dict[str, Any]:
    """Everything a checkpoint holds (DESIGN.md section 7).

    Args:
        epoch: last completed epoch (0 before the first).
        history: one row of losses per completed epoch (:data:`LOG_COLUMNS`).
        best_loss: best loss so far (validation loss if any, else training loss).
        config: what shapes the model and must match to load it (:func:`check_checkpoint`).
        args: all the command-line arguments.
        seed: the run's seed.
        rng: the random states of each process (:func:`rng_state`), by rank.
        position: for an interrupted epoch, ``{"epoch", "batch", "meters": [by rank]}``: the
            epoch under way, the batches done, and the running sums of each process.
        checkpoint_format: the script's format name: this toolkit's (the spherical codecs),
            or that of the planar models
            (:data:`spherical_models.planar.pipeline.CHECKPOINT_FORMAT`).
    """
    return {
        "format": checkpoint_format,
        "version": CHECKPOINT_VERSION,
        "epoch": epoch,
        "state_dict": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer is not None else None,
        "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": [dict(row) for row in history],
        "loss": history[-1]["loss"] if history else math.nan,
        "best_loss": best_loss,
        "config": dict(config),
        "args": dict(args),
        "seed": seed,
        "rng": rng,
        "position": dict(position) if position is not None else None,
    }


# ---------------------------------------------------------------------------------------------
# Training logs


def recorded_scale_table_levels(config: Mapping[str, Any]) -> int:
    """The scale table levels a checkpoint's configuration records: 64 (CompressAI's) for the
    checkpoints written before they were recorded."""
    return int(config.get("scale_table_levels", DEFAULT_SCALE_TABLE_LEVELS))
