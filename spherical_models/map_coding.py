"""Coding a whole HEALPix map: its patches (or the whole sphere), batch after batch, into one
rANS stream per latent, and back. The one implementation behind the evaluation of step 4
(:mod:`spherical_models.evaluation`) and the ``.oslo`` codec (:mod:`spherical_models.codec`).

The patches of resolution ``pr`` of a map are coded in NESTED order, ``batch_size`` at a time
(a batch bounds the memory); every batch appends its symbols to the same stream of each latent
(:class:`~spherical_models.entropy_coding.LatentEncoder`), so a map costs one rANS flush per
latent whatever its number of patches. Decoding first entropy-decodes every batch and checks
the CRC-32 of each latent against the encoder's, then synthesises the pixels: a mismatch is
refused before any pixel is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from spherical_models.entropy_coding import LatentDecoder, LatentEncoder
from spherical_models.models import SphereCompressionModel


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
def compress_map(
    model: SphereCompressionModel,
    geometry,
    hp_map: np.ndarray,
    patch_res: int,
    batch_size: int,
    device: torch.device,
) -> CodedMap:
    """Code a ``uint8`` ``[npix, 3]`` map (NESTED) into one string per latent.

    The model must be in evaluation mode with its entropy models updated; ``geometry`` is its
    :class:`~spherical_models.geometry.SphereGeometry` at ``patch_res`` (-1: whole sphere).
    """
    encoder = LatentEncoder()
    for _, values, patch_ids in map_batches(hp_map, patch_res, batch_size):
        ids = None if patch_ids is None else torch.from_numpy(patch_ids).to(device)
        model.code_latents(encoder, to_input(values, device), geometry, ids)
    coded = encoder.finish()
    names = model.latent_names
    return CodedMap(
        strings={name: coded.strings[name] for name in names},
        checksums={name: coded.checksums[name] for name in names},
        num_pixels=len(hp_map), patch_res=patch_res, batch_size=batch_size,
    )


@torch.no_grad()
def decompress_map(
    model: SphereCompressionModel, geometry, coded: CodedMap, device: torch.device
) -> np.ndarray:
    """The ``uint8`` ``[npix, 3]`` map of :func:`compress_map`'s output.

    Raises:
        spherical_models.entropy_coding.LatentMismatchError: a decoded latent is not the
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
    hp_map = np.empty((coded.num_pixels, 3), dtype=np.uint8)
    size = coded.num_pixels // patches
    for (first, last), batch_ids, y_hat in zip(batches, ids, latents, strict=True):
        x_hat = model.reconstruct(y_hat, geometry, batch_ids)
        hp_map[first * size : last * size] = to_uint8(x_hat).reshape(-1, 3)
    return hp_map
