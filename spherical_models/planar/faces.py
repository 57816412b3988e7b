"""The face layout of the planar baseline: the HEALPix patches of NESTED maps laid out as
images, so that CompressAI's own models train and code on the very patches the OSLO models
see (the sampling is HEALPix's, the layers are planar): the layout and its inverse, the random
training patches, and a map coded patch by patch.

Patch ``k`` of resolution ``pr`` of a map of resolution ``hr`` is its NESTED pixels
``[k * 4**pr, (k + 1) * 4**pr)``, a ``2**pr x 2**pr`` square inside one base face
(:mod:`utils.healpix`); as an image, pixel ``image[y, x]`` is the patch's pixel at face-local
``(x, y)``: patch-local index ``patch_image_index(pr)[y, x]``
(:func:`utils.healpix.patch_image_index`), the layout on which a one-hop OSLO convolution is a
3x3 ``Conv2d`` (``DESIGN.md``, section 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from compressai.models import CompressionModel
from torch import Tensor

from spherical_models.planar.coding import code_images, to_uint8
from spherical_models.planar.draws import EpochDraws
from utils.datasets import BalancedPatchSampler
from utils.healpix import nside_of, patch_image_index, res_of_npix


def _raster_index(patch_res: int) -> Tensor:
    """The patch-local NESTED index of every image pixel in raster order, ``int64``
    ``[4**pr]``: ``patch_image_index(pr)`` flattened."""
    return torch.from_numpy(patch_image_index(patch_res).reshape(-1))


def map_to_images(values: Tensor, patch_res: int) -> Tensor:
    """NESTED values ``[npix, C]`` (``npix`` a multiple of ``4**pr``) -> the images of their
    ``P = npix / 4**pr`` patches, ``[P, C, 2**pr, 2**pr]`` (same dtype), patch ``k`` at ``k``."""
    side, (npix, channels) = nside_of(patch_res), values.shape
    patches = values.reshape(npix // side**2, side**2, channels)[:, _raster_index(patch_res)]
    return patches.reshape(-1, side, side, channels).permute(0, 3, 1, 2)


def images_to_map(images: Tensor) -> Tensor:
    """Inverse of :func:`map_to_images`: ``[P, C, S, S]`` (``S = 2**pr``) -> NESTED
    ``[P * S**2, C]``."""
    count, channels, side, _ = images.shape
    raster = images.permute(0, 2, 3, 1).reshape(count, side * side, channels)
    inverse = torch.argsort(_raster_index(side.bit_length() - 1))
    return raster[:, inverse].reshape(count * side * side, channels)


def patch_images(maps: Tensor, pairs: Tensor, patch_res: int) -> Tensor:
    """The images of the patches ``pairs`` ``[m, 2]`` (``(map, patch)`` rows) of resolution
    ``pr`` of the maps ``[n, npix, C]``: ``[m, C, 2**pr, 2**pr]`` (the maps' dtype)."""
    side = nside_of(patch_res)
    pixels = pairs[:, 1:] * side**2 + _raster_index(patch_res)  # [m, 4**pr] NESTED
    images = maps[pairs[:, :1], pixels]  # [m, 4**pr, C]
    return images.reshape(len(pairs), side, side, -1).permute(0, 3, 1, 2)


@dataclass(eq=False)
class RandomPatches(EpochDraws):
    """The planar models' training data on HEALPix maps (:class:`~spherical_models.planar.
    draws.EpochDraws`): each epoch, the ``(map, patch)`` pairs that
    :class:`utils.datasets.BalancedPatchSampler` draws for the OSLO models (``per_map``
    distinct patches of resolution ``patch_res`` of every map of this process's shard, balanced
    over the north cap, equatorial belt and south cap, from ``(seed, epoch, rank)``: with the
    same lists, ``-np``, ``-prt`` and ``--seed``, the very patches of a
    ``main_sphere_compression.py`` training), as images (:func:`patch_images`), in batches of
    ``batch_size`` consecutive patches ``(images uint8 [B, 3, S, S], patch_ids [B])``,
    ``S = 2**patch_res``.

    Args:
        maps: the HEALPix maps, ``uint8`` ``[n, npix, 3]`` NESTED.
        patch_res: resolution ``pr`` of the patches.
        per_map: patches of each map and epoch.
        batch_size: patches per batch.
        seed: seed of the draw.
        rank, world_size: this process and the number of processes (the maps are sharded).
    """

    maps: Tensor
    patch_res: int
    per_map: int
    batch_size: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    start: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        side = nside_of(self.patch_res)
        self.items = torch.empty(0, 3, side, side, dtype=torch.uint8)
        self.tags = torch.empty(0, dtype=torch.long)
        self.pairs = torch.empty(0, 2, dtype=torch.long)
        self.sampler = BalancedPatchSampler(
            len(self.maps), res_of_npix(self.maps.shape[1]), self.patch_res, self.per_map,
            self.seed, self.rank, self.world_size)

    @property
    def items_per_epoch(self) -> int:
        """Patches of this process in an epoch."""
        return self.sampler.items_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw the epoch's pairs (this process's shard) and cut their patch images."""
        self.sampler.set_epoch(epoch)
        self.pairs = torch.from_numpy(self.sampler.samples())
        self.items = patch_images(self.maps, self.pairs, self.patch_res)
        self.tags = self.pairs[:, 1]


@torch.no_grad()
def code_map(
    model: CompressionModel, hp_map: np.ndarray, patch_res: int, device: torch.device
) -> tuple[np.ndarray, dict[str, float]]:
    """Compress and decompress a HEALPix map ``uint8`` ``[npix, 3]`` (NESTED) as a batch of
    its patch images of resolution ``patch_res`` (:func:`map_to_images`), each with its own
    strings (:func:`spherical_models.planar.coding.code_images`), and put the decoded patches
    back in NESTED order.

    The model must be in evaluation mode with its entropy models updated (``update()``).

    Returns:
        ``(decoded, stats)``: ``uint8`` ``[npix, 3]`` NESTED (``round(x_hat * 255)``), and
        ``theoretical_bits``, ``actual_bits``, ``encode_seconds``, ``decode_seconds``.
    """
    values = torch.from_numpy(np.ascontiguousarray(hp_map))
    x = map_to_images(values, patch_res).float().div_(255).to(device)
    x_hat, stats = code_images(model, x, device)
    return images_to_map(to_uint8(x_hat)).cpu().numpy(), stats
