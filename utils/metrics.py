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
  size, unless ``resample=True``: then an ERP original of another size is sampled bilinearly
  at the pixel centres of the reconstruction's ERP grid (:func:`utils.sampling.resample_erp`,
  rounded to ``uint8`` when the original is ``uint8``), as an ERP original is sampled on a
  HEALPix grid (the planar CompressAI baseline codes that image).
* Beyond the paper (:func:`extra_metrics`): CPP-PSNR, the plain PSNR over the pixels inside the
  boundary of a Craster parabolic projection of the original's ERP size (:func:`cpp_angles`),
  and viewport PSNR, the mean PSNR (dB) of 14 rectilinear 90-degree viewports
  (:data:`VIEWPORT_DIRECTIONS_DEG`, :func:`viewport_angles`); both sample the two images
  bilinearly, as S-PSNR does; and the seam ratio of patch-wise coding on HEALPix
  (:func:`utils.seams.seam_ratio`: mean absolute error at the patch borders over that inside).
"""

from __future__ import annotations

import math

import healpy
import numpy as np

from utils.healpix import nside_of, res_of_npix
from utils.sampling import (
    bilinear_erp,
    erp_coordinates,
    erp_to_healpix,
    healpix_to_erp,
    resample_erp,
)
from utils.seams import seam_ratio
from utils.visualization import BT601_LUMA

PEAK = 255.0
PROJECTIONS = ("erp", "healpix")
METRIC_NAMES = ("s_psnr_y", "ws_psnr_y", "s_psnr_rgb", "ws_psnr_rgb")

_CHUNK = 1 << 17


def psnr(mse: float, peak: float = PEAK) -> float:
    """``10 log10(peak^2 / mse)``; ``math.inf`` for ``mse == 0`` (``peak=1.0`` for values in
    [0, 1])."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def pixel_psnr(original: np.ndarray, reconstruction: np.ndarray, peak: float = PEAK) -> float:
    """:func:`psnr` of the plain MSE over all pixels and channels of two arrays of one shape
    (e.g. ``uint8`` HEALPix maps ``[npix, 3]``, whose pixels have equal areas), in ``float64``."""
    diff = original.astype(np.float64) - reconstruction.astype(np.float64)
    return psnr(float(np.mean(diff * diff)), peak)


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
    threads: int = 2, resample: bool = False,
) -> np.ndarray:
    """The original on the reconstruction's grid (module docstring); ``ValueError`` on a size
    mismatch between two grids of the same projection, unless ``resample`` (ERP only): then
    :func:`utils.sampling.resample_erp` puts the original on the reconstruction's ERP grid."""
    if original_projection == projection:
        if resample and projection == "erp" and original.shape[:2] != reconstruction.shape[:2]:
            return resample_erp(original, reconstruction.shape[1], reconstruction.shape[0])
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
    lat_deg: np.ndarray, lon_deg: np.ndarray, threads: int = 2, resample: bool = False,
) -> dict[str, float]:
    """S-PSNR and WS-PSNR on Y and RGB, keyed by :data:`METRIC_NAMES`; ``resample`` lets two
    ERP images differ in size (:func:`to_grid_of`)."""
    s_y, s_rgb = s_mse(original, original_projection, reconstruction, projection,
                       lat_deg, lon_deg)
    reference = to_grid_of(original, original_projection, reconstruction, projection, threads,
                           resample)
    ws_y, ws_rgb = ws_mse(reference, reconstruction, projection)
    return {"s_psnr_y": psnr(s_y), "ws_psnr_y": psnr(ws_y),
            "s_psnr_rgb": psnr(s_rgb), "ws_psnr_rgb": psnr(ws_rgb)}


# --- CPP-PSNR and viewport PSNR (beyond the paper; compute_spherical_psnr.py --metrics) ---

EXTRA_METRICS = {"cpp": ("cpp_psnr_y", "cpp_psnr_rgb"), "viewport": ("vp_psnr_y", "vp_psnr_rgb"),
                 "seams": ("seam_ratio",)}
"""Optional metrics by name, and their result keys."""

