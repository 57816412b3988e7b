"""OSLO structures and DeepSphere graphs: content against healpy, files, metadata checks."""

import healpy
import numpy as np
import pytest

from utils.errors import OsloError
from utils.healpix import npix_of, patch_pixels
from utils.structures import (
    build_deepsphere_graph,
    build_oslo_structure,
    load_deepsphere_graph,
    load_oslo_structure,
    oslo_structure_filename,
    save_deepsphere_graph,
    save_oslo_structure,
)


@pytest.mark.parametrize("num_hops", [1, 2])
def test_patch_structure_is_local_and_cut_at_the_border(num_hops):
    hr, pr = 6, 4
    s = build_oslo_structure(hr, pr, num_hops)
    size = 4**pr
    assert s.index.shape == (size, {1: 8, 2: 24}[num_hops])
    assert s.weight.shape == (1, *s.index.shape)
    assert s.index.min() >= 0 and s.index.max() < size  # patch-local, always a valid gather
    rows = np.arange(size)[:, None]
    missing = s.weight[0] == 0
    assert (s.index[missing] == np.broadcast_to(rows, s.index.shape)[missing]).all()
    assert set(np.unique(s.weight)) <= {0.0, 1.0}
    for patch in (0, 17, 12 * 4 ** (hr - pr) - 1):
        pix = patch_pixels(pr, patch)
        ref = healpy.get_all_neighbours(2**hr, pix, nest=True).T
        outside = (ref < pix[0]) | (ref >= pix[0] + size)
        one_hop = slice(0, 8)
        np.testing.assert_array_equal(missing[:, one_hop], outside)
        np.testing.assert_array_equal(s.index[:, one_hop][~outside], (ref - pix[0])[~outside])


def test_whole_sphere_structure_matches_healpy():
    res = 3
    s = build_oslo_structure(res, -1, 1)
    ref = healpy.get_all_neighbours(2**res, np.arange(npix_of(res)), nest=True).T
    np.testing.assert_array_equal(s.weight[0] == 0, ref < 0)
    np.testing.assert_array_equal(s.index[ref >= 0], ref[ref >= 0])
    assert (s.weight[0] == 0).sum() == 24


def test_gaussian_weights_per_patch_follow_the_distances():
    hr, pr = 4, 2
    s = build_oslo_structure(hr, pr, 1, "gaussian")
    assert s.weight.shape == (12 * 4 ** (hr - pr), 16, 8)
    # independent recomputation for one patch, with healpy vectors and arccos
    patch = 5
    pix = patch_pixels(pr, patch)
    valid = s.weight[patch] > 0
    vec = np.stack(healpy.pix2vec(2**hr, pix, nest=True), axis=1)
    rows, cols = np.nonzero(valid)
    d = np.arccos(np.clip((vec[rows] * vec[s.index[rows, cols]]).sum(1), -1, 1))
    all_rows, all_cols = np.nonzero(s.weight[0] > 0)
    every = np.concatenate([
        np.arccos(np.clip((v[all_rows] * v[s.index[all_rows, all_cols]]).sum(1), -1, 1))
        for v in (
            np.stack(healpy.pix2vec(2**hr, patch_pixels(pr, p), nest=True), axis=1)
            for p in range(s.weight.shape[0])
        )
    ])
    sigma = every.mean()
    np.testing.assert_allclose(s.weight[patch][valid], np.exp(-(d**2) / (2 * sigma**2)),
                               rtol=1e-4)


def test_save_and_load_round_trip(tmp_path):
    s = build_oslo_structure(5, 3, 2)
    path = save_oslo_structure(tmp_path, s)
    assert path.name == oslo_structure_filename(5, 3, 2) == "oslo_struct_hr5_pr3_hops2.npz"
    loaded = load_oslo_structure(tmp_path, 5, 3, 2)
    np.testing.assert_array_equal(loaded.index, s.index)
    one_hop = load_oslo_structure(tmp_path, 5, 3, 1)  # served by the two-hop file
    np.testing.assert_array_equal(one_hop.index, s.index[:, :8])
    assert one_hop.num_hops == 1 and one_hop.weight.shape == (1, 64, 8)
    assert list(tmp_path.iterdir()) == [path]  # nothing temporary left behind


