"""HEALPix geometry in NESTED order: indexing, directional neighbours, hierarchy, patches.

Conventions (``healpy`` is the reference for all of them):

* resolution ``r`` (the HEALPix *order*): ``nside = 2**r`` and ``npix = 12 * 4**r``;
* pixels are always in NESTED order;
* face-local coordinates ``(x, y, f)`` are those of ``healpy.pix2xyf(nside, p, nest=True)``:
  inside base face ``f`` the NESTED index interleaves the bits of ``x`` (even bits) and ``y``
  (odd bits);
* the 8 one-hop neighbours come in healpy's order ``SW, W, NW, N, NE, E, SE, S``; inside a face
  they are the face-local offsets of :data:`ONE_HOP_OFFSETS`;
* the 4 children of pixel ``p`` are ``4p, 4p+1, 4p+2, 4p+3`` one resolution up, at face-local
  offsets ``(0,0), (1,0), (0,1), (1,1)`` from ``(2x, 2y)``;
* patch ``k`` of resolution ``pr`` in a map of resolution ``hr`` is the block of ``4**pr``
  consecutive NESTED pixels ``[k * 4**pr, (k + 1) * 4**pr)``: a ``2**pr x 2**pr`` square of one
  base face.

Every function works on whole arrays of pixels; none loops over pixels in Python.
"""

from __future__ import annotations

import numpy as np

MAX_RESOLUTION = 13
"""Largest resolution accepted by the toolkit (``nside = 8192``, 805,306,368 pixels)."""

ONE_HOP_NAMES = ("SW", "W", "NW", "N", "NE", "E", "SE", "S")

ONE_HOP_OFFSETS = np.array(
    [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)], dtype=np.int64
)
"""Face-local ``(dx, dy)`` of the neighbours ``SW, W, NW, N, NE, E, SE, S`` (healpy's order)."""

TWO_HOP_RING_OFFSETS = np.array(
    [(-2, 0), (-2, 1), (-2, 2), (-1, 2), (0, 2), (1, 2), (2, 2), (2, 1),
     (2, 0), (2, -1), (2, -2), (1, -2), (0, -2), (-1, -2), (-2, -2), (-2, -1)],
    dtype=np.int64,
)
"""Face-local ``(dx, dy)`` of the 16 pixels of the 5x5 ring, the second hop.

The ring starts at ``2 * SW = (-2, 0)`` and turns the same way as the one-hop order
(``SW -> W -> NW -> ...``, i.e. clockwise in the ``(x, y)`` plane), so that column ``8 + 2j`` is the
pixel two steps away in one-hop direction ``j``.
"""

CHILD_OFFSETS = np.array([(0, 0), (1, 0), (0, 1), (1, 1)], dtype=np.int64)
"""Face-local offsets of children ``4p, 4p+1, 4p+2, 4p+3`` from ``(2x, 2y)``."""


def direction_offsets(num_hops: int) -> np.ndarray:
    """Face-local offsets ``[K, 2]`` of the neighbour columns: 8 for one hop, 24 for two."""
    if num_hops == 1:
        return ONE_HOP_OFFSETS
    if num_hops == 2:
        return np.concatenate([ONE_HOP_OFFSETS, TWO_HOP_RING_OFFSETS])
    raise ValueError(f"num_hops must be 1 or 2, got {num_hops}")


def num_directions(num_hops: int) -> int:
    """Neighbour columns ``K`` of a ``num_hops`` structure: 8 (one hop) or 24 (two hops)."""
    return len(direction_offsets(num_hops))


def nside_of(res: int) -> int:
    """``nside = 2**res``."""
    return 1 << res


def npix_of(res: int) -> int:
    """Number of pixels ``12 * 4**res`` of a whole sphere at resolution ``res``."""
    return 12 << (2 * res)


def res_of_npix(npix: int) -> int:
    """Resolution of a whole-sphere map of ``npix`` pixels; ``ValueError`` if there is none."""
    if npix < 12 or npix % 12:
        raise ValueError(f"{npix} is not a HEALPix pixel count (12 * 4**r)")
    per_face = npix // 12
    res = (per_face.bit_length() - 1) // 2
    if 4**res != per_face:
        raise ValueError(f"{npix} is not a HEALPix pixel count (12 * 4**r)")
    return res


