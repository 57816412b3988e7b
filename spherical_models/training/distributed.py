"""Multi-process training (``torchrun``): process group, device, and the few collectives the
training loop needs.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) every process joins the default
process group: NCCL on CUDA, gloo on the CPU. Outside it, everything here is a no-op for one
process, so the same code runs both ways.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from utils.errors import OsloError


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs, checkpoints and summaries (rank 0)."""
        return self.rank == 0


def init_distributed(use_cuda: bool) -> Distributed:
    """Join the process group set up by ``torchrun`` (if any) and return this process's place."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def shutdown(info: Distributed) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def select_device(gpu: bool, gpu_id: int, info: Distributed) -> torch.device:
    """``cpu``; or with ``gpu`` the CUDA device ``gpu_id`` (-1: the current one), the local
    rank's device under ``torchrun``. :class:`OsloError` if CUDA is not available."""
    if not gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OsloError("-g/--gpu: no CUDA device is available (leave -g out to run on the CPU)")
    if info.enabled:
        index = info.local_rank
    else:
        index = gpu_id if gpu_id >= 0 else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise OsloError(f"-gid/--gpu_id {index}: only {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a CUDA ``device`` (for wall-clock timings); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def all_reduce_sum(values: torch.Tensor, info: Distributed) -> torch.Tensor:
    """Sum of ``values`` over the processes (in place; returned)."""
    if info.enabled:
        dist.all_reduce(values)
    return values


def any_process(flag: bool, info: Distributed, device: torch.device) -> bool:
    """True if ``flag`` is true on any process (every process must call it)."""
    if not info.enabled:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value)
    return bool(value.item() > 0)


def average_gradients(parameters: list[nn.Parameter], info: Distributed) -> None:
    """Average the gradients of ``parameters`` over the processes (those DDP does not sync)."""
    if not info.enabled:
        return
    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(info.world_size)


def broadcast_parameters(parameters: list[nn.Parameter], info: Distributed) -> None:
    """Copy rank 0's values of ``parameters`` to every process."""
    if info.enabled:
        for param in parameters:
            dist.broadcast(param.data, src=0)


def gather_objects(obj: Any, info: Distributed) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(info: Distributed) -> None:
    if info.enabled:
        dist.barrier()
