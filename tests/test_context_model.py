"""The autoregressive context models: causal schedule, masks, real bitstreams, rates."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spherical_models.geometry import SphereGeometry
from spherical_models.graph import OsloGraph
from spherical_models.layers.sdpa_conv import SDPAConv
from spherical_models.models import (
    SphereJointAutoregressiveHierarchicalPriors,
    SphereMeanScaleHyperprior,
)
from spherical_models.models.base import from_entropy_layout, to_entropy_layout
from spherical_models.models.context import (
    causal_depth,
    decoding_groups,
    depth_groups,
    masked_rows,
)
from utils.io import load_image
from utils.sampling import erp_to_healpix
from utils.structures import build_oslo_structure

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "earth_day.jpg"
CONTEXT_MODELS = [None, "autoregressive", "full"]


def context_codec(N, M, context_model=None, ar_hops=1):
    """The mean-scale hyperprior, or the joint model of ``context_model``."""
    if context_model is None:
        return SphereMeanScaleHyperprior(N, M)
    return SphereJointAutoregressiveHierarchicalPriors(N, M, context_model=context_model,
                                                       ar_hops=ar_hops)

# (healpix_res, patch_res, num_hops, weight_type): small patches and whole spheres.
SMALL_STRUCTURES = [
    (5, 3, 1, "identity"), (5, 3, 2, "identity"), (5, 3, 2, "gaussian"),
    (2, -1, 1, "identity"), (2, -1, 2, "identity"),
]


def reference_depth(index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Depth by its definition, pixel after pixel in NESTED order (causal neighbours come first)."""
    present = (weight != 0).any(axis=0)
    depth = []
    for i in range(len(index)):
        causal = [j for j, keep in zip(index[i], present[i], strict=True) if keep and j < i]
        depth.append(1 + max(depth[j] for j in causal) if causal else 0)
    return np.array(depth)


def reference_masked_conv(conv: SDPAConv, x, index, weight) -> torch.Tensor:
    """A masked SDPAConv pixel by pixel: neighbours ``j < i`` only, the centre for mask B."""
    out = torch.empty(x.shape[0], len(index), conv.out_channels)
    for i in range(len(index)):
        acc = conv.bias.expand(x.shape[0], -1)
        if conv.mask == "B":
            acc = acc + x[:, i] @ conv.weight[0]
        for k, j in enumerate(index[i]):
            if j < i:
                acc = acc + float(weight[i, k]) * (x[:, j] @ conv.weight[1 + k])
        out[:, i] = acc
    return out


@pytest.mark.parametrize("hr, pr, hops, weight_type", SMALL_STRUCTURES)
def test_causal_depth_matches_its_definition(hr, pr, hops, weight_type):
    s = build_oslo_structure(hr, pr, hops, weight_type)
    depth = causal_depth(s.index, s.weight)
    assert np.array_equal(depth, reference_depth(s.index, s.weight))
    causal = (s.index < np.arange(len(s.index))[:, None]) & (s.weight != 0).any(axis=0)
    rows, cols = np.nonzero(causal)
    assert (depth[s.index[rows, cols]] < depth[rows]).all()
    groups = depth_groups(depth)
    assert len(groups) == depth.max() + 1
    assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(len(depth)))
    assert all((depth[g] == t).all() and (np.diff(g) > 0).all() for t, g in enumerate(groups))