VIEWPORT_SIZE = 256
VIEWPORT_FOV_DEG = 90.0
_CORNER_LAT = math.degrees(math.asin(1 / math.sqrt(3)))
VIEWPORT_DIRECTIONS_DEG = (
    (0.0, 0.0), (0.0, 90.0), (0.0, 180.0), (0.0, -90.0), (90.0, 0.0), (-90.0, 0.0),
    *((lat, lon) for lat in (_CORNER_LAT, -_CORNER_LAT) for lon in (45.0, 135.0, -135.0, -45.0)),
)
"""The 14 viewport centres ``(latitude, longitude)`` in degrees: the 6 cube-face directions
(``+-x, +-y, +-z``) and the 8 cube-corner directions ``(+-1, +-1, +-1) / sqrt(3)``
(latitude ``+-asin(1/sqrt 3) = +-35.26`` degrees, longitudes ``+-45, +-135``)."""


def erp_equivalent_size(
    original: np.ndarray, original_projection: str, reconstruction: np.ndarray, projection: str,
) -> tuple[int, int]:
    """``(W, H)`` of the original's ERP grid: its own size if it is ERP, else the
    reconstruction's if that is ERP, else ``H = round(sqrt(npix / 2))``, ``W = 2H`` (about as
    many pixels as the HEALPix map)."""
    for data, proj in ((original, original_projection), (reconstruction, projection)):
        if proj == "erp":
            return data.shape[1], data.shape[0]
    height = max(1, round(math.sqrt(len(original) / 2)))
    return 2 * height, height


