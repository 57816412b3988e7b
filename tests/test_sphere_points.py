"""The S-PSNR sphere points: 360Lib's count, geometry, spacing, file format and its bad input."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from misc.generate_sphere_points import main
from utils.errors import OsloError
from utils.sphere_points import (
    format_points,
    icosahedron,
    icosphere,
    load_or_create,
    lonlat_to_xyz,
    point_count,
    read_sphere_points,
    xyz_to_latlon,
)

REPO_FILE = Path(__file__).resolve().parent.parent / "misc" / "sphere_655362.txt"

SPACING_RATIO = 1.2
"""Max / min nearest-neighbour distance of the 655,362 points: measured 1.195."""


@pytest.fixture(scope="module")
def level8():
    return icosphere(8)


def test_icosahedron_is_regular():
    """Closed form: unit circumradius, edge 4 / sqrt(10 + 2 sqrt 5), 5 neighbours each."""
    vertices, triangles = icosahedron()
    edge = 4 / math.sqrt(10 + 2 * math.sqrt(5))
    sides = np.linalg.norm(vertices[triangles] - vertices[np.roll(triangles, 1, axis=1)], axis=2)
    np.testing.assert_allclose(sides, edge, rtol=1e-12)
    distances = np.linalg.norm(vertices[:, None] - vertices[None], axis=2)
    assert (np.isclose(distances, edge).sum(axis=1) == 5).all()
    assert len({tuple(sorted(t)) for t in triangles.tolist()}) == 20


def test_level8_count_unit_sphere_and_icosahedron_vertices(level8):
    assert len(level8) == point_count(8) == 655_362
    np.testing.assert_allclose(np.linalg.norm(level8, axis=1), 1.0, atol=1e-12)
    # the 12 vertices in closed form: the poles and two rings at latitude +-arctan(1/2)
    ring = math.degrees(math.atan(0.5))
    lat = np.array([90.0] + [ring] * 5 + [-ring] * 5 + [-90.0])
    lon = np.array([0.0] + [72.0 * i for i in range(5)] + [36.0 + 72.0 * i for i in range(5)]
                   + [0.0])
    distance, _ = cKDTree(level8).query(lonlat_to_xyz(lat, lon))
    assert distance.max() < 1e-12
    assert len(np.unique(np.round(level8, 9), axis=0)) == len(level8)  # no duplicate


def test_level8_spacing_is_nearly_uniform(level8):
    distance, _ = cKDTree(level8).query(level8, k=2)
    nearest = distance[:, 1]
    assert nearest.max() / nearest.min() <= SPACING_RATIO
    # mean spacing of 655,362 points on the unit sphere: about sqrt(4 pi / n) (x ~1.07 for a
    # triangular lattice)
    assert 0.9 < nearest.mean() / math.sqrt(4 * math.pi / len(level8)) < 1.2


def test_levels_are_nested():
    np.testing.assert_array_equal(icosphere(3)[: point_count(2)], icosphere(2))


def test_script_writes_the_360lib_format_and_regenerates_the_same_file(tmp_path, level8):
    path = tmp_path / "sphere_655362.txt"
    main(["-o", str(path)])
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "655362" and len(lines) == 655_363
    assert lines[1] == "90.000000 0.000000"
    assert text == format_points(*xyz_to_latlon(level8))  # regenerating gives the same file
    if REPO_FILE.exists():  # the copy used by compute_spherical_psnr.py, when generated
        assert REPO_FILE.read_text() == text
    lat, lon = read_sphere_points(path)
    assert len(lat) == 655_362 and np.abs(lat).max() == 90 and -180 <= lon.min() < lon.max() < 180
    np.testing.assert_allclose(lonlat_to_xyz(lat, lon), level8, atol=2e-8)


def test_missing_file_is_generated_when_named_by_its_count(tmp_path):
    lat, _ = load_or_create(tmp_path / "sphere_42.txt")
    assert len(lat) == 42 and (tmp_path / "sphere_42.txt").exists()
    with pytest.raises(OsloError, match="does not exist"):
        load_or_create(tmp_path / "sphere_43.txt")
    with pytest.raises(OsloError, match="does not exist"):
        load_or_create(tmp_path / "points.txt")


@pytest.mark.parametrize("content", [
    "", "abc\n1 2\n", "3\n0 0\n1 1\n", "2\n0 0\n1 1 5\n", "1\n95 0\n", "2\n0 0\n1 x\n",
    "2\n0 0 1\n1\n",
])
def test_malformed_files_are_refused(tmp_path, content):
    path = tmp_path / "points.txt"
    path.write_text(content)
    with pytest.raises(OsloError, match="malformed"):
        read_sphere_points(path)


def test_script_refuses_bad_level(tmp_path):
    with pytest.raises(OsloError, match="level"):
        main(["-o", str(tmp_path / "p.txt"), "-l", "12"])
