"""Torch-side OSLO neighbour structure of one resolution level, for the SDPA convolutions."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from utils.healpix import face_padding_index, patch_image_index
from utils.structures import OsloStructure, load_oslo_structure


def _inverse_permutation(perm: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm), dtype=perm.dtype)
    return inverse


def _face_image_index(res: int) -> np.ndarray:
    """NESTED pixel of each position of the 12 base faces ``[face, y, x]`` (row-major)."""
    face_start = np.arange(12, dtype=np.int64)[:, None] * 4**res
    return (face_start + patch_image_index(res).reshape(-1)).reshape(-1)


def _buffer(array: np.ndarray, dtype: torch.dtype) -> Tensor:
    """A tensor sharing ``array``'s memory where it can (a structure can take gigabytes)."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array, dtype=dtype)


class OsloGraph(torch.nn.Module):
    r"""The neighbour structure of one resolution level, as tensors for
    :class:`~spherical_models.layers.SDPAConv`.

    Wraps an :class:`utils.structures.OsloStructure` (patch-local for ``patch_res >= 0``, whole
    sphere for ``patch_res = -1``) into non-persistent buffers, so that ``.to(device)`` moves it
    and ``state_dict`` of a model that holds it stays free of it. Pixel ``i``'s neighbour in
    direction ``k`` is ``index[i, k]`` with weight ``weight[p, i, k]`` (``p``: the patch for
    per-patch weights, else 0); a missing neighbour has weight 0 and ``index[i, k] = i``.

    With ``identity`` weights the convolution has a face path (Conv2d on images) and the graph
    also holds its tables:

    * patches: ``image_index`` ``[4**pr]``, the patch-local NESTED pixel of each position of
      the ``2**pr x 2**pr`` image ``image[y, x]`` (row-major), and ``image_inverse`` ``[4**pr]``,
      the image position of each NESTED pixel; ``coarse_image_index`` / ``coarse_image_inverse``
      ``[4**(pr-1)]``, the same permutations one resolution down (``[1]`` for ``pr = 0``): a
      stride-2 ``Conv2d`` keeps image positions ``(2y, 2x)``, the NESTED child 0 (pixel
      ``4p``) of the coarse pixel ``p`` at ``(x, y)``, so its output is the coarse image;
    * whole sphere: ``face_index`` ``[12 * 4**hr]``, the NESTED pixel of each position of the
      12 faces (``[face, y, x]`` row-major), and its inverse ``face_inverse``; for ``hr >= 1``,
      ``coarse_face_index`` / ``coarse_face_inverse`` ``[12 * 4**(hr-1)]``, the same one
      resolution down (the faces after a stride-2 ``Conv2d``); for ``pad`` in
      ``1 .. num_hops``, the source in the faces of every position of the 12 faces padded by
      ``pad`` (:func:`utils.healpix.face_padding_index`, see :meth:`face_layout_padding`) and,
      for ``hr >= 1``, in the coarse faces (:meth:`transposed_padding`).

    A *region* graph (``region=True``, :mod:`spherical_models.models.tiling`) holds the rows of a
    sorted set of pixels of the sphere (``patch_res = -1``, ``index`` local to the set, weight 0
    for the neighbours outside it): it is no face image, so it runs on the gather path only.

    Args:
        structure (OsloStructure): the neighbour structure, e.g. from
            :func:`utils.structures.build_oslo_structure`.
        region (bool, optional): ``structure`` is a region's (gather path only).
            (default: :obj:`False`)

    Attributes:
        healpix_res (int), patch_res (int, -1 for the whole sphere), num_hops (int),
        weight_type (str): the structure's metadata; region (bool).
    """

    def __init__(self, structure: OsloStructure, region: bool = False) -> None:
        super().__init__()
        self.region = region
        self.healpix_res = structure.healpix_res
        self.patch_res = max(structure.patch_res, -1)
        self.num_hops = structure.num_hops
        self.weight_type = structure.weight_type
        self._register("index", structure.index)
        self._register("weight", structure.weight, torch.float32)
        if self.supports_face_path and self.is_patch:
            self._register_permutation("image", patch_image_index(self.patch_res).reshape(-1))
            coarse = patch_image_index(max(self.patch_res - 1, 0)).reshape(-1)
            self._register_permutation("coarse_image", coarse)
        elif self.supports_face_path:
            face_inverse = self._register_permutation("face", _face_image_index(self.healpix_res))
            coarse_inverse = (
                self._register_permutation("coarse_face", _face_image_index(self.healpix_res - 1))
                if self.healpix_res > 0 else None
            )
            for pad in range(1, self.num_hops + 1):
                source = face_padding_index(self.healpix_res, pad).reshape(-1)
                self._register(f"face_padding_index_{pad}", face_inverse[np.maximum(source, 0)])
                self._register(f"face_padding_missing_{pad}", np.flatnonzero(source < 0))
                if coarse_inverse is not None:
                    child_zero = (source >= 0) & (source % 4 == 0)
                    coarse = coarse_inverse[np.where(child_zero, source, 0) // 4]
                    self._register(f"transposed_padding_index_{pad}", coarse)
                    self._register(f"transposed_padding_missing_{pad}",
                                   np.flatnonzero(~child_zero))

    def _register(self, name: str, array: np.ndarray, dtype: torch.dtype = torch.int64) -> None:
        self.register_buffer(name, _buffer(array, dtype), persistent=False)

    def _register_permutation(self, name: str, index: np.ndarray) -> np.ndarray:
        """Buffers ``{name}_index`` and its inverse permutation ``{name}_inverse``; returns the
        inverse."""
        inverse = _inverse_permutation(index)
        self._register(f"{name}_index", index)
        self._register(f"{name}_inverse", inverse)
        return inverse

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, *args, **kwargs) -> OsloGraph:
        """Load the structure of ``(healpix_res, patch_res)`` saved in ``folder``.

        The arguments, defaults and errors of :func:`utils.structures.load_oslo_structure`,
        which raises :class:`utils.errors.OsloError` if no file fits.
        """
        return cls(load_oslo_structure(folder, *args, **kwargs))

    @property
    def is_patch(self) -> bool:
        """True for a patch-local graph, False for the whole sphere."""
        return self.patch_res >= 0

    @property
    def num_pixels(self) -> int:
        """Pixels ``n`` of one graph: ``4**pr`` on patches, ``12 * 4**hr`` on the sphere."""
        return self.index.shape[0]

    @property
    def num_weight_slices(self) -> int:
        """``P``: 1 for weights shared by every patch, the number of patches otherwise."""
        return self.weight.shape[0]

    @property
    def supports_face_path(self) -> bool:
        """True when the convolution equals a Conv2d on images (``identity`` weights, not a
        region)."""
        return (not self.region and self.weight_type == "identity"
                and self.num_weight_slices == 1)

    def face_padding(self, pad: int) -> tuple[Tensor, Tensor]:
        """Gather table of the 12 faces padded by ``pad`` (whole-sphere graphs), in NESTED
        order.

        Returns:
            ``(source, missing)``: ``source`` ``[12 * (nside + 2 pad)**2]``, the NESTED pixel
            for each position of the padded faces (``[face, y, x]`` row-major; 0 where there is
            none), and ``missing``, the positions that have none (to be set to zero).
        """
        raster, missing = self.face_layout_padding(pad)
        return self.face_index[raster].index_fill_(0, missing, 0), missing

    def face_layout_padding(self, pad: int) -> tuple[Tensor, Tensor]:
        """:meth:`face_padding` in the face layout: ``source`` holds the raster position of
        each padded position in the unpadded faces ``[face, y, x]`` (``face_inverse`` of the
        NESTED source; 0 where there is none), for
        :func:`~spherical_models.layers.face_layout.pad_faces`."""
        self._check_padding(pad)
        return getattr(self, f"face_padding_index_{pad}"), getattr(
            self, f"face_padding_missing_{pad}"
        )

    def transposed_padding(self, pad: int) -> tuple[Tensor, Tensor]:
        """The padded faces of this level gathered from the faces of the level below, for the
        transposed convolution (whole sphere, ``healpix_res >= 1``).

        Returns:
            ``(source, missing)``: for each position of the 12 faces padded by ``pad``
            (``[face, y, x]`` row-major), the raster position in the coarse faces of the parent
            of its NESTED pixel where that pixel is child 0 of its parent (0 elsewhere), and
            ``missing``, the positions that are no child 0 or have no pixel (zeros).
        """
        self._check_padding(pad)
        if self.healpix_res == 0:
            raise ValueError(f"{self} has no coarser level")
        return getattr(self, f"transposed_padding_index_{pad}"), getattr(
            self, f"transposed_padding_missing_{pad}"
        )

    def _check_padding(self, pad: int) -> None:
        if self.is_patch or not self.supports_face_path or not 1 <= pad <= self.num_hops:
            raise ValueError(f"{self} has no face padding table for pad={pad}")

    def extra_repr(self) -> str:
        where = f"patch_res={self.patch_res}" if self.is_patch else "whole sphere"
        if self.region:
            where = f"region of {self.num_pixels} pixels"
        return (
            f"healpix_res={self.healpix_res}, {where}, num_hops={self.num_hops}, "
            f"weight_type={self.weight_type}"
        )
