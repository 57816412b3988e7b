"""Optimisers and learning rates: Adam on the parameters and on the entropy bottlenecks'
``quantiles``, the learning-rate schedules of ``--lr-schedule``, the patience of the plateau
scheduler and the linear warm-up of the first steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

SCHEDULER_FACTOR = math.sqrt(0.1)
"""Learning-rate factor of ``ReduceLROnPlateau``."""


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
