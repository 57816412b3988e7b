"""Seams of patch-wise coding: the reconstruction error at patch borders against the interior.

A map of resolution ``hr`` coded patch by patch at patch resolution ``pr`` is cut into
``12 * 4**(hr - pr)`` squares of ``2**pr x 2**pr`` pixels (:mod:`utils.healpix`: patch ``k`` is
the NESTED pixels ``[k * 4**pr, (k + 1) * 4**pr)``). A pixel of face-local coordinates
``(x, y)`` (:func:`utils.healpix.nest_to_xyf`) sits at ``(x mod 2**pr, y mod 2**pr)`` inside
its patch; it is a *border* pixel, for a border ``width`` ``w``, when one of these is in
``[0, w)`` or ``[2**pr - w, 2**pr)``, else an *interior* pixel. ``pr = hr`` makes the patches
the 12 base faces, whose borders are the face edges.

The seam ratio compares the mean absolute error of the two sets (:func:`seam_ratio`): about
1.0 when the coding leaves no seam, above 1.0 when the errors grow at the patch borders.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from utils.errors import OsloError
from utils.healpix import nest_to_xyf, nside_of, num_patches, res_of_npix

_CHUNK = 1 << 18
"""Pixels per chunk of :func:`seam_ratio` (bounds its ``float64`` temporaries)."""

RUN_CONFIG = "config.txt"
"""The run configuration written by ``main_sphere_compression.py`` (:func:`spherical_models.
training.logs.write_config`: ``name = value`` lines)."""


def _check_patch(healpix_res: int, patch_res: int, width: int) -> None:
    """:class:`OsloError` unless ``0 <= patch_res <= healpix_res`` and ``width >= 1``."""
    if not 0 <= patch_res <= healpix_res:
        raise OsloError(f"seam patch resolution must be in 0..{healpix_res} (the map's "
                        f"resolution), got {patch_res}")
    if width < 1:
        raise OsloError(f"seam width must be at least 1 pixel, got {width}")


def patch_border_mask(healpix_res: int, patch_res: int, width: int = 1) -> np.ndarray:
    """Border pixels ``[12 * 4**hr]`` (``bool``, NESTED) of the patches of resolution ``pr``.

    ``mask[p]`` is True when ``x mod 2**pr`` or ``y mod 2**pr`` (face-local ``(x, y)`` of
    ``p``) is in ``[0, width)`` or ``[2**pr - width, 2**pr)``. The low ``2 pr`` bits of a
    NESTED index interleave the low ``pr`` bits of ``x`` and ``y``, so the mask is the mask of
    patch 0 (``4**pr`` pixels) repeated for every patch. ``2 * width >= 2**pr`` marks every
    pixel. :class:`OsloError` unless ``0 <= pr <= hr`` and ``width >= 1``.
    """
    _check_patch(healpix_res, patch_res, width)
    side = nside_of(patch_res)
    x, y, _ = nest_to_xyf(patch_res, np.arange(4**patch_res, dtype=np.int64))
    border = (np.minimum(x, side - 1 - x) < width) | (np.minimum(y, side - 1 - y) < width)
    return np.tile(border, num_patches(healpix_res, patch_res))


def seam_ratio(
    original: np.ndarray, reconstruction: np.ndarray, patch_res: int, width: int = 1,
) -> float:
    """Mean absolute error at the patch borders over that of the patch interiors.

    With ``e[p, c] = |original[p, c] - reconstruction[p, c]|`` (grey levels, ``float64``: the
    sums of integer maps are exact), ``B`` the border pixels of :func:`patch_border_mask` and
    ``I`` the others::

        seam_ratio = (sum_{p in B, c} e[p, c] / (|B| C)) / (sum_{p in I, c} e[p, c] / (|I| C))

    Args:
        original, reconstruction: NESTED HEALPix maps ``[12 * 4**hr, C]`` (or ``[12 * 4**hr]``)
            of one shape, any numeric dtype.
        patch_res: patch resolution ``pr`` of the coding, ``0 <= pr <= hr`` (``hr``: the faces).
        width: border width in pixels, ``2 * width < 2**pr`` (interior pixels must exist).

    Returns:
        The ratio: about 1.0 for a coding without seams. An error-free interior gives ``inf``
        if the border has errors, and ``nan`` (``0 / 0``) for identical maps.

    :class:`OsloError` (one line) for maps of different shapes, a pixel count that is no
    HEALPix map, ``pr`` outside ``0..hr``, ``width < 1``, or no interior pixel.
    """
    if original.shape != reconstruction.shape:
        raise OsloError(f"the original {list(original.shape)} and the reconstruction "
                        f"{list(reconstruction.shape)} differ in shape")
    try:
        healpix_res = res_of_npix(len(original))
    except ValueError as error:
        raise OsloError(f"seam ratio: {error}") from None
    _check_patch(healpix_res, patch_res, width)
    if 2 * width >= nside_of(patch_res):
        raise OsloError(f"seam width {width} leaves no interior pixel in patches of "
                        f"{nside_of(patch_res)}x{nside_of(patch_res)} pixels (patch resolution "
                        f"{patch_res})")
    border = patch_border_mask(healpix_res, patch_res, width)
    border_sum = total_sum = 0.0
    for start in range(0, len(original), _CHUNK):
        part = slice(start, start + _CHUNK)
        error = np.abs(original[part].astype(np.float64) - reconstruction[part])
        per_pixel = error.reshape(len(error), -1).sum(axis=1)
        border_sum += float(per_pixel[border[part]].sum())
        total_sum += float(per_pixel.sum())
    interior_sum = total_sum - border_sum
    if interior_sum == 0:
        return math.nan if border_sum == 0 else math.inf
    border_count = int(np.count_nonzero(border))
    return (border_sum / border_count) / (interior_sum / (len(border) - border_count))


def run_patch_res(folder: str | os.PathLike) -> tuple[int, Path]:
    """The patch resolution that a ``main_sphere_compression.py`` run codes with, and the
    ``config.txt`` it is read from: the nearest :data:`RUN_CONFIG` in ``folder`` or its
    parents, ``patch_res_valtest`` (``-prvt``) if recorded, else ``patch_res_train``
    (``-prt``), as step 4 defaults them.

    :class:`OsloError` if no ``config.txt`` is found, if the nearest one records neither, or if
    the run codes the whole sphere (``-prvt -1``: no patches).
    """
    folder = Path(folder).resolve()
    for directory in (folder, *folder.parents):
        path = directory / RUN_CONFIG
        if path.is_file():
            break
    else:
        raise OsloError(f"no run {RUN_CONFIG} in '{folder}' or its parents: give the patch "
                        "resolution (--seam-patch-res)")
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(" = ")
        if sep and not key.startswith("#"):
            values.setdefault(key.strip(), value.strip())
    for key in ("patch_res_valtest", "patch_res_train"):
        text = values.get(key, "None")
        if text == "None":
            continue
        try:
            patch_res = int(text)
        except ValueError:
            raise OsloError(f"'{path}' has {key} = {text}, not an integer") from None
        if patch_res < 0:
            raise OsloError(f"'{path}' codes the whole sphere ({key} = {patch_res}): give the "
                            "patch resolution (--seam-patch-res)")
        return patch_res, path
    raise OsloError(f"'{path}' records no patch_res_train: give the patch resolution "
                    "(--seam-patch-res)")
