"""Coding a whole HEALPix map: its patches (or the whole sphere), batch after batch, into one
rANS stream per latent, and back. The one implementation behind the evaluation of step 4
(:mod:`spherical_models.evaluation`) and the ``.oslo`` codec (:mod:`spherical_models.coding.codec`).

The patches of resolution ``pr`` of a map are coded in NESTED order, ``batch_size`` at a time
(a batch bounds the memory); every batch appends its symbols to the same stream of each latent
(:class:`~spherical_models.entropy.streams.LatentEncoder`), so a map costs one rANS flush per
latent whatever its number of patches. Decoding first entropy-decodes every batch and checks
the CRC-32 of each latent against the encoder's, then synthesises the pixels: a mismatch is
refused before any pixel is made.

On the whole sphere (``patch_res < 0``) with a tile resolution ``tile_res``, the analysis
``g_a`` and the synthesis ``g_s`` run tile by tile (:mod:`spherical_models.models.tiling`:
:func:`analyse_tiled`, :func:`synthesise_tiled`), in the memory of one tile's region whatever
the map's resolution; everything on ``y`` (hyper-latent, entropy coding) runs on the whole
sphere as without tiles, so the strings are the untiled ones (same symbols in the same order,
up to float summation order in ``g_a``). The tile resolution is not part of the strings: the
decoder's tiles need not be the encoder's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from spherical_models.coding.refine import Refinement, refine_latent
from spherical_models.entropy.streams import LatentDecoder, LatentEncoder
from spherical_models.models import SphereCompressionModel
from spherical_models.models.base import Y_LEVEL
from spherical_models.models.tiling import TilePlan, check_tile_res, check_tileable, halo_rings
from utils.healpix import npix_of, res_of_npix


@dataclass(frozen=True)
class CodedMap:
    """The coded latents of one map.

    Attributes:
        strings: one rANS string per latent, in the model's ``latent_names`` order.
        checksums: CRC-32 of each latent's symbols in coding order.
        num_pixels: HEALPix pixels of the map.
        patch_res: patch resolution, -1 for the whole sphere.
        batch_size: patches per batch (the decoder uses the same batches).
    """

    strings: dict[str, bytes]
    checksums: dict[str, int]
    num_pixels: int
    patch_res: int
    batch_size: int

    @property
    def num_bytes(self) -> int:
        """Bytes of the strings (``actual`` bits / 8)."""
        return sum(len(s) for s in self.strings.values())


def patch_count(num_pixels: int, patch_res: int) -> int:
    """Patches of a map of ``num_pixels``: ``num_pixels / 4**pr``, 1 for the whole sphere."""
    return 1 if patch_res < 0 else num_pixels // 4**patch_res


def patch_batches(num_patches: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(first, last)`` patch of each batch, ``last`` excluded."""
    for first in range(0, num_patches, batch_size):
        yield first, min(first + batch_size, num_patches)


