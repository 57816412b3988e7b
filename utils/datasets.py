"""Data sets of HEALPix maps for training and evaluation: memory-mapped ``.npy`` maps read from
list files, cut into patches.

A map of resolution ``hr`` is ``uint8`` ``[12 * 4**hr, 3]`` (RGB, NESTED). Patch ``k`` of
resolution ``pr`` is its ``4**pr`` consecutive pixels ``[k * 4**pr, (k + 1) * 4**pr)``, a
``2**pr x 2**pr`` square inside base face ``k // 4**(hr - pr)``. The 12 base faces form three
regions of 4 faces: the north cap (faces 0-3), the equatorial belt (4-7) and the south cap
(8-11). A negative patch resolution means the whole sphere, one item per map.

Items are ``(image, patch)`` pairs of integers; :class:`MapPatches` turns one into the patch
``[4**pr, 3]`` in ``[0, 1]`` (``float32``) and its patch id. Which pairs are read, and in which
order, is decided by the samplers in the main process, so that the data of an epoch depends only
on the seed and the epoch (not on the number of loader workers), and an epoch can be resumed in
the middle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from utils.errors import OsloError
from utils.healpix import input_pixels, num_patches
from utils.io import check_map, load_map, read_list

REGIONS = ("north cap", "equatorial belt", "south cap")
"""The three regions of 4 base faces each, in face order."""


def read_map_list(list_file: str | os.PathLike, healpix_res: int) -> list[Path]:
    """The maps of a list file, each checked to exist and to be an RGB map at ``healpix_res``.

    Only the ``.npy`` headers are read. Raises :class:`OsloError` naming the list file and the
    map for an empty list, a missing map, or a map of another shape or resolution.
    """
    files = read_list(list_file)
    if not files:
        raise OsloError(f"list file '{list_file}' names no map")
    for path in files:
        if not path.is_file():
            raise OsloError(f"list file '{list_file}' names a missing map '{path}'")
        res = check_map(load_map(path, mmap=True), path)
        if res != healpix_res:
            raise OsloError(f"map '{path}' has HEALPix resolution {res}, not the "
                            f"-hr/--healpix-res {healpix_res}")
    return files


def patch_regions(healpix_res: int, patch_res: int) -> np.ndarray:
    """Region (0 north cap, 1 equatorial belt, 2 south cap) of every patch, ``int64``
    ``[12 * 4**(hr - pr)]``: patch ``k`` lies in face ``k // 4**(hr - pr)``."""
    per_face = 4 ** (healpix_res - patch_res)
    return np.arange(num_patches(healpix_res, patch_res), dtype=np.int64) // per_face // 4


def shard(num_items: int, rank: int, world_size: int, pad: bool) -> np.ndarray:
    """Items ``rank, rank + world_size, ...`` of ``range(num_items)``.

    With ``pad``, the list is first extended cyclically to a multiple of ``world_size`` (as
    ``DistributedSampler`` does), so that every process gets the same number of items.
    """
    total = world_size * math.ceil(num_items / world_size) if pad else num_items
    return np.arange(total, dtype=np.int64)[rank::world_size] % max(num_items, 1)


class MapPatches(Dataset):
    """Patches of memory-mapped HEALPix maps.

    Maps are opened read-only with ``numpy.load(mmap_mode="r")`` on first use in each process
    (loader workers open their own), so only the patches read come into memory.

    Args:
        files: the ``.npy`` maps (checked beforehand by :func:`read_map_list`).
        healpix_res: resolution ``hr`` of the maps.
        patch_res: resolution ``pr`` of the patches; negative for whole maps.

    Items:
        ``dataset[(image, patch)]`` -> ``(x, patch)``: ``x`` ``float32`` ``[4**pr, 3]`` (or
        ``[12 * 4**hr, 3]`` for whole maps, where ``patch`` is ignored and returned as -1) in
        ``[0, 1]``, NESTED order.
    """

    def __init__(self, files: Sequence[Path], healpix_res: int, patch_res: int) -> None:
        self.files = [str(f) for f in files]
        self.healpix_res = healpix_res
        self.patch_res = patch_res if patch_res >= 0 else -1
        self._maps: dict[int, np.ndarray] = {}

    @property
    def patch_pixels(self) -> int:
        """Pixels of one item."""
        return input_pixels(self.healpix_res, self.patch_res)

    @property
    def patches_per_map(self) -> int:
        """Items per map: ``12 * 4**(hr - pr)``, or 1 for whole maps."""
        return num_patches(self.healpix_res, self.patch_res) if self.patch_res >= 0 else 1

    def __len__(self) -> int:
        return len(self.files) * self.patches_per_map

    def map(self, image: int) -> np.ndarray:
        """The memory-mapped map ``image`` (``uint8`` ``[npix, 3]``)."""
        if image not in self._maps:
            self._maps[image] = load_map(self.files[image], mmap=True)
        return self._maps[image]

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        image, patch = item
        hp_map = self.map(image)
        if self.patch_res < 0:
            values, patch = hp_map, -1
        else:
            size = self.patch_pixels
            values = hp_map[patch * size : (patch + 1) * size]
        x = torch.from_numpy(np.array(values, dtype=np.float32))
        return x.div_(255), patch

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}  # memory maps are reopened in each worker
        return state


