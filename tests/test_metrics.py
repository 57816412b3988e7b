"""S-PSNR and WS-PSNR against closed forms: identical inputs, constant errors, ERP vs HEALPix."""

import math

import numpy as np
import pytest

from utils.metrics import METRIC_NAMES, erp_row_weights, psnr, spherical_psnr, ws_mse
from utils.sampling import erp_pixel_angles, erp_to_healpix
from utils.sphere_points import icosphere, xyz_to_latlon

WS_TOLERANCE_DB = 0.01
"""WS-PSNR of a smooth 1024x512 ERP pair vs the PSNR of the pair sampled at resolution 7:
measured difference 4e-5 dB (35.2573 dB both; the unweighted ERP PSNR is 0.22 dB off)."""


@pytest.fixture(scope="module")
def points():
    return xyz_to_latlon(icosphere(5))  # 10,242 points


def smooth_field(theta, phi, a, b, c):
    x, y, z = np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)
    return a + b * x + c * y * z - 0.5 * b * z + 0.3 * c * x * y


def smooth_erp(width, height, a=128.0, b=60.0, c=40.0):
    theta, lon = erp_pixel_angles(width, height)
    channels = [smooth_field(theta[:, None], lon[None, :], a, b * k, c) for k in (1.0, 0.7, 0.4)]
    return np.stack(channels, axis=2)


def expected(d):
    return 10 * math.log10(255**2 / d**2)


def test_psnr_closed_form():
    assert psnr(0.0) == math.inf
    assert psnr(255.0**2) == 0.0
    assert psnr(1.0) == pytest.approx(20 * math.log10(255))


def test_erp_row_weights_are_cos_latitude():
    np.testing.assert_allclose(erp_row_weights(4), np.cos(np.radians([67.5, 22.5, -22.5, -67.5])))


@pytest.mark.parametrize("projection", ["erp", "healpix"])
def test_identical_inputs_give_infinite_psnr(points, projection):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (32, 64, 3) if projection == "erp" else (12 * 4**3, 3),
                        dtype=np.uint8)
    scores = spherical_psnr(data, projection, data.copy(), projection, *points)
    assert all(scores[m] == math.inf for m in METRIC_NAMES)


@pytest.mark.parametrize("d", [1, 3, 10])
def test_constant_error_on_an_erp_pair(points, d):
    """Bilinear interpolation and the weights are linear: an offset d gives d everywhere."""
    rng = np.random.default_rng(d)
    original = rng.integers(20, 200, (32, 64, 3), dtype=np.uint8)
    scores = spherical_psnr(original, "erp", original + np.uint8(d), "erp", *points)
    for m in METRIC_NAMES:
        assert scores[m] == pytest.approx(expected(d), abs=1e-4), m


@pytest.mark.parametrize("original_projection,projection", [("erp", "healpix"),
                                                            ("healpix", "erp")])
@pytest.mark.parametrize("d", [2, 7])
def test_constant_error_across_projections(points, original_projection, projection, d):
    """A uniform original (any interpolation gives its value) against the same plus d."""
    shapes = {"erp": (32, 64, 3), "healpix": (12 * 4**3, 3)}
    original = np.full(shapes[original_projection], 100, dtype=np.uint8)
    reconstruction = np.full(shapes[projection], 100 + d, dtype=np.uint8)
    scores = spherical_psnr(original, original_projection, reconstruction, projection, *points)
    for m in METRIC_NAMES:
        assert scores[m] == pytest.approx(expected(d), abs=1e-4), m


def test_ws_psnr_of_erp_equals_psnr_on_healpix_for_smooth_content():
    """Both estimate the mean squared error over the sphere (area-weighted)."""
    a = smooth_erp(1024, 512)
    b = smooth_erp(1024, 512, a=131.0, b=55.0, c=48.0)
    ws = psnr(ws_mse(a, b, "erp")[1])
    on_healpix = psnr(ws_mse(erp_to_healpix(a, 7), erp_to_healpix(b, 7), "healpix")[1])
    unweighted = psnr(float(((a - b) ** 2).mean()))
    assert abs(ws - on_healpix) < WS_TOLERANCE_DB
    assert abs(unweighted - on_healpix) > 0.2  # the weights matter here


def test_size_mismatch_is_refused(points):
    with pytest.raises(ValueError, match="same projection"):
        spherical_psnr(np.zeros((32, 64, 3)), "erp", np.zeros((16, 32, 3)), "erp", *points)
    with pytest.raises(ValueError, match="same projection"):
        spherical_psnr(np.zeros((48, 3)), "healpix", np.zeros((192, 3)), "healpix", *points)
