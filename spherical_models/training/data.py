"""The training data of the spherical codecs: random patches of the training maps, balanced
over the caps and the belt, or whole maps (``--patch-border sphere``), in phases; the fixed
patches that the plateau scheduler watches; every patch of the validation maps; their loaders
and geometries, as the :class:`~spherical_models.training.trainer.TrainingData` of a run."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from spherical_models.config import RunConfig
from spherical_models.training.distributed import Distributed
from spherical_models.training.epoch import ignore_interrupts
from spherical_models.training.trainer import TrainingData, TrainingPhase
from utils.datasets import (
    AllPatchesSampler,
    BalancedPatchSampler,
    FixedPairsSampler,
    MapPatches,
    WholeMapSampler,
    fixed_patch_pairs,
)
from utils.healpix import num_patches


def make_loader(
    dataset: Dataset, sampler: Sampler, batch_size: int, workers: int, device: torch.device
) -> DataLoader:
    """A loader of ``(x, patch_ids)`` batches in the sampler's order.

    Its own random generator keeps the global torch state (the quantisation noise) untouched,
    so that an epoch resumed in the middle draws the same noise. Workers ignore Ctrl-C.
    """
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", generator=torch.Generator(),
        worker_init_fn=ignore_interrupts if workers else None,
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
    )


def sphere_border_items(run: RunConfig, num_maps: int) -> tuple[int, int]:
    """``(maps per epoch, maps per batch)`` of ``--patch-border sphere`` training: the patch
    budget of ``-np`` and ``-bst`` in whole maps of ``P = 12 * 4**(hr - prt)`` patches, i.e.
    ``ceil(num_maps * np / P)`` maps an epoch and ``max(1, bst // P)`` a batch."""
    per_map = num_patches(run.healpix_res, run.patch_res_train)
    return (math.ceil(num_maps * run.n_patch_per_sample / per_map),
            max(1, run.batch_size_train // per_map))


def first_whole_map_epoch(run: RunConfig) -> int:
    """The first epoch on whole maps of ``--patch-border sphere``: ``floor(F * e) + 1`` for
    ``--sphere-start F`` and ``-e e`` (1 for ``F = 0``)."""
    return math.floor(run.sphere_start * run.max_epochs) + 1


def _phase(run: RunConfig, train_files: list[Path], whole_maps: bool, first_epoch: int,
           seed: int, info: Distributed, device: torch.device, plateau: bool,
           geometry: Callable[[int], nn.Module]) -> TrainingPhase:
    hr, prt = run.healpix_res, max(run.patch_res_train, -1)
    plateau_count = run.plateau_patches
    if whole_maps:
        maps_per_epoch, batch_size = sphere_border_items(run, len(train_files))
        sampler = WholeMapSampler(len(train_files), math.ceil(maps_per_epoch / info.world_size),
                                  seed, info.rank, info.world_size)
        plateau_count = math.ceil(plateau_count / num_patches(hr, prt))
        prt = -1
    else:
        batch_size = run.batch_size_train
        sampler = BalancedPatchSampler(
            len(train_files), hr, prt, run.n_patch_per_sample, seed, info.rank, info.world_size
        )
    workers = run.dataloader_num_workers
    loader = make_loader(MapPatches(train_files, hr, prt), sampler, batch_size, workers, device)
    plateau_loader = None
    if plateau and plateau_count > 0:
        pairs = fixed_patch_pairs(len(train_files), hr, prt, plateau_count, seed)
        plateau_loader = make_loader(
            MapPatches(train_files, hr, prt), FixedPairsSampler(pairs, info.rank, info.world_size),
            run.batch_size_valtest, workers, device,
        )
    return TrainingPhase(first_epoch, "whole maps" if whole_maps else "patches", sampler, loader,
                         batch_size, geometry(prt), plateau_loader)


def training_data(
    run: RunConfig,
    train_files: list[Path],
    val_files: list[Path],
    seed: int,
    info: Distributed,
    device: torch.device,
    geometry: Callable[[int], nn.Module],
) -> TrainingData:
    """The loaders of ``run`` over the maps ``train_files`` (``-i``) and ``val_files``
    (``-v``, may be empty), for this process of ``info``, with the geometries
    ``geometry(patch_res)`` of their patches (-1: whole maps)."""
    plateau = not val_files

    def phase(whole_maps: bool, first_epoch: int) -> TrainingPhase:
        return _phase(run, train_files, whole_maps, first_epoch, seed, info, device, plateau,
                      geometry)

    if run.patch_border == "cut":
        phases = (phase(False, 1),)
    else:
        first = first_whole_map_epoch(run)
        phases = (phase(True, 1),) if first == 1 else (phase(False, 1), phase(True, first))
    if not val_files:
        return TrainingData(phases)
    hr, workers = run.healpix_res, run.dataloader_num_workers
    val_data = MapPatches(val_files, hr, run.patch_res_valtest)
    val_sampler = AllPatchesSampler(len(val_files), val_data.patches_per_map, info.rank,
                                    info.world_size)
    val_loader = make_loader(val_data, val_sampler, run.batch_size_valtest, workers, device)
    return TrainingData(phases, val_loader, geometry(run.patch_res_valtest))
