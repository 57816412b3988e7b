"""Strided convolutions: computing only the pixels that stride pooling keeps (child 0, ``4p``)
gives the full output's ``[:, 0::4]``, for the layers, the blocks, the encoder stages and the
models, on both execution paths."""

from functools import cache

import numpy as np
import pytest
import torch

from spherical_models.geometry import SphereGeometry
from spherical_models.graph import OsloGraph
from spherical_models.layers import SDPAConv
from spherical_models.layers import sdpa_conv as sdpa_module
from spherical_models.layers.blocks import SphereConvBlock, SphereDown, SphereNonlinearity
from spherical_models.layers.cheb_conv import ChebGraph
from spherical_models.layers.pooling import SpherePool
from spherical_models.models import LayerOptions, SphereScaleHyperprior
from utils.structures import build_deepsphere_graph, build_oslo_structure

DOUBLE = torch.float64
CHILD_0 = slice(None, None, 4)
HOPS = [(1, 1), (2, 1), (2, 2)]  # (graph hops, convolution hops)


@cache
def graph(hr, pr, hops=1, weight_type="identity"):
    return OsloGraph(build_oslo_structure(hr, pr, hops, weight_type)).to(DOUBLE)


@cache
def cheb_graph(hr, pr):
    return ChebGraph.from_structure(build_deepsphere_graph(hr, pr, 1, "gaussian")).to(DOUBLE)


def set_path(module, path):
    for conv in module.modules():
        if isinstance(conv, SDPAConv):
            conv.path = path


def outputs_and_grads(module, x, call):
    """``call(module, x)`` and the gradients of ``x`` and of every parameter."""
    x = x.detach().requires_grad_()
    module.zero_grad(set_to_none=True)
    out = call(module, x)
    seed = torch.Generator().manual_seed(1)
    out.backward(torch.randn(out.shape, dtype=out.dtype, generator=seed))
    return [out.detach(), x.grad] + [p.grad for p in module.parameters()]


