"""One epoch of training, and one of validation, of the codecs, spherical and planar
(CompressAI's ``examples/train.py``, split into functions): a model's step on a batch, the
optimisation step, the running sums of an epoch, stopping between two batches on Ctrl-C, and
the seeds of the epochs (the epochs are :mod:`spherical_models.training.trainer`)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from spherical_models.training.distributed import (
    Distributed,
    all_reduce_sum,
    any_process,
    average_gradients,
    synchronize,
)
from spherical_models.training.loss import RateDistortionLoss
from spherical_models.training.optim import steps_done, warmup_factor
from utils.cli import get_logger
from utils.metrics import psnr


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
    ones), the device, the processes, clipping, logging, warm-up, ``step``, the
    :class:`Step` of a model (or its DDP wrapper) on a batch of the loader, and
    ``clamp_reconstruction`` (the loss sees :func:`clamped_reconstruction`)."""

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
    clamp_reconstruction: bool = False


def clamped_reconstruction(x_hat: Tensor) -> Tensor:
    r"""``x_hat`` clamped to :math:`[0, 1]`, as the decoder writes it, with the identity as
    gradient (straight-through): the value is :math:`c = \min(1, \max(0, \hat x))` and
    :math:`\partial L / \partial \hat x = \partial L / \partial c`.

    Under the squared error the gradient of a pixel is then :math:`2 (c - x)`, bounded by 2 and
    of the sign that brings an overshoot back, and a pixel's error is at most 1 for targets in
    :math:`[0, 1]`: a decoder that maps a rare latent far out of range (the inverse GDNs grow as
    :math:`\hat x^2`) cannot multiply the step's loss. Inside :math:`[0, 1]` the value and the
    gradient are exactly those of ``x_hat``.
    """
    return x_hat + (x_hat.clamp(0.0, 1.0) - x_hat).detach()


def _warmed_step(optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
    """``optimizer.step()`` at :func:`~spherical_models.training.optim.warmup_factor` times each
    group's rate; the rates the scheduler set are restored after the step."""
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
    """One optimisation step: rate-distortion loss (of :func:`clamped_reconstruction` with
    ``ctx.clamp_reconstruction``), backward, clipping, model step (at the
    warm-up's fraction of the rate, :func:`~spherical_models.training.optim.warmup_factor`), then
    the auxiliary loss of the entropy bottlenecks and its step (CompressAI's ``examples/train.py``).

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
    output = forward(x)
    if ctx.clamp_reconstruction:
        output = {**output, "x_hat": clamped_reconstruction(output["x_hat"])}
    losses = ctx.criterion(output, x)
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
