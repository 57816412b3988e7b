"""Step 3: the epochs of a training run (training, validation, scheduler, logs and
checkpoints) and its processes (:class:`Trainer`), the same for the spherical codecs and the
planar ones.

What differs between the two is handed to the :class:`Trainer` as typed objects: the data
(:class:`TrainingData`: the phases' samplers, loaders and geometries, the validation, and the
:class:`~spherical_models.training.epoch.Step` of a model on a batch; the spherical codecs' are
:func:`spherical_models.training.data.training_data`), the loss, the checkpoints'
configuration, and the outputs (:class:`TrainingOutputs`: checkpoint format, ``log.csv``
columns, ``loss.txt``, ``checkpoint_best_loss.pth.tar``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from spherical_models.config import TrainingConfig
from spherical_models.training.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from spherical_models.training.distributed import (
    Distributed,
    any_process,
    barrier,
    broadcast_parameters,
    gather_objects,
)
from spherical_models.training.epoch import (
    EpochContext,
    Meters,
    Step,
    StopRequest,
    TrainingInterrupted,
    epoch_seed,
    sphere_step,
    train_one_epoch,
    validate,
)
from spherical_models.training.logs import LOG_COLUMNS, write_logs
from spherical_models.training.optim import (
    configure_optimizers,
    make_scheduler,
    patience_epochs,
    split_parameters,
    step_scheduler,
)
from utils.cli import get_logger
from utils.errors import OsloError

INTERRUPTED_CHECKPOINT = "interrupted.pth.tar"


def wrap_distributed(model: nn.Module, info: Distributed, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (several processes), ``model`` otherwise.

    DDP averages the gradients of the rate-distortion loss; the entropy bottlenecks'
    ``quantiles`` only get gradients from the auxiliary loss, outside DDP's forward, so DDP
    ignores them and :func:`spherical_models.training.epoch.train_step` averages theirs.
    """
    if not info.enabled:
        return model
    _, aux = split_parameters(model)
    aux_ids = {id(p) for p in aux}
    names = [n for n, p in model.named_parameters() if id(p) in aux_ids]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    broadcast_parameters(aux, info)
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False,
    )


