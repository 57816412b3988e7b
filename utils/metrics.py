"""Quality of 360-degree images on the sphere: S-PSNR and WS-PSNR, on luma Y and on RGB.

Images are ERP (``[H, W, 3]``, the ERP convention of :mod:`utils.sampling`: column ``u`` at
longitude ``(u + 0.5) / W * 2pi - pi``, row ``v`` at colatitude ``(v + 0.5) / H * pi``) or
NESTED HEALPix maps (``[npix, 3]``), with values in [0, 255] (``uint8`` or float).

* PSNR: ``10 log10(255^2 / MSE)``. Identical inputs have ``MSE = 0`` and an **infinite** PSNR
  (``math.inf``, no cap).
* Y is BT.601 luma, ``Y = 0.299 R + 0.587 G + 0.114 B`` (:data:`utils.visualization.BT601_LUMA`),
  in floating point, not rounded. The RGB MSE is the mean over the three channels.
* S-PSNR (Yu et al., 2015): the MSE over a set of nearly uniform sphere points (360Lib's
  655,362 points, :mod:`utils.sphere_points`), each point interpolated bilinearly in both
  images: in an ERP image with :func:`utils.sampling.bilinear_erp` (wrap in longitude, clamp in
  latitude), in a HEALPix map with ``healpy.get_interp_weights(nest=True)`` (the 4 nearest
  pixel centres on the two nearest rings, as ``healpy.get_interp_val``).
* WS-PSNR (Sun et al., 2017): a weighted MSE over the pixels of one grid. On ERP, the weight of
  row ``v`` is ``cos(latitude) = sin(theta_v)``, ``theta_v = (v + 0.5) / H * pi``
  (``MSE = sum_v,u w_v e_vu^2 / (W sum_v w_v)``); on HEALPix every pixel has the same area, so
  the weights are equal and WS-PSNR is the plain PSNR over the pixels.
  :func:`spherical_psnr` puts both images on the reconstruction's grid first: an ERP original
  is sampled at the HEALPix pixel centres as in step 1 (:func:`utils.sampling.erp_to_healpix`,
  bilinear, rounded to ``uint8`` when the original is ``uint8``: exactly the map the codec
  coded), a HEALPix original is resampled on an ERP grid with
  :func:`utils.sampling.healpix_to_erp`. Two grids of the same projection must have the same
  size.
"""

from __future__ import annotations

import math

import healpy
import numpy as np

from utils.healpix import nside_of, res_of_npix
from utils.sampling import bilinear_erp, erp_coordinates, erp_to_healpix, healpix_to_erp
from utils.visualization import BT601_LUMA

PEAK = 255.0
PROJECTIONS = ("erp", "healpix")
METRIC_NAMES = ("s_psnr_y", "ws_psnr_y", "s_psnr_rgb", "ws_psnr_rgb")

_CHUNK = 1 << 17


def psnr(mse: float, peak: float = PEAK) -> float:
    """``10 log10(peak^2 / mse)``; ``math.inf`` for ``mse == 0``."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma ``[...]`` (``float64``) of RGB values ``[..., 3]``."""
    return rgb.astype(np.float64) @ BT601_LUMA.astype(np.float64)


