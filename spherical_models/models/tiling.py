r"""Whole-sphere analysis and synthesis tile by tile: regions of the sphere, their graphs and
the halo that makes the transforms exact on every tile.

The transforms ``g_a`` (level 0 -> :data:`~spherical_models.models.base.Y_LEVEL` ``L``) and
``g_s`` (back) of a whole map at resolution ``hr`` need, at once, the activations of every
pixel: more than 12 GB at ``hr = 10``. They are local, though: an output depends only on the
inputs within the transform's receptive field. So they run on *regions*:

* a region is a sorted set ``R_L`` of NESTED pixels at level ``L`` (resolution ``hr - L``)
  and, at every finer level ``l < L``, all their descendants ``R_l = {4^{L-l} p + c : p \in
  R_L, 0 \le c < 4^{L-l}}`` (sorted, as ``R_L`` is). The descendants of consecutive coarse
  pixels are contiguous, so local position ``i`` of level ``l`` has its parent at local
  position ``i // 4`` of level ``l + 1``, as in a patch: pooling, strided convolutions and
  pixel shuffle work unchanged on region tensors ``[B, |R_l|, C]``;
* its graph at level ``l`` (:func:`region_graph`) has the whole sphere's neighbours
  (:func:`utils.healpix.all_neighbours`, the columns of
  :func:`utils.structures.build_oslo_structure`) at local positions, weight 0 (and index
  itself) where the neighbour is outside the region or missing; it is no face image and runs
  on the gather path only (:class:`~spherical_models.graph.OsloGraph` ``region=True``);
* a *tile* ``t`` of resolution ``T`` is the patch ``[t 4^T, (t + 1) 4^T)`` of level 0, i.e.
  the ``4^{T-L}`` coarse pixels ``[t 4^{T-L}, (t + 1) 4^{T-L})`` (``T >= L``). Its region is
  these pixels dilated by ``k`` rings of whole-sphere neighbours at level ``L``
  (:func:`dilate`), ``k`` = :func:`halo_rings` of the transform: the outputs at the tile's
  pixels are then exactly the whole sphere's (up to float summation order); those near the
  region's outer edge are wrong and discarded.

A tile's region graphs depend only on the tile; they are built per tile with numpy (no loop
over pixels) and dropped after it, so the memory of a tile is that of its region, about
``(2^{T-L} + 2k)^2 4^L`` level-0 pixels: the cost does not grow with ``hr``.
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from spherical_models.geometry import SphereGeometry
from spherical_models.graph import OsloGraph
from spherical_models.layers.blocks import SphereAttention, SphereDown, SphereUp
from spherical_models.layers.cheb_conv import SphereChebConv
from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed
from spherical_models.models.base import Y_LEVEL, SphereCompressionModel
from utils.errors import OsloError
from utils.healpix import all_neighbours, npix_of, patch_neighbours
from utils.structures import OsloStructure, build_oslo_structure

DEFAULT_TILE_RES = 9
"""Default tile resolution of the command lines (``--tile-res``): tiles of ``512 x 512``
level-0 pixels, 48 at ``hr = 10``; maps up to ``hr = 9`` run at once (the faster face path,
a quarter of the more than 12 GB of ``hr = 10``). Measured at ``hr = 10`` with the q1 scale
hyperprior on 2 CPU cores, one tile (``g_a`` and ``g_s``): peak 1.65 GB and 13 s for
``T = 9``, 1.23 GB and 4.5 s for ``T = 8`` (192 tiles: 30% slower in all). The halo of ``k``
level-4 rings adds ``(1 + 2k / 2^{T-4})^2 - 1`` of the work (``k = 3`` for ``g_a`` and 5 for
``g_s`` of the default models: 41% and 72% at ``T = 9``, 89% and 164% at ``T = 8``). See
``benchmarks/bench_tiling.py``."""


def check_tile_res(tile_res: int | None, healpix_res: int) -> int | None:
    """The tile resolution to use for a map of ``healpix_res``: :obj:`None` (untiled) for
    ``tile_res`` :obj:`None`, negative, or at least ``healpix_res`` (a tile would hold a base
    face or more: the whole sphere runs at once); :class:`OsloError` for ``0 <= tile_res <``
    :data:`Y_LEVEL`."""
    if tile_res is None or tile_res < 0 or tile_res >= healpix_res:
        return None
    if tile_res < Y_LEVEL:
        raise OsloError(f"tile resolution {tile_res} is below {Y_LEVEL}, the level of y: use "
                        f"{Y_LEVEL}..{healpix_res}")
    return tile_res


def _conv_hops(module: nn.Module) -> int:
    """An upper bound on the reach of ``module`` in hops of its level: the sum of the
    ``num_hops`` of its OSLO convolutions, whatever their order, except in an attention module,
    whose two branches run side by side (the larger of their sums)."""
    if isinstance(module, SphereAttention):
        return max(_conv_hops(module.trunk), _conv_hops(module.mask))
    if isinstance(module, SphereChebConv):
        raise OsloError("tiled coding needs OSLO convolutions (SDPAConv), not ChebConv")
    if isinstance(module, SDPAConv | SDPAConvTransposed):
        return module.num_hops
    return sum(_conv_hops(child) for child in module.children())


def transform_radius(transform: nn.Module) -> int:
    r"""Reach of a :class:`~spherical_models.models.google.SphereTransform` in level-0 pixels
    (an upper bound): :math:`\sum_c h_c 2^{l_c}` over its convolutions ``c`` of ``h_c`` hops
    running at level ``l_c``.

    A down stage convolves at its input level (the strided convolution reads the fine
    neighbours of child 0; a residual-block non-linearity runs there too); an up stage
    convolves at its input (coarse) level before a pixel shuffle, at its output level
    otherwise (``nearest``, ``SDPAConvTransposed``), and its residual-block non-linearity at
    its output level; an attention module at the level it follows.
    """
    level = transform.first_level
    radius = 0
    if "-1" in transform.attention:
        radius += _conv_hops(transform.attention["-1"]) << level
    for j, stage in enumerate(transform.stages):
        out_level = level + transform.step
        if isinstance(stage, SphereDown):
            radius += _conv_hops(stage) << level
        elif isinstance(stage, SphereUp):
            block = stage.transposed if stage.unpool == "SDPAConvTransposed" else stage.block
            block_level = level if stage.unpool == "pixel_shuffle" else out_level
            radius += _conv_hops(block) << block_level
            if stage.activation is not None:
                radius += _conv_hops(stage.activation) << out_level
        else:
            raise TypeError(f"unknown stage {type(stage).__name__}")
        level = out_level
        if str(j) in transform.attention:
            radius += _conv_hops(transform.attention[str(j)]) << level
    return radius


def halo_rings(transform: nn.Module, level: int = Y_LEVEL) -> int:
    """Rings ``k`` of level-``level`` pixels around a tile that cover the reach of
    ``transform``: ``ceil(transform_radius / 2**level) + 1`` (a margin of one ring)."""
    return math.ceil(transform_radius(transform) / 2**level) + 1


def dilate(res: int, pixels: np.ndarray, rings: int) -> np.ndarray:
    """``pixels`` (NESTED, resolution ``res``) and their whole-sphere neighbours, ``rings``
    times: ``S <- S | neighbours(S)``; sorted, unique."""
    region = np.unique(np.asarray(pixels, dtype=np.int64))
    frontier = region
    for _ in range(rings):
        around = all_neighbours(res, frontier).ravel()
        around = np.unique(around[around >= 0])
        frontier = np.setdiff1d(around, region, assume_unique=True)
        region = np.union1d(region, frontier)
    return region


def descendants(pixels: np.ndarray, levels: int) -> np.ndarray:
    """The ``4**levels`` descendants of each of ``pixels`` ``[n]``, ``levels`` resolutions
    up, ``[n * 4**levels]`` (sorted when ``pixels`` is)."""
    size = 4**levels
    return (np.asarray(pixels, dtype=np.int64)[:, None] * size
            + np.arange(size, dtype=np.int64)).reshape(-1)


def _descendant_neighbours(
    res: int, coarse: np.ndarray, levels: int, num_hops: int
) -> np.ndarray:
    """:func:`utils.healpix.all_neighbours` ``[n 4^levels, K]`` of the descendants
    (:func:`descendants`, resolution ``res``) of ``coarse``: the descendants of a coarse pixel
    are a patch of resolution ``levels``, whose in-patch neighbours are the shared table of
    :func:`utils.healpix.patch_neighbours`; only the rows at the patch border go through the
    whole-sphere rules."""
    size = 4**levels
    table = patch_neighbours(levels, num_hops)
    starts = np.asarray(coarse, dtype=np.int64)[:, None, None] * size
    out = np.where(table >= 0, table + starts, -1).reshape(len(coarse) * size, -1)
    border = np.flatnonzero((table < 0).any(axis=1))
    rows = (np.arange(len(coarse), dtype=np.int64)[:, None] * size + border).reshape(-1)
    out[rows] = all_neighbours(res, (starts[:, :, 0] + border).reshape(-1), num_hops)
    return out


def region_graph(
    res: int, pixels: np.ndarray, num_hops: int, table: np.ndarray | None = None
) -> OsloGraph:
    """The gather-only graph of the sorted NESTED ``pixels`` ``[n]`` at resolution ``res``.

    ``index[i, k]`` is the local position of :func:`utils.healpix.all_neighbours`'s
    neighbour ``k`` of ``pixels[i]`` (``SW, W, NW, N, NE, E, SE, S``, then the 2-hop ring), or
    ``i`` with weight 0 where that neighbour is outside ``pixels`` or missing; weight 1
    otherwise (``identity``). ``table``: those neighbours ``[n, K]`` if already known.
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    if table is None:
        table = all_neighbours(res, pixels, num_hops)
    local = np.minimum(np.searchsorted(pixels, table), len(pixels) - 1)
    inside = (table >= 0) & (pixels[local] == table)
    rows = np.broadcast_to(np.arange(len(pixels), dtype=np.int64)[:, None], table.shape)
    index = np.where(inside, local, rows)
    structure = OsloStructure(index, inside.astype(np.float32)[None], res, -1, num_hops)
    return OsloGraph(structure, region=True)