class BalancedPatchSampler(Sampler):
    """Random training patches, balanced over the north cap, equatorial belt and south cap.

    Each epoch, every map of this process's shard gives ``patches_per_image`` distinct patches:
    ``n // 3`` from each region, and the ``n % 3`` remaining ones from regions taken in turn
    from a random starting region; inside a region the patches are drawn uniformly. All the
    ``(image, patch)`` pairs of the shard are then shuffled together. The draw depends only on
    ``(seed, epoch, rank)``: ``numpy.random.default_rng([seed, epoch, rank])``.

    With ``world_size > 1`` the maps are sharded like ``DistributedSampler`` (cyclically padded),
    so that every process yields the same number of pairs. Whole-map training (negative
    ``patch_res``) yields each map of the shard once per epoch.

    Args:
        num_images: number of maps.
        healpix_res: resolution ``hr`` of the maps.
        patch_res: resolution ``pr`` of the patches; negative for whole maps.
        patches_per_image: patches per map and epoch.
        seed: seed of the draw.
        rank, world_size: this process and the number of processes.

    Yields:
        ``(image, patch)`` pairs; :meth:`set_epoch` chooses the epoch's draw and
        :meth:`set_start` skips the first pairs (resuming an epoch).
    """

    def __init__(
        self,
        num_images: int,
        healpix_res: int,
        patch_res: int,
        patches_per_image: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if patches_per_image < 1:
            raise OsloError(f"-np/--n-patch-per-sample must be at least 1, got {patches_per_image}")
        self.images = shard(num_images, rank, world_size, pad=True)
        self.healpix_res = healpix_res
        self.patch_res = patch_res
        self.patches_per_image = patches_per_image if patch_res >= 0 else 1
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.start = 0
        if patch_res >= 0:
            regions = patch_regions(healpix_res, patch_res)
            self._region_patches = [np.flatnonzero(regions == r) for r in range(3)]

    @property
    def items_per_epoch(self) -> int:
        """Pairs of a whole epoch."""
        return len(self.images) * self.patches_per_image

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` pairs of the epoch."""
        self.start = start

    def samples(self) -> np.ndarray:
        """The epoch's ``(image, patch)`` pairs ``[n, 2]``, in order."""
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        if self.patch_res < 0:
            images = rng.permutation(self.images)
            return np.stack([images, np.full_like(images, -1)], axis=1)
        count = self.patches_per_image
        pairs = []
        for image in self.images:
            first = rng.integers(3)
            per_region = [count // 3 + ((r - first) % 3 < count % 3) for r in range(3)]
            for region, n in zip(self._region_patches, per_region, strict=True):
                patches = rng.choice(region, n, replace=n > len(region))
                pairs.append(np.stack([np.full(n, image), patches], axis=1))
        pairs = np.concatenate(pairs)
        return pairs[rng.permutation(len(pairs))]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        yield from map(tuple, self.samples()[self.start :].tolist())

    def __len__(self) -> int:
        return max(len(self.images) * self.patches_per_image - self.start, 0)


class WholeMapSampler(Sampler):
    """Whole training maps for ``--patch-border sphere``: ``maps_per_epoch`` maps an epoch.

    The maps of this process's shard are read from an endless sequence of random permutations
    of the shard, epoch ``e`` taking items ``[e k, (e + 1) k)`` (``k = maps_per_epoch``), so
    that every map is seen equally often whatever the epoch length. Permutation ``j`` is drawn
    by ``numpy.random.default_rng([seed, WHOLE_MAPS_STREAM, j, rank])``: the epoch's maps depend
    only on ``(seed, epoch, rank)``, and a resumed epoch gets the same ones.

    Args:
        num_images: number of maps.
        maps_per_epoch: maps per epoch and process (at least 1).
        seed: seed of the draw.
        rank, world_size: this process and the number of processes (maps sharded like
            :class:`BalancedPatchSampler`).

    Yields:
        ``(image, -1)`` pairs (:class:`MapPatches` items of whole maps).
    """

    def __init__(
        self, num_images: int, maps_per_epoch: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.images = shard(num_images, rank, world_size, pad=True)
        self.maps_per_epoch = max(maps_per_epoch, 1)
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.start = 0

    @property
    def items_per_epoch(self) -> int:
        """Maps of a whole epoch."""
        return self.maps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` maps of the epoch."""
        self.start = start

    def samples(self) -> np.ndarray:
        """The epoch's ``(image, -1)`` pairs ``[maps_per_epoch, 2]``, in order."""
        n, k = len(self.images), self.maps_per_epoch
        items = np.arange((self.epoch - 1) * k, self.epoch * k) if self.epoch > 0 \
            else np.arange(k)
        images = np.empty(k, dtype=np.int64)
        for j in np.unique(items // n):
            rng = np.random.default_rng([self.seed, WHOLE_MAPS_STREAM, int(j), self.rank])
            permutation = self.images[rng.permutation(n)]
            here = items // n == j
            images[here] = permutation[items[here] % n]
        return np.stack([images, np.full_like(images, -1)], axis=1)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        yield from map(tuple, self.samples()[self.start :].tolist())

    def __len__(self) -> int:
        return max(self.maps_per_epoch - self.start, 0)


WHOLE_MAPS_STREAM = 0x53504852
"""Second entry of the seed of :class:`WholeMapSampler`'s permutations."""


class AllPatchesSampler(Sampler):
    """Every ``(image, patch)`` pair of the maps, image after image, patches in order
    (validation); with ``world_size > 1``, this process's share of them (no padding).

    Args:
        num_images: number of maps.
        patches_per_map: items per map (:attr:`MapPatches.patches_per_map`).
        rank, world_size: this process and the number of processes.
    """

    def __init__(
        self, num_images: int, patches_per_map: int, rank: int = 0, world_size: int = 1
    ) -> None:
        items = shard(num_images * patches_per_map, rank, world_size, pad=False)
        self.pairs = np.stack([items // patches_per_map, items % patches_per_map], axis=1)
        if patches_per_map == 1:
            self.pairs[:, 1] = -1

    def __iter__(self) -> Iterator[tuple[int, int]]:
        yield from map(tuple, self.pairs.tolist())

    def __len__(self) -> int:
        return len(self.pairs)


FIXED_PATCHES_STREAM = 0x504C4154
"""Second entry of the seed of :func:`fixed_patch_pairs` (apart from the epochs' draws)."""


def fixed_patch_pairs(
    num_images: int, healpix_res: int, patch_res: int, count: int, seed: int
) -> np.ndarray:
    """``count`` training ``(image, patch)`` pairs ``[count, 2]`` chosen once from ``seed``
    (``--plateau-patches``): the same whatever the epoch, the process or a resumption.

    The maps take turns (map ``i`` gives ``count // num_images`` patches, one more for the
    first ``count % num_images``); each map's patches are balanced over the three regions like
    :class:`BalancedPatchSampler` and distinct while its regions allow it. Whole-map training
    (negative ``patch_res``) gives ``min(count, num_images)`` distinct maps (patch -1). The draw
    is ``numpy.random.default_rng([seed, FIXED_PATCHES_STREAM])``.
    """
    rng = np.random.default_rng([seed, FIXED_PATCHES_STREAM])
    if patch_res < 0:
        images = np.sort(rng.choice(num_images, min(count, num_images), replace=False))
        return np.stack([images, np.full_like(images, -1)], axis=1).astype(np.int64)
    regions = patch_regions(healpix_res, patch_res)
    region_patches = [np.flatnonzero(regions == r) for r in range(3)]
    pairs = []
    for image in range(num_images):
        n_image = count // num_images + (image < count % num_images)
        first = rng.integers(3)
        per_region = [n_image // 3 + ((r - first) % 3 < n_image % 3) for r in range(3)]
        for region, n in zip(region_patches, per_region, strict=True):
            patches = np.sort(rng.choice(region, n, replace=n > len(region)))
            pairs.append(np.stack([np.full(n, image), patches], axis=1))
    return np.concatenate(pairs).astype(np.int64)


class FixedPairsSampler(Sampler):
    """Given ``(image, patch)`` pairs, in order; with ``world_size > 1``, this process's share
    of them (``rank, rank + world_size, ...``, no padding).

    Args:
        pairs: ``[n, 2]`` pairs (:func:`fixed_patch_pairs`).
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, pairs: np.ndarray, rank: int = 0, world_size: int = 1) -> None:
        self.pairs = np.asarray(pairs, dtype=np.int64)[shard(len(pairs), rank, world_size,
                                                             pad=False)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        yield from map(tuple, self.pairs.tolist())

    def __len__(self) -> int:
        return len(self.pairs)
