"""ERP <-> HEALPix resampling against closed-form smooth functions on the sphere."""

import healpy
import numpy as np
import pytest

from utils.sampling import erp_pixel_angles, erp_to_healpix, healpix_to_erp


def smooth_field(theta, phi):
    """A smooth function of the point on the unit sphere (no singularity at the poles)."""
    x, y, z = np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)
    return 128 + 60 * x + 40 * y * z - 30 * z + 20 * x * y


def smooth_erp(width, height):
    theta, lon = erp_pixel_angles(width, height)
    return smooth_field(theta[:, None], lon[None, :])


def test_erp_convention_pixel_centres():
    theta, lon = erp_pixel_angles(8, 4)
    np.testing.assert_allclose(theta, (np.arange(4) + 0.5) * np.pi / 4)
    np.testing.assert_allclose(lon, (np.arange(8) + 0.5) * 2 * np.pi / 8 - np.pi)


def test_sampling_a_smooth_erp_reproduces_the_function_at_pixel_centres():
    """Bilinear sampling of a 1024x512 ERP: max error below 0.25 (values span about 0..255),
    most of it within half a row of the poles, where latitude is clamped."""
    res = 6
    image = smooth_erp(1024, 512)
    sampled = erp_to_healpix(image, res)
    theta, phi = healpy.pix2ang(2**res, np.arange(12 * 4**res), nest=True)
    error = np.abs(sampled - smooth_field(theta, phi))
    assert error.max() < 0.25
    assert np.sqrt((error**2).mean()) < 0.01


def test_sampling_uint8_rgb_rounds_each_channel():
    res = 5
    base = smooth_erp(512, 256)
    image = np.clip(np.rint(np.stack([base, 255 - base, base / 2], axis=-1)), 0, 255).astype(
        np.uint8
    )
    sampled = erp_to_healpix(image, res, chunk=1000, threads=2)
    assert sampled.dtype == np.uint8 and sampled.shape == (12 * 4**res, 3)
    exact = erp_to_healpix(image.astype(np.float64), res)
    # equal to the rounded float64 result, except at ties (x.5, frequent here because HEALPix
    # centres often fall half-way between ERP columns) that float32 may round either way
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    np.testing.assert_array_equal(sampled[~tie], np.rint(exact[~tie]).astype(np.uint8))
    assert np.abs(sampled[tie].astype(float) - exact[tie]).max() <= 0.501


def test_sampling_wraps_in_longitude():
    """A seam at longitude +-pi must not appear: columns 0 and W-1 are neighbours."""
    width, height = 64, 32
    _, lon = erp_pixel_angles(width, height)
    image = np.tile(np.cos(lon)[None, :], (height, 1))  # continuous across the seam
    res = 4
    _, phi = healpy.pix2ang(2**res, np.arange(12 * 4**res), nest=True)
    seam = np.abs(np.abs(np.mod(phi + np.pi, 2 * np.pi) - np.pi) - np.pi) < np.pi / width
    sampled = erp_to_healpix(image, res)
    assert seam.any()
    np.testing.assert_allclose(sampled[seam], np.cos(phi[seam]), atol=0.01)


def test_healpix_to_erp_to_healpix_round_trip_of_a_smooth_map_loses_little():
    """A res-7 map resampled to a 1024x512 ERP and back: RMS error below 0.1, max below 0.6
    (on a 0..255 scale)."""
    res = 7
    theta, phi = healpy.pix2ang(2**res, np.arange(12 * 4**res), nest=True)
    hp_map = smooth_field(theta, phi)
    erp = healpix_to_erp(hp_map, 1024)
    assert erp.shape == (512, 1024)
    np.testing.assert_allclose(erp, smooth_erp(1024, 512), atol=1.0)
    back = erp_to_healpix(erp, res)
    error = np.abs(back - hp_map)
    assert np.sqrt((error**2).mean()) < 0.1
    assert error.max() < 0.6


@pytest.mark.parametrize("channels", [1, 3])
def test_healpix_to_erp_shapes_and_dtype(channels):
    hp_map = np.random.default_rng(0).integers(0, 256, (12 * 4**3, channels), dtype=np.uint8)
    erp = healpix_to_erp(hp_map, 64, chunk_rows=5)
    assert erp.shape == (32, 64, channels) and erp.dtype == np.uint8
    np.testing.assert_array_equal(erp, healpix_to_erp(hp_map, 64))