def assert_strided_is_child_zero(module, x, *args, tol=1e-7):
    """``module(x, *args, stride=True)`` equals ``module(x, *args)[:, 0::4]``, with gradients."""
    strided = outputs_and_grads(module, x, lambda m, x: m(x, *args, stride=True))
    full = outputs_and_grads(module, x, lambda m, x: m(x, *args)[:, CHILD_0])
    assert strided[0].shape[1] == len(range(x.shape[1])[CHILD_0])
    for a, b in zip(strided, full, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("path", ["face", "gather"])
@pytest.mark.parametrize("graph_hops, conv_hops", HOPS)
@pytest.mark.parametrize("hr, pr", [(6, 4), (6, 1), (6, 0), (1, -1), (2, -1), (3, -1)])
def test_strided_sdpaconv_is_the_full_output_at_child_zero(hr, pr, graph_hops, conv_hops, path):
    torch.manual_seed(0)
    conv = SDPAConv(4, 5, conv_hops, path=path).to(DOUBLE)
    g = graph(hr, pr, graph_hops)
    assert_strided_is_child_zero(conv, torch.randn(3, g.num_pixels, 4, dtype=DOUBLE), g)


def test_strided_sdpaconv_in_float32_to_1e_5():
    g = OsloGraph(build_oslo_structure(6, 4, 2))
    torch.manual_seed(0)
    conv = SDPAConv(16, 16, 2)
    x = torch.randn(2, g.num_pixels, 16)
    for path in ("face", "gather"):
        conv.path = path
        torch.testing.assert_close(
            conv(x, g, stride=True), conv(x, g)[:, CHILD_0], rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("hops", [1, 2])
def test_strided_sdpaconv_with_per_patch_weights_follows_patch_ids(hops):
    torch.manual_seed(0)
    conv = SDPAConv(3, 4, hops).to(DOUBLE)
    g = graph(4, 2, hops, "gaussian")
    patch_ids = torch.tensor([0, 57, 191])
    x = torch.randn(3, g.num_pixels, 3, dtype=DOUBLE)
    assert_strided_is_child_zero(conv, x, g, patch_ids)


def test_strided_convolution_computes_only_the_kept_pixels(monkeypatch):
    """The face path runs a stride-2 Conv2d, the gather path gathers the rows ``4p`` only."""
    conv2d_outputs, gather_rows = [], []
    conv2d = sdpa_module.F.conv2d
    gather = sdpa_module._GatherMatmul.apply

    def recording_conv2d(*args, **kwargs):
        out = conv2d(*args, **kwargs)
        conv2d_outputs.append(tuple(out.shape))
        return out

    def recording_gather(x, index, weight, kernel):
        gather_rows.append((index.shape[0], weight.shape[1]))
        return gather(x, index, weight, kernel)

    monkeypatch.setattr(sdpa_module.F, "conv2d", recording_conv2d)
    monkeypatch.setattr(sdpa_module._GatherMatmul, "apply", recording_gather)
    conv = SDPAConv(2, 3, 2).to(DOUBLE)
    for hr, pr in ((6, 4), (3, -1)):
        g = graph(hr, pr, 2)
        x = torch.randn(2, g.num_pixels, 2, dtype=DOUBLE)
        for path in ("face", "gather"):
            conv.path = path
            assert conv(x, g, stride=True).shape == (2, g.num_pixels // 4, 3)
    assert conv2d_outputs == [(2, 3, 8, 8), (24, 3, 4, 4)]
    assert gather_rows == [(64, 64), (192, 192)]


def test_stride_refuses_masks_and_the_sphere_at_resolution_zero():
    x = torch.randn(1, 16, 2, dtype=DOUBLE)
    with pytest.raises(ValueError, match="masked"):
        SDPAConv(2, 2, mask="A").to(DOUBLE)(x, graph(3, 2), stride=True)
    sphere = graph(0, -1)
    with pytest.raises(ValueError, match="coarser"):
        SDPAConv(2, 2).to(DOUBLE)(torch.randn(1, 12, 2, dtype=DOUBLE), sphere, stride=True)


def test_coarse_tables_are_the_next_level_tables():
    for (hr, pr), coarse in (((6, 4), (5, 3)), ((6, 1), (5, 0)), ((3, -1), (2, -1))):
        fine = OsloGraph(build_oslo_structure(hr, pr))
        down = OsloGraph(build_oslo_structure(*coarse))
        name = "image" if pr >= 0 else "face"
        for table in ("index", "inverse"):
            torch.testing.assert_close(
                getattr(fine, f"coarse_{name}_{table}"), getattr(down, f"{name}_{table}")
            )
    single = OsloGraph(build_oslo_structure(6, 0))
    assert single.coarse_image_index.tolist() == [0] == single.coarse_image_inverse.tolist()
    assert not hasattr(OsloGraph(build_oslo_structure(0, -1)), "coarse_face_index")


@pytest.mark.parametrize("hr, pr", [(4, 2), (2, -1)])
def test_strided_sdpaconv_is_device_agnostic(hr, pr):
    g = OsloGraph(build_oslo_structure(hr, pr, 2)).to("meta")
    for path in ("face", "gather"):
        conv = SDPAConv(3, 4, 2, path=path).to("meta")
        x = torch.randn(2, g.num_pixels, 3, device="meta", requires_grad=True)
        out = conv(x, g, stride=True)
        out.sum().backward()
        assert out.shape == (2, g.num_pixels // 4, 4) and x.grad.shape == x.shape


BLOCKS = [
    dict(hop=2, skip_aggregation="sum"),
    dict(hop=2, skip_aggregation="max"),
    dict(hop=2, skip_aggregation="cat"),
    dict(hop=2, single_conv=True),
    dict(hop=1),
]


@pytest.mark.parametrize("path", ["face", "gather"])
@pytest.mark.parametrize("hr, pr", [(6, 3), (2, -1)])
@pytest.mark.parametrize("options", BLOCKS, ids=lambda o: "-".join(map(str, o.values())))
def test_strided_block_is_the_full_block_at_child_zero(options, hr, pr, path):
    torch.manual_seed(0)
    block = SphereConvBlock(3, 4, **options).to(DOUBLE)
    set_path(block, path)
    g = graph(hr, pr, 2)
    assert_strided_is_child_zero(block, torch.randn(2, g.num_pixels, 3, dtype=DOUBLE), g)


@pytest.mark.parametrize("hr, pr", [(4, 2), (2, -1)])
def test_strided_chebconv_block_keeps_child_zero(hr, pr):
    torch.manual_seed(0)
    block = SphereConvBlock(3, 4, conv="ChebConv").to(DOUBLE)
    g = cheb_graph(hr, pr)
    patch_ids = torch.tensor([5, 100]) if pr >= 0 else None
    x = torch.randn(2, g.num_pixels, 3, dtype=DOUBLE)
    assert_strided_is_child_zero(block, x, g, patch_ids)


def old_down(down, x, g):
    """The stage as computed before strided convolutions: full block, activation, pooling."""
    out = SpherePool("stride")(down.block(x, g))
    if isinstance(down.activation, SphereNonlinearity):  # GDN: pointwise, needs no graph
        return down.activation(out, None)
    return out if down.activation is None else down.activation(out)


@pytest.mark.parametrize("path", ["face", "gather"])
@pytest.mark.parametrize("activation", ["GDN", "relu", None])
@pytest.mark.parametrize("options", BLOCKS, ids=lambda o: "-".join(map(str, o.values())))
def test_stride_stage_equals_full_block_then_stride_pooling(options, activation, path):
    torch.manual_seed(0)
    down = SphereDown(3, 4, activation, **options).to(DOUBLE)
    assert down.strided
    set_path(down, path)
    for hr, pr in ((6, 3), (2, -1)):
        g = graph(hr, pr, 2)
        x = torch.randn(2, g.num_pixels, 3, dtype=DOUBLE)
        new = outputs_and_grads(down, x, lambda m, x, g=g: m(x, g))
        old = outputs_and_grads(down, x, lambda m, x, g=g: old_down(m, x, g))
        for a, b in zip(new, old, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


def test_residual_stage_pools_after_its_fine_resolution_non_linearity():
    torch.manual_seed(0)
    down = SphereDown(3, 4, "RB").to(DOUBLE)
    assert not down.strided
    g = graph(6, 3)
    x = torch.randn(2, g.num_pixels, 3, dtype=DOUBLE)
    expected = SpherePool("stride")(down.activation(down.block(x, g), g))
    torch.testing.assert_close(down(x, g), expected)


@pytest.mark.parametrize(
    "options",
    [LayerOptions(), LayerOptions(single_conv=True), LayerOptions(skip_aggregation="cat")],
    ids=["default", "single_conv", "cat"],
)
def test_models_with_strided_stages_agree_on_both_paths(options):
    torch.manual_seed(0)
    model = SphereScaleHyperprior(8, 12, options)
    hops = 2 if options.single_conv else 1
    for hr, pr in ((7, 6), (6, -1)):
        geo = SphereGeometry.build(hr, pr, 7, num_hops=hops)
        x = torch.rand(2 if pr >= 0 else 1, geo.num_pixels, 3)
        out = {}
        for path in ("face", "gather"):
            model.set_conv_path(path)
            torch.manual_seed(2)  # the same quantisation noise for both
            out[path] = model(x, geo)
        model.set_conv_path("auto")
        torch.testing.assert_close(out["face"]["x_hat"], out["gather"]["x_hat"], rtol=0, atol=1e-5)
        for key, likelihoods in out["face"]["likelihoods"].items():
            np.testing.assert_allclose(
                likelihoods.detach(), out["gather"]["likelihoods"][key].detach(), atol=1e-5
            )
