"""The face layout: faces match healpy's (x, y, face), every layer on faces equals its NESTED
gather path, and whole models run on faces with the gather path's outputs and gradients."""

from functools import cache

import healpy
import numpy as np
import pytest
import torch

import spherical_models.layers.sdpa_conv as sdpa_module
import spherical_models.models.google as google_module
from spherical_models.geometry import SphereGeometry
from spherical_models.graph import OsloGraph
from spherical_models.layers.blocks import (
    SphereAttention,
    SphereConvBlock,
    SphereDown,
    SphereUp,
    icnr_,
)
from spherical_models.layers.face_layout import from_faces, pixel_linear, to_faces
from spherical_models.layers.gdn import SphereGDN
from spherical_models.layers.pooling import SpherePool, SphereUnpool
from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed
from spherical_models.models import (
    SphereFactorizedPrior,
    SphereMeanScaleHyperprior,
    SphereScaleHyperprior,
)
from spherical_models.models.base import LayerOptions
from utils.structures import build_oslo_structure

DOUBLE = torch.float64


@cache
def graph(hr, pr, hops=1):
    return OsloGraph(build_oslo_structure(hr, pr, hops)).to(DOUBLE)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("hr", [0, 1, 3])
def test_sphere_faces_are_healpys_xyf(hr):
    nside, npix = 2**hr, 12 * 4**hr
    values = torch.randn(2, npix, 3, dtype=DOUBLE)
    faces = to_faces(values, graph(hr, -1))
    x, y, face = healpy.pix2xyf(nside, np.arange(npix), nest=True)
    expected = np.zeros((2, 12, 3, nside, nside))
    expected[:, face, :, y, x] = values.numpy().transpose(1, 0, 2)
    np.testing.assert_array_equal(faces.numpy().reshape(2, 12, 3, nside, nside), expected)
    assert faces.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(from_faces(faces, graph(hr, -1)).numpy(), values.numpy())


@pytest.mark.parametrize("pr", [0, 1, 4])
def test_patch_image_is_healpys_xy_and_the_coarse_level_is_one_down(pr):
    nside = 2**pr
    values = torch.randn(3, 4**pr, 2, dtype=DOUBLE)
    image = to_faces(values, graph(pr + 2, pr))
    x, y, _ = healpy.pix2xyf(nside, np.arange(4**pr), nest=True)
    np.testing.assert_array_equal(image[:, :, y, x].numpy(), values.numpy().transpose(0, 2, 1))
    if pr:
        coarse = values[:, : 4 ** (pr - 1)]
        down = to_faces(coarse, graph(pr + 2, pr), coarse=True)
        np.testing.assert_array_equal(down.numpy(), to_faces(coarse, graph(pr + 1, pr - 1)))


def run(module, x, *args, layout="nested", in_graph=None, out_graph=None, coarse_in=False,
        coarse_out=False):
    """``module(x, *args)`` on NESTED ``x``, run in ``layout``; the output in NESTED order and
    the gradients of ``x`` and of every parameter for a fixed random output gradient."""
    x = x.detach().requires_grad_()
    module.zero_grad(set_to_none=True)
    if layout == "faces":
        out = module(to_faces(x, in_graph, coarse=coarse_in), *args)
        out = from_faces(out, out_graph or in_graph, coarse=coarse_out)
    else:
        out = module(x, *args)
    seed = torch.Generator().manual_seed(1)
    out.backward(torch.randn(out.shape, dtype=out.dtype, generator=seed))
    grads = [p.grad for p in module.parameters()]
    return [out.detach(), x.grad, *grads]


def assert_layouts_agree(module, x, *args, atol=1e-10, **tables):
    for m in module.modules():
        if isinstance(m, SDPAConv | SDPAConvTransposed):
            m.path = "gather"
    nested = run(module, x, *args, **tables)
    faces = run(module, x, *args, layout="faces", **tables)
    for a, b in zip(faces, nested, strict=True):
        torch.testing.assert_close(a, b, rtol=atol, atol=atol)


GRAPHS = [(6, 4), (6, 0), (1, -1), (3, -1)]


@pytest.mark.parametrize("hr, pr", GRAPHS)
@pytest.mark.parametrize("hops, stride", [(1, False), (1, True), (2, False), (2, True)])
def test_sdpaconv_on_faces_is_its_gather_path(hr, pr, hops, stride):
    g = graph(hr, pr, hops)
    if stride and pr < 0 and hr == 0:
        pytest.skip("no coarser level")
    torch.manual_seed(0)
    conv = SDPAConv(4, 5, hops).to(DOUBLE)
    x = torch.randn(2, g.num_pixels, 4, dtype=DOUBLE)
    assert_layouts_agree(conv, x, g, None, stride, in_graph=g, coarse_out=stride)


