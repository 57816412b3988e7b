"""Step 2: OSLO neighbour structures and DeepSphere graphs, built, saved and loaded.

One file per ``(healpix_res, patch_res)`` pair under the structure folder (``.npz``, written
atomically), carrying the metadata that lets :func:`load_oslo_structure` and
:func:`load_deepsphere_graph` refuse a file that does not match what the model asks for.

OSLO structure (``oslo_struct_hr{hr}_pr{pr}_hops{h}[_{weight}].npz``):

* ``index`` ``[n, K]`` ``int64``: the neighbour of each pixel in each direction (``K = 8``
  for one hop, ``SW, W, NW, N, NE, E, SE, S``; ``K = 24`` for two hops, the 16 ring columns
  of :data:`utils.healpix.TWO_HOP_RING_OFFSETS` after them). On patches (``pr >= 0``) the
  ``n = 4**pr`` rows and the indices are patch-local and shared by every patch; on the whole
  sphere (``pr < 0``, file name ``..._sphere_...``) ``n = 12 * 4**hr`` and indices are global.
* ``weight`` ``[P, n, K]`` ``float32``: 0 for a missing neighbour (outside the patch, or one of
  the 24 seven-neighbour pixels), whose ``index`` is then the pixel itself, so that a gather is
  always valid and the convolution adds nothing for it. ``identity`` weights are 1 otherwise and
  shared (``P = 1``); ``gaussian`` weights depend on the geometry of each patch
  (``P = 12 * 4**(hr - pr)``, one slice per patch; ``P = 1`` on the whole sphere).

DeepSphere graph (``deepsphere_graph_hr{hr}_pr{pr}_hops{h}_{weight}[_euclidean].npz``), for
``torch_geometric.nn.ChebConv``:

* ``edge_index`` ``[2, E]`` ``int64`` (source, target), the same neighbourhood as above,
  made symmetric, patch-local on patches;
* ``edge_weight`` ``[P, E]`` ``float32``: ``exp(-d^2 / (2 s^2))`` (``gaussian``) of the
  geodesic (or, with ``use_euclidean``, chord) distance ``d`` between pixel centres, ``s`` the
  mean edge length over the whole file, or 1 (``identity``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import healpy
import numpy as np

from utils.errors import OsloError
from utils.healpix import (
    MAX_RESOLUTION,
    all_neighbours,
    input_pixels,
    nside_of,
    num_directions,
    num_patches,
    patch_neighbours,
)
from utils.io import save_npz

FORMAT_VERSION = 1
WEIGHT_TYPES = ("identity", "gaussian")
DISTANCE_CHUNK = 1 << 22
"""Edges per chunk when computing distances (bounds temporaries to about 200 MB)."""


def check_resolutions(healpix_res: int, patch_res: int) -> None:
    """Raise :class:`OsloError` unless ``0 <= hr <= 13`` and ``pr <= hr`` (``pr < 0``: sphere)."""
    if not 0 <= healpix_res <= MAX_RESOLUTION:
        raise OsloError(f"HEALPix resolution {healpix_res} is outside 0..{MAX_RESOLUTION}")
    if patch_res > healpix_res:
        raise OsloError(
            f"patch resolution {patch_res} is above the HEALPix resolution {healpix_res}"
        )


def _pr_tag(patch_res: int) -> str:
    return "sphere" if patch_res < 0 else f"pr{patch_res}"


def oslo_structure_filename(
    healpix_res: int, patch_res: int, num_hops: int, weight_type: str = "identity"
) -> str:
    """File name of an OSLO structure, e.g. ``oslo_struct_hr10_pr8_hops2.npz``."""
    suffix = "" if weight_type == "identity" else f"_{weight_type}"
    return f"oslo_struct_hr{healpix_res}_{_pr_tag(patch_res)}_hops{num_hops}{suffix}.npz"


def deepsphere_graph_filename(
    healpix_res: int,
    patch_res: int,
    num_hops: int = 1,
    weight_type: str = "gaussian",
    use_euclidean: bool = False,
) -> str:
    """File name of a DeepSphere graph, e.g. ``deepsphere_graph_hr10_pr8_hops1_gaussian.npz``."""
    metric = "_euclidean" if use_euclidean else ""
    return (
        f"deepsphere_graph_hr{healpix_res}_{_pr_tag(patch_res)}_hops{num_hops}"
        f"_{weight_type}{metric}.npz"
    )


def neighbour_table(healpix_res: int, patch_res: int, num_hops: int) -> np.ndarray:
    """``[n, K]`` neighbour indices, -1 where missing: patch-local if ``pr >= 0``, else global."""
    if patch_res < 0:
        return all_neighbours(healpix_res, num_hops=num_hops)
    return patch_neighbours(patch_res, num_hops)


def _checked_table(
    healpix_res: int, patch_res: int, num_hops: int, weight_type: str
) -> tuple[int, np.ndarray]:
    """Check a build request; returns ``pr`` (``-1`` for the sphere) and its ``[n, K]`` table.

    Raises :class:`OsloError` unless ``0 <= hr <= 13`` and ``pr <= hr``
    (:func:`check_resolutions`) and ``weight_type`` is one of :data:`WEIGHT_TYPES`. The table is
    :func:`neighbour_table`'s: patch-local indices for ``pr >= 0``, global ones on the whole
    sphere, -1 where a neighbour is missing.
    """
    check_resolutions(healpix_res, patch_res)
    if weight_type not in WEIGHT_TYPES:
        raise OsloError(f"unknown weight type '{weight_type}' (choose from {WEIGHT_TYPES})")
    patch_res = max(patch_res, -1)
    return patch_res, neighbour_table(healpix_res, patch_res, num_hops)


def edge_distances(
    healpix_res: int,
    patch_res: int,
    source: np.ndarray,
    target: np.ndarray,
    use_euclidean: bool = False,
) -> np.ndarray:
    """Distances ``[P, E]`` between the centres of pixels ``source[e]`` and ``target[e]``.

    ``source``/``target`` are patch-local indices (``pr >= 0``; one row per patch) or global
    ones (``pr < 0``; ``P = 1``). Geodesic distance (radians, ``2 asin(chord / 2)``) or, with
    ``use_euclidean``, the chord between unit vectors.
    """
    nside = nside_of(healpix_res)
    if patch_res < 0:
        starts, size = np.zeros(1, dtype=np.int64), 0
    else:
        size = 4**patch_res
        starts = np.arange(num_patches(healpix_res, patch_res), dtype=np.int64) * size
    out = np.empty((len(starts), len(source)), dtype=np.float32)
    patches_per_chunk = max(1, DISTANCE_CHUNK // max(1, len(source)))
    for first in range(0, len(starts), patches_per_chunk):
        offset = starts[first : first + patches_per_chunk, None]
        for lo in range(0, len(source), DISTANCE_CHUNK):
            src = (offset + source[lo : lo + DISTANCE_CHUNK]).ravel()
            dst = (offset + target[lo : lo + DISTANCE_CHUNK]).ravel()
            a = np.stack(healpy.pix2vec(nside, src, nest=True))
            b = np.stack(healpy.pix2vec(nside, dst, nest=True))
            chord = np.sqrt(((a - b) ** 2).sum(axis=0))
            dist = chord if use_euclidean else 2 * np.arcsin(np.minimum(chord / 2, 1.0))
            out[first : first + len(offset), lo : lo + DISTANCE_CHUNK] = dist.reshape(
                len(offset), -1
            )
    return out


def gaussian_weights(distances: np.ndarray) -> tuple[np.ndarray, float]:
    """``exp(-d^2 / (2 s^2))`` with ``s`` the mean of ``distances``; returns (weights, s)."""
    sigma = float(distances.mean(dtype=np.float64)) if distances.size else 1.0
    return np.exp(-(distances**2) / np.float32(2 * sigma**2)).astype(np.float32), sigma


@dataclass(frozen=True)
class OsloStructure:
    """A loaded OSLO neighbour structure; see the module docstring for the arrays."""

    index: np.ndarray
    weight: np.ndarray
    healpix_res: int
    patch_res: int
    num_hops: int
    weight_type: str = "identity"

    @property
    def is_patch(self) -> bool:
        """True for a patch-local structure, False for the whole sphere."""
        return self.patch_res >= 0

    @property
    def valid(self) -> np.ndarray:
        """``[n, K]`` True where the neighbour exists (in the first weight slice)."""
        return self.weight[0] != 0

    def with_hops(self, num_hops: int) -> OsloStructure:
        """The same structure restricted to ``num_hops`` (the first ``8`` columns for one hop)."""
        if num_hops == self.num_hops:
            return self
        if num_hops > self.num_hops:
            raise ValueError(f"a {self.num_hops}-hop structure has no {num_hops}-hop ring")
        k = num_directions(num_hops)
        return OsloStructure(
            self.index[:, :k], self.weight[..., :k], self.healpix_res, self.patch_res, num_hops,
            self.weight_type,
        )


def build_oslo_structure(
    healpix_res: int,
    patch_res: int,
    num_hops: int = 2,
    weight_type: str = "identity",
    use_euclidean: bool = False,
) -> OsloStructure:
    """Build the OSLO structure of one ``(hr, pr)`` pair (``pr < 0``: whole sphere)."""
    patch_res, table = _checked_table(healpix_res, patch_res, num_hops, weight_type)
    valid = table >= 0
    rows = np.broadcast_to(np.arange(len(table), dtype=np.int64)[:, None], table.shape)
    index = np.where(valid, table, rows)
    if weight_type == "identity":
        weight = valid.astype(np.float32)[None]
    else:
        dist = edge_distances(
            healpix_res, patch_res, rows[valid], index[valid], use_euclidean
        )
        values, _ = gaussian_weights(dist)
        weight = np.zeros((len(values), *table.shape), dtype=np.float32)
        weight[:, valid] = values
    return OsloStructure(index, weight, healpix_res, patch_res, num_hops, weight_type)


def _metadata(kind: str, healpix_res: int, patch_res: int, num_hops: int, **extra) -> dict:
    """What a structure file holds (``kind`` ``"oslo"`` or ``"deepsphere"``, NESTED ordering,
    the resolutions, the hops and ``extra``): written with it, checked when it is loaded."""
    return dict(
        kind=kind, ordering="nested", healpix_res=healpix_res, patch_res=patch_res,
        num_hops=num_hops, **extra,
    )


def _save(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``arrays``, then ``meta`` with :data:`FORMAT_VERSION`, atomically to ``path``."""
    # the key order is the archive's member order: kind, format_version, then the rest
    meta = {"kind": meta["kind"], "format_version": FORMAT_VERSION, **meta}
    save_npz(path, **arrays, **{key: np.asarray(value) for key, value in meta.items()})
    return path