def region_geometry(
    healpix_res: int, coarse: np.ndarray, num_hops: int, level: int = Y_LEVEL
) -> SphereGeometry:
    """The region graphs of levels ``0 .. level`` of the sorted coarse pixels ``coarse``
    (resolution ``healpix_res - level``) and their descendants."""
    return SphereGeometry([
        region_graph(
            healpix_res - lvl, descendants(coarse, level - lvl), num_hops,
            _descendant_neighbours(healpix_res - lvl, coarse, level - lvl, num_hops),
        )
        for lvl in range(level + 1)
    ])


class UnbuiltLevel(nn.Module):
    """Stands for a whole-sphere level that tiled coding never convolves on (levels below
    :data:`Y_LEVEL`): it has the metadata of a graph but no tables."""

    def __init__(self, healpix_res: int) -> None:
        super().__init__()
        self.healpix_res = healpix_res
        self.patch_res = -1
        self.num_pixels = npix_of(healpix_res)

    def extra_repr(self) -> str:
        return f"healpix_res={self.healpix_res}, whole sphere, not built"


def coarse_geometry(
    model: SphereCompressionModel, healpix_res: int, weight_type: str | None = None,
    use_euclidean: bool = False,
) -> SphereGeometry:
    """The whole-sphere geometry of ``model`` at ``healpix_res`` for tiled coding: the graphs
    of levels :data:`Y_LEVEL` .. ``num_levels - 1`` (``y`` and ``z``: small; structure
    weights ``weight_type``, default ``identity``), an :class:`UnbuiltLevel` below."""
    graphs: list[nn.Module] = [UnbuiltLevel(healpix_res - lvl) for lvl in range(Y_LEVEL)]
    graphs += [
        OsloGraph(build_oslo_structure(healpix_res - lvl, -1, model.graph_hops,
                                       weight_type or "identity", use_euclidean))
        for lvl in range(Y_LEVEL, model.num_levels)
    ]
    return SphereGeometry(graphs)


