"""The learning-rate warm-up keeps the first steps at lr 1e-3 bounded; ``--clamp-reconstruction``
bounds a step whose decoder overshoots; the OSLO initialisation rule has the original's bound;
``--icnr`` ties the pixel-shuffle blocks' children."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import main_sphere_compression
from baselines import train_erp_compressai
from spherical_models.cli import check_arguments
from spherical_models.config import ErpRunConfig, RunConfig
from spherical_models.geometry import SphereGeometry
from spherical_models.layers.blocks import SphereUp
from spherical_models.layers.sdpa_conv import SDPAConv, reset_sdpa_parameters
from spherical_models.models.google import SphereScaleHyperprior
from spherical_models.pipeline import build_model
from spherical_models.training.epoch import EpochContext, clamped_reconstruction, train_step
from spherical_models.training.loss import RateDistortionLoss
from spherical_models.training.optim import configure_optimizers, steps_done, warmup_factor
from utils.errors import OsloError
from utils.io import load_image
from utils.sampling import erp_to_healpix

REPO = Path(__file__).resolve().parent.parent
HR, PR = 7, 6


@pytest.fixture(scope="module")
def photo_patches():
    """All 64 x 64 patches (pr 6) of three training photographs at resolution 7."""
    names = ("aqua.jpg", "dune.jpg", "storm.jpg")
    maps = [erp_to_healpix(load_image(REPO / "samples" / "photos" / n), HR) for n in names]
    patches = np.concatenate([m.reshape(-1, 4**PR, 3) for m in maps])
    return torch.from_numpy(patches).float() / 255


def first_losses(patches, warmup: int, threads: int, steps: int = 20) -> np.ndarray:
    """Losses of the first ``steps`` steps of the default OSLO hyperprior (64, 96) at lr 1e-3,
    lambda 0.03, batches of 8 patches, clipping 1 (the set-up that blew up at step 3)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = SphereScaleHyperprior(64, 96)
        geometry = SphereGeometry.build(HR, PR, model.num_levels, num_hops=model.graph_hops)
        optimizer, aux_optimizer = configure_optimizers(model, 1e-3, 1e-3)
        ctx = EpochContext(RateDistortionLoss(0.03), optimizer, aux_optimizer, geometry,
                           torch.device("cpu"), warmup_steps=warmup)
        npatch = 12 * 4 ** (HR - PR)
        losses = []
        for _ in range(steps):
            rows = rng.integers(len(patches), size=8)
            ids = torch.from_numpy(rows % npatch)
            out, _ = train_step(lambda x, ids=ids: model(x, geometry, ids), model,
                                patches[rows], ctx)
            losses.append(out["loss"].item())
        assert steps_done(optimizer) == steps
        return np.array(losses)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("threads", [1, 2])
def test_warmup_bounds_the_first_steps(photo_patches, threads):
    losses = first_losses(photo_patches, warmup=50, threads=threads)
    assert np.all(np.isfinite(losses))
    assert losses.max() < 3 * losses[0], losses
    assert losses[-5:].mean() < losses[0]  # it learns


def test_without_warmup_the_same_start_blows_up(photo_patches):
    """The control: the same 20 steps without warm-up reach more than 100x the first loss
    (8e5x measured; Adam's first steps through the decoder's inverse GDNs)."""
    losses = first_losses(photo_patches, warmup=0, threads=1)
    assert losses.max() > 100 * losses[0], losses


