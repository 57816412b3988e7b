"""Mollweide views: geographic orientation, shapes, the script and its bad input."""

import healpy
import numpy as np
import pytest
from PIL import Image

from misc.create_mollweide_projection import main
from utils.errors import OsloError
from utils.visualization import mollweide_image


def spot_map(res, lon_deg, lat_deg):
    """A map that is 200 within 20 degrees of (lon, lat) and 0 elsewhere."""
    vec = healpy.ang2vec(lon_deg, lat_deg, lonlat=True)
    pix = healpy.query_disc(2**res, vec, np.radians(20), nest=True)
    hp_map = np.zeros(12 * 4**res, dtype=np.uint8)
    hp_map[pix] = 200
    return hp_map


def centroid(view):
    rows, cols = np.nonzero(view == 200)
    return rows.mean() / view.shape[0], cols.mean() / view.shape[1]


def test_view_is_geographic_east_right_north_up():
    """Like the ERP image: east (positive longitude) to the right, north at the top."""
    view = mollweide_image(spot_map(5, 90, 45), 400)
    assert view.shape == (200, 400)
    row, col = centroid(view)
    assert row < 0.4 and col > 0.6
    view = mollweide_image(spot_map(5, -90, -45), 400)
    row, col = centroid(view)
    assert row > 0.6 and col < 0.4


def test_colour_gray_and_outside_of_the_ellipse():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 200, (12 * 4**3, 3), dtype=np.uint8)
    colour = mollweide_image(rgb, 100)
    gray = mollweide_image(rgb, 100, gray=True)
    assert colour.shape == (50, 100, 3) and gray.shape == (50, 100)
    assert (colour[0, 0] == 255).all() and gray[0, 0] == 255  # corners are outside
    inside = gray != 255
    luma = 0.299 * colour[..., 0] + 0.587 * colour[..., 1] + 0.114 * colour[..., 2]
    assert np.abs(gray[inside] - luma[inside]).max() <= 0.5 + 1e-4


def test_script_writes_png(tmp_path):
    np.save(tmp_path / "m.npy", spot_map(4, 0, 0))
    main(["-i", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.png"), "-w", "300", "--gray"])
    with Image.open(tmp_path / "m.png") as image:
        assert image.size == (300, 150)


@pytest.mark.parametrize(
    "content,message", [(np.zeros(50), "not a HEALPix"), (np.zeros((48, 2)), "shape")]
)
def test_script_refuses_bad_maps(tmp_path, content, message):
    np.save(tmp_path / "m.npy", content)
    with pytest.raises(OsloError, match=message):
        main(["-i", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.png")])
    assert not (tmp_path / "m.png").exists()


def test_script_refuses_missing_or_corrupt_input(tmp_path):
    with pytest.raises(OsloError, match="cannot read map"):
        main(["-i", str(tmp_path / "none.npy"), "-o", str(tmp_path / "m.png")])
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(OsloError, match="cannot read map"):
        main(["-i", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "m.png")])