def map_batches(
    hp_map: np.ndarray, patch_res: int, batch_size: int
) -> Iterator[tuple[slice, np.ndarray, np.ndarray | None]]:
    """Batches of a map ``[npix, 3]``: ``(pixel slice, values [B, n, 3], patch ids [B])``, the
    patches of resolution ``patch_res`` in order, or the whole map (``patch ids`` :obj:`None`)
    for a negative ``patch_res``."""
    npix = len(hp_map)
    if patch_res < 0:
        yield slice(0, npix), hp_map[None], None
        return
    size = 4**patch_res
    for first, last in patch_batches(npix // size, batch_size):
        values = hp_map[first * size : last * size].reshape(last - first, size, -1)
        yield slice(first * size, last * size), values, np.arange(first, last)


def to_uint8(x_hat: Tensor) -> np.ndarray:
    """A decoded batch in [0, 1] as ``uint8`` ``round(x_hat * 255)`` (a numpy array)."""
    return x_hat.mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


def to_input(values: np.ndarray, device: torch.device) -> Tensor:
    """``uint8`` values ``[B, n, 3]`` as the model's input in [0, 1] (``float32``)."""
    return torch.from_numpy(np.asarray(values, dtype=np.float32)).div_(255).to(device)


@torch.no_grad()
def analyse_tiled(
    model: SphereCompressionModel,
    geometry,
    hp_map: np.ndarray,
    tile_res: int,
    device: torch.device,
    progress: bool = False,
) -> Tensor:
    """``y = g_a(x)`` ``[1, 12 * 4**(hr - 4), M]`` (NESTED) of a whole ``uint8`` map
    ``[12 * 4**hr, 3]``, tile by tile: for each tile of resolution ``tile_res``
    (:class:`~spherical_models.models.tiling.TilePlan`, halo of
    :func:`~spherical_models.models.tiling.halo_rings` of ``g_a``), ``g_a`` of the region's pixels
    on its graphs, of which the tile's rows of ``y`` are kept. ``geometry``: the whole sphere's
    (:func:`~spherical_models.models.tiling.check_tileable`)."""
    check_tileable(model, geometry)
    healpix_res = res_of_npix(len(hp_map))
    plan = TilePlan(healpix_res, tile_res, halo_rings(model.g_a), model.graph_hops)
    size = plan.coarse_per_tile
    y = torch.empty(1, npix_of(healpix_res - Y_LEVEL), model.M, device=device)
    for tile in tqdm(range(plan.num_tiles), desc="analysis", unit="tile",
                     disable=not progress):
        coarse, first = plan.region(tile)
        pixels = (coarse[:, None] * 4**Y_LEVEL + np.arange(4**Y_LEVEL)).reshape(-1)
        out = model.g_a(to_input(hp_map[pixels][None], device),
                        plan.geometry(coarse).to(device))
        y[0, tile * size : (tile + 1) * size] = out[0, first : first + size]
    return y


@torch.no_grad()
def synthesise_tiled(
    model: SphereCompressionModel,
    geometry,
    y_hat: Tensor,
    healpix_res: int,
    tile_res: int,
    progress: bool = False,
) -> np.ndarray:
    """The ``uint8`` ``[12 * 4**hr, 3]`` map ``round(clamp(g_s(y_hat), 0, 1) * 255)`` of the
    whole-sphere ``y_hat`` ``[1, 12 * 4**(hr - 4), M]``, tile by tile: for each tile, the
    reconstruction of the region of the tile's ``y`` pixels dilated by
    :func:`~spherical_models.models.tiling.halo_rings` of ``g_s``, of which the tile's pixels go
    straight into the map (the float map of the whole sphere never exists). ``geometry``: the
    whole sphere's (:func:`~spherical_models.models.tiling.check_tileable`)."""
    check_tileable(model, geometry)
    plan = TilePlan(healpix_res, tile_res, halo_rings(model.g_s), model.graph_hops)
    size = 4**tile_res
    hp_map = np.empty((npix_of(healpix_res), 3), dtype=np.uint8)
    for tile in tqdm(range(plan.num_tiles), desc="synthesis", unit="tile",
                     disable=not progress):
        coarse, first = plan.region(tile)
        rows = torch.from_numpy(coarse).to(y_hat.device)
        x_hat = model.reconstruct(y_hat[:, rows], plan.geometry(coarse).to(y_hat.device))
        start = first * 4**Y_LEVEL
        hp_map[tile * size : (tile + 1) * size] = to_uint8(x_hat[0, start : start + size])
    return hp_map


@torch.no_grad()
def compress_map(
    model: SphereCompressionModel,
    geometry,
    hp_map: np.ndarray,
    patch_res: int,
    batch_size: int,
    device: torch.device,
    tile_res: int | None = None,
    progress: bool = False,
    refinement: Refinement | None = None,
) -> CodedMap:
    """Code a ``uint8`` ``[npix, 3]`` map (NESTED) into one string per latent.

    The model must be in evaluation mode with its entropy models updated; ``geometry`` is its
    :class:`~spherical_models.geometry.SphereGeometry` at ``patch_res`` (-1: whole sphere).
    On the whole sphere, ``tile_res`` (:func:`~spherical_models.models.tiling.check_tile_res`)
    runs ``g_a`` tile by tile (:func:`analyse_tiled`); only the levels from ``y`` down of
    ``geometry`` are then read (:func:`~spherical_models.models.tiling.coarse_geometry` suffices).
    ``progress``: a progress bar over the tiles. ``refinement`` (its ``lmbda`` set): the
    latent of each batch is refined before it is coded
    (:func:`~spherical_models.coding.refine.refine_latent`), with a progress bar over the
    batches if ``progress``; not with ``tile_res``.
    """
    encoder = LatentEncoder()
    tile_res = None if patch_res >= 0 else check_tile_res(tile_res, res_of_npix(len(hp_map)))
    if tile_res is not None and refinement is not None:
        raise ValueError("latent refinement needs the latent of a batch at once: patches, or "
                         "the whole sphere without tiles")
    if tile_res is not None:
        y = analyse_tiled(model, geometry, hp_map, tile_res, device, progress)
        model.code_latents(encoder, None, geometry, None, y=y)
    else:
        batches = map_batches(hp_map, patch_res, batch_size)
        if refinement is not None and progress:
            batches = tqdm(list(batches), desc="refine", unit="batch", leave=False)
        for _, values, patch_ids in batches:
            ids = None if patch_ids is None else torch.from_numpy(patch_ids).to(device)
            x, y = to_input(values, device), None
            if refinement is not None:
                y = refine_latent(model, x, model.g_a(x, geometry, ids), geometry, ids,
                                  refinement)
            model.code_latents(encoder, x, geometry, ids, y=y)
    coded = encoder.finish()
    names = model.latent_names
    return CodedMap(
        strings={name: coded.strings[name] for name in names},
        checksums={name: coded.checksums[name] for name in names},
        num_pixels=len(hp_map), patch_res=patch_res, batch_size=batch_size,
    )


@torch.no_grad()
def decompress_map(
    model: SphereCompressionModel,
    geometry,
    coded: CodedMap,
    device: torch.device,
    tile_res: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The ``uint8`` ``[npix, 3]`` map of :func:`compress_map`'s output.

    On the whole sphere, ``tile_res`` (any, not necessarily the encoder's) runs ``g_s`` tile
    by tile (:func:`synthesise_tiled`), as :func:`compress_map` says for ``geometry``.

    Raises:
        spherical_models.entropy.streams.LatentMismatchError: a decoded latent is not the
            encoder's (checked before any pixel is synthesised).
    """
    patches = patch_count(coded.num_pixels, coded.patch_res)
    batches = list(patch_batches(patches, coded.batch_size))
    decoder = LatentDecoder(coded.strings, coded.checksums,
                            model.latent_symbols(geometry, patches))
    ids = [None if coded.patch_res < 0 else torch.arange(first, last, device=device)
           for first, last in batches]
    latents = [model.code_latents(decoder, None, geometry, batch_ids, last - first)
               for (first, last), batch_ids in zip(batches, ids, strict=True)]
    decoder.verify()
    healpix_res = res_of_npix(coded.num_pixels)
    tile_res = None if coded.patch_res >= 0 else check_tile_res(tile_res, healpix_res)
    if tile_res is not None:
        return synthesise_tiled(model, geometry, latents[0], healpix_res, tile_res, progress)
    hp_map = np.empty((coded.num_pixels, 3), dtype=np.uint8)
    size = coded.num_pixels // patches
    for (first, last), batch_ids, y_hat in zip(batches, ids, latents, strict=True):
        x_hat = model.reconstruct(y_hat, geometry, batch_ids)
        hp_map[first * size : last * size] = to_uint8(x_hat).reshape(-1, 3)
    return hp_map
