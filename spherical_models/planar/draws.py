"""The planar models' training items drawn anew every epoch, shared between processes and
served in batches: the base of :class:`~spherical_models.planar.erp.RandomCrops` (ERP crops)
and :class:`~spherical_models.planar.faces.RandomPatches` (HEALPix patches as images)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor


class EpochDraws:
    """Training data, sampler and loader at once: each epoch, :meth:`draw` returns the epoch's
    items ``[n, ...]`` and a tag per item ``[n]`` (drawn from torch's global generator, which
    the :class:`~spherical_models.training.trainer.Trainer` seeds alike on every process, in
    :meth:`set_epoch`), served in batches of ``batch_size`` consecutive items
    ``(items [B, ...], tags [B])``.

    With several processes, each takes every ``world_size``-th item from its rank, the items
    repeated cyclically to a multiple of ``world_size`` (as ``DistributedSampler``), so that
    every process runs as many batches.

    Subclasses set ``batch_size``, ``rank``, ``world_size``, ``start`` (0), ``items`` and
    ``tags`` (empty before the first epoch), and define :meth:`draw` and :attr:`num_drawn`.
    """

    batch_size: int
    rank: int
    world_size: int
    start: int
    items: Tensor
    tags: Tensor

    @property
    def num_drawn(self) -> int:
        """Items of an epoch's draw, over all processes."""
        raise NotImplementedError

    def draw(self) -> tuple[Tensor, Tensor]:
        """The epoch's items ``[num_drawn, ...]`` and tags ``[num_drawn]``."""
        raise NotImplementedError

    @property
    def items_per_epoch(self) -> int:
        """Items of this process in an epoch."""
        return math.ceil(self.num_drawn / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw the epoch's items from the global generator as it stands (seeded for
        ``epoch`` by the trainer) and keep this process's share."""
        items, tags = self.draw()
        if self.world_size > 1:
            share = torch.arange(self.items_per_epoch * self.world_size) % len(items)
            items, tags = (t[share[self.rank :: self.world_size]] for t in (items, tags))
        self.items, self.tags = items, tags

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` items of the epoch."""
        self.start = start

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for first in range(self.start, len(self.items), self.batch_size):
            yield (self.items[first : first + self.batch_size],
                   self.tags[first : first + self.batch_size])