def check_tileable(model: SphereCompressionModel, geometry: SphereGeometry) -> None:
    """:class:`OsloError` unless ``model``'s transforms can run tile by tile on a sphere whose
    whole-sphere ``geometry`` is given: OSLO convolutions with ``identity`` weights (Gaussian
    weights are normalised over the whole sphere; a ChebConv filter is a polynomial of the
    Laplacian normalised over the whole graph)."""
    if model.options.conv != "SDPAConv":
        raise OsloError(f"tiled coding needs OSLO convolutions (SDPAConv), not "
                        f"{model.options.conv}: use --tile-res -1 or patches")
    weight_type = geometry[Y_LEVEL].weight_type
    if weight_type != "identity":
        raise OsloError(f"tiled coding needs identity structure weights, not '{weight_type}': "
                        f"use --tile-res -1 or patches")


class TilePlan:
    """The tiles of resolution ``tile_res`` of a map at ``healpix_res`` and, for a transform
    of ``rings`` halo rings, each tile's region.

    Attributes:
        healpix_res, tile_res, rings, num_hops: as given.
        num_tiles: ``12 * 4**(hr - T)``.
        coarse_per_tile: ``4**(T - L)`` pixels of level ``L`` per tile.
    """

    def __init__(self, healpix_res: int, tile_res: int, rings: int, num_hops: int) -> None:
        if not Y_LEVEL <= tile_res <= healpix_res:
            raise OsloError(f"tile resolution {tile_res} outside {Y_LEVEL}..{healpix_res}")
        self.healpix_res = healpix_res
        self.tile_res = tile_res
        self.rings = rings
        self.num_hops = num_hops
        self.num_tiles = npix_of(healpix_res - tile_res)
        self.coarse_per_tile = 4 ** (tile_res - Y_LEVEL)

    def region(self, tile: int) -> tuple[np.ndarray, int]:
        """``(coarse, first)``: the region's sorted level-``L`` pixels and the local position
        of the tile's first coarse pixel in it (the tile is ``coarse[first : first +
        coarse_per_tile]``)."""
        start = tile * self.coarse_per_tile
        tile_pixels = np.arange(start, start + self.coarse_per_tile, dtype=np.int64)
        coarse = dilate(self.healpix_res - Y_LEVEL, tile_pixels, self.rings)
        return coarse, int(np.searchsorted(coarse, start))

    def geometry(self, coarse: np.ndarray) -> SphereGeometry:
        """:func:`region_geometry` of a region."""
        return region_geometry(self.healpix_res, coarse, self.num_hops)
