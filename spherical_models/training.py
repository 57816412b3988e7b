r"""Training the codecs, spherical and planar: rate-distortion loss, optimisers, one epoch of
training, validation and training logs (CompressAI's ``examples/train.py``, split into
functions; checkpoints are :mod:`spherical_models.checkpoint`, the epochs
:mod:`spherical_models.trainer`).

Loss (DESIGN.md section 6), for inputs in :math:`[0, 1]`:

.. math::
    L = \underbrace{\frac{\sum_{\text{latents}} \sum -\log_2 p(\hat y)}{\text{HEALPix pixels}}}
    _{\text{bpp}} + \lambda \cdot 255^2 \cdot \mathrm{MSE}(x, \hat x)
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from spherical_models.distributed import (
    Distributed,
    all_reduce_sum,
    any_process,
    average_gradients,
    synchronize,
)
from utils.cli import get_logger
from utils.io import write_text
from utils.metrics import psnr

SCHEDULER_FACTOR = math.sqrt(0.1)
"""Learning-rate factor of ``ReduceLROnPlateau``."""


class RateDistortionLoss(nn.Module):
    r"""``bpp + lambda * 255**2 * MSE`` of a codec's output (CompressAI's ``RateDistortionLoss``).

    Args:
        lmbda (float): the rate-distortion trade-off :math:`\lambda`.

    Shapes:
        - **output:** ``{"x_hat": (B, n, 3), "likelihoods": {name: tensor}}``
        - **target:** :math:`(B, n, 3)` in :math:`[0, 1]`
        - **returns:** ``{"loss", "bpp_loss", "mse_loss"}``, scalars; bpp is the total of the
          bits of all latents over the :math:`B n` HEALPix pixels.
    """

    def __init__(self, lmbda: float) -> None:
        super().__init__()
        self.lmbda = lmbda

    def forward(self, output: Mapping[str, Any], target: Tensor) -> dict[str, Tensor]:
        num_pixels = target.shape[0] * target.shape[1]
        bits = sum(
            torch.log(likelihoods).sum() for likelihoods in output["likelihoods"].values()
        ) / -math.log(2)
        bpp = bits / num_pixels
        mse = torch.mean((output["x_hat"] - target) ** 2)
        return {"loss": bpp + self.lmbda * 255**2 * mse, "bpp_loss": bpp, "mse_loss": mse}


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(main, auxiliary)`` parameters: the entropy bottlenecks' ``quantiles`` are auxiliary."""
    main, aux = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (aux if name.endswith(".quantiles") else main).append(param)
    return main, aux


def configure_optimizers(
    model: nn.Module, lr: float, aux_lr: float
) -> tuple[torch.optim.Adam, torch.optim.Adam | None]:
    """Adam on the model's parameters (``lr``) and Adam on the ``quantiles`` (``aux_lr``);
    the second is :obj:`None` for a model without entropy bottleneck."""
    main, aux = split_parameters(model)
    optimizer = torch.optim.Adam(main, lr=lr)
    aux_optimizer = torch.optim.Adam(aux, lr=aux_lr) if aux else None
    return optimizer, aux_optimizer


LR_SCHEDULES = ("plateau", "step", "cosine")
"""The learning-rate schedules of ``--lr-schedule``: ``plateau`` (``ReduceLROnPlateau`` on a
loss), ``step`` (a factor at fractions of the epochs), ``cosine`` (cosine decay over the
epochs)."""