def test_warmup_factor():
    assert [warmup_factor(t, 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_warmed_step_restores_the_scheduled_rate():
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    ctx = EpochContext(lambda out, x: {"loss": (out["x"] - x).pow(2).sum()}, optimizer, None,
                       None, torch.device("cpu"), clip_max_norm=0, warmup_steps=10)
    optimizer.state[param]["step"] = torch.tensor(0.0)  # SGD keeps no count: give it one
    x = torch.ones(3)
    train_step(lambda inputs: {"x": param}, None, x, ctx)
    # SGD step of lr * 1/10 on the gradient -2 (x - 0): param = 0.1 * 0.1 * 2
    torch.testing.assert_close(param.detach(), torch.full((3,), 0.02))
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_clamped_reconstruction_is_the_clamp_with_an_identity_gradient():
    x_hat = torch.tensor([-0.5, 0.0, 0.3, 1.0, 2991.0], requires_grad=True)
    clamped = clamped_reconstruction(x_hat)
    assert torch.equal(clamped, torch.tensor([0.0, 0.0, 0.3, 1.0, 1.0]))
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (weights * clamped).sum().backward()
    assert torch.equal(x_hat.grad, weights)


@pytest.mark.parametrize("clamp", [False, True])
def test_clamp_reconstruction_bounds_an_overshoot_and_pulls_it_back(clamp):
    """A reconstruction of 8 x 3 values in [0, 1] but one of 2,991 (the decoder's largest
    output on the trend's 27x step, docs/RESULTS.md), one SGD step at lr 1e-3 without
    clipping. With the clamp, the loss is lambda 255^2 mean((clamp(x_hat) - x)^2) plus the
    bits, and every value moves by -lr lambda 255^2 2 (clamp(x_hat) - x) / 24: the overshoot
    by at most that bound, towards [0, 1]. Without it, the overshoot's error dominates."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 8, 3, generator=generator)
    start = torch.rand(1, 8, 3, generator=generator)
    start[0, 5, 1] = 2991.0
    x_hat = torch.nn.Parameter(start.clone())
    lmbda, lr = 0.013, 1e-3
    optimizer = torch.optim.SGD([x_hat], lr=lr)
    ctx = EpochContext(RateDistortionLoss(lmbda), optimizer, None, None, torch.device("cpu"),
                       clip_max_norm=0, clamp_reconstruction=clamp)
    bits = torch.full((4,), 0.5)  # 4 bits over the 8 pixels
    losses, _ = train_step(lambda inputs: {"x_hat": x_hat, "likelihoods": {"y": bits}}, None,
                           x, ctx)
    seen = start.clamp(0, 1) if clamp else start
    error = (seen - x).double()
    expected = lmbda * 255**2 * error.pow(2).mean().item() + 0.5
    assert losses["loss"].item() == pytest.approx(expected, rel=1e-5)
    step = lr * lmbda * 255**2 * 2 * error / 24
    torch.testing.assert_close(x_hat.detach().double(), start.double() - step, rtol=0,
                               atol=1e-4)
    if clamp:
        assert expected < lmbda * 255**2 + 0.5  # a pixel's error is at most 1
    else:
        assert expected > 1e5


def test_both_training_scripts_take_clamp_reconstruction():
    sphere = main_sphere_compression.build_parser().parse_args(["-nd", "s", "-o", "o"])
    assert not RunConfig.from_args(sphere).training.clamp_reconstruction
    sphere = main_sphere_compression.build_parser().parse_args(
        ["-nd", "s", "-o", "o", "--clamp-reconstruction"])
    assert RunConfig.from_args(sphere).training.clamp_reconstruction
    planar = train_erp_compressai.build_parser().parse_args(
        ["-o", "samples", "-O", "out", "-r", "7", "--clamp-reconstruction"])
    assert ErpRunConfig.from_args(planar).training.clamp_reconstruction


def test_oslo_initialisation_bound():
    conv = SDPAConv(64, 256, num_hops=1)
    reset_sdpa_parameters(conv, "oslo")
    bound = 1 / math.sqrt(64 * 256)
    assert conv.weight.abs().max() <= bound
    assert conv.weight.abs().max() > 0.99 * bound
    # uniform on [-b, b]: variance b^2 / 3 (9 * 64 * 256 draws, relative error about 0.5 %)
    assert conv.weight.var().item() == pytest.approx(bound**2 / 3, rel=0.03)
    reset_sdpa_parameters(conv, "conv2d")
    assert conv.weight.abs().max() > 0.99 / math.sqrt(9 * 64)
    with pytest.raises(ValueError, match="unknown initialisation"):
        conv.reset_parameters("xavier")


def test_icnr_flag_starts_the_pixel_shuffle_blocks_tied_and_needs_them():
    parser = main_sphere_compression.build_parser()
    config = RunConfig.from_args(parser.parse_args(
        ["-nd", "s", "-o", "o", "--icnr", "--channels", "8", "12"]))
    shuffles = [m for m in build_model(config).modules()
                if isinstance(m, SphereUp) and m.unpool == "pixel_shuffle"]
    assert len(shuffles) == 6  # g_s's 4 up blocks and h_s's 2
    for block in shuffles:
        for conv in block.block.convs:
            for k in (1, 2, 3):
                assert torch.equal(conv.weight[..., k::4], conv.weight[..., 0::4])
    args = parser.parse_args(["-nd", "s", "-o", "o", "-i", "train.txt", "--icnr", "-upf",
                              "SDPAConvTransposed"])
    with pytest.raises(OsloError, match="--icnr needs -upf pixel_shuffle and SDPAConv"):
        check_arguments(args)