def save_oslo_structure(folder: str | os.PathLike, structure: OsloStructure) -> Path:
    """Write ``structure`` atomically into ``folder``; returns the file's path."""
    s = structure
    return _save(
        Path(folder) / oslo_structure_filename(
            s.healpix_res, s.patch_res, s.num_hops, s.weight_type
        ),
        dict(index=s.index, weight=s.weight),
        _metadata("oslo", s.healpix_res, s.patch_res, s.num_hops, weight_type=s.weight_type),
    )


def _open_checked(path: Path, expected: dict, arrays: tuple[str, ...]) -> dict:
    """Load ``path`` and check its metadata against ``expected``; :class:`OsloError` if not."""
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise OsloError(f"cannot read structure file '{path}': {error}") from None
    missing = [k for k in (*arrays, *expected, "format_version") if k not in content]
    if missing:
        raise OsloError(f"structure file '{path}' lacks {missing}: not a file of this toolkit")
    if int(content["format_version"]) != FORMAT_VERSION:
        raise OsloError(
            f"structure file '{path}' has format version {int(content['format_version'])}, "
            f"this toolkit reads version {FORMAT_VERSION}: rebuild it"
        )
    for key, want in expected.items():
        got = content[key].item()
        if got != want:
            raise OsloError(f"structure file '{path}' has {key}={got}, expected {want}")
    return content


