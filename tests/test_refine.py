"""Encoder-side latent refinement: straight-through rounding, the cost it minimises against the
real coder, and what it buys on a zoo model with the real bitstream."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

import oslo_codec
from spherical_models import zoo
from spherical_models.coding import codec
from spherical_models.coding.refine import (
    Refinement,
    coding_cost,
    refine_latent,
    straight_through_rounding,
)
from spherical_models.training.loss import RateDistortionLoss
from utils.cli import run_main
from utils.io import load_image
from utils.sampling import erp_to_healpix

REPO = Path(__file__).resolve().parent.parent
RES = 6  # the earth sample at resolution 6: 12 patches of 64 x 64

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def earth_map():
    return erp_to_healpix(load_image(REPO / "samples" / "earth_day.jpg"), RES)


def zoo_codec(quality):
    entry = zoo.zoo_entry(quality=quality)
    loaded = codec.load_codec(zoo.checked_path(entry))
    return loaded, entry.lmbda


def test_straight_through_rounding_rounds_as_the_decoder_and_passes_the_gradient():
    torch.manual_seed(0)
    models = torch.nn.ModuleDict({"gc": GaussianConditional(None),
                                  "eb": EntropyBottleneck(3)}).eval()
    with torch.no_grad():
        models["eb"].quantiles[:, :, 1] = torch.tensor([[0.3], [-0.2], [0.45]])
    y = (4 * torch.randn(2, 3, 5, 1)).requires_grad_(True)
    means = torch.randn(2, 3, 5, 1)
    medians = models["eb"].quantiles[:, :, 1:2].detach()

    def outputs():
        gc_out, _ = models["gc"](y, torch.ones_like(y), means=means)
        eb_out, _ = models["eb"](y)
        return gc_out, eb_out

    plain = outputs()
    with straight_through_rounding(models):
        through = outputs()
    expected = (torch.round(y - means) + means,
                torch.round(y - medians.reshape(1, 3, 1, 1)) + medians.reshape(1, 3, 1, 1))
    for p, t, e in zip(plain, through, expected, strict=True):
        torch.testing.assert_close(t, e)
        torch.testing.assert_close(p, e)
        # rounding has no gradient; the straight-through rounding has the identity's
        (grad_plain,) = torch.autograd.grad(p.sum(), y, allow_unused=True, materialize_grads=True)
        (grad_through,) = torch.autograd.grad(t.sum(), y)
        assert torch.all(grad_plain == 0)
        assert torch.all(grad_through == 1)
    # the models quantise as before once the block is left
    assert "quantize" not in vars(models["gc"]) and "quantize" not in vars(models["eb"])


def test_the_cost_is_the_evaluation_loss_and_its_rate_the_coders(earth_map):
    """``coding_cost`` of ``g_a(x)`` is the rate-distortion loss of the model's own evaluation
    forward (rounded latents, clamped output), and its rate is that of the file's bytes within
    4 % (measured: 2.3 % above them; the coder codes with the scale table's 64 scales and
    codes outliers with escape symbols, the cost bounds each likelihood by 1e-9)."""
    loaded, lmbda = zoo_codec(4)
    model = loaded.model
    geometry = loaded.geometry(RES, RES)
    x = torch.from_numpy(earth_map.astype(np.float32) / 255).reshape(12, 4**RES, 3)
    ids = torch.arange(12)
    with torch.no_grad():
        y = model.g_a(x, geometry, ids)
        cost = coding_cost(model, x, y, geometry, ids, lmbda)
        out = model(x, geometry, ids)
        out["x_hat"] = out["x_hat"].clamp(0, 1)
        reference = RateDistortionLoss(lmbda)(out, x)
    torch.testing.assert_close(cost, reference["loss"])
    data = codec.encode_map(loaded, earth_map, patch_res=RES, batch_size=12)
    distortion = (reference["loss"] - reference["bpp_loss"]).item()
    real_bpp = 8 * len(data) / len(earth_map)
    assert cost.item() - distortion == pytest.approx(real_bpp, rel=0.04)


@pytest.mark.parametrize("quality", [2, 5])
def test_refinement_lowers_the_real_cost_of_the_coded_map(earth_map, quality):
    """30 steps a batch: the file decodes (CRC-32 of every latent checked) and its real cost,
    8 * bytes / pixels + lambda * 255^2 * MSE of the decoded map, is lower than without
    refinement. Measured (AMD EPYC, 1 and 2 threads alike): -7.1 % (q2, lambda 0.0018) and
    -7.8 % (q5, lambda 0.013) of the cost; the test asks for -3 %, room for another CPU's
    float32 descent to end elsewhere.
    """
    loaded, lmbda = zoo_codec(quality)

    def real_cost(refinement):
        data = codec.encode_map(loaded, earth_map, refinement=refinement)
        decoded = codec.decode(loaded, codec.unpack(data))
        mse = np.mean((decoded.astype(np.float64) - earth_map) ** 2) / 255**2
        return 8 * len(data) / len(earth_map) + lmbda * 255**2 * mse

    plain, refined = real_cost(None), real_cost(Refinement(30))
    assert refined < 0.97 * plain


def test_refine_latent_keeps_the_best_iterate(earth_map):
    """An absurd learning rate makes every Adam step worse: the latent given back is then
    ``g_a(x)`` itself, so refinement never raises the cost it minimises."""
    loaded, lmbda = zoo_codec(1)
    geometry = loaded.geometry(RES, RES)
    x = torch.from_numpy(earth_map.astype(np.float32) / 255).reshape(12, 4**RES, 3)[:2]
    ids = torch.arange(2)
    with torch.no_grad():
        y = loaded.model.g_a(x, geometry, ids)
    wild = refine_latent(loaded.model, x, y, geometry, ids, Refinement(3, lr=1e3, lmbda=lmbda))
    torch.testing.assert_close(wild, y)
    tuned = refine_latent(loaded.model, x, y, geometry, ids, Refinement(10, lmbda=lmbda))
    with torch.no_grad():
        before = coding_cost(loaded.model, x, y, geometry, ids, lmbda)
        after = coding_cost(loaded.model, x, tuned, geometry, ids, lmbda)
    assert after < before


@pytest.mark.parametrize("argv, message", [
    (["--refine-lr", "0.1"], "--refine-lr and --refine-lambda need --refine STEPS"),
    (["--refine", "-2"], "--refine must not be negative, got -2"),
    (["--refine", "5", "--refine-lr", "0"], "--refine: refinement learning rate must be "
                                            "positive, got 0"),
    (["--refine", "5", "-p", "-1", "-r", "6"], "latent refinement codes the whole sphere at "
                                               "once or by patches: give --tile-res -1 or "
                                               "-p >= 0"),
])
def test_refinement_flags_are_checked(monkeypatch, capsys, tmp_path, argv, message):
    target = tmp_path / "out.oslo"
    monkeypatch.setattr(sys, "argv", ["oslo_codec.py", "encode", "-i",
                                      str(REPO / "samples" / "earth_day.jpg"), "-o",
                                      str(target), "--tile-res", "4", *argv])
    with pytest.raises(SystemExit) as exit_info:
        run_main(oslo_codec.main)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines()
             if not line.startswith("[oslo] ")]
    assert lines == [f"error: {message}"]
    assert not target.exists()
