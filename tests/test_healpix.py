"""utils.healpix against healpy (the independent reference for HEALPix geometry)."""

import healpy
import numpy as np
import pytest

from utils.healpix import (
    CHILD_OFFSETS,
    ONE_HOP_OFFSETS,
    all_neighbours,
    children,
    face_padding_index,
    nest_to_xyf,
    npix_of,
    parent,
    patch_image_index,
    patch_neighbours,
    patch_pixels,
    res_of_npix,
    xyf_to_nest,
)

RESOLUTIONS = range(7)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_xyf_round_trip_matches_healpy(res):
    nside = 2**res
    pix = np.arange(npix_of(res))
    x, y, f = nest_to_xyf(res, pix)
    hx, hy, hf = healpy.pix2xyf(nside, pix, nest=True)
    np.testing.assert_array_equal(x, hx)
    np.testing.assert_array_equal(y, hy)
    np.testing.assert_array_equal(f, hf)
    np.testing.assert_array_equal(xyf_to_nest(res, x, y, f), pix)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_neighbours_equal_healpy_for_every_pixel(res):
    nside = 2**res
    pix = np.arange(npix_of(res))
    expected = healpy.get_all_neighbours(nside, pix, nest=True).T
    np.testing.assert_array_equal(all_neighbours(res), expected)
    # the general path (any pixel subset) agrees with the whole-sphere fast path
    subset = pix[:: max(1, len(pix) // 97)]
    np.testing.assert_array_equal(all_neighbours(res, subset), expected[subset])


@pytest.mark.parametrize("res", range(1, 7))
def test_exactly_24_pixels_have_seven_neighbours(res):
    table = all_neighbours(res)
    missing = (table < 0).sum(axis=1)
    assert (missing > 0).sum() == 24
    assert missing.max() == 1


def test_inside_a_face_neighbours_are_the_documented_offsets():
    res = 4
    x, y, f = nest_to_xyf(res, np.arange(npix_of(res)))
    inner = (x > 0) & (x < 15) & (y > 0) & (y < 15)
    table = all_neighbours(res)[inner]
    for k, (dx, dy) in enumerate(ONE_HOP_OFFSETS):
        nx, ny, nf = nest_to_xyf(res, table[:, k])
        np.testing.assert_array_equal(nx, x[inner] + dx)
        np.testing.assert_array_equal(ny, y[inner] + dy)
        np.testing.assert_array_equal(nf, f[inner])


@pytest.mark.parametrize("res", [3, 4, 5])
def test_two_hop_ring(res):
    """The 16 ring members are distinct, are neither the centre nor a one-hop neighbour, and
    are neighbours of one-hop neighbours (healpy), for every pixel away from face corners."""
    nside = 2**res
    table = all_neighbours(res, num_hops=2)
    x, y, _ = nest_to_xyf(res, np.arange(npix_of(res)))
    near_corner = (np.minimum(x, nside - 1 - x) < 2) & (np.minimum(y, nside - 1 - y) < 2)
    for pix in np.flatnonzero(~near_corner):
        ring = table[pix, 8:]
        assert len(set(ring.tolist())) == 16 and (ring >= 0).all()
        one_hop = set(healpy.get_all_neighbours(nside, pix, nest=True).tolist())
        assert not (set(ring.tolist()) & (one_hop | {pix}))
        second = set(healpy.get_all_neighbours(nside, list(one_hop - {-1}), nest=True).ravel())
        assert set(ring.tolist()) <= second


@pytest.mark.parametrize("res", [0, 1, 2, 3])
def test_children_and_parent(res):
    pix = np.arange(npix_of(res))
    kids = children(pix)
    np.testing.assert_array_equal(parent(kids), np.repeat(pix[:, None], 4, axis=1))
    # the child's centre lies in the parent pixel (healpy)
    theta, phi = healpy.pix2ang(2 ** (res + 1), kids.ravel(), nest=True)
    np.testing.assert_array_equal(
        healpy.ang2pix(2**res, theta, phi, nest=True), np.repeat(pix, 4)
    )
    # and at the documented face-local offsets from (2x, 2y)
    x, y, f = nest_to_xyf(res, pix)
    kx, ky, kf = nest_to_xyf(res + 1, kids)
    np.testing.assert_array_equal(kx, 2 * x[:, None] + CHILD_OFFSETS[:, 0])
    np.testing.assert_array_equal(ky, 2 * y[:, None] + CHILD_OFFSETS[:, 1])
    np.testing.assert_array_equal(kf, np.repeat(f[:, None], 4, axis=1))


def test_patches_are_squares_of_one_face():
    hr, pr = 5, 3
    pixels = patch_pixels(pr, np.arange(12 * 4 ** (hr - pr)))
    assert pixels.shape == (12 * 4 ** (hr - pr), 4**pr)
    np.testing.assert_array_equal(np.sort(pixels.ravel()), np.arange(npix_of(hr)))
    x, y, f = healpy.pix2xyf(2**hr, pixels, nest=True)
    assert (f == f[:, :1]).all()
    assert (x.max(1) - x.min(1) == 2**pr - 1).all() and (y.max(1) - y.min(1) == 2**pr - 1).all()


def test_patch_image_index_lays_pixels_out_as_image_rows_y_columns_x():
    pr = 3
    image = patch_image_index(pr)
    x, y, _ = healpy.pix2xyf(2**pr, image.ravel(), nest=True)
    rows, cols = np.divmod(np.arange(4**pr), 2**pr)
    np.testing.assert_array_equal(y, rows)
    np.testing.assert_array_equal(x, cols)


@pytest.mark.parametrize("hr,pr", [(6, 4), (4, 4), (3, 0)])
def test_patch_tables_are_healpy_cut_at_the_border(hr, pr):
    """One patch-local table serves every patch: each in-patch healpy neighbour appears at its
    patch-local index, every other is -1."""
    table = patch_neighbours(pr)
    size = 4**pr
    for patch in range(12 * 4 ** (hr - pr)):
        pix = patch_pixels(pr, patch)
        ref = healpy.get_all_neighbours(2**hr, pix, nest=True).T
        inside = (ref >= pix[0]) & (ref < pix[0] + size)
        np.testing.assert_array_equal(table, np.where(inside, ref - pix[0], -1))


@pytest.mark.parametrize("res,pad", [(0, 1), (1, 1), (2, 2), (3, 2), (4, 1)])
def test_face_padding_frames_each_face_with_its_neighbours(res, pad):
    nside = 2**res
    index = face_padding_index(res, pad)
    assert index.shape == (12, nside + 2 * pad, nside + 2 * pad)
    pix = np.arange(npix_of(res))
    x, y, f = nest_to_xyf(res, pix)
    np.testing.assert_array_equal(index[f, pad + y, pad + x], pix)
    ref = healpy.get_all_neighbours(nside, pix, nest=True).T
    for k, (dx, dy) in enumerate(ONE_HOP_OFFSETS):
        np.testing.assert_array_equal(index[f, pad + y + dy, pad + x + dx], ref[:, k])


def test_res_of_npix():
    assert [res_of_npix(npix_of(r)) for r in range(14)] == list(range(14))
    for bad in (0, 11, 24, 12 * 3):
        with pytest.raises(ValueError):
            res_of_npix(bad)