class EpochSchedule(torch.optim.lr_scheduler.LRScheduler):
    r"""A learning rate that is a closed form of the epochs done, stepped once per epoch
    (``step()`` without argument at the end of each epoch; epoch ``e`` trains at the rate of
    ``e - 1`` steps).

    ``step``: :math:`\text{lr} \cdot \text{factor}^k` after :math:`t` steps, where :math:`k`
    counts the milestones :math:`\le t`, the milestones being ``round(fraction * epochs)``.
    ``cosine``: :math:`\text{lr}_{min} + (\text{lr} - \text{lr}_{min})
    (1 + \cos(\pi \min(t, T) / T)) / 2` with :math:`T` = ``epochs``.

    Its :meth:`state_dict` holds where the schedule stands (steps done, base rates), not its
    parameters: those come from the arguments (the flags) when resuming.
    """

    PARAMETERS = ("kind", "epochs", "milestones", "factor", "lr_min")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        epochs: int,
        step_at: Sequence[float] = (0.6, 0.9),
        step_factor: float = 0.1,
        lr_min: float = 0.0,
    ) -> None:
        if kind not in ("step", "cosine"):
            raise ValueError(f"unknown epoch schedule '{kind}'")
        self.kind = kind
        self.epochs = max(int(epochs), 1)
        self.milestones = tuple(round(fraction * epochs) for fraction in step_at)
        self.factor = float(step_factor)
        self.lr_min = float(lr_min)
        super().__init__(optimizer)

    def lr_after(self, base_lr: float, steps: int) -> float:
        """The learning rate after ``steps`` epochs from ``base_lr`` (the closed form)."""
        if self.kind == "step":
            return base_lr * self.factor ** sum(steps >= m for m in self.milestones)
        t = min(steps, self.epochs)
        return self.lr_min + (base_lr - self.lr_min) * (1 + math.cos(math.pi * t / self.epochs)) / 2

    def get_lr(self) -> list[float]:
        return [self.lr_after(float(base), self.last_epoch) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k not in self.PARAMETERS}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state_dict.items()
                                 if k not in self.PARAMETERS})


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    patience: int = 20,
    *,
    schedule: str = "plateau",
    epochs: int = 0,
    step_at: Sequence[float] = (0.6, 0.9),
    step_factor: float = 0.1,
    lr_min: float = 0.0,
) -> torch.optim.lr_scheduler.ReduceLROnPlateau | EpochSchedule:
    """The learning-rate scheduler of ``--lr-schedule`` (:data:`LR_SCHEDULES`).

    ``plateau``: ``ReduceLROnPlateau`` on a loss, factor ``sqrt(0.1)``, ``patience`` epochs
    (``step(loss)``). ``step`` and ``cosine``: :class:`EpochSchedule` over ``epochs`` epochs
    (``step()`` once per epoch): the rate times ``step_factor`` at each fraction ``step_at``
    of ``epochs``, or cosine decay to ``lr_min``.
    """
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=SCHEDULER_FACTOR, patience=patience
        )
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule '{schedule}' (choose from "
                         f"{', '.join(LR_SCHEDULES)})")
    return EpochSchedule(optimizer, schedule, epochs, step_at, step_factor, lr_min)


def patience_epochs(patience: int, unit: str = "epochs", steps_per_epoch: int = 1) -> int:
    """``--scheduler-patience`` in epochs: ``patience`` itself for ``unit`` ``epochs``; for
    ``steps`` (optimisation steps), ``ceil(patience / steps_per_epoch)`` epochs, so that it
    means the same whatever the epoch length."""
    if unit == "epochs":
        return patience
    if unit != "steps":
        raise ValueError(f"unknown patience unit '{unit}' (choose from epochs, steps)")
    return math.ceil(patience / max(steps_per_epoch, 1))


def step_scheduler(scheduler: Any, loss: float) -> None:
    """One epoch's step: ``ReduceLROnPlateau`` on ``loss``, the others without it."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(loss)
    else:
        scheduler.step()


@dataclass
class Meters:
    """Running sums of an epoch (weighted by the patches of each batch)."""

    loss: float = 0.0
    bpp: float = 0.0
    mse: float = 0.0
    aux_loss: float = 0.0
    count: int = 0
    batches: int = 0
    data_seconds: float = 0.0
    seconds: float = 0.0

    def add(self, losses: Mapping[str, Tensor], batch_size: int, aux_loss: float = 0.0) -> None:
        self.loss += losses["loss"].item() * batch_size
        self.bpp += losses["bpp_loss"].item() * batch_size
        self.mse += losses["mse_loss"].item() * batch_size
        self.aux_loss += aux_loss
        self.count += batch_size
        self.batches += 1

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)

    def reduced(self, info: Distributed, device: torch.device) -> Meters:
        """The sums over every process (times are this process's)."""
        sums = torch.tensor(
            [self.loss, self.bpp, self.mse, self.aux_loss, self.count, self.batches],
            dtype=torch.float64, device=device,
        )
        loss, bpp, mse, aux, count, batches = all_reduce_sum(sums, info).tolist()
        return Meters(loss, bpp, mse, aux, round(count), round(batches), self.data_seconds,
                      self.seconds)

    def summary(self) -> dict[str, float]:
        """Means: ``loss``, ``bpp``, ``mse``, ``psnr`` (dB, of the mean MSE), ``aux_loss``."""
        count = max(self.count, 1)
        mse = self.mse / count
        return {
            "loss": self.loss / count,
            "bpp": self.bpp / count,
            "mse": mse,
            "psnr": psnr(mse, peak=1.0),
            "aux_loss": self.aux_loss / max(self.batches, 1),
        }


class TrainingInterrupted(Exception):
    """Raised between two batches after Ctrl-C (or SIGTERM) was received."""


class StopRequest:
    """Ctrl-C (SIGINT) and SIGTERM during training: finish the current batch, then stop.

    While active (``with StopRequest() as stop``), the first signal sets :attr:`requested`;
    a second one raises :class:`KeyboardInterrupt` at once. Only the main thread can install
    signal handlers; elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        get_logger().warning(
            "%s received: stopping after this batch (press Ctrl-C again to stop at once)",
            signal.Signals(signum).name,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def ignore_interrupts(worker_id: int) -> None:
    """``worker_init_fn`` of the data loaders: workers leave Ctrl-C to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True)
