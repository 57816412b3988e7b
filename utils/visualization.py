"""Mollweide views of HEALPix maps, for looking at what the toolkit reads and writes.

The projection is healpy's :class:`healpy.projector.MollweideProj` in the *geographic*
orientation (``flipconv="geo"``: east to the right, longitude 0 in the centre), so the view of
a sampled ERP image looks like the image itself, not its mirror. Pixels outside the ellipse are
white. Images are written with Pillow: one image pixel per projected point, no axes.
"""

from __future__ import annotations

import os

import healpy
import numpy as np
from PIL import Image

from utils.healpix import nside_of, res_of_npix
from utils.io import atomic_path

BT601_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""Weights of R, G, B in the luma Y of ITU-R BT.601."""


def mollweide_pixels(res: int, width: int) -> np.ndarray:
    """NESTED pixel shown at each point of a ``[width // 2, width]`` Mollweide view, -1 outside.

    Row 0 is the top (north) of the view.
    """
    nside = nside_of(res)
    projector = healpy.projector.MollweideProj(xsize=width, flipconv="geo")
    pixels = projector.projmap(
        np.arange(12 * 4**res, dtype=np.float64),
        lambda x, y, z: healpy.vec2pix(nside, x, y, z, nest=True),
    )
    pixels = np.where(np.isfinite(pixels) & (pixels >= 0), pixels, -1).astype(np.int64)
    return pixels[::-1]  # projmap's row 0 is the bottom (south)


def to_gray(hp_map: np.ndarray) -> np.ndarray:
    """Luma ``[npix]`` (BT.601) of an RGB map ``[npix, 3]``; a one-channel map is returned as is."""
    if hp_map.ndim == 2 and hp_map.shape[1] == 3:
        return hp_map.astype(np.float32) @ BT601_LUMA
    return hp_map.reshape(len(hp_map)).astype(np.float32)


def mollweide_image(hp_map: np.ndarray, width: int, gray: bool = False) -> np.ndarray:
    """Mollweide view ``[width // 2, width, 3]`` (colour) or ``[width // 2, width]`` (gray).

    ``hp_map`` is a NESTED map ``[npix]``, ``[npix, 1]`` or ``[npix, 3]``, ``uint8`` or float in
    [0, 255]; values are rounded and clipped to ``uint8``. A one-channel map is gray.
    """
    pixels = mollweide_pixels(res_of_npix(len(hp_map)), width)
    values = to_gray(hp_map) if gray or hp_map.ndim == 1 or hp_map.shape[1] == 1 else hp_map
    values = np.clip(np.rint(values.astype(np.float32)), 0, 255).astype(np.uint8)
    view = values[np.maximum(pixels, 0)]
    view[pixels < 0] = 255
    return view


def save_mollweide(
    hp_map: np.ndarray, path: str | os.PathLike, width: int = 2000, gray: bool = False
) -> None:
    """Write the Mollweide view of ``hp_map`` as an image file (format from the extension)."""
    image = Image.fromarray(mollweide_image(hp_map, width, gray))
    with atomic_path(path, os.path.splitext(path)[1]) as tmp:
        image.save(tmp)
