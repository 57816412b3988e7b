r"""Training the spherical codecs: rate-distortion loss, optimisers, one epoch of training,
validation, checkpoints and training logs (CompressAI's ``examples/train.py``, split into
functions).

Loss (DESIGN.md section 6), for inputs in :math:`[0, 1]`:

.. math::
    L = \underbrace{\frac{\sum_{\text{latents}} \sum -\log_2 p(\hat y)}{\text{HEALPix pixels}}}
    _{\text{bpp}} + \lambda \cdot 255^2 \cdot \mathrm{MSE}(x, \hat x)

Checkpoints (DESIGN.md section 7) hold the model, both optimisers, the scheduler, the epoch,
the per-epoch losses, the best loss, the configuration that shapes the model (checked against
the flags when loaded), the arguments, the seed, and the random states; a checkpoint written
when training is interrupted also holds the position inside the epoch, so that resuming from
it gives exactly the losses and weights of an uninterrupted run.
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
from utils.errors import OsloError
from utils.io import atomic_path, write_text

CHECKPOINT_FORMAT = "oslo-sphere-compression-checkpoint"
CHECKPOINT_VERSION = 1
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


def psnr_of_mse(mse: float, peak: float = 1.0) -> float:
    """``10 log10(peak**2 / mse)`` (infinite for ``mse = 0``)."""
    return 10 * math.log10(peak**2 / mse) if mse > 0 else math.inf


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


def make_scheduler(
    optimizer: torch.optim.Optimizer, patience: int
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """``ReduceLROnPlateau`` on a loss, factor ``sqrt(0.1)``, ``patience`` epochs."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=SCHEDULER_FACTOR, patience=patience
    )


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
            "psnr": psnr_of_mse(mse),
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


@dataclass
class EpochContext:
    """What one epoch of training uses besides the model and the data."""

    criterion: RateDistortionLoss
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer | None
    geometry: nn.Module
    device: torch.device
    dist: Distributed = field(default_factory=Distributed)
    clip_max_norm: float = 1.0
    print_freq: int = 0
    progress: bool = True


def to_device(
    x: Tensor, patch_ids: Tensor, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """Move a batch to ``device``; patch ids ``-1`` (whole maps) become :obj:`None`."""
    x = x.to(device, non_blocking=True)
    if bool((patch_ids < 0).any()):
        return x, None
    return x, patch_ids.to(device, non_blocking=True)


def train_step(
    model: nn.Module, module: nn.Module, x: Tensor, patch_ids: Tensor | None, ctx: EpochContext
) -> tuple[dict[str, Tensor], float]:
    """One optimisation step: rate-distortion loss, backward, clipping, model step, then the
    auxiliary loss of the entropy bottlenecks and its step.

    ``model`` is what runs the forward pass (``module`` itself, or its
    ``DistributedDataParallel`` wrapper, which averages the gradients across processes); the
    ``quantiles``, which DDP ignores, have their gradients averaged here.

    Returns:
        The loss terms (detached) and the auxiliary loss.
    """
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.aux_optimizer is not None:
        ctx.aux_optimizer.zero_grad(set_to_none=True)
    output = model(x, ctx.geometry, patch_ids)
    losses = ctx.criterion(output, x)
    losses["loss"].backward()
    if ctx.clip_max_norm > 0:
        params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, ctx.clip_max_norm)
    ctx.optimizer.step()
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
        loader: batches ``(x [B, n, 3], patch_ids [B])``.
        ctx: loss, optimisers, geometry, device, processes, clipping, logging.
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
                x, patch_ids = next(iterator)
            except StopIteration:
                break
            meters.data_seconds += time.perf_counter() - wait
            x, patch_ids = to_device(x, patch_ids, ctx.device)
            losses, aux = train_step(model, module, x, patch_ids, ctx)
            meters.add(losses, x.shape[0], aux)
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
    "weight_type": "-w/--weight-type",
    "use_euclidean": "--use-euclidean",
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
    """
    return {
        "format": CHECKPOINT_FORMAT,
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

LOG_COLUMNS = (
    "epoch", "loss", "bpp", "mse", "psnr", "lr", "seconds", "aux_loss", "data_seconds",
    "val_loss", "val_bpp", "val_mse", "val_psnr",
)
"""Columns of ``log.csv``: training means of the epoch, learning rate, wall seconds of the
epoch, auxiliary loss, seconds spent waiting for data, and the validation means (empty when
not validated that epoch)."""


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


def write_logs(out_dir: str | os.PathLike, history: list[Mapping[str, Any]]) -> None:
    """(Re)write ``log.csv`` (:data:`LOG_COLUMNS`) and ``loss.txt`` (epoch, training loss,
    validation loss) from the per-epoch ``history``."""
    out_dir = Path(out_dir)
    write_log_csv(out_dir / "log.csv", history)
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