class Step:
    """What :func:`train_step` trains on: the batch ``x`` on the device (the model's input and
    the loss's target), ``forward(x)`` the model's output, and the batch's own loss
    (:obj:`None`: the epoch's, :attr:`EpochContext.criterion`)."""

    x: Tensor
    forward: Callable[[Tensor], dict]
    criterion: Callable[[dict, Tensor], dict[str, Tensor]] | None = None


def to_device(
    x: Tensor, patch_ids: Tensor, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """Move a batch to ``device``; patch ids ``-1`` (whole maps) become :obj:`None`."""
    x = x.to(device, non_blocking=True)
    if bool((patch_ids < 0).any()):
        return x, None
    return x, patch_ids.to(device, non_blocking=True)


def sphere_step(model: nn.Module, batch: tuple[Tensor, Tensor], ctx: EpochContext) -> Step:
    """The :class:`Step` of a spherical codec on a batch ``(x [B, n, 3], patch_ids [B])`` of
    :class:`utils.datasets.MapPatches`: ``model(x, ctx.geometry, patch_ids)``."""
    x, patch_ids = to_device(*batch, ctx.device)
    return Step(x, lambda inputs: model(inputs, ctx.geometry, patch_ids))


@dataclass
class EpochContext:
    """What one epoch of training uses besides the model and the data: the loss, the
    optimisers, the geometry of the spherical codecs' batches (:obj:`None` for the planar
    ones), the device, the processes, clipping, logging, warm-up, and ``step``, the
    :class:`Step` of a model (or its DDP wrapper) on a batch of the loader."""

    criterion: Callable[[dict, Tensor], dict[str, Tensor]]
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer | None
    geometry: nn.Module | None
    device: torch.device
    dist: Distributed = field(default_factory=Distributed)
    clip_max_norm: float = 1.0
    print_freq: int = 0
    progress: bool = True
    warmup_steps: int = 0
    step: Callable[[nn.Module, Any, EpochContext], Step] = sphere_step


def steps_done(optimizer: torch.optim.Optimizer) -> int:
    """Optimisation steps ``optimizer`` has taken (Adam's ``step`` count; part of its state, so
    a resumed run keeps counting)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if state and "step" in state:
                return int(state["step"])
    return 0


def warmup_factor(steps: int, warmup_steps: int) -> float:
    r"""Linear warm-up of the learning rate: step :math:`t` (0-based) runs at
    :math:`\min(1, (t + 1) / W)` times the scheduled rate, :math:`W` = ``warmup_steps``
    (0: no warm-up).

    Adam's first updates move every weight by about the learning rate whatever its gradient's
    size, while its second-moment estimate rests on one or two gradients. At ``lr`` 1e-3, two
    such steps of the decoder's convolutions (the pixel-shuffle blocks, two chained
    convolutions to four times the channels) multiply the decoder's activations through its
    inverse GDNs, and the loss of step 3 reaches 1e5 to 1e6 times the first one
    (docs/RESULTS.md, "Training start"); the warm-up bounds those steps.
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (steps + 1) / warmup_steps)


def _warmed_step(optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
    """``optimizer.step()`` at :func:`warmup_factor` times each group's rate; the rates the
    scheduler set are restored after the step."""
    factor = warmup_factor(steps_done(optimizer), warmup_steps)
    if factor == 1.0:
        optimizer.step()
        return
    rates = [group["lr"] for group in optimizer.param_groups]
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate * factor
    try:
        optimizer.step()
    finally:
        for group, rate in zip(optimizer.param_groups, rates, strict=True):
            group["lr"] = rate


def train_step(
    forward: Callable[[Tensor], dict], module: nn.Module, x: Tensor, ctx: EpochContext
) -> tuple[dict[str, Tensor], float]:
    """One optimisation step: rate-distortion loss, backward, clipping, model step (at the
    warm-up's fraction of the rate, :func:`warmup_factor`), then the auxiliary loss of the
    entropy bottlenecks and its step (CompressAI's ``examples/train.py``).

    ``forward(x)`` runs the model: a spherical codec with its geometry and patch ids, through
    ``module`` itself or its ``DistributedDataParallel`` wrapper (which averages the gradients
    across processes), or a planar CompressAI model (the ERP baseline). ``module`` gives the
    auxiliary loss; the ``quantiles``, which DDP ignores, have their gradients averaged here.

    Returns:
        The loss terms (detached) and the auxiliary loss.
    """
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.aux_optimizer is not None:
        ctx.aux_optimizer.zero_grad(set_to_none=True)
    losses = ctx.criterion(forward(x), x)
    losses["loss"].backward()
    if ctx.clip_max_norm > 0:
        params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, ctx.clip_max_norm)
    _warmed_step(ctx.optimizer, ctx.warmup_steps)
    aux_value = 0.0
    if ctx.aux_optimizer is not None:
        aux_loss = module.aux_loss()
        aux_loss.backward()
        aux_params = [p for group in ctx.aux_optimizer.param_groups for p in group["params"]]
        average_gradients(aux_params, ctx.dist)
        ctx.aux_optimizer.step()
        aux_value = aux_loss.item()
    return {k: v.detach() for k, v in losses.items()}, aux_value


