"""Learning-rate schedules (``--lr-schedule``): step and cosine against their closed forms, the
plateau schedule unchanged, resumption from a state dict, and the refusal of flags out of
range."""

import io
import math

import numpy as np
import pytest
import torch

import main_sphere_compression as script
from baselines import train_erp_compressai as baseline
from spherical_models.cli import check_arguments, check_erp_arguments
from spherical_models.training.optim import (
    SCHEDULER_FACTOR,
    make_scheduler,
    patience_epochs,
    step_scheduler,
)
from utils.datasets import FixedPairsSampler, fixed_patch_pairs, patch_regions
from utils.errors import OsloError

LR = 1e-2


def optimizer(lr=LR):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=lr)


def run_epochs(opt, scheduler, losses):
    """The learning rate of each epoch, stepping the scheduler at its end on ``losses``."""
    rates = []
    for loss in losses:
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        step_scheduler(scheduler, loss)
    return rates


@pytest.mark.parametrize("epochs,step_at,factor", [
    (10, (0.6, 0.9), 0.1), (7, (0.6, 0.9), 0.1), (20, (0.25, 0.5, 0.75), 0.5), (4, (0.5,), 0.3),
])
def test_step_schedule_is_lr_times_factor_power_milestones_passed(epochs, step_at, factor):
    opt = optimizer()
    scheduler = make_scheduler(opt, schedule="step", epochs=epochs, step_at=step_at,
                               step_factor=factor)
    rates = run_epochs(opt, scheduler, [1.0] * epochs)
    milestones = [round(f * epochs) for f in step_at]
    for epoch, rate in enumerate(rates, start=1):  # epoch e trains after e - 1 steps
        k = sum(epoch - 1 >= m for m in milestones)
        assert rate == pytest.approx(LR * factor**k, rel=1e-12), epoch
    # the defaults: x0.1 after 60 % and 90 % of the epochs
    rates = run_epochs(opt := optimizer(), make_scheduler(opt, schedule="step", epochs=10),
                       [1.0] * 10)
    assert rates == pytest.approx([LR] * 6 + [LR / 10] * 3 + [LR / 100], rel=1e-12)


@pytest.mark.parametrize("epochs,lr_min", [(8, 0.0), (8, 1e-4), (1, 0.0), (50, 2e-3)])
def test_cosine_schedule_is_the_closed_form(epochs, lr_min):
    opt = optimizer()
    scheduler = make_scheduler(opt, schedule="cosine", epochs=epochs, lr_min=lr_min)
    rates = run_epochs(opt, scheduler, [1.0] * epochs)
    for epoch, rate in enumerate(rates, start=1):
        t = epoch - 1
        expected = lr_min + (LR - lr_min) * (1 + math.cos(math.pi * t / epochs)) / 2
        assert rate == pytest.approx(expected, rel=1e-12, abs=1e-15), epoch
    assert rates[0] == LR
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_min, abs=1e-15)  # after -e epochs
    run_epochs(opt, scheduler, [1.0] * 3)  # past -e: stays at lr_min
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_min, abs=1e-15)


def test_plateau_schedule_is_unchanged():
    """``ReduceLROnPlateau``, factor sqrt(0.1), ``patience`` epochs, stepped on the loss."""
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    opt = optimizer()
    scheduler = make_scheduler(opt, 2)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert scheduler.factor == SCHEDULER_FACTOR and scheduler.patience == 2
    rates = run_epochs(opt, scheduler, losses)
    reference_opt = optimizer()
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        reference_opt, mode="min", factor=math.sqrt(0.1), patience=2)
    expected = []
    for loss in losses:
        expected.append(reference_opt.param_groups[0]["lr"])
        reference.step(loss)
    assert rates == expected
    # the loss stalls after epochs 2 and 6: 3 epochs without improvement, then / sqrt(10)
    low, lower = LR * math.sqrt(0.1), LR * 0.1
    assert rates == pytest.approx([LR] * 5 + [low] * 4 + [lower] * 3, rel=1e-12)
    assert make_scheduler(optimizer(), 5, schedule="plateau").patience == 5


@pytest.mark.parametrize("schedule", ["plateau", "step", "cosine"])
def test_resuming_from_a_state_dict_continues_identically(schedule):
    epochs, stop = 12, 5
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7]

    def build(lr=LR):
        opt = optimizer(lr)
        return opt, make_scheduler(opt, 1, schedule=schedule, epochs=epochs,
                                   step_at=(0.3, 0.7), step_factor=0.5, lr_min=1e-4)

    opt, scheduler = build()
    uninterrupted = run_epochs(opt, scheduler, losses)

    opt, scheduler = build()
    first = run_epochs(opt, scheduler, losses[:stop])
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "lr_scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # as checkpoints are read
    opt, scheduler = build(lr=0.5)  # the flags' -lr is not what resumes
    opt.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["lr_scheduler"])
    assert first + run_epochs(opt, scheduler, losses[stop:]) == uninterrupted
    assert len(set(uninterrupted)) > 2  # the rate did change


def main_args(tmp_path, *flags):
    return script.build_parser().parse_args([
        "-nd", str(tmp_path), "-o", str(tmp_path / "out"), "-i", "train.txt", *flags])