def load_oslo_structure(
    folder: str | os.PathLike,
    healpix_res: int,
    patch_res: int,
    num_hops: int = 1,
    weight_type: str = "identity",
) -> OsloStructure:
    """Load the OSLO structure of ``(hr, pr)`` for ``num_hops`` from ``folder``.

    A two-hop file serves a one-hop request (its first 8 columns). Raises :class:`OsloError`,
    naming the command that creates it, if no file fits, and if the file's metadata or shapes
    do not match the request.
    """
    patch_res = max(patch_res, -1)
    folder = Path(folder)
    for hops in range(num_hops, 3):
        path = folder / oslo_structure_filename(healpix_res, patch_res, hops, weight_type)
        if path.is_file():
            break
    else:
        weight_flag = "" if weight_type == "identity" else f" -w {weight_type}"
        raise OsloError(
            f"no {num_hops}-hop OSLO structure for (hr={healpix_res}, pr={patch_res}) in "
            f"'{folder}': create it with python generate_and_save_healpix_oslo_struct.py "
            f"-o {folder} -hr {healpix_res} -pr {patch_res} -nh {num_hops}{weight_flag}"
        )
    expected = _metadata("oslo", healpix_res, patch_res, hops, weight_type=weight_type)
    content = _open_checked(path, expected, ("index", "weight"))
    index, weight = content["index"], content["weight"]
    rows = input_pixels(healpix_res, patch_res)
    if index.shape != (rows, num_directions(hops)) or weight.shape[1:] != index.shape:
        raise OsloError(
            f"structure file '{path}' has arrays {index.shape} and {weight.shape}, "
            f"expected [{rows}, {num_directions(hops)}]: rebuild it"
        )
    structure = OsloStructure(index, weight, healpix_res, patch_res, hops, weight_type)
    return structure.with_hops(num_hops)


