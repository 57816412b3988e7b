"""SDPAConv / SDPAConvTransposed: both paths agree, and match healpy, Conv2d and brute force."""

import importlib.util
import re
from functools import cache
from pathlib import Path

import healpy
import numpy as np
import pytest
import torch

from spherical_models.graph import OsloGraph
from spherical_models.layers import SDPAConv, SDPAConvTransposed, gather_conv
from utils.healpix import TWO_HOP_RING_OFFSETS
from utils.structures import build_oslo_structure

# SW, W, NW, N, NE, E, SE, S as face-local (dx, dy), measured against healpy (DESIGN.md).
ONE_HOP = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
DOUBLE = torch.float64


@cache
def structure(hr, pr, hops=1, weight_type="identity"):
    return build_oslo_structure(hr, pr, hops, weight_type)


@cache
def graph(hr, pr, hops=1, weight_type="identity"):
    return OsloGraph(structure(hr, pr, hops, weight_type)).to(DOUBLE)


def layer(cls, c_in, c_out, hops, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(c_in, c_out, hops, **kwargs).to(DOUBLE)


def run_with_grads(conv, x, *args):
    """Output and the gradients of (input, weight, bias) for a fixed random output gradient."""
    x = x.detach().requires_grad_()
    conv.zero_grad(set_to_none=True)
    out = conv(x, *args)
    seed = torch.Generator().manual_seed(1)
    out.backward(torch.randn(out.shape, dtype=out.dtype, generator=seed))
    return out.detach(), x.grad, conv.weight.grad, conv.bias.grad


def assert_paths_agree(conv, x, g):
    conv.path = "face"
    face = run_with_grads(conv, x, g)
    conv.path = "gather"
    gather = run_with_grads(conv, x, g)
    for a, b in zip(face, gather, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


HOPS = [(1, 1), (2, 1), (2, 2)]  # (graph hops, convolution hops)


@pytest.mark.parametrize("graph_hops, conv_hops", HOPS)
@pytest.mark.parametrize("hr, pr", [(6, 4), (6, 1), (6, 0), (0, -1), (1, -1), (2, -1), (3, -1)])
def test_sdpaconv_face_and_gather_paths_agree(hr, pr, graph_hops, conv_hops):
    g = graph(hr, pr, graph_hops)
    x = torch.randn(3, g.num_pixels, 4, dtype=DOUBLE)
    assert_paths_agree(layer(SDPAConv, 4, 5, conv_hops), x, g)


@pytest.mark.parametrize("graph_hops, conv_hops", HOPS)
@pytest.mark.parametrize("hr, pr", [(6, 4), (6, 1), (1, -1), (2, -1), (3, -1)])
def test_transposed_face_and_gather_paths_agree(hr, pr, graph_hops, conv_hops):
    g = graph(hr, pr, graph_hops)
    x = torch.randn(3, g.num_pixels // 4, 4, dtype=DOUBLE)
    assert_paths_agree(layer(SDPAConvTransposed, 4, 5, conv_hops), x, g)


@pytest.mark.parametrize("path", ["face", "gather"])
@pytest.mark.parametrize("hr, pr, hops", [(6, 4, 1), (6, 4, 2), (2, -1, 2)])
def test_transposed_is_sdpaconv_of_child_zero_upsampling(hr, pr, hops, path):
    g = graph(hr, pr, hops)
    up = layer(SDPAConvTransposed, 3, 2, hops, path=path)
    conv = layer(SDPAConv, 3, 2, hops, path="gather")
    conv.load_state_dict(up.state_dict())
    x = torch.randn(2, g.num_pixels // 4, 3, dtype=DOUBLE)
    fine = torch.zeros(2, g.num_pixels, 3, dtype=DOUBLE)
    fine[:, ::4] = x
    torch.testing.assert_close(up(x, g), conv(fine, g))


def conv2d_like(conv):
    """An independent ``nn.Conv2d`` holding ``conv``'s weights, placed by direction offset."""
    h = conv.num_hops
    offsets = ONE_HOP + ([tuple(o) for o in TWO_HOP_RING_OFFSETS] if h == 2 else [])
    ref = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 2 * h + 1, padding=h).to(DOUBLE)
    with torch.no_grad():
        ref.weight[:, :, h, h] = conv.weight[0].T
        for k, (dx, dy) in enumerate(offsets):
            ref.weight[:, :, h + dy, h + dx] = conv.weight[1 + k].T
        ref.bias.copy_(conv.bias)
    return ref


@pytest.mark.parametrize("path", ["face", "gather"])
@pytest.mark.parametrize("hops", [1, 2])
def test_patch_convolution_is_zero_padded_conv2d(hops, path):
    hr, pr, patch = 6, 4, 37
    conv = layer(SDPAConv, 3, 4, hops, path=path)
    x = torch.randn(1, 4**pr, 3, dtype=DOUBLE)
    pixels = patch * 4**pr + np.arange(4**pr)
    px, py, _ = healpy.pix2xyf(2**hr, pixels, nest=True)
    px, py = px - px.min(), py - py.min()
    image = torch.zeros(1, 3, 2**pr, 2**pr, dtype=DOUBLE)
    image[0, :, py, px] = x[0].T
    expected = conv2d_like(conv)(image)[0, :, py, px].T
    torch.testing.assert_close(conv(x, graph(hr, pr, hops))[0], expected)


@pytest.mark.parametrize("hops", [1, 2])
def test_sphere_convolution_is_conv2d_inside_each_face(hops):
    res, nside = 3, 8
    conv = layer(SDPAConv, 3, 4, hops)
    x = torch.randn(1, 12 * nside**2, 3, dtype=DOUBLE)
    px, py, face = healpy.pix2xyf(nside, np.arange(12 * nside**2), nest=True)
    faces = torch.zeros(12, 3, nside, nside, dtype=DOUBLE)
    faces[face, :, py, px] = x[0]
    expected = conv2d_like(conv)(faces)[face, :, py, px]
    inside = (px >= hops) & (px < nside - hops) & (py >= hops) & (py < nside - hops)
    out = conv(x, graph(res, -1, hops))[0]
    torch.testing.assert_close(out[inside], expected[inside])


@pytest.mark.parametrize("path", ["face", "gather"])
@pytest.mark.parametrize("graph_hops", [1, 2])
@pytest.mark.parametrize("res", [0, 1, 2, 3])
def test_sphere_one_hop_matches_healpy_neighbours(res, graph_hops, path):
    nside = 2**res
    npix = 12 * nside**2
    conv = layer(SDPAConv, 3, 4, 1, path=path)
    x = torch.randn(2, npix, 3, dtype=DOUBLE)
    neighbours = torch.from_numpy(healpy.get_all_neighbours(nside, np.arange(npix), nest=True).T)
    expected = x @ conv.weight[0] + conv.bias
    for k in range(8):
        present = (neighbours[:, k] >= 0).to(DOUBLE)[:, None]
        expected = expected + present * (x[:, neighbours[:, k].clamp(min=0)] @ conv.weight[1 + k])
    torch.testing.assert_close(conv(x, graph(res, -1, graph_hops)), expected)


MASK_GRAPHS = [(2, -1, 1), (2, -1, 2), (4, 2, 1), (4, 2, 2)]


def masked_reference(conv, x, s):
    """Per-pixel loop: the centre for ``B``, and the neighbours with a smaller NESTED index."""
    out = torch.zeros(x.shape[0], x.shape[1], conv.out_channels, dtype=DOUBLE) + conv.bias
    for i in range(x.shape[1]):
        if conv.mask == "B":
            out[:, i] += x[:, i] @ conv.weight[0]
        for k in range(conv.num_directions):
            j = s.index[i, k]
            if s.weight[0, i, k] != 0 and j < i:
                out[:, i] += s.weight[0, i, k] * x[:, j] @ conv.weight[1 + k]
    return out


@pytest.mark.parametrize("mask", ["A", "B"])
@pytest.mark.parametrize("hr, pr, hops", MASK_GRAPHS)
def test_masked_convolution_matches_brute_force(hr, pr, hops, mask):
    conv = layer(SDPAConv, 2, 3, hops, mask=mask)
    x = torch.randn(2, graph(hr, pr, hops).num_pixels, 2, dtype=DOUBLE)
    with torch.no_grad():
        out = conv(x, graph(hr, pr, hops))
        torch.testing.assert_close(out, masked_reference(conv, x, structure(hr, pr, hops)))


@pytest.mark.parametrize("mask", ["A", "B"])
@pytest.mark.parametrize("hr, pr, hops", MASK_GRAPHS)
def test_masked_convolution_is_causal_in_nested_order(hr, pr, hops, mask):
    g, s = graph(hr, pr, hops), structure(hr, pr, hops)
    n = g.num_pixels
    conv = layer(SDPAConv, 2, 2, hops, mask=mask)
    x = torch.randn(1, n, 2, dtype=DOUBLE).repeat(n + 1, 1, 1)
    x[1 + torch.arange(n), torch.arange(n)] += 1.0  # batch element 1 + j: input j changed
    with torch.no_grad():
        out = conv(x, g)
    changed = (out[1:] - out[:1]).abs().amax(-1) > 1e-12  # [j, i]: output i moved with input j
    expected = np.zeros((n, n), dtype=bool)
    rows = np.repeat(np.arange(n), s.index.shape[1])
    keep = (s.weight[0] != 0).ravel() & (s.index.ravel() < rows)
    expected[s.index.ravel()[keep], rows[keep]] = True
    if mask == "B":
        expected[np.arange(n), np.arange(n)] = True
    np.testing.assert_array_equal(changed.numpy(), expected)
    j, i = np.nonzero(changed.numpy())
    assert (i > j).all() if mask == "A" else (i >= j).all()


@pytest.mark.parametrize("hops", [1, 2])
def test_gaussian_patch_weights_follow_patch_ids(hops):
    hr, pr = 4, 2
    s = structure(hr, pr, hops, "gaussian")
    g = graph(hr, pr, hops, "gaussian")
    conv = layer(SDPAConv, 3, 4, hops)
    patch_ids = torch.tensor([0, 57, 191])
    x = torch.randn(3, 4**pr, 3, dtype=DOUBLE)
    weights = torch.from_numpy(s.weight[patch_ids.numpy()]).to(DOUBLE)  # [B, n, K]
    neighbours = x[:, torch.from_numpy(s.index)]  # [B, n, K, C_in]
    expected = x @ conv.weight[0] + conv.bias + torch.einsum(
        "bnk,bnkc,kcd->bnd", weights, neighbours, conv.weight[1:]
    )
    torch.testing.assert_close(conv(x, g, patch_ids), expected)
    with pytest.raises(ValueError, match="patch_ids"):
        conv(x, g)
    conv.path = "face"
    with pytest.raises(ValueError, match="face path"):
        conv(x, g, patch_ids)


def test_gather_conv_backward_passes_gradcheck():
    torch.manual_seed(0)
    index = torch.randint(0, 6, (5, 3))
    weight = torch.rand(2, 5, 3, dtype=DOUBLE)
    x = torch.randn(2, 6, 3, dtype=DOUBLE, requires_grad=True)
    kernel = torch.randn(3, 3, 2, dtype=DOUBLE, requires_grad=True)
    assert torch.autograd.gradcheck(gather_conv, (x, index, weight, kernel))
    assert torch.autograd.gradcheck(lambda x: gather_conv(x, index, weight, kernel.detach()), x)
    assert torch.autograd.gradcheck(lambda k: gather_conv(x.detach(), index, weight, k), kernel)


def test_float32_paths_agree_to_1e_5():
    g = OsloGraph(structure(6, 4, 1))
    torch.manual_seed(0)
    conv = SDPAConv(16, 16)
    x = torch.randn(2, g.num_pixels, 16)
    face = conv(x, g)
    conv.path = "gather"
    torch.testing.assert_close(face, conv(x, g), rtol=0, atol=1e-5)


def test_auto_path_picks_face_for_identity_and_gather_for_masks(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "spherical_models.layers.sdpa_conv._GatherMatmul.apply",
        lambda *args: calls.append(1) or torch.zeros(1, 16, 2, dtype=DOUBLE),
    )
    x = torch.randn(1, 16, 2, dtype=DOUBLE)
    layer(SDPAConv, 2, 2, 1)(x, graph(3, 2))
    assert not calls
    layer(SDPAConv, 2, 2, 1, mask="A")(x, graph(3, 2))
    assert calls


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="mask"):
        SDPAConv(2, 2, mask="C")
    with pytest.raises(ValueError, match="path"):
        SDPAConv(2, 2, path="fast")
    with pytest.raises(ValueError, match="path"):
        SDPAConv(2, 2).path = "fast"
    with pytest.raises(ValueError, match="2-hop"):
        layer(SDPAConv, 2, 2, 2)(torch.randn(1, 16, 2, dtype=DOUBLE), graph(3, 2, 1))
    with pytest.raises(ValueError, match="expects input"):
        layer(SDPAConv, 2, 2, 1)(torch.randn(1, 15, 2, dtype=DOUBLE), graph(3, 2))
    with pytest.raises(ValueError, match="face path"):
        layer(SDPAConv, 2, 2, 1, mask="B", path="face")(
            torch.randn(1, 16, 2, dtype=DOUBLE), graph(3, 2)
        )
    with pytest.raises(ValueError, match="coarser"):
        layer(SDPAConvTransposed, 2, 2, 1)(torch.randn(1, 1, 2, dtype=DOUBLE), graph(3, 0))


def test_weight_shape_initialisation_and_repr():
    conv = SDPAConv(16, 8, num_hops=2, mask="A")
    assert conv.weight.shape == (25, 16, 8)
    bound = 1 / np.sqrt(25 * 16)
    assert conv.weight.abs().max() <= bound and conv.weight.std() > bound / 3
    assert repr(conv) == "SDPAConv(16, 8, num_hops=2, bias=True, path=auto, mask=A)"
    assert SDPAConvTransposed(4, 4, bias=False).bias is None
    assert set(conv.state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize("path", ["face", "gather"])
@pytest.mark.parametrize("hr, pr", [(4, 2), (2, -1)])
def test_layers_are_device_agnostic(hr, pr, path):
    """Forward and backward on the meta device: no tensor is created on a fixed device."""
    g = OsloGraph(structure(hr, pr, 2)).to("meta")
    for cls, pixels in ((SDPAConv, g.num_pixels), (SDPAConvTransposed, g.num_pixels // 4)):
        conv = cls(3, 4, 2, path=path).to("meta")
        x = torch.randn(2, pixels, 3, device="meta", requires_grad=True)
        out = conv(x, g)
        out.sum().backward()
        assert out.shape == (2, g.num_pixels, 4) and x.grad.shape == x.shape


def test_benchmark_quick_mode_prints_the_ratio_line(capsys):
    path = Path(__file__).parents[1] / "benchmarks" / "bench_sdpaconv.py"
    spec = importlib.util.spec_from_file_location("bench_sdpaconv", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ratios = bench.main(["--quick", "--repeats", "1"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"face_ratio=\d+\.\d+ gather_ratio=\d+\.\d+", last)
    assert set(ratios) == {"face", "gather"}
