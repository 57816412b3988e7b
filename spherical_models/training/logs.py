"""The records of a training run: ``log.csv`` and ``loss.txt`` (one row per epoch) and
``config.txt`` (the arguments and the run's values)."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from utils.io import write_text

LOG_COLUMNS = (
    "epoch", "loss", "bpp", "mse", "psnr", "lr", "seconds", "aux_loss", "data_seconds",
    "val_loss", "val_bpp", "val_mse", "val_psnr", "plateau_loss",
)
"""Columns of ``log.csv``: training means of the epoch, learning rate, wall seconds of the
epoch, auxiliary loss, seconds spent waiting for data, the validation means (empty when
not validated that epoch), and the loss on the ``--plateau-patches`` (empty without them)."""


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def write_log_csv(
    path: str | os.PathLike, history: Sequence[Mapping[str, Any]],
    columns: Sequence[str] = LOG_COLUMNS,
) -> None:
    """(Re)write a per-epoch log CSV: ``columns``, one row per epoch of ``history`` (empty
    cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        writer.writerow([_format(row.get(column)) for column in columns])
    write_text(path, buffer.getvalue())


def write_logs(
    out_dir: str | os.PathLike, history: list[Mapping[str, Any]],
    columns: Sequence[str] = LOG_COLUMNS, loss_txt: bool = True,
) -> None:
    """(Re)write ``log.csv`` (``columns``) and, with ``loss_txt``, ``loss.txt`` (epoch,
    training loss, validation loss) from the per-epoch ``history``."""
    out_dir = Path(out_dir)
    write_log_csv(out_dir / "log.csv", history, columns)
    if not loss_txt:
        return
    lines = ["# epoch\ttraining_loss\tvalidation_loss"]
    lines += [
        f"{row['epoch']}\t{_format(row['loss'])}\t{_format(row.get('val_loss'))}"
        for row in history
    ]
    write_text(out_dir / "loss.txt", "\n".join(lines) + "\n")


def write_config(
    out_dir: str | os.PathLike, args: Mapping[str, Any], extra: Mapping[str, Any],
    script: str = "main_sphere_compression.py", section: str = "run",
) -> None:
    """Write ``config.txt``: every argument of ``script`` as ``name = value``, then ``extra``
    (the seed, the model configuration...) under ``# section``."""
    lines = [f"# {script}: arguments of this run"]
    lines += [f"{key} = {value}" for key, value in sorted(args.items())]
    lines += ["", f"# {section}"] + [f"{key} = {value}" for key, value in extra.items()]
    write_text(Path(out_dir) / "config.txt", "\n".join(lines) + "\n")