@pytest.mark.parametrize("flags,message", [
    (["--lr-schedule", "step", "--lr-step-at", "0.5", "1.0"],
     "--lr-step-at fractions must be in (0, 1), got 1"),
    (["--lr-step-at", "0"], "--lr-step-at fractions must be in (0, 1), got 0"),
    (["--lr-step-at", "-0.2", "0.5"], "--lr-step-at fractions must be in (0, 1), got -0.2"),
    (["--lr-schedule", "step", "--lr-step-factor", "0"], "--lr-step-factor must be positive, "
     "got 0"),
    (["--lr-step-factor", "-0.1"], "--lr-step-factor must be positive, got -0.1"),
    (["--lr-schedule", "cosine", "--lr-min=-1e-5"], "--lr-min must be in [0, -lr 0.0001], "
     "got -1e-05"),
    (["--lr-schedule", "cosine", "--lr-min", "1e-3"], "--lr-min must be in [0, -lr 0.0001]"),
    (["--lr-schedule", "cosine", "--no-scheduler"], "--no-scheduler and --lr-schedule cosine "
     "exclude each other"),
    (["--plateau-patches", "-1"], "--plateau-patches must not be negative, got -1"),
    (["--plateau-patches", "4", "--lr-schedule", "step"], "--plateau-patches needs the plateau "
     "scheduler"),
    (["--plateau-patches", "4", "--no-scheduler"], "--plateau-patches needs the plateau "
     "scheduler"),
])
def test_schedule_flags_out_of_range_are_refused_in_one_line(tmp_path, flags, message):
    with pytest.raises(OsloError) as error:
        check_arguments(main_args(tmp_path, *flags))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_schedule_flags_in_range_are_accepted_and_documented(tmp_path):
    check_arguments(main_args(tmp_path))
    args = main_args(tmp_path, "--lr-schedule", "step", "--lr-step-at", "0.1", "0.99",
                     "--lr-step-factor", "2")
    check_arguments(args)
    assert args.lr_schedule == "step" and args.lr_step_at == [0.1, 0.99]
    check_arguments(main_args(tmp_path, "--lr-schedule", "cosine", "--lr-min", "1e-4"))
    defaults = main_args(tmp_path)
    assert (defaults.lr_schedule, defaults.lr_step_at, defaults.lr_step_factor,
            defaults.lr_min) == ("plateau", [0.6, 0.9], 0.1, 0.0)
    for parser in (script.build_parser(), baseline.build_parser()):
        text = " ".join(parser.format_help().split())
        for needle in ("--lr-schedule {plateau,step,cosine}", "(default: plateau)",
                       "--lr-step-at FRACTION", "(default: 0.6 0.9)", "--lr-step-factor",
                       "(default: 0.1)", "--lr-min", "(default: 0.0)", "cosine decay"):
            assert needle in text, needle


def test_baseline_refuses_the_same_flags(tmp_path):
    args = baseline.build_parser().parse_args([
        "-o", str(tmp_path), "-i", "train.txt", "-r", "4", "-O", str(tmp_path / "out"),
        "--crop-size", "64", "--erp-width", "128", "--lr-schedule", "step", "--lr-step-at",
        "1.5"])
    with pytest.raises(OsloError, match=r"--lr-step-at fractions must be in \(0, 1\), got 1.5"):
        check_erp_arguments(args)


@pytest.mark.parametrize("patience,steps", [(0, 3), (1, 3), (3, 3), (4, 3), (7, 3), (20, 1),
                                            (20, 7), (100, 1000), (1000, 999)])
def test_patience_in_steps_is_ceil_of_steps_over_steps_per_epoch(patience, steps):
    assert patience_epochs(patience, "steps", steps) == -(-patience // steps)
    assert patience_epochs(patience, "steps", steps) == math.ceil(patience / steps)
    assert patience_epochs(patience, "epochs", steps) == patience  # the default: unchanged
    assert patience_epochs(patience) == patience
    with pytest.raises(ValueError):
        patience_epochs(patience, "hours", steps)


def test_plateau_flags_default_to_todays_behaviour(tmp_path):
    args = main_args(tmp_path)
    assert (args.plateau_patches, args.patience_unit) == (0, "epochs")
    check_arguments(main_args(tmp_path, "--plateau-patches", "8", "--patience-unit", "steps"))


@pytest.mark.parametrize("images,hr,pr,count", [(2, 3, 1, 5), (3, 3, 2, 7), (1, 2, 0, 12),
                                                (1, 2, 0, 20), (4, 3, -1, 3), (2, 3, -1, 5)])
def test_fixed_patch_pairs_depend_only_on_the_seed_and_are_balanced(images, hr, pr, count):
    pairs = fixed_patch_pairs(images, hr, pr, count, seed=7)
    assert (pairs == fixed_patch_pairs(images, hr, pr, count, seed=7)).all()
    if pr < 0:
        assert len(pairs) == min(count, images) and (pairs[:, 1] == -1).all()
        assert len(set(pairs[:, 0].tolist())) == len(pairs)
        return
    assert pairs.shape == (count, 2)
    assert not (pairs == fixed_patch_pairs(images, hr, pr, count, seed=8)).all()
    regions = patch_regions(hr, pr)
    for image in range(images):
        mine = pairs[pairs[:, 0] == image, 1]
        assert abs(len(mine) - count / images) < 1
        counts = np.bincount(regions[mine], minlength=3)
        assert counts.max() - counts.min() <= 1
        if len(mine) <= len(regions):
            assert len(set(mine.tolist())) == len(mine)
    shares = [list(FixedPairsSampler(pairs, rank, 3)) for rank in range(3)]
    assert sorted(pair for share in shares for pair in share) == sorted(map(tuple, pairs.tolist()))
    assert list(FixedPairsSampler(pairs)) == list(map(tuple, pairs.tolist()))
