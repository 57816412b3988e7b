"""OsloGraph: buffers built from an OSLO structure, face-path tables checked against healpy."""

import healpy
import numpy as np
import pytest
import torch

from spherical_models.graph import OsloGraph
from utils.structures import build_oslo_structure, save_oslo_structure


def test_patch_graph_buffers_and_image_tables():
    structure = build_oslo_structure(6, 4, 2)
    graph = OsloGraph(structure)
    assert (graph.healpix_res, graph.patch_res, graph.num_hops) == (6, 4, 2)
    assert graph.is_patch and graph.supports_face_path
    assert graph.index.dtype == torch.int64 and graph.index.shape == (256, 24)
    assert graph.weight.dtype == torch.float32 and graph.weight.shape == (1, 256, 24)
    np.testing.assert_array_equal(graph.index.numpy(), structure.index)
    side = 16
    y, x = np.divmod(np.arange(side * side), side)
    expected = healpy.xyf2pix(side, x, y, np.zeros_like(x), nest=True)
    np.testing.assert_array_equal(graph.image_index.numpy(), expected)
    np.testing.assert_array_equal(graph.image_index[graph.image_inverse].numpy(), np.arange(256))


@pytest.mark.parametrize("res", [0, 1, 3])
def test_sphere_face_tables_match_healpy(res):
    graph = OsloGraph(build_oslo_structure(res, -1, 2))
    nside = 2**res
    npix = 12 * nside**2
    face, y, x = np.unravel_index(graph.face_inverse.numpy(), (12, nside, nside))
    np.testing.assert_array_equal(
        healpy.xyf2pix(nside, x, y, face, nest=True), np.arange(npix)
    )
    np.testing.assert_array_equal(graph.face_index[graph.face_inverse].numpy(), np.arange(npix))
    for pad in (1, 2):
        source, _ = graph.face_padding(pad)
        side = nside + 2 * pad
        padded = source.view(12, side, side)
        interior = padded[:, pad : pad + nside, pad : pad + nside].reshape(-1).numpy()
        f, yy, xx = np.unravel_index(np.arange(npix), (12, nside, nside))
        np.testing.assert_array_equal(interior, healpy.xyf2pix(nside, xx, yy, f, nest=True))
    assert graph.face_padding(1)[1].numel() == 24  # one position per face at each 3-face corner


def test_face_padding_beyond_one_face_is_missing():
    graph = OsloGraph(build_oslo_structure(0, -1, 2))
    source, missing = graph.face_padding(2)
    is_missing = torch.zeros(12 * 25, dtype=torch.bool)
    is_missing[missing] = True
    ring = torch.ones(5, 5, dtype=torch.bool)
    ring[1:4, 1:4] = False
    assert is_missing.view(12, 5, 5)[:, ring].all()
    one = OsloGraph(build_oslo_structure(0, -1, 1))
    inner = source.view(12, 5, 5)[:, 1:4, 1:4].reshape(-1)
    np.testing.assert_array_equal(inner.numpy(), one.face_padding(1)[0].numpy())


def test_gaussian_graph_has_no_face_path():
    graph = OsloGraph(build_oslo_structure(4, 2, 1, "gaussian"))
    assert graph.num_weight_slices == 12 * 4**2
    assert not graph.supports_face_path
    with pytest.raises(ValueError):
        graph.face_padding(1)


def test_from_folder_serves_one_hop_from_two_hop_file(tmp_path):
    structure = build_oslo_structure(4, 2, 2)
    save_oslo_structure(tmp_path, structure)
    graph = OsloGraph.from_folder(tmp_path, 4, 2, num_hops=1)
    assert graph.num_hops == 1
    np.testing.assert_array_equal(graph.index.numpy(), structure.index[:, :8])


def test_buffers_move_and_stay_out_of_state_dict():
    graph = OsloGraph(build_oslo_structure(2, -1, 2))
    assert graph.state_dict() == {}
    moved = graph.to("meta")
    assert moved.index.device.type == "meta" and moved.face_padding(2)[0].device.type == "meta"
    assert "whole sphere" in repr(graph)
