"""SphereChebConv against torch_geometric's ChebConv per graph and a dense Chebyshev reference."""

import numpy as np
import pytest
import scipy.sparse
import torch
from torch_geometric.nn import ChebConv

from spherical_models.layers.cheb_conv import ChebGraph, SphereChebConv
from utils.errors import OsloError
from utils.structures import build_deepsphere_graph, save_deepsphere_graph


def dense_chebyshev(conv: SphereChebConv, graph: ChebGraph, x: np.ndarray) -> np.ndarray:
    """``sum_k T_k(L~) x Theta_k + b`` with ``L~ = 2L/2 - I``, ``L = I - D^-1/2 W D^-1/2``."""
    n = graph.num_pixels
    source, target = graph.edge_index.numpy()
    w = scipy.sparse.coo_matrix(
        (graph.edge_weight[0].double().numpy(), (source, target)), shape=(n, n)
    ).toarray()
    d = w.sum(axis=1)
    inv_sqrt = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    laplacian = np.eye(n) - inv_sqrt[:, None] * w * inv_sqrt[None, :]
    scaled = 2 * laplacian / 2.0 - np.eye(n)
    thetas = [lin.weight.detach().double().numpy().T for lin in conv.cheb.lins]
    terms = [x, scaled @ x]
    while len(terms) < len(thetas):
        terms.append(2 * scaled @ terms[-1] - terms[-2])
    out = sum(t @ theta for t, theta in zip(terms, thetas, strict=False))
    return out + conv.cheb.bias.detach().double().numpy()


@pytest.mark.parametrize("weight_type", ["identity", "gaussian"])
@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_whole_sphere_equals_dense_reference(weight_type, K):
    graph = ChebGraph.from_structure(build_deepsphere_graph(2, -1, 1, weight_type))
    assert graph.num_pixels == 12 * 4**2 and graph.num_weight_slices == 1
    torch.manual_seed(0)
    conv = SphereChebConv(3, 5, K=K).double()
    torch.nn.init.normal_(conv.cheb.bias)
    x = torch.randn(2, graph.num_pixels, 3, dtype=torch.float64)
    out = conv(x, graph)
    assert out.shape == (2, graph.num_pixels, 5)
    for b in range(2):
        expected = dense_chebyshev(conv, graph, x[b].numpy())
        np.testing.assert_allclose(out[b].detach().numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("weight_type", ["identity", "gaussian"])
def test_batch_equals_chebconv_on_each_patch(weight_type):
    structure = build_deepsphere_graph(4, 2, 1, weight_type)
    graph = ChebGraph.from_structure(structure)
    expected_sets = 12 * 4**2 if weight_type == "gaussian" else 1
    assert graph.num_pixels == 16 and graph.num_weight_slices == expected_sets
    torch.manual_seed(0)
    conv = SphereChebConv(4, 6)
    torch.nn.init.normal_(conv.cheb.bias)
    reference = ChebConv(4, 6, K=conv.K, normalization="sym")
    reference.load_state_dict(conv.cheb.state_dict())

    patch_ids = torch.tensor([5, 0, 191, 77])
    x = torch.randn(len(patch_ids), graph.num_pixels, 4)
    out = conv(x, graph, patch_ids)
    edge_index = torch.from_numpy(structure.edge_index)
    for b, patch in enumerate(patch_ids.tolist()):
        weight = torch.from_numpy(structure.edge_weight[patch % len(structure.edge_weight)])
        # lambda_max left to torch_geometric's default for "sym": 2.0, as the layer passes.
        torch.testing.assert_close(out[b], reference(x[b], edge_index, weight))


def test_gaussian_patches_differ_and_need_patch_ids():
    graph = ChebGraph.from_structure(build_deepsphere_graph(3, 1, 1, "gaussian"))
    conv = SphereChebConv(2, 2)
    x = torch.randn(1, 4, 2).expand(2, -1, -1)
    out = conv(x, graph, torch.tensor([0, 20]))
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="patch_ids"):
        conv(x, graph)
    with pytest.raises(ValueError, match="pixels"):
        conv(torch.randn(2, 16, 2), graph, torch.tensor([0, 1]))


def test_gradients_reach_every_parameter():
    graph = ChebGraph.from_structure(build_deepsphere_graph(3, 2, 1, "gaussian"))
    conv = SphereChebConv(3, 4, K=3)
    x = torch.randn(2, 16, 3, requires_grad=True)
    conv(x, graph, torch.tensor([3, 40])).square().sum().backward()
    assert x.grad is not None
    for name, parameter in conv.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_graph_from_folder_and_buffers(tmp_path):
    structure = build_deepsphere_graph(3, 1, 1, "gaussian")
    save_deepsphere_graph(tmp_path, structure)
    graph = ChebGraph.from_folder(tmp_path, 3, 1, num_hops=1, weight_type="gaussian")
    assert graph.edge_index.dtype == torch.int64 and graph.edge_weight.dtype == torch.float32
    np.testing.assert_array_equal(graph.edge_index.numpy(), structure.edge_index)
    np.testing.assert_array_equal(graph.edge_weight.numpy(), structure.edge_weight)
    assert graph.edge_weight.shape == (12 * 4**2, graph.num_edges)
    assert graph.state_dict() == {}  # rebuilt from files, never saved with a model
    with pytest.raises(OsloError, match="no DeepSphere graph"):
        ChebGraph.from_folder(tmp_path, 3, 2)


def test_reset_parameters_and_repr():
    conv = SphereChebConv(3, 4, K=2)
    with torch.no_grad():
        conv.cheb.bias.fill_(1.0)
    conv.reset_parameters()
    assert torch.count_nonzero(conv.cheb.bias) == 0
    assert repr(conv) == "SphereChebConv(3, 4, K=2)"


@pytest.mark.parametrize("use_euclidean", [False, True])
def test_geometry_built_in_memory_equals_the_saved_graphs(tmp_path, use_euclidean):
    """SphereGeometry.build (the codec's graphs) gives the graphs that from_folder loads."""
    from spherical_models.geometry import SphereGeometry

    for hr, pr in ((4, 2), (3, 1), (2, 0)):
        save_deepsphere_graph(tmp_path, build_deepsphere_graph(hr, pr, 1, "gaussian",
                                                               use_euclidean))
    loaded = SphereGeometry.from_folder(tmp_path, 4, 2, 3, conv="ChebConv",
                                        weight_type="gaussian", use_euclidean=use_euclidean)
    built = SphereGeometry.build(4, 2, 3, conv="ChebConv", use_euclidean=use_euclidean)
    for a, b in zip(loaded, built, strict=True):
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.edge_weight, b.edge_weight)
    with pytest.raises(OsloError, match="too small for 2 down-sampling stages"):
        SphereGeometry.build(4, 1, 3, conv="ChebConv")