class EpochSampler(Protocol):
    """What the :class:`Trainer` asks of a phase's sampler: the items of an epoch (per
    process), and the epoch to draw and the items to skip (resuming an epoch)."""

    @property
    def items_per_epoch(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def set_start(self, start: int) -> None: ...


@dataclass(frozen=True)
class TrainingPhase:
    """The training data of the epochs ``first_epoch ..`` (until the next phase), named by
    ``name`` in the log: their sampler (which the epochs seed and position), the loader of its
    batches, the items of a batch, the geometry of the batches' items (the spherical codecs';
    :obj:`None` for the planar ones), and the fixed training patches (maps) that the plateau
    scheduler watches (``--plateau-patches`` without ``-v``, else :obj:`None`).

    ``sampler.set_epoch`` may draw from torch's global generator (the planar models' crops):
    the :class:`Trainer` seeds it alike on every process before, so that every process draws
    the same epoch."""

    first_epoch: int
    name: str
    sampler: EpochSampler
    loader: Iterable
    batch_size: int
    geometry: nn.Module | None = None
    plateau_loader: DataLoader | None = None


@dataclass(frozen=True)
class TrainingData:
    """The data of a training run: its phases (one, or with ``--patch-border sphere
    --sphere-start F`` patches then whole maps), every patch of the validation maps and their
    geometry (:obj:`None` without ``-v``), and ``step``, the
    :class:`~spherical_models.training.epoch.Step` of a model on a batch of the loaders."""

    phases: tuple[TrainingPhase, ...]
    val_loader: DataLoader | None = None
    val_geometry: nn.Module | None = None
    step: Callable[[nn.Module, Any, EpochContext], Step] = sphere_step

    def phase(self, epoch: int) -> TrainingPhase:
        """The phase of ``epoch``."""
        return [p for p in self.phases if p.first_epoch <= epoch][-1]


@dataclass(frozen=True)
class TrainingOutputs:
    """What a :class:`Trainer` writes besides the checkpoints' contents: the checkpoints'
    format name, the columns of ``log.csv``, and whether it writes ``loss.txt`` and
    ``checkpoint_best_loss.pth.tar``. The defaults are ``main_sphere_compression.py``'s."""

    checkpoint_format: str = CHECKPOINT_FORMAT
    log_columns: tuple[str, ...] = LOG_COLUMNS
    loss_txt: bool = True
    best_checkpoint: bool = True


@dataclass
class TrainState:
    """Where training stands: last completed epoch, per-epoch losses, best loss, and the
    position inside an interrupted epoch."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    position: dict[str, Any] | None = None


class Trainer:
    """Step 3: the epochs of training, validation, scheduler, logs and checkpoints, for any
    codec: the spherical ones on HEALPix patches or maps, the planar ones on ERP crops.

    Each epoch seeds torch's global generator from ``(seed, epoch, rank)``
    (:func:`~spherical_models.training.epoch.epoch_seed`; the phase's sampler draws its epoch
    between the seeding of rank 0's stream and that of the other ranks, so that every process
    draws the same), trains on the phase's batches, validates, steps the scheduler, and
    writes the logs and the checkpoints.

    Args:
        config: the epoch loop's flags (:class:`~spherical_models.config.TrainingConfig`).
        model: the codec (on ``device``; loaded from the checkpoint if resuming).
        checkpoint_config: what every checkpoint records and must match
            (:func:`spherical_models.pipeline.run_config`,
            :func:`spherical_models.planar.pipeline.model_config`).
        data: the phases, the validation and the step (:class:`TrainingData`).
        criterion: the rate-distortion loss, ``criterion(output, x)``.
        seed: the run's seed.
        info: the processes.
        device: where the model runs.
        out_dir: the output folder.
        checkpoint: the checkpoint to resume from, if any.
        outputs: the checkpoint format and the log files (:class:`TrainingOutputs`).
    """

    def __init__(
        self,
        config: TrainingConfig,
        model: nn.Module,
        checkpoint_config: dict[str, Any],
        data: TrainingData,
        criterion: Callable[[dict, torch.Tensor], dict[str, torch.Tensor]],
        seed: int,
        info: Distributed,
        device: torch.device,
        out_dir: Path,
        checkpoint: dict[str, Any] | None = None,
        outputs: TrainingOutputs | None = None,
    ) -> None:
        self.config = config
        self.module = model
        self.checkpoint_config = checkpoint_config
        self.seed = seed
        self.info = info
        self.device = device
        self.out_dir = out_dir
        self.data = data
        self.outputs = outputs or TrainingOutputs()
        self.optimizer, self.aux_optimizer = configure_optimizers(
            model, config.learning_rate, config.aux_learning_rate
        )
        first = data.phases[0]  # patience in steps counts the steps of the first phase
        steps_per_epoch = math.ceil(first.sampler.items_per_epoch / first.batch_size)
        self.patience = patience_epochs(config.scheduler_patience, config.patience_unit,
                                        steps_per_epoch)
        self.scheduler = None if config.no_scheduler else make_scheduler(
            self.optimizer, self.patience, schedule=config.lr_schedule,
            epochs=config.max_epochs, step_at=config.lr_step_at,
            step_factor=config.lr_step_factor, lr_min=config.lr_min,
        )
        self.state = TrainState()
        self._rng: list = []
        if checkpoint is not None:
            self._restore(checkpoint)
        self.model = wrap_distributed(model, info, device)
        progress = info.is_main and not config.no_progress
        self.ctx = EpochContext(
            criterion, self.optimizer, self.aux_optimizer, first.geometry, device, info,
            config.clip_max_norm, config.print_freq if info.is_main else 0, progress,
            config.lr_warmup, data.step, config.clamp_reconstruction,
        )
        self._use(first)

    def _use(self, phase: TrainingPhase) -> None:
        """Train on ``phase``'s data and geometry."""
        self.phase = phase
        self.sampler, self.loader, self.batch_size = phase.sampler, phase.loader, phase.batch_size
        self.ctx.geometry = phase.geometry

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.aux_optimizer is not None and checkpoint.get("aux_optimizer") is not None:
            self.aux_optimizer.load_state_dict(checkpoint["aux_optimizer"])
        if self.scheduler is not None and checkpoint.get("lr_scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["lr_scheduler"])
        position = checkpoint.get("position")
        if position is not None and len(position["meters"]) != self.info.world_size:
            raise OsloError(
                f"checkpoint '{self.config.checkpoint_file}' was interrupted in the middle of "
                f"an epoch with {len(position['meters'])} process(es): resume it with as many, "
                f"not {self.info.world_size}"
            )
        # the planar models' checkpoints written before they trained here hold neither
        self.state = TrainState(checkpoint["epoch"], list(checkpoint["history"]),
                                checkpoint.get("best_loss", math.inf), position)
        self._rng = checkpoint.get("rng", [])

    # -- checkpoints ----------------------------------------------------------------------

    def _state(self, rng: list, position: dict | None = None) -> dict[str, Any]:
        return checkpoint_state(
            self.module, self.optimizer, self.aux_optimizer, self.scheduler,
            epoch=self.state.epoch, history=self.state.history, best_loss=self.state.best_loss,
            config=self.checkpoint_config, args=self.config.arguments, seed=self.seed, rng=rng,
            position=position, checkpoint_format=self.outputs.checkpoint_format,
        )

    def _save(self, names: list[str], position: dict | None = None,
              rng: list | None = None) -> list[Path]:
        """Write the checkpoint under each of ``names`` in the output folder (rank 0)."""
        rng = rng if rng is not None else gather_objects(rng_state(self.device), self.info)
        paths = []
        if self.info.is_main and names:
            state = self._state(rng, position)
            paths = [save_checkpoint(self.out_dir / name, state) for name in names]
        barrier(self.info)
        return paths

    def _save_interrupted(self, epoch: int, meters: Meters | None) -> None:
        rng = gather_objects(rng_state(self.device), self.info)
        position = None
        if meters is not None:
            position = {
                "epoch": epoch,
                "batch": meters.batches,
                "meters": gather_objects(meters.to_dict(), self.info),
            }
        paths = self._save([INTERRUPTED_CHECKPOINT], position, rng)
        if paths:
            where = f"epoch {epoch}, batch {meters.batches}" if meters else f"end of epoch {epoch}"
            get_logger().warning(
                "interrupted at %s: saved '%s'; resume with --checkpoint-file %s", where,
                paths[0], paths[0],
            )

    # -- epochs ---------------------------------------------------------------------------

    def _start_epoch(self, epoch: int) -> Meters | None:
        """Seed (or restore the random state of an interrupted epoch) and position the
        sampler; returns the sums of the batches already done."""
        phase = self.data.phase(epoch)
        if phase is not self.phase:
            self._use(phase)
            if self.info.is_main:
                get_logger().info("epoch %d: training on %s from now on", epoch, phase.name)
        position = self.state.position
        self.state.position = None
        rank = self.info.rank
        torch.manual_seed(epoch_seed(self.seed, epoch, 0))
        self.sampler.set_epoch(epoch)  # what it draws from torch, every process draws alike
        if position is not None and position["epoch"] == epoch:
            set_rng_state(self._rng[rank], self.device)
            meters = Meters(**position["meters"][rank])
            self.sampler.set_start(meters.batches * self.batch_size)
            return meters
        if rank:
            torch.manual_seed(epoch_seed(self.seed, epoch, rank))
        self.sampler.set_start(0)
        return None

    def _epoch_row(self, epoch: int, meters: Meters, lr: float, start: float) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch": epoch, **meters.reduced(self.info, self.device).summary()}
        row.update(lr=lr, data_seconds=meters.data_seconds)
        validated = self.data.val_loader is not None and epoch >= self.config.validation_start
        if validated:
            val = validate(self.module, self.data.val_loader, self.ctx.criterion,
                           self.data.val_geometry, self.device, self.info, self.ctx.progress)
            row.update({f"val_{k}": v for k, v in val.items() if k != "aux_loss"})
        plateau_loader = self.phase.plateau_loader
        if plateau_loader is not None and epoch >= self.config.validation_start:
            fixed = validate(self.module, plateau_loader, self.ctx.criterion,
                             self.phase.geometry, self.device, self.info, self.ctx.progress)
            row["plateau_loss"] = fixed["loss"]
        row["seconds"] = time.perf_counter() - start
        return row

    def _log_epoch(self, row: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        text = (f"epoch {row['epoch']}/{self.config.max_epochs}: loss {row['loss']:.4f}, bpp "
                f"{row['bpp']:.4f}, PSNR {row['psnr']:.2f} dB, aux {row['aux_loss']:.2f}")
        if "val_loss" in row:
            text += (f" | validation loss {row['val_loss']:.4f}, bpp {row['val_bpp']:.4f}, "
                     f"PSNR {row['val_psnr']:.2f} dB")
        if "plateau_loss" in row:
            text += f" | plateau patches loss {row['plateau_loss']:.4f}"
        text += f" | lr {row['lr']:.3g}, {row['seconds']:.1f} s"
        get_logger().info(text)

    def fit(self) -> None:
        """Run the epochs ``last completed + 1 .. -e``, then write ``final.pth.tar``."""
        config, info = self.config, self.info
        with StopRequest() as stop:
            for epoch in range(self.state.epoch + 1, config.max_epochs + 1):
                start = time.perf_counter()
                meters = self._start_epoch(epoch) or Meters()
                total_batches = math.ceil(self.sampler.items_per_epoch / self.batch_size)
                try:
                    meters = train_one_epoch(self.model, self.module, self.loader, self.ctx,
                                             epoch, meters, stop, total_batches)
                except TrainingInterrupted:
                    self._save_interrupted(epoch, meters)
                    raise KeyboardInterrupt from None
                row = self._epoch_row(epoch, meters, self.optimizer.param_groups[0]["lr"], start)
                self._end_epoch(epoch, row)
                if any_process(stop.requested, info, self.device):
                    self._save_interrupted(epoch, None)
                    raise KeyboardInterrupt
        self._save(["final.pth.tar"])
        if info.is_main:
            get_logger().info("training done: checkpoints and logs in '%s'", self.out_dir)

    def _end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Scheduler step, best loss, logs and checkpoints of a finished epoch.

        Both watch the validation loss with ``-v``; else the loss on the ``--plateau-patches``
        (from ``--validation-start``); else the training loss."""
        config, outputs = self.config, self.outputs
        validated = "val_loss" in row or "plateau_loss" in row
        monitored = row.get("val_loss", row.get("plateau_loss", row["loss"]))
        can_be_best = validated or (self.data.val_loader is None
                                    and self.phase.plateau_loader is None)
        if self.scheduler is not None and (config.lr_schedule != "plateau"
                                           or epoch >= config.validation_start):
            step_scheduler(self.scheduler, monitored)  # plateau from --validation-start
        is_best = can_be_best and monitored < self.state.best_loss
        if is_best:
            self.state.best_loss = monitored
        self.state.epoch = epoch
        self.state.history.append(row)
        self._log_epoch(row)
        if self.info.is_main:
            write_logs(self.out_dir, self.state.history, outputs.log_columns, outputs.loss_txt)
        names = []
        if config.checkpoint_interval and epoch % config.checkpoint_interval == 0:
            names.append(f"checkpoint_{epoch}.pth.tar")
        if is_best and outputs.best_checkpoint:
            names.append("checkpoint_best_loss.pth.tar")
        if names:
            self._save(names)