def cpp_angles(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Colatitude and longitude ``(theta, phi)`` of the CPP pixels inside the CPP boundary.

    Craster parabolic projection (CPP) as in 360Lib, in coordinates normalised to ``[-1, 1]``
    (``x`` right, ``y`` up; up to scale, ``x = lon * (2 cos(2 lat / 3) - 1)`` and
    ``y = pi sin(lat / 3)``)::

        X = lon / pi * (2 cos(2 lat / 3) - 1),   Y = 2 sin(lat / 3)

    Pixel ``(m, n)`` of a ``W x H`` CPP image (row 0 at the top) has ``X = (m + 0.5) / W * 2 - 1``
    and ``Y = 1 - (n + 0.5) / H * 2``; the inverse is ``lat = 3 asin(Y / 2)``,
    ``lon = pi X / (2 cos(2 lat / 3) - 1)``, and the pixel is inside the boundary when
    ``|lon| <= pi``. CPP is equal-area, so every inside pixel has the same weight.
    """
    x = (np.arange(width) + 0.5) * (2.0 / width) - 1.0
    y = 1.0 - (np.arange(height) + 0.5) * (2.0 / height)
    lat = 3.0 * np.arcsin(y / 2.0)
    scale = 2.0 * np.cos(2.0 * lat / 3.0) - 1.0
    lon = math.pi * x[None, :] / scale[:, None]
    inside = np.abs(lon) <= math.pi
    theta = np.broadcast_to((math.pi / 2 - lat)[:, None], lon.shape)[inside]
    return theta, lon[inside]


def cpp_mse(
    original: np.ndarray, original_projection: str,
    reconstruction: np.ndarray, projection: str,
) -> tuple[float, float]:
    """CPP-PSNR's MSE ``(Y, RGB)``: both images resampled bilinearly (:func:`sample`) on the
    CPP grid of :func:`erp_equivalent_size` (:func:`cpp_angles`), plain MSE over the pixels
    inside the CPP boundary."""
    width, height = erp_equivalent_size(original, original_projection, reconstruction,
                                        projection)
    theta, phi = cpp_angles(width, height)
    sum_y = sum_rgb = 0.0
    for start in range(0, len(theta), _CHUNK):  # chunks of pixels bound the temporaries
        part = slice(start, start + _CHUNK)
        err_y, err_rgb = squared_errors(
            sample(original, original_projection, theta[part], phi[part]),
            sample(reconstruction, projection, theta[part], phi[part]))
        sum_y, sum_rgb = sum_y + float(err_y.sum()), sum_rgb + float(err_rgb.sum())
    return sum_y / len(theta), sum_rgb / len(theta)


def viewport_angles(
    lat_deg: float, lon_deg: float, size: int = VIEWPORT_SIZE, fov_deg: float = VIEWPORT_FOV_DEG,
) -> tuple[np.ndarray, np.ndarray]:
    """Colatitude and longitude ``(theta, phi)`` ``[size * size]`` of the pixels of a
    rectilinear (gnomonic) viewport centred at ``(lat_deg, lon_deg)``.

    With the forward axis ``f = (cos lat cos lon, cos lat sin lon, sin lat)``, the right axis
    ``r = (-sin lon, cos lon, 0)`` and the up axis ``u = f x r``, pixel ``(i, j)`` (row ``i``
    from the top) looks along ``f + a r + b u`` with ``a = (2 (j + 0.5) / size - 1) t``,
    ``b = (1 - 2 (i + 0.5) / size) t``, ``t = tan(fov / 2)``; then ``theta = acos(z)``,
    ``phi = atan2(y, x)`` of the normalised direction.
    """
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    forward = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon),
                        math.sin(lat)])
    right = np.array([-math.sin(lon), math.cos(lon), 0.0])
    up = np.cross(forward, right)
    t = math.tan(math.radians(fov_deg) / 2)
    steps = ((np.arange(size) + 0.5) * (2.0 / size) - 1.0) * t
    a, b = np.meshgrid(steps, -steps)
    rays = forward + a.reshape(-1, 1) * right + b.reshape(-1, 1) * up
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    return np.arccos(np.clip(rays[:, 2], -1.0, 1.0)), np.arctan2(rays[:, 1], rays[:, 0])


def viewport_psnr(
    original: np.ndarray, original_projection: str,
    reconstruction: np.ndarray, projection: str,
    size: int = VIEWPORT_SIZE, fov_deg: float = VIEWPORT_FOV_DEG,
) -> tuple[float, float]:
    """Viewport PSNR ``(Y, RGB)``: the mean, over the 14 viewports of
    :data:`VIEWPORT_DIRECTIONS_DEG` (:func:`viewport_angles`, ``size x size`` pixels, ``fov``
    degrees), of the PSNR between the two images sampled bilinearly (:func:`sample`) on the
    viewport. The mean is over the dB values, so it is ``inf`` as soon as one viewport has no
    error (identical inputs give ``inf``)."""
    psnr_y, psnr_rgb = [], []
    for lat_deg, lon_deg in VIEWPORT_DIRECTIONS_DEG:
        theta, phi = viewport_angles(lat_deg, lon_deg, size, fov_deg)
        err_y, err_rgb = squared_errors(sample(original, original_projection, theta, phi),
                                        sample(reconstruction, projection, theta, phi))
        psnr_y.append(psnr(float(err_y.mean())))
        psnr_rgb.append(psnr(float(err_rgb.mean())))
    return float(np.mean(psnr_y)), float(np.mean(psnr_rgb))


def extra_metrics(
    names: tuple[str, ...] | list[str],
    original: np.ndarray, original_projection: str,
    reconstruction: np.ndarray, projection: str,
    seam_patch_res: int | None = None, seam_width: int = 1,
) -> dict[str, float]:
    """The optional metrics ``names`` (keys of :data:`EXTRA_METRICS`), keyed by their result
    names (``cpp_psnr_y``, ``cpp_psnr_rgb``, ``vp_psnr_y``, ``vp_psnr_rgb``, ``seam_ratio``).

    ``seams`` is :func:`utils.seams.seam_ratio` at patch resolution ``seam_patch_res`` and
    border width ``seam_width``, on a HEALPix reconstruction against the original on its grid
    (:func:`to_grid_of`: an ERP original is sampled as step 1 does); ``ValueError`` for an ERP
    reconstruction or no ``seam_patch_res``."""
    results = {}
    for name in names:
        if name == "cpp":
            values = tuple(psnr(m) for m in cpp_mse(original, original_projection,
                                                     reconstruction, projection))
        elif name == "viewport":
            values = viewport_psnr(original, original_projection, reconstruction, projection)
        elif name == "seams":
            if projection != "healpix" or seam_patch_res is None:
                raise ValueError("seams needs a HEALPix reconstruction and a patch resolution")
            reference = to_grid_of(original, original_projection, reconstruction, projection)
            values = (seam_ratio(reference, reconstruction, seam_patch_res, seam_width),)
        else:
            raise ValueError(f"metric must be one of {tuple(EXTRA_METRICS)}, got {name!r}")
        results.update(zip(EXTRA_METRICS[name], values, strict=True))
    return results