def train_one_epoch(
    model: nn.Module,
    module: nn.Module,
    loader: Iterable,
    ctx: EpochContext,
    epoch: int,
    meters: Meters | None = None,
    stop: StopRequest | None = None,
    total_batches: int | None = None,
) -> Meters:
    """Train on every batch of ``loader`` (one epoch, or its rest when resuming).

    After each batch, if a stop was requested on any process, raises
    :class:`TrainingInterrupted` (all processes stop after the same batch); ``meters`` then
    holds the sums of the batches done.

    Args:
        model: the model, or its DDP wrapper.
        module: the model itself (for ``aux_loss``).
        loader: batches, on the CPU, of which ``ctx.step`` makes each :class:`Step`:
            ``(x [B, n, 3], patch_ids [B])`` of the spherical codecs
            (:func:`sphere_step`), ERP crops of the planar ones.
        ctx: loss, optimisers, geometry, device, processes, clipping, logging, step.
        epoch: epoch number (for the progress bar and the log).
        meters: sums of the batches already done in this epoch (resuming), else fresh.
        stop: the stop request to poll.
        total_batches: batches of the whole epoch (for the progress bar).
    """
    model.train()
    meters = meters if meters is not None else Meters()
    log = get_logger()
    bar = tqdm(total=total_batches, initial=meters.batches, desc=f"epoch {epoch}", unit="batch",
               disable=None if ctx.progress else True, leave=False, dynamic_ncols=True)
    start = time.perf_counter()
    iterator = iter(loader)
    try:
        while True:
            wait = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            meters.data_seconds += time.perf_counter() - wait
            step = ctx.step(model, batch, ctx)
            step_ctx = ctx if step.criterion is None else replace(ctx, criterion=step.criterion)
            losses, aux = train_step(step.forward, module, step.x, step_ctx)
            meters.add(losses, step.x.shape[0], aux)
            bar.update()
            bar.set_postfix(loss=f"{losses['loss'].item():.4g}",
                            bpp=f"{losses['bpp_loss'].item():.4g}")
            if ctx.print_freq > 0 and meters.batches % ctx.print_freq == 0:
                log.info(
                    "epoch %d, batch %d/%s: loss %.4f, bpp %.4f, mse %.6f, aux %.2f", epoch,
                    meters.batches, total_batches or "?", losses["loss"].item(),
                    losses["bpp_loss"].item(), losses["mse_loss"].item(), aux,
                )
            if any_process(stop is not None and stop.requested, ctx.dist, ctx.device):
                raise TrainingInterrupted
    finally:
        synchronize(ctx.device)
        meters.seconds += time.perf_counter() - start
        bar.close()
        del iterator
    return meters


@torch.no_grad()
def validate(
    module: nn.Module,
    loader: Iterable,
    criterion: RateDistortionLoss,
    geometry: nn.Module,
    device: torch.device,
    info: Distributed | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Mean loss, bpp, MSE and PSNR of the model in evaluation mode (quantised latents, the
    likelihoods' bits) over every batch of ``loader``, summed over the processes."""
    info = info or Distributed()
    was_training = module.training
    module.eval()
    meters = Meters()
    for x, patch_ids in tqdm(loader, desc="validation", unit="batch", leave=False,
                             disable=None if progress else True, dynamic_ncols=True):
        x, patch_ids = to_device(x, patch_ids, device)
        meters.add(criterion(module(x, geometry, patch_ids), x), x.shape[0])
    module.train(was_training)
    return meters.reduced(info, device).summary()


# ---------------------------------------------------------------------------------------------
# Random states and seeds


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The torch seed of an epoch on a process, from ``(seed, epoch, rank)``."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0]) >> 1


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global generator, for third-party code)
    torch.manual_seed(seed)


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