@pytest.mark.parametrize("hr, pr, hops, weight_type", SMALL_STRUCTURES)
@pytest.mark.parametrize("mask", ["A", "B"])
def test_masks_keep_exactly_the_neighbours_of_smaller_nested_index(
    hr, pr, hops, weight_type, mask
):
    torch.manual_seed(0)
    s = build_oslo_structure(hr, pr, hops, weight_type)
    graph = OsloGraph(s)
    conv = SDPAConv(3, 4, num_hops=hops, mask=mask)
    x = torch.randn(2, graph.num_pixels, 3)
    patch_ids = torch.tensor([5, 1]) if graph.num_weight_slices > 1 else None
    with torch.no_grad():
        full = conv(x, graph, patch_ids)
        for b in range(2):
            slice_ = s.weight[patch_ids[b] if patch_ids is not None else 0]
            expected = reference_masked_conv(conv, x[b : b + 1], s.index, slice_)
            torch.testing.assert_close(full[b : b + 1], expected)
        rows = torch.randperm(graph.num_pixels)[: graph.num_pixels // 3]
        torch.testing.assert_close(masked_rows(conv, x, graph, rows, patch_ids), full[:, rows])


def test_decoding_groups_need_a_mask_a_conv_and_a_graph_of_its_reach():
    graph = OsloGraph(build_oslo_structure(4, 3, 1))
    with pytest.raises(ValueError, match="mask 'A'"):
        decoding_groups(SDPAConv(2, 2, mask="B"), graph)
    with pytest.raises(ValueError, match="2-hop graph"):
        decoding_groups(SDPAConv(2, 2, num_hops=2, mask="A"), graph)


def make_model(context_model, ar_hops, hr, pr, N=8, M=12):
    model = context_codec(N, M, context_model=context_model, ar_hops=ar_hops)
    geo = SphereGeometry.build(hr, pr, model.num_levels, num_hops=model.graph_hops)
    return model, geo


def rate_distortion(out, x, lmbda=0.01):
    bits = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
    return bits / x[..., 0].numel() + lmbda * 255**2 * torch.mean((out["x_hat"] - x) ** 2)


def train(model, geo, x, steps=2, lr=1e-2, patch_ids=None):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = rate_distortion(model(x, geo, patch_ids), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("context_model", CONTEXT_MODELS)
@pytest.mark.parametrize("ar_hops", [1, 2])
def test_every_parameter_gets_a_gradient_in_training(context_model, ar_hops):
    torch.manual_seed(0)
    model, geo = make_model(context_model, ar_hops, 7, 6)
    x = torch.rand(2, geo.num_pixels, 3)
    out = model(x, geo)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 12, 16, 1)
    assert ("z" in out["likelihoods"]) == (context_model != "autoregressive")
    rate_distortion(out, x).backward()
    if context_model != "autoregressive":
        model.aux_loss().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


GEOMETRIES = {  # name: (healpix_res, patch_res, weight_type, patch_ids)
    "patches": (7, 6, "identity", None),
    "gaussian_patches": (7, 6, "gaussian", [3, 40]),
    "sphere": (6, -1, "identity", None),
}


@pytest.mark.parametrize("context_model", CONTEXT_MODELS)
@pytest.mark.parametrize("ar_hops", [1, 2])
@pytest.mark.parametrize("where", list(GEOMETRIES))
def test_decompress_reproduces_the_eval_forward_exactly(context_model, ar_hops, where):
    hr, pr, weight_type, ids = GEOMETRIES[where]
    if context_model is None and (ar_hops == 2 or weight_type != "identity"):
        pytest.skip("no context model: ar_hops and graph weights play no part here")
    torch.manual_seed(1)
    model = context_codec(8, 12, context_model=context_model, ar_hops=ar_hops)
    geo = SphereGeometry.build(hr, pr, 7, num_hops=model.graph_hops, weight_type=weight_type)
    patch_ids = None if ids is None else torch.tensor(ids)
    x = torch.rand(2 if pr >= 0 else 1, geo.num_pixels, 3)
    train(model, geo, x, patch_ids=patch_ids)
    model.update(force=True)
    model.eval()
    with torch.no_grad():
        expected = model(x, geo, patch_ids)["x_hat"].clamp(0, 1)
        compressed = model.compress(x, geo, patch_ids)
        decoded = model.decompress(compressed["strings"], compressed["shape"], geo, patch_ids)
    assert len(compressed["strings"]) == (1 if context_model == "autoregressive" else 2)
    assert all(len(strings) == len(x) for strings in compressed["strings"])
    assert torch.equal(decoded["x_hat"], expected)
    assert decoded["y_hat"].abs().sum() > 0  # non-trivial latents


def nested_order_reference(model, y, hyper, graph) -> torch.Tensor:
    """Quantise ``y`` pixel after pixel in NESTED order, each context from the full masked
    convolution over everything quantised so far."""
    y_hat = torch.zeros_like(y)
    for i in range(y.shape[1]):
        context = model.context_prediction(y_hat, graph)[:, i]
        features = context if hyper is None else torch.cat([hyper[:, i], context], dim=-1)
        _, means = model.entropy_parameters(features).chunk(2, dim=-1)
        y_hat[:, i] = torch.round(y[:, i] - means) + means
    return y_hat


@pytest.mark.parametrize("context_model", ["autoregressive", "full"])
@pytest.mark.parametrize("ar_hops", [1, 2])
def test_grouped_decoding_equals_pixel_by_pixel_nested_order(context_model, ar_hops):
    torch.manual_seed(2)
    model, geo = make_model(context_model, ar_hops, 6, -1)
    x = torch.rand(1, geo.num_pixels, 3)
    train(model, geo, x)
    model.update(force=True)
    model.eval()
    with torch.no_grad():
        compressed = model.compress(x, geo)
        decoded = model.decompress(compressed["strings"], compressed["shape"], geo)["y_hat"]
        y = model.g_a(x, geo)
        hyper = None
        if context_model == "full":
            z = to_entropy_layout(model.hyper_analysis(y, geo, None))
            bottleneck = model.entropy_bottleneck
            z_hat = bottleneck.decompress(bottleneck.compress(z), z.shape[-2:])
            hyper = model.hyper_synthesis(from_entropy_layout(z_hat), geo, None)
        expected = nested_order_reference(model, y, hyper, geo[4])
    assert len(decoding_groups(model.context_prediction, geo[4])) < y.shape[1] // 2
    # the same symbols: any difference would be at least 1, float rounding stays far below
    assert (decoded - expected).abs().max() < 1e-4


@pytest.fixture(scope="module")
def earth_sphere():
    """The earth sample on the whole sphere at resolution 5, in [0, 1]."""
    return torch.from_numpy(erp_to_healpix(load_image(SAMPLE), 5).astype(np.float32) / 255)[None]


@pytest.mark.parametrize("ar_hops", [1, 2])
def test_actual_rate_is_the_coded_gaussians_within_the_rans_overheads(ar_hops, earth_sphere):
    """The context-only model on the earth sample, one string of 48 x 96 latents.

    The transforms keep their initial weights, the last analysis stage amplified so that the
    latents carry about 1.5 bits each; the context model and entropy parameters are then
    trained on the rate alone, so that the predicted Gaussians fit the latents as a trained
    codec's do.

    The margins come from the coder, not from one run (the trained weights, hence the rates,
    differ with the CPU and the thread count):

    * the coder codes each symbol with the Gaussian of its scale rounded *up* to the scale
      table: its ideal size is ``B_table``, the sum of ``-log2`` of the likelihoods under the
      table scales, computed exactly here;
    * the rANS string adds its flush (8 bytes) and its 32-bit alignment (up to 3 bytes): 88
      bits; the 16-bit quantisation of the CDFs costs each symbol at most ``-log2(1 - n
      2^-16)`` for a table of ``n`` entries with probability at least ``2^-16`` each, under
      0.5% here (and the coder may pay less than the model in the tails, where its floor of
      ``2^-16`` is above the likelihoods' ``1e-9``: only the upper bound holds);
    * rounding a scale up by at most the table's ratio ``r`` costs a symbol at most ``log2 r``
      bits against its likelihood (the mass of a bin falls at most by the factor by which its
      scale grows; symbols in the tails even gain): 0.031 bits for the 256 levels used here,
      0.18 for CompressAI's 64. Fitted scales cost far less on average.

    """
    torch.manual_seed(0)
    model, geo = make_model("autoregressive", ar_hops, 5, -1, N=8, M=96)
    model.scale_table_levels = 256
    x = earth_sphere
    with torch.no_grad():
        for p in model.g_a.stages[-1].parameters():
            p.mul_(5)
    entropy_model = [*model.context_prediction.parameters(), *model.entropy_parameters.parameters()]
    optimizer = torch.optim.Adam(entropy_model, lr=3e-3)
    for _ in range(40):
        rate = -torch.log2(model(x, geo)["likelihoods"]["y"]).sum()
        optimizer.zero_grad()
        rate.backward()
        optimizer.step()
    model.update(force=True)
    model.eval()
    gc = model.gaussian_conditional
    with torch.no_grad():
        theoretical = -torch.log2(model(x, geo)["likelihoods"]["y"].double()).sum().item()
        y = model.g_a(x, geo)
        groups = decoding_groups(model.context_prediction, geo[4])
        y_hat, scales, means = model._quantize_in_order(y, None, geo[4], None, groups)
        table_scales = gc.scale_table[gc.build_indexes(scales).long()]
        table_bits = -torch.log2(model._likelihood(y_hat, table_scales, means).double()).sum()
        (y_strings,) = model.compress(x, geo)["strings"]
    actual = 8 * len(y_strings[0])
    symbols = y.numel()
    ratio = (256 / 0.11) ** (1 / 255)
    per_symbol = math.log2(ratio)
    assert theoretical > 5000
    assert table_bits.item() <= theoretical + per_symbol * symbols + 1e-6 * theoretical
    assert actual <= table_bits.item() * 1.005 + 88, (actual, table_bits.item(), theoretical)


def test_options_are_checked_and_recorded():
    with pytest.raises(ValueError, match="context_model"):
        context_codec(8, 12, context_model="joint")
    with pytest.raises(ValueError, match="ar_hops"):
        context_codec(8, 12, context_model="full", ar_hops=3)
    model = context_codec(8, 12, context_model="autoregressive", ar_hops=2)
    assert model.config["context_model"] == "autoregressive" and model.config["ar_hops"] == 2
    assert model.graph_hops == 2 and model.num_levels == 5
    assert not hasattr(model, "entropy_bottleneck") and not hasattr(model, "h_s")
    geo = SphereGeometry.build(6, 5, 5, num_hops=1)
    with pytest.raises(ValueError, match="2-hop graph"):
        model(torch.rand(1, geo.num_pixels, 3), geo)