# Masks of the bit (de)interleaving, as in the HEALPix C++ library.
_M1 = np.int64(0x5555555555555555 & 0x7FFFFFFFFFFFFFFF)
_M2 = np.int64(0x3333333333333333)
_M4 = np.int64(0x0F0F0F0F0F0F0F0F)
_M8 = np.int64(0x00FF00FF00FF00FF)
_M16 = np.int64(0x0000FFFF0000FFFF)
_M32 = np.int64(0x00000000FFFFFFFF)


def _compact_even_bits(v: np.ndarray) -> np.ndarray:
    """Gather the even bits of ``v`` into the low half: ``b0 b2 b4 ... -> b0 b1 b2 ...``."""
    v = v & _M1
    v = (v | (v >> 1)) & _M2
    v = (v | (v >> 2)) & _M4
    v = (v | (v >> 4)) & _M8
    v = (v | (v >> 8)) & _M16
    return (v | (v >> 16)) & _M32


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_compact_even_bits`: bit ``i`` of ``v`` goes to bit ``2i``."""
    v = v & _M32
    v = (v | (v << 16)) & _M16
    v = (v | (v << 8)) & _M8
    v = (v | (v << 4)) & _M4
    v = (v | (v << 2)) & _M2
    return (v | (v << 1)) & _M1


def nest_to_xyf(res: int, pix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NESTED pixel indices -> face-local ``(x, y, face)``, each ``int64`` of ``pix``'s shape.

    Equal to ``healpy.pix2xyf(2**res, pix, nest=True)``.
    """
    pix = np.asarray(pix, dtype=np.int64)
    in_face = pix & ((np.int64(1) << (2 * res)) - 1)
    return _compact_even_bits(in_face), _compact_even_bits(in_face >> 1), pix >> (2 * res)


def xyf_to_nest(res: int, x: np.ndarray, y: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Face-local ``(x, y, face)`` -> NESTED pixel index; ``healpy.xyf2pix(.., nest=True)``."""
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    face = np.asarray(face, dtype=np.int64)
    return (face << (2 * res)) | _spread_bits(x) | (_spread_bits(y) << 1)


# Base-face adjacency of the HEALPix C++ library (healpix_base.cc, ``nb_facearray`` and
# ``nb_swaparray``). A coordinate that leaves face ``f`` lands in one of the 8 regions around it,
# numbered ``4 + sx + 3 * sy`` with ``sx, sy`` in {-1, 0, +1} the side it left by (4 = inside).
# The region's face is ``_REGION_FACE[region, f]`` (-1: none, the 3-face corners) and the
# coordinate is mapped into it by ``_REGION_SWAP[region, f // 4]``: bit 1 flips x, bit 2 flips
# y, bit 4 swaps x and y.
_REGION_FACE = np.array(
    [
        [8, 9, 10, 11, -1, -1, -1, -1, 10, 11, 8, 9],  # x < 0,  y < 0   (S)
        [5, 6, 7, 4, 8, 9, 10, 11, 9, 10, 11, 8],  # y < 0           (SE)
        [-1, -1, -1, -1, 5, 6, 7, 4, -1, -1, -1, -1],  # x >= n, y < 0 (E)
        [4, 5, 6, 7, 11, 8, 9, 10, 11, 8, 9, 10],  # x < 0           (SW)
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],  # inside
        [1, 2, 3, 0, 0, 1, 2, 3, 5, 6, 7, 4],  # x >= n          (NE)
        [-1, -1, -1, -1, 7, 4, 5, 6, -1, -1, -1, -1],  # x < 0, y >= n (W)
        [3, 0, 1, 2, 3, 0, 1, 2, 4, 5, 6, 7],  # y >= n          (NW)
        [2, 3, 0, 1, -1, -1, -1, -1, 0, 1, 2, 3],  # x >= n, y >= n  (N)
    ],
    dtype=np.int64,
)
_REGION_SWAP = np.array(
    [[0, 0, 3], [0, 0, 6], [0, 0, 0], [0, 0, 5], [0, 0, 0], [5, 0, 0], [0, 0, 0], [6, 0, 0],
     [3, 0, 0]],
    dtype=np.int64,
)


def extended_xyf_to_nest(
    res: int, x: np.ndarray, y: np.ndarray, face: np.ndarray
) -> np.ndarray:
    """NESTED pixel at face-local ``(x, y)`` of ``face``'s frame extended beyond the face.

    ``x`` and ``y`` may leave ``[0, nside)`` by up to ``nside``: the position is continued into
    the adjacent face exactly as healpy does for the one-hop neighbours (face adjacency and
    axis flips of the HEALPix C++ library). This is both how neighbours are found across face
    edges and what HEALPix face padding is (each face framed by its neighbours' pixels).

    A position in the corner region of a face corner shared by only 3 faces (the east/west
    corners of the polar faces and the north/south corners of the equatorial ones: 8 corners)
    has no face to continue the frame, and a position more than one face away cannot be
    reached: both give -1. At the poles, where 4 faces meet, the corner region is the opposite
    face, as in healpy.

    Returns:
        ``int64`` NESTED indices of the broadcast shape of the inputs, -1 where none.
    """
    nside = nside_of(res)
    x, y, face = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (x, y, face)))
    sx = (x >= nside).astype(np.int64) - (x < 0)
    sy = (y >= nside).astype(np.int64) - (y < 0)
    x = x - sx * nside
    y = y - sy * nside
    region = 4 + sx + 3 * sy
    nface = _REGION_FACE[region, face]
    bits = _REGION_SWAP[region, face >> 2]
    x = np.where(bits & 1, nside - x - 1, x)
    y = np.where(bits & 2, nside - y - 1, y)
    swap = (bits & 4).astype(bool)
    x, y = np.where(swap, y, x), np.where(swap, x, y)
    valid = (nface >= 0) & (x >= 0) & (x < nside) & (y >= 0) & (y < nside)
    return np.where(valid, xyf_to_nest(res, x, y, np.maximum(nface, 0)), -1)


def neighbours_at_offsets(
    res: int, offsets: np.ndarray, pix: np.ndarray | None = None
) -> np.ndarray:
    """Pixels at face-local ``offsets`` from ``pix``, across base-face edges, whole sphere.

    Each offset ``(dx, dy)`` is applied in the pixel's own face frame and continued across face
    edges by :func:`extended_xyf_to_nest`, so that with :data:`ONE_HOP_OFFSETS` this equals
    ``healpy.get_all_neighbours(nside, pix, nest=True).T``: the 24 seven-neighbour pixels are
    those whose missing neighbour falls in a 3-face corner region. For two hops, the ring
    members that would need a turn around such a corner are missing too.

    Args:
        res: resolution of the map.
        offsets: ``[K, 2]`` integer face-local offsets.
        pix: NESTED pixels ``[n]``; all pixels of the sphere by default.

    Returns:
        ``[n, K]`` ``int64`` NESTED neighbour indices, -1 where missing.
    """
    if pix is None:
        pix = np.arange(npix_of(res), dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    x, y, face = nest_to_xyf(res, pix)
    out = np.empty((len(x), len(offsets)), dtype=np.int64)
    for k, (dx, dy) in enumerate(offsets):  # loop over the K directions, not over pixels
        out[:, k] = extended_xyf_to_nest(res, x + dx, y + dy, face)
    return out


def face_padding_index(res: int, pad: int) -> np.ndarray:
    """NESTED source of every pixel of the 12 padded faces, ``[12, S + 2p, S + 2p]``, ``S = nside``.

    Entry ``[f, pad + y, pad + x]`` is the pixel at face-local ``(x, y)`` of face ``f``'s frame
    extended by :func:`extended_xyf_to_nest` (``x, y`` in ``[-pad, S + pad)``), -1 where there
    is none (3-face corners, or more than one face away when ``pad > nside``). Gathering a
    NESTED map with it (zeros at -1) gives the faces as images ``image[y, x]`` framed by their
    neighbours' pixels: a ``Conv2d`` with no padding on them equals the OSLO convolution over
    :func:`all_neighbours` of the whole sphere.
    """
    coords = np.arange(-pad, nside_of(res) + pad, dtype=np.int64)
    face = np.arange(12, dtype=np.int64)[:, None, None]
    return extended_xyf_to_nest(res, coords[None, None, :], coords[None, :, None], face)


def all_neighbours(res: int, pix: np.ndarray | None = None, num_hops: int = 1) -> np.ndarray:
    """Directional neighbours ``[n, 8]`` (one hop) or ``[n, 24]`` (two hops), -1 where missing.

    Columns are ``SW, W, NW, N, NE, E, SE, S`` then the two-hop ring of
    :data:`TWO_HOP_RING_OFFSETS`. See :func:`neighbours_at_offsets` for the rules across faces.
    For the whole sphere (``pix=None``) a base face is a patch of resolution ``res``: every face
    shares the table of :func:`patch_neighbours`, and only the pixels near a face edge go
    through the cross-face rules.
    """
    if pix is not None:
        return neighbours_at_offsets(res, direction_offsets(num_hops), pix)
    face_table = patch_neighbours(res, num_hops)
    per_face = len(face_table)
    face_start = np.arange(12, dtype=np.int64)[:, None, None] * per_face
    out = np.where(face_table >= 0, face_table + face_start, -1).reshape(12 * per_face, -1)
    edge = np.flatnonzero((face_table < 0).any(axis=1))
    edge_pix = (face_start[:, :, 0] + edge).reshape(-1)
    out[edge_pix] = neighbours_at_offsets(res, direction_offsets(num_hops), edge_pix)
    return out


def patch_neighbours(patch_res: int, num_hops: int = 1) -> np.ndarray:
    """Patch-local neighbour table ``[4**patch_res, K]`` of a graph cut at the patch border.

    A patch is a ``2**pr x 2**pr`` square inside one base face and the directions are fixed
    face-local offsets there, so every patch of every resolution pair shares this table: row
    ``i`` (patch-local NESTED index) holds the patch-local index of each direction's neighbour,
    -1 where that neighbour lies outside the patch.
    """
    side = nside_of(patch_res)
    local = np.arange(4**patch_res, dtype=np.int64)
    x, y, _ = nest_to_xyf(patch_res, local)
    offsets = direction_offsets(num_hops)
    nx = x[:, None] + offsets[None, :, 0]
    ny = y[:, None] + offsets[None, :, 1]
    inside = (nx >= 0) & (nx < side) & (ny >= 0) & (ny < side)
    local_index = xyf_to_nest(patch_res, nx.clip(0, side - 1), ny.clip(0, side - 1), 0)
    return np.where(inside, local_index, -1)


def children(pix: np.ndarray) -> np.ndarray:
    """The 4 children ``[n, 4]`` (``4p .. 4p+3``) of NESTED pixels ``pix`` one resolution up."""
    pix = np.asarray(pix, dtype=np.int64)
    return 4 * pix[..., None] + np.arange(4, dtype=np.int64)


def parent(pix: np.ndarray) -> np.ndarray:
    """The NESTED parent ``p // 4`` of pixels ``pix``, one resolution down."""
    return np.asarray(pix, dtype=np.int64) >> 2


def num_patches(healpix_res: int, patch_res: int) -> int:
    """Number ``12 * 4**(hr - pr)`` of patches ``pr`` in a map of resolution ``hr``."""
    return npix_of(healpix_res - patch_res)


def input_pixels(healpix_res: int, patch_res: int) -> int:
    """Pixels of one input of a network: ``4**pr`` for a patch, ``12 * 4**hr`` for the whole
    sphere (``pr < 0``)."""
    return 4**patch_res if patch_res >= 0 else npix_of(healpix_res)


def patch_pixels(patch_res: int, patch: int | np.ndarray) -> np.ndarray:
    """NESTED pixels of patch(es) ``patch``: ``[4**pr]`` for one patch, ``[m, 4**pr]`` for many.

    The same at every map resolution: patch ``k`` is the ``k``-th block of ``4**pr`` pixels.
    """
    size = 4**patch_res
    return np.asarray(patch, dtype=np.int64)[..., None] * size + np.arange(size, dtype=np.int64)


def patch_image_index(patch_res: int) -> np.ndarray:
    """Permutation ``[2**pr, 2**pr]`` of patch-local NESTED indices laid out as ``image[y, x]``.

    ``values[patch_image_index(pr)]`` turns a patch's NESTED values ``[4**pr, ...]`` into the
    image ``[2**pr, 2**pr, ...]`` on which a one-hop OSLO convolution is a 3x3 ``Conv2d``.
    """
    side = nside_of(patch_res)
    y, x = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return xyf_to_nest(patch_res, x, y, 0)
