"""CPP-PSNR and viewport PSNR of utils/metrics.py: geometry, identical inputs, constant error."""

import math

import numpy as np
import pytest

from utils.metrics import (
    VIEWPORT_DIRECTIONS_DEG,
    cpp_angles,
    extra_metrics,
    viewport_angles,
)
from utils.sampling import erp_to_healpix

RES = 4
NAMES = ("cpp_psnr_y", "cpp_psnr_rgb", "vp_psnr_y", "vp_psnr_rgb")


def erp_image(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(30, 220, (32, 64, 3)).astype(np.uint8)


def test_cpp_is_equal_area_inside_a_parabola():
    """Inside pixels: |X| <= 1 - Y^2, 2/3 of the rectangle; uniform on the sphere (mean z = 0,
    mean z^2 = 1/3)."""
    width, height = 400, 200
    theta, phi = cpp_angles(width, height)
    assert len(theta) / (width * height) == pytest.approx(2 / 3, abs=0.01)
    assert np.all(np.abs(phi) <= math.pi)
    z = np.cos(theta)
    assert z.mean() == pytest.approx(0, abs=1e-3)
    assert (z**2).mean() == pytest.approx(1 / 3, abs=2e-3)


def test_viewports_are_14_distinct_90_degree_views():
    assert len(set(VIEWPORT_DIRECTIONS_DEG)) == 14
    theta, phi = viewport_angles(0.0, 0.0, size=64)
    xyz = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
    off_axis = np.degrees(np.arccos(xyz[:, 0]))
    # the corners of a 90-degree square view are atan(sqrt 2) = 54.7 degrees off axis
    assert off_axis.max() == pytest.approx(math.degrees(math.atan(math.sqrt(2))), abs=1.5)
    # the middle row spans longitudes -45..45 degrees
    middle = np.degrees(phi.reshape(64, 64)[32])
    assert middle.min() == pytest.approx(-45, abs=1) and middle.max() == pytest.approx(45, abs=1)


@pytest.mark.parametrize("projection", ["erp", "healpix"])
def test_identical_inputs_give_inf(projection):
    image = erp_image()
    data = image if projection == "erp" else erp_to_healpix(image, RES)
    results = extra_metrics(["cpp", "viewport"], data, projection, data.copy(), projection)
    assert list(results) == list(NAMES)
    assert all(results[n] == math.inf for n in NAMES)


@pytest.mark.parametrize("d", [1, 5])
@pytest.mark.parametrize("projections", [("erp", "erp"), ("healpix", "healpix"),
                                         ("erp", "healpix")])
def test_constant_error_gives_closed_form(d, projections):
    """Adding d to every channel: bilinear sampling keeps the offset, Y gets d (the BT.601
    weights sum to 1) and RGB d: 10 log10(255^2 / d^2) everywhere."""
    image = erp_image(1)
    original = image if projections[0] == "erp" else erp_to_healpix(image, RES)
    base = image if projections[1] == "erp" else erp_to_healpix(image, RES)
    reconstruction = base.astype(np.float64) + d
    results = extra_metrics(["cpp", "viewport"], original, projections[0], reconstruction,
                            projections[1])
    expected = 10 * math.log10(255**2 / d**2)
    if projections[0] == projections[1]:
        for name in NAMES:
            assert results[name] == pytest.approx(expected, abs=1e-3), name
    else:  # ERP vs HEALPix: the step-1 sampling adds its own error, so only a bound holds
        for name in NAMES:
            assert results[name] < expected + 1e-6


def test_unknown_metric_is_refused():
    image = erp_image()
    with pytest.raises(ValueError, match="metric must be one of"):
        extra_metrics(["nope"], image, "erp", image, "erp")