@pytest.mark.parametrize("hr, pr", [(6, 4), (6, 1), (1, -1), (3, -1)])
@pytest.mark.parametrize("hops", [1, 2])
def test_transposed_on_faces_is_its_gather_path(hr, pr, hops):
    g = graph(hr, pr, hops)
    torch.manual_seed(0)
    up = SDPAConvTransposed(4, 5, hops).to(DOUBLE)
    x = torch.randn(2, g.num_pixels // 4, 4, dtype=DOUBLE)
    assert_layouts_agree(up, x, g, in_graph=g, coarse_in=True)


@pytest.mark.parametrize("hr, pr", GRAPHS[:1] + GRAPHS[2:])
@pytest.mark.parametrize("mode", ["stride", "avg_pool", "max_pool"])
def test_pooling_on_faces_is_the_nested_pooling(hr, pr, mode):
    g = graph(hr, pr)
    x = torch.randn(2, g.num_pixels, 3, dtype=DOUBLE)
    assert_layouts_agree(SpherePool(mode), x, in_graph=g, coarse_out=True, atol=0)


@pytest.mark.parametrize("hr, pr", [(6, 4), (1, -1), (3, -1)])
@pytest.mark.parametrize("mode", ["nearest", "pixel_shuffle"])
def test_unpooling_on_faces_is_the_nested_unpooling(hr, pr, mode):
    g = graph(hr, pr)
    x = torch.randn(2, g.num_pixels // 4, 8, dtype=DOUBLE)
    assert_layouts_agree(SphereUnpool(mode), x, in_graph=g, coarse_in=True, atol=0)


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_and_pixel_linear_on_faces_are_per_pixel(inverse):
    g = graph(2, -1)
    x = torch.randn(2, g.num_pixels, 6, dtype=DOUBLE)
    assert_layouts_agree(SphereGDN(6, inverse=inverse).to(DOUBLE), x, in_graph=g)
    linear = torch.nn.Linear(6, 4).to(DOUBLE)
    faces = to_faces(x, g)
    torch.testing.assert_close(from_faces(pixel_linear(linear, faces), g), linear(x))


@pytest.mark.parametrize("hr, pr", GRAPHS[:1] + GRAPHS[2:])
@pytest.mark.parametrize("aggregation", ["sum", "max", "cat"])
@pytest.mark.parametrize("stride", [False, True])
def test_blocks_and_attention_on_faces_are_their_gather_path(hr, pr, aggregation, stride):
    g = graph(hr, pr)
    torch.manual_seed(0)
    block = SphereConvBlock(3, 4, skip_aggregation=aggregation).to(DOUBLE)
    x = torch.randn(2, g.num_pixels, 3, dtype=DOUBLE)
    assert_layouts_agree(block, x, g, None, stride, in_graph=g, coarse_out=stride)
    if not stride and aggregation == "sum":
        attention = SphereAttention(4).to(DOUBLE)
        assert_layouts_agree(attention, torch.randn(2, g.num_pixels, 4, dtype=DOUBLE), g,
                             in_graph=g)


@pytest.mark.parametrize("unpool", ["pixel_shuffle", "nearest", "SDPAConvTransposed"])
@pytest.mark.parametrize("pool", ["stride", "avg_pool"])
def test_stages_on_faces_are_their_gather_path(unpool, pool):
    fine, coarse = graph(3, -1), graph(2, -1)
    torch.manual_seed(0)
    down = SphereDown(3, 4, "GDN", pool=pool).to(DOUBLE)
    x = torch.randn(2, fine.num_pixels, 3, dtype=DOUBLE)
    assert_layouts_agree(down, x, fine, in_graph=fine, out_graph=coarse)
    up = SphereUp(4, 3, "GDN", unpool=unpool).to(DOUBLE)
    y = torch.randn(2, coarse.num_pixels, 4, dtype=DOUBLE)
    assert_layouts_agree(up, y, coarse, fine, in_graph=coarse, out_graph=fine)


OPTIONS = [
    LayerOptions(),
    LayerOptions(unpool="nearest"),
    LayerOptions(unpool="SDPAConvTransposed"),
    LayerOptions(single_conv=True),
    LayerOptions(pool="avg_pool", skip_aggregation="cat"),
    LayerOptions(pool="max_pool", skip_aggregation="max"),
    LayerOptions(nonlinearity="RB"),
    LayerOptions(attention=True),
]


def model_outputs(model, x, geometry, path):
    """x_hat, likelihoods and every parameter's gradient of the rate-distortion loss."""
    model.set_conv_path(path)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)  # the same quantisation noise on both paths
    out = model(x, geometry)
    bits = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
    (bits / x.shape[1] + 100 * torch.mean((out["x_hat"] - x) ** 2)).backward()
    values = {"x_hat": out["x_hat"].detach(), **out["likelihoods"]}
    values.update({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    return values


def assert_model_paths_agree(model, x, geometry, rtol, atol, monkeypatch):
    calls = {"transform": 0, "layer": 0}

    def counting(key, function):
        def wrapped(*args, **kwargs):
            calls[key] += 1
            return function(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(google_module, "to_faces", counting("transform", google_module.to_faces))
    monkeypatch.setattr(sdpa_module, "to_faces", counting("layer", sdpa_module.to_faces))
    faces = model_outputs(model, x, geometry, "auto")
    transforms = 4 if hasattr(model, "h_a") else 2
    convs = 2 if hasattr(model, "h_a") else 0  # the 1-hop ends of h_a and h_s
    assert calls == {"transform": transforms, "layer": convs}
    gather = model_outputs(model, x, geometry, "gather")
    assert calls == {"transform": transforms, "layer": convs}  # no face path on "gather"
    assert faces.keys() == gather.keys() and len(faces) > 3
    for name in faces:
        torch.testing.assert_close(faces[name], gather[name], rtol=rtol, atol=atol, msg=name)


def option_id(options: LayerOptions) -> str:
    changed = {k: v for k, v in options.to_dict().items() if v != getattr(LayerOptions, k)}
    return ",".join(f"{k}={v}" for k, v in changed.items()) or "default"


@pytest.mark.parametrize("options", OPTIONS, ids=option_id)
@pytest.mark.parametrize("cls", [SphereFactorizedPrior, SphereScaleHyperprior])
def test_every_model_option_on_faces_is_the_gather_path(cls, options, monkeypatch):
    hops = 2 if options.single_conv else 1
    geometry = SphereGeometry.build(8, 6, cls.num_levels, num_hops=hops).to(DOUBLE)
    torch.manual_seed(0)
    model = cls(6, 8, options).to(DOUBLE)
    x = torch.rand(2, 4**6, 3, dtype=DOUBLE)
    assert_model_paths_agree(model, x, geometry, 1e-9, 1e-9, monkeypatch)


@pytest.mark.parametrize("hr, pr, cls", [
    (6, 4, SphereFactorizedPrior), (7, 5, SphereFactorizedPrior),
    (8, 6, SphereMeanScaleHyperprior), (9, 7, SphereScaleHyperprior),
    (4, -1, SphereFactorizedPrior), (5, -1, SphereFactorizedPrior),
    (6, -1, SphereScaleHyperprior), (7, -1, SphereMeanScaleHyperprior),
])
def test_models_on_faces_agree_in_float32_at_resolutions_4_to_7(hr, pr, cls, threads,
                                                                 monkeypatch):
    """float32, 1e-5: both paths sum the same products in another order (a few ulps of the
    largest term per layer, well under 1e-5 for activations and gradients of order 1)."""
    geometry = SphereGeometry.build(hr, pr, cls.num_levels)
    torch.manual_seed(0)
    model = cls(8, 12)
    pixels = geometry.num_pixels
    x = torch.rand(1 if pr < 0 else 2, pixels, 3)
    assert_model_paths_agree(model, x, geometry, 1e-5, 1e-5, monkeypatch)


def test_training_benchmark_quick_mode_prints_both_ratios(capsys):
    from benchmarks.bench_model import main

    step, per_mac = main(["--quick", "--threads", "1", "--no-gather"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"step_ratio={step:.3f} mac_ratio={per_mac:.3f}"
    assert step > 0 and per_mac > 0 and any("face / compressai" in line for line in out)


@pytest.mark.parametrize("aggregation", ["sum", "cat", "max"])
def test_icnr_starts_pixel_shuffle_as_nearest_upsampling(aggregation):
    """After ``icnr_``, the four children of every coarse pixel receive the same values (on the
    gather path and the face path alike), and a block without it does not."""
    fine, coarse = graph(3, -1), graph(2, -1)
    torch.manual_seed(0)
    up = SphereUp(4, 3, None, skip_aggregation=aggregation).to(DOUBLE)
    y = torch.randn(2, coarse.num_pixels, 4, dtype=DOUBLE)
    children = up(y, coarse, fine).reshape(2, coarse.num_pixels, 4, 3)
    assert not torch.allclose(children[:, :, 1:], children[:, :, :1])
    assert icnr_(up) == 1
    for path in ("gather", "face"):
        for conv in up.block.convs:
            conv.path = path
        children = up(y, coarse, fine).reshape(2, coarse.num_pixels, 4, 3)
        torch.testing.assert_close(children, children[:, :, :1].expand_as(children), rtol=0,
                                   atol=1e-12)


def test_icnr_leaves_other_up_samplings_and_refuses_cheb_blocks():
    transposed = SphereUp(4, 3, None, unpool="SDPAConvTransposed")
    before = [p.clone() for p in transposed.parameters()]
    assert icnr_(transposed) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, transposed.parameters(), strict=True))
    with pytest.raises(ValueError, match="ICNR needs SDPA convolutions"):
        icnr_(SphereUp(4, 3, None, conv="ChebConv"))
