r"""The face layout: sphere tensors as raster images, so that a whole transform runs on
``Conv2d``, ``avg_pool2d`` and ``PixelShuffle`` without going back to NESTED order.

A sphere tensor ``[B, n, C]`` in NESTED order becomes, on a graph with a face path
(:attr:`~spherical_models.graph.OsloGraph.supports_face_path`):

* a patch (``n = 4**pr``): the image ``[B, C, 2**pr, 2**pr]``, ``image[y, x]``;
* the whole sphere (``n = 12 * 4**hr``): the 12 base faces ``[12 B, C, nside, nside]``
  (element ``b``'s face ``f`` at ``12 b + f``), each ``image[y, x]`` in its face frame.

Both are ``channels_last`` in memory: pixels in raster order, channels innermost, i.e. the
same memory as a sphere tensor ``[B, n, C]`` whose pixels are in raster order. Converting is
one permutation of the pixels (:func:`to_faces`, :func:`from_faces`). A layer tells the two
layouts apart by the number of dimensions (:func:`is_faces`): 3 for NESTED, 4 for faces.

Inside a face, the NESTED children ``4p .. 4p + 3`` of pixel ``p`` at ``(x, y)`` sit at
``(2x + dx, 2y + dy)``, child ``dx + 2 dy``: pooling by children is ``avg_pool2d(2)``, child 0
is ``image[::2, ::2]``, and the pixel shuffle of :class:`~spherical_models.layers.pooling.
SphereUnpool` is ``PixelShuffle(2)``. On the sphere, a convolution also needs each face
framed by its neighbours' pixels (:func:`pad_faces`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["from_faces", "is_faces", "pad_faces", "pixel_linear", "supports_faces", "to_faces"]


def is_faces(x: Tensor) -> bool:
    """True for a tensor in the face layout ``[B F, C, S, S]``, False for NESTED ``[B, n, C]``."""
    return x.dim() == 4


def supports_faces(graph: nn.Module) -> bool:
    """Whether tensors on ``graph`` have a face layout: an OSLO graph with a face path."""
    return bool(getattr(graph, "supports_face_path", False))


class _PermutePixels(torch.autograd.Function):
    """``x.index_select(1, perm)`` for a permutation, whose backward is a gather too.

    Autograd's ``index_select`` backward zero-fills and scatters with ``index_add_``; for a
    permutation, gathering the gradient with the inverse permutation is the same and cheaper.
    """

    @staticmethod
    def forward(ctx, x: Tensor, perm: Tensor, inverse: Tensor) -> Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(1, perm)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (inverse,) = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def _tables(graph: nn.Module, coarse: bool) -> tuple[Tensor, Tensor, int]:
    """``(index, inverse, faces)``: the NESTED pixel of each raster position of ``graph``'s
    level (or of the level below, ``coarse``), its inverse, and the faces per element."""
    name = ("coarse_" if coarse else "") + ("image" if graph.is_patch else "face")
    index, inverse = getattr(graph, f"{name}_index"), getattr(graph, f"{name}_inverse")
    return index, inverse, 1 if graph.is_patch else 12


def to_faces(x: Tensor, graph: nn.Module, coarse: bool = False) -> Tensor:
    """NESTED ``[B, n, C]`` on ``graph`` -> faces ``[B F, C, S, S]`` (``channels_last``).

    ``coarse``: ``x`` is at the level below ``graph``'s (``n / 4`` pixels, the input of a
    transposed convolution or the output of a strided one).
    """
    index, inverse, faces = _tables(graph, coarse)
    batch, _, channels = x.shape
    side = math.isqrt(index.shape[0] // faces)
    raster = _PermutePixels.apply(x, index, inverse)
    return raster.view(batch * faces, side, side, channels).permute(0, 3, 1, 2)


def from_faces(images: Tensor, graph: nn.Module, coarse: bool = False) -> Tensor:
    """Faces ``[B F, C, S, S]`` on ``graph`` (or the level below, ``coarse``) -> NESTED
    ``[B, n, C]``."""
    index, inverse, faces = _tables(graph, coarse)
    raster = images.permute(0, 2, 3, 1).reshape(images.shape[0] // faces, -1, images.shape[1])
    return _PermutePixels.apply(raster, inverse, index)


def pad_faces(images: Tensor, source: Tensor, missing: Tensor) -> Tensor:
    """The 12 faces of every element framed by their neighbours' pixels:
    ``[12 B, C, S', S']`` (``channels_last``) from faces ``[12 B, C, S, S]``.

    ``source`` ``[12 S'**2]`` is the raster position, in the faces of one element (``[face, y,
    x]`` row-major), of each position of the framed faces, and ``missing`` the positions that
    have none, set to zero. See :meth:`~spherical_models.graph.OsloGraph.face_layout_padding`
    (``S' = S + 2 pad``) and :meth:`~spherical_models.graph.OsloGraph.transposed_padding`
    (``S' = 2 S + 2 pad``, from the coarse faces).
    """
    faces, channels, _, _ = images.shape
    raster = images.permute(0, 2, 3, 1).reshape(faces // 12, -1, channels)
    framed = raster.index_select(1, source).index_fill_(1, missing, 0)
    side = math.isqrt(source.shape[0] // 12)
    return framed.view(faces, side, side, channels).permute(0, 3, 1, 2)


def pixel_linear(linear: nn.Linear, x: Tensor) -> Tensor:
    """A per-pixel ``nn.Linear`` over the channels of ``x`` in either layout."""
    if not is_faces(x):
        return linear(x)
    return linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