def latlon_to_angles(lat_deg: np.ndarray, lon_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colatitude ``theta = pi/2 - lat`` and longitude ``phi`` (radians) of degrees."""
    return np.radians(90.0 - np.asarray(lat_deg)), np.radians(np.asarray(lon_deg))


def sample_erp(image: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Bilinear values ``[n, C]`` (``float32``) of an ERP image ``[H, W, C]`` at points."""
    height, width = image.shape[:2]
    u, v = erp_coordinates(theta, phi, width, height)
    return bilinear_erp(image, u, v)


def sample_healpix(hp_map: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Bilinear values ``[n, C]`` (``float32``) of a NESTED map ``[npix, C]`` at points
    (``healpy.get_interp_weights``, chunked)."""
    nside = nside_of(res_of_npix(len(hp_map)))
    out = np.empty((len(theta), hp_map.shape[1]), dtype=np.float32)
    for start in range(0, len(theta), _CHUNK):  # chunks of points bound the temporaries
        part = slice(start, start + _CHUNK)
        pix, weights = healpy.get_interp_weights(nside, theta[part], phi[part], nest=True)
        out[part] = np.einsum("kn,knc->nc", weights.astype(np.float32),
                              hp_map[pix].astype(np.float32))
    return out


def sample(data: np.ndarray, projection: str, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Bilinear values ``[n, C]`` of an ERP image or a HEALPix map at points."""
    if projection == "erp":
        return sample_erp(data, theta, phi)
    if projection == "healpix":
        return sample_healpix(data, theta, phi)
    raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")


def squared_errors(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared errors of luma ``[...]`` and mean squared error over RGB ``[...]`` (``float64``)
    of two RGB arrays ``[..., 3]``."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    return (diff @ BT601_LUMA.astype(np.float64)) ** 2, (diff**2).mean(axis=-1)


def s_mse(
    original: np.ndarray, original_projection: str,
    reconstruction: np.ndarray, projection: str,
    lat_deg: np.ndarray, lon_deg: np.ndarray,
) -> tuple[float, float]:
    """S-PSNR's MSE ``(Y, RGB)`` over the sphere points ``(lat_deg, lon_deg)`` (degrees)."""
    theta, phi = latlon_to_angles(lat_deg, lon_deg)
    err_y, err_rgb = squared_errors(sample(original, original_projection, theta, phi),
                                    sample(reconstruction, projection, theta, phi))
    return float(err_y.mean()), float(err_rgb.mean())


def erp_row_weights(height: int) -> np.ndarray:
    """WS-PSNR weights ``[H]`` of the ERP rows: ``cos(latitude) = sin((v + 0.5) / H * pi)``."""
    return np.sin((np.arange(height) + 0.5) * (math.pi / height))


def ws_mse(a: np.ndarray, b: np.ndarray, projection: str) -> tuple[float, float]:
    """WS-PSNR's weighted MSE ``(Y, RGB)`` of two images on the same grid: ERP ``[H, W, 3]``
    (``cos(latitude)`` row weights) or HEALPix ``[npix, 3]`` (equal weights).

    Runs over chunks of rows (ERP) or pixels (HEALPix) to bound the ``float64`` temporaries.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    if projection == "healpix":
        weights, step = np.ones(len(a)), _CHUNK
    elif projection == "erp":
        weights, step = erp_row_weights(a.shape[0]), max(1, _CHUNK // a.shape[1])
    else:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    sum_y = sum_rgb = 0.0
    for start in range(0, len(a), step):
        part = slice(start, start + step)
        err_y, err_rgb = squared_errors(a[part], b[part])
        if err_y.ndim == 2:  # ERP rows: sum each row first
            err_y, err_rgb = err_y.sum(axis=1), err_rgb.sum(axis=1)
        sum_y += float(weights[part] @ err_y)
        sum_rgb += float(weights[part] @ err_rgb)
    total = weights.sum() * (a.shape[1] if projection == "erp" else 1)
    return sum_y / total, sum_rgb / total


def to_grid_of(
    original: np.ndarray, original_projection: str, reconstruction: np.ndarray, projection: str,
    threads: int = 2,
) -> np.ndarray:
    """The original on the reconstruction's grid (module docstring); ``ValueError`` on a size
    mismatch between two grids of the same projection."""
    if original_projection == projection:
        if original.shape != reconstruction.shape:
            raise ValueError(f"the original is {original.shape} and the reconstruction "
                             f"{reconstruction.shape} (same projection '{projection}')")
        return original
    if projection == "healpix":
        return erp_to_healpix(original, res_of_npix(len(reconstruction)), threads=threads)
    height, width = reconstruction.shape[:2]
    return healpix_to_erp(original, width, height)


def spherical_psnr(
    original: np.ndarray, original_projection: str,
    reconstruction: np.ndarray, projection: str,
    lat_deg: np.ndarray, lon_deg: np.ndarray, threads: int = 2,
) -> dict[str, float]:
    """S-PSNR and WS-PSNR on Y and RGB, keyed by :data:`METRIC_NAMES`."""
    s_y, s_rgb = s_mse(original, original_projection, reconstruction, projection,
                       lat_deg, lon_deg)
    reference = to_grid_of(original, original_projection, reconstruction, projection, threads)
    ws_y, ws_rgb = ws_mse(reference, reconstruction, projection)
    return {"s_psnr_y": psnr(s_y), "ws_psnr_y": psnr(ws_y),
            "s_psnr_rgb": psnr(s_rgb), "ws_psnr_rgb": psnr(ws_rgb)}