@dataclass(frozen=True)
class DeepSphereGraph:
    """A loaded DeepSphere graph; see the module docstring for the arrays."""

    edge_index: np.ndarray
    edge_weight: np.ndarray
    healpix_res: int
    patch_res: int
    num_hops: int
    weight_type: str
    use_euclidean: bool
    sigma: float

    @property
    def num_nodes(self) -> int:
        """Nodes of one graph: ``4**pr`` on patches, ``12 * 4**hr`` on the whole sphere."""
        return input_pixels(self.healpix_res, self.patch_res)


def build_deepsphere_graph(
    healpix_res: int,
    patch_res: int,
    num_hops: int = 1,
    weight_type: str = "gaussian",
    use_euclidean: bool = False,
) -> DeepSphereGraph:
    """Build the DeepSphere graph of one ``(hr, pr)`` pair (``pr < 0``: whole sphere)."""
    patch_res, table = _checked_table(healpix_res, patch_res, num_hops, weight_type)
    rows, cols = np.nonzero(table >= 0)
    source, target = rows.astype(np.int64), table[rows, cols]
    n = np.int64(len(table))
    keys = np.unique(np.concatenate([source * n + target, target * n + source]))  # symmetric
    source, target = keys // n, keys % n
    pairs = np.stack([source, target])
    if weight_type == "identity":
        weight, sigma = np.ones((1, pairs.shape[1]), dtype=np.float32), 1.0
    else:
        dist = edge_distances(healpix_res, patch_res, source, target, use_euclidean)
        weight, sigma = gaussian_weights(dist)
    return DeepSphereGraph(
        pairs, weight, healpix_res, patch_res, num_hops, weight_type,
        use_euclidean, sigma,
    )


def save_deepsphere_graph(folder: str | os.PathLike, graph: DeepSphereGraph) -> Path:
    """Write ``graph`` atomically into ``folder``; returns the file's path."""
    g = graph
    return _save(
        Path(folder) / deepsphere_graph_filename(
            g.healpix_res, g.patch_res, g.num_hops, g.weight_type, g.use_euclidean
        ),
        dict(edge_index=g.edge_index, edge_weight=g.edge_weight),
        _metadata(
            "deepsphere", g.healpix_res, g.patch_res, g.num_hops, weight_type=g.weight_type,
            use_euclidean=g.use_euclidean, sigma=g.sigma,
        ),
    )


def load_deepsphere_graph(
    folder: str | os.PathLike,
    healpix_res: int,
    patch_res: int,
    num_hops: int = 1,
    weight_type: str = "gaussian",
    use_euclidean: bool = False,
) -> DeepSphereGraph:
    """Load a DeepSphere graph from ``folder``; :class:`OsloError` if missing or mismatched."""
    patch_res = max(patch_res, -1)
    path = Path(folder) / deepsphere_graph_filename(
        healpix_res, patch_res, num_hops, weight_type, use_euclidean
    )
    if not path.is_file():
        euclid = " --use-euclidean" if use_euclidean else ""
        raise OsloError(
            f"no DeepSphere graph for (hr={healpix_res}, pr={patch_res}) in '{folder}': create "
            f"it with python generate_and_save_healpix_deepsphere_graph.py -o {folder} "
            f"-hr {healpix_res} -pr {patch_res} -nh {num_hops} -w {weight_type}{euclid}"
        )
    expected = _metadata(
        "deepsphere", healpix_res, patch_res, num_hops, weight_type=weight_type,
        use_euclidean=use_euclidean,
    )
    content = _open_checked(path, expected, ("edge_index", "edge_weight", "sigma"))
    graph = DeepSphereGraph(
        content["edge_index"], content["edge_weight"], healpix_res, patch_res, num_hops,
        weight_type, use_euclidean, float(content["sigma"]),
    )
    sets = (1, num_patches(healpix_res, patch_res)) if patch_res >= 0 else (1,)
    edges, weights = graph.edge_index, graph.edge_weight
    if (
        edges.ndim != 2 or edges.shape[0] != 2 or weights.ndim != 2
        or weights.shape[1] != edges.shape[1] or weights.shape[0] not in sets
        or (edges.size and (edges.min() < 0 or edges.max() >= graph.num_nodes))
    ):
        raise OsloError(f"graph file '{path}' has inconsistent arrays: rebuild it")
    return graph