def test_load_refuses_missing_and_mismatched_files(tmp_path):
    with pytest.raises(OsloError, match=r"generate_and_save_healpix_oslo_struct\.py .*-hr 5 -pr 3"):
        load_oslo_structure(tmp_path, 5, 3, 1)
    path = save_oslo_structure(tmp_path, build_oslo_structure(5, 3, 1))
    path.rename(tmp_path / oslo_structure_filename(6, 4, 1))  # a file under the wrong name
    with pytest.raises(OsloError, match="healpix_res=5, expected 6"):
        load_oslo_structure(tmp_path, 6, 4, 1)
    (tmp_path / oslo_structure_filename(4, 2, 1)).write_bytes(b"not an npz")
    with pytest.raises(OsloError, match="cannot read structure file"):
        load_oslo_structure(tmp_path, 4, 2, 1)
    save_oslo_structure(tmp_path, build_oslo_structure(3, 1, 1))
    with pytest.raises(OsloError, match="no 2-hop"):
        load_oslo_structure(tmp_path, 3, 1, 2)


@pytest.mark.parametrize("hr,pr", [(3, -1), (5, 3)])
def test_deepsphere_graph_is_the_symmetric_8_neighbourhood(hr, pr):
    g = build_deepsphere_graph(hr, pr)
    n = g.num_nodes
    src, dst = g.edge_index
    assert src.min() >= 0 and src.max() < n and (src != dst).all()
    edges = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert edges == {(j, i) for i, j in edges}
    offset = 0 if pr < 0 else patch_pixels(pr, 0)[0]
    nodes = np.arange(n) + offset
    ref = healpy.get_all_neighbours(2**hr, nodes, nest=True).T
    expected = {
        (i - offset, j - offset)
        for i, row in zip(nodes.tolist(), ref.tolist(), strict=True)
        for j in row
        if offset <= j < offset + n
    }
    assert edges == expected


def test_deepsphere_gaussian_weights_and_round_trip(tmp_path):
    g = build_deepsphere_graph(3, -1, weight_type="gaussian")
    src, dst = g.edge_index
    a = np.stack(healpy.pix2vec(8, src, nest=True))
    b = np.stack(healpy.pix2vec(8, dst, nest=True))
    d = np.arccos(np.clip((a * b).sum(0), -1, 1))
    np.testing.assert_allclose(g.sigma, d.mean(), rtol=1e-6)
    np.testing.assert_allclose(g.edge_weight[0], np.exp(-(d**2) / (2 * d.mean() ** 2)),
                               rtol=1e-5)
    euclid = build_deepsphere_graph(3, -1, use_euclidean=True)
    np.testing.assert_allclose(euclid.sigma, np.linalg.norm(a - b, axis=0).mean(), rtol=1e-6)
    save_deepsphere_graph(tmp_path, g)
    loaded = load_deepsphere_graph(tmp_path, 3, -1)
    np.testing.assert_array_equal(loaded.edge_index, g.edge_index)
    assert loaded.sigma == pytest.approx(g.sigma)
    with pytest.raises(OsloError, match=r"generate_and_save_healpix_deepsphere_graph\.py"):
        load_deepsphere_graph(tmp_path, 3, -1, use_euclidean=True)
    identity = build_deepsphere_graph(3, 1, weight_type="identity")
    assert identity.edge_weight.shape == (1, identity.edge_index.shape[1])
    assert (identity.edge_weight == 1).all()


@pytest.mark.parametrize("hr,pr", [(14, 3), (-1, -1), (5, 6)])
def test_bad_resolutions_are_refused(hr, pr):
    with pytest.raises(OsloError):
        build_oslo_structure(hr, pr)
