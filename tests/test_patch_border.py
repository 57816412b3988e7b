"""``--patch-border sphere``: training on whole maps so that every patch meets its true
neighbours on the sphere (checked against healpy at face edges and at the 8 three-face
corners), the epoch budget in patches, resumption, DDP and the checkpoint refusals."""

import csv
import sys
from types import SimpleNamespace

import healpy as hp
import numpy as np
import pytest
import torch

import generate_and_save_healpix_oslo_struct as oslo_script
import main_sphere_compression as script
import spherical_models.pipeline as pipeline
import spherical_models.training.epoch as training
from spherical_models.geometry import SphereGeometry
from spherical_models.layers import SDPAConv
from utils.cli import run_main
from utils.datasets import WholeMapSampler
from utils.healpix import nest_to_xyf, nside_of
from utils.io import write_list

HR, PR = 7, 6
PATCHES_PER_MAP = 12 * 4 ** (HR - PR)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- what the network sees around every pixel -------------------------------------------------


def three_face_corners(res: int) -> np.ndarray:
    """The pixels at the 8 vertices where three base faces meet (at latitude +-41.8 degrees),
    3 per vertex: the face corners that healpy gives 7 neighbours."""
    npix = 12 * 4**res
    missing = (hp.get_all_neighbours(nside_of(res), np.arange(npix), nest=True) < 0).any(0)
    return np.flatnonzero(missing)


@pytest.mark.parametrize("path", ["face", "gather"])
def test_the_network_sees_the_true_sphere_neighbours_of_every_pixel(path):
    """A one-hop SDPAConv whose only weight is direction k outputs, at every pixel, the input
    at healpy's neighbour k (SW, W, NW, N, NE, E, SE, S), and 0 where healpy has none: on the
    whole-sphere graph that sphere training runs on, on both paths."""
    res = 3
    npix = 12 * 4**res
    graph = SphereGeometry.build(res, -1, 1)[0]
    x = torch.arange(1, npix + 1, dtype=torch.float32).view(1, npix, 1)
    neighbours = hp.get_all_neighbours(nside_of(res), np.arange(npix), nest=True)  # [8, npix]
    conv = SDPAConv(1, 1, bias=False, path=path)
    seen = []
    with torch.no_grad():
        for k in range(8):
            conv.weight.zero_()
            conv.weight[1 + k] = 1
            seen.append(conv(x, graph)[0, :, 0].numpy())
    expected = np.where(neighbours >= 0, neighbours + 1, 0)
    np.testing.assert_array_equal(np.stack(seen), expected)
    # the cases that matter: pixels on face edges, and the 8 three-face corners
    xs, ys, _ = nest_to_xyf(res, np.arange(npix))
    side = 2**res
    on_edge = (xs == 0) | (ys == 0) | (xs == side - 1) | (ys == side - 1)
    assert on_edge.sum() == 12 * (4 * side - 4)
    corners = three_face_corners(res)
    assert len(corners) == 8 * 3
    assert ((np.stack(seen)[:, corners] == 0).sum(0) == 1).all()  # one missing neighbour each


# --- the sampler ------------------------------------------------------------------------------


def test_whole_map_sampler_sees_every_map_equally_and_depends_only_on_seed_and_epoch():
    sampler = WholeMapSampler(5, 3, seed=7)
    seen = []
    for epoch in range(1, 11):  # 30 maps: every one of the 5 maps exactly 6 times
        sampler.set_epoch(epoch)
        seen += [image for image, patch in sampler]
        assert len(sampler) == 3
    assert np.bincount(seen).tolist() == [6] * 5
    again = WholeMapSampler(5, 3, seed=7)
    again.set_epoch(4)
    again.set_start(1)
    sampler.set_epoch(4)
    assert list(again) == list(sampler)[1:]
    other = WholeMapSampler(5, 3, seed=8)
    other.set_epoch(4)
    assert list(other) != list(sampler)


# --- main_sphere_compression.py --patch-border sphere -----------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory, smooth_maps):
    """Three smooth maps at resolution 7 (2 train, 1 test); the structures of (7, 6) .. (1, 0)
    and of the whole sphere at 7 .. 1."""
    root = tmp_path_factory.mktemp("patch_border")
    maps = root / "maps"
    maps.mkdir()
    files = smooth_maps(maps, HR, 3)
    write_list(maps / "train.txt", files[:2])
    write_list(maps / "test.txt", files[2:])
    for level in range(7):
        for pr in (PR - level, -1):
            oslo_script.main(["-o", str(root / "structures"), "-hr", str(HR - level),
                              "-pr", str(pr)])
    return SimpleNamespace(root=root, structures=root / "structures", train=maps / "train.txt",
                           test=maps / "test.txt")


def sphere_args(data, out, epochs, *flags):
    """2 maps x 30 patches of (7, 6) an epoch: ceil(60 / 48) = 2 whole maps, one a batch."""
    return ["-nd", str(data.structures), "-hr", str(HR), "-prt", str(PR), "--channels", "8",
            "12", "-np", "30", "-bst", "8", "--dataloader-num-workers", "0", "--seed", "3",
            "--no-progress", "--print-freq", "0", "--lambda", "0.01", "-i", str(data.train),
            "-o", str(out), "-e", str(epochs), "--checkpoint-interval", "1",
            "--patch-border", "sphere", *flags]


def final_weights(out):
    return torch.load(out / "final.pth.tar", weights_only=True)["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def trained(data):
    """2 epochs of sphere training, then the default evaluation, whose patch resolution is
    recorded in ``evaluated``."""
    out = data.root / "sphere"
    original = pipeline.evaluate_maps
    evaluated = []

    def spy(model, geometry, files, folder, patch_res, *args, **kwargs):
        evaluated.append((patch_res, geometry.patch_res))
        return original(model, geometry, files, folder, patch_res, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "evaluate_maps", spy)
        script.main([*sphere_args(data, out, 2), "-t", str(data.test)])
    return SimpleNamespace(out=out, evaluated=evaluated)


def test_sphere_training_is_recorded_and_evaluates_the_whole_sphere(trained):
    checkpoint = torch.load(trained.out / "final.pth.tar", weights_only=True)
    assert checkpoint["config"]["patch_border"] == "sphere"
    assert checkpoint["config"]["patch_res_train"] == PR
    assert len(list(csv.DictReader((trained.out / "log.csv").open()))) == 2
    assert trained.evaluated == [(-1, -1)]
    assert (trained.out / "reconstruction" / "rates.txt").is_file()


@pytest.fixture
def batch_shapes(monkeypatch):
    """The shapes of the batches the training steps receive, in order."""
    shapes = []
    original = training.train_step

    def spy(forward, module, x, ctx):
        shapes.append(tuple(x.shape))
        return original(forward, module, x, ctx)

    monkeypatch.setattr(training, "train_step", spy)
    return shapes


def test_sphere_training_batches_are_whole_maps(data, batch_shapes):
    """What the model's forward receives: [1, 12 * 4**7, 3] maps, two steps an epoch."""
    script.main(sphere_args(data, data.root / "spy", 1))
    assert batch_shapes == [(1, 12 * 4**HR, 3)] * 2


def test_resuming_sphere_training_repeats_the_run_exactly(data, trained, tmp_path):
    resumed = tmp_path / "resumed"
    script.main([*sphere_args(data, resumed, 2), "--checkpoint-file",
                 str(trained.out / "checkpoint_1.pth.tar")])
    assert_same_weights(final_weights(resumed), final_weights(trained.out))


def run_cli(monkeypatch, capsys, argv):
    """Run the script as a command: exit code and its stderr lines but the ``[oslo]`` logs."""
    monkeypatch.setattr(sys, "argv", ["main_sphere_compression.py", *argv])
    capsys.readouterr()  # what earlier steps wrote
    with pytest.raises(SystemExit) as exit_info:
        run_main(script.main)
    return exit_info.value.code, [line for line in capsys.readouterr().err.splitlines()
                                  if line and not line.startswith("[oslo] ")]


def test_resuming_with_the_other_border_is_refused_in_one_line(data, trained, monkeypatch,
                                                               capsys):
    args = [*sphere_args(data, data.root / "refused", 3), "--checkpoint-file",
            str(trained.out / "checkpoint_1.pth.tar")]
    args[args.index("sphere")] = "cut"
    code, errors = run_cli(monkeypatch, capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert "it was trained with --patch-border sphere, the flags give --patch-border cut" \
        in errors[0], errors


def test_sphere_border_without_patches_is_refused_in_one_line(data, monkeypatch, capsys):
    args = sphere_args(data, data.root / "refused_prt", 1)
    args[args.index("-prt") + 1] = "-1"
    code, errors = run_cli(monkeypatch, capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert "--patch-border sphere needs patches" in errors[0]


def test_missing_whole_sphere_structures_name_the_command(data, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "patch_structures_only"
    for level in range(7):
        oslo_script.main(["-o", str(folder), "-hr", str(HR - level), "-pr", str(PR - level)])
    args = sphere_args(data, tmp_path / "out", 1)
    args[args.index("-nd") + 1] = str(folder)
    code, errors = run_cli(monkeypatch, capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert "-pr -1" in errors[0], errors


def test_ddp_sphere_training_ends_with_identical_weights(data, tmp_path, ddp_training):
    out = tmp_path / "ddp"
    rank0, rank1 = ddp_training(sphere_args(data, out, 1), out)
    assert_same_weights(rank0, rank1)
    assert_same_weights(rank0, final_weights(out))


def test_sphere_start_trains_on_patches_then_whole_maps_and_resumes_exactly(data, tmp_path,
                                                                            batch_shapes):
    """-e 2 --sphere-start 0.5: epoch 1 on patches (2 maps x 30 patches, batches of 8), epoch
    2 on whole maps; a run resumed from epoch 1 repeats it exactly."""
    out, resumed = tmp_path / "warm", tmp_path / "resumed"
    script.main(sphere_args(data, out, 2, "--sphere-start", "0.5"))
    assert batch_shapes[:10] == [(8, 4**PR, 3)] * 7 + [(4, 4**PR, 3)] + [(1, 12 * 4**HR, 3)] * 2
    checkpoint = torch.load(out / "final.pth.tar", weights_only=True)
    assert checkpoint["config"]["sphere_start"] == 0.5
    script.main([*sphere_args(data, resumed, 2, "--sphere-start", "0.5"), "--checkpoint-file",
                 str(out / "checkpoint_1.pth.tar")])
    assert_same_weights(final_weights(resumed), final_weights(out))


@pytest.mark.parametrize(("flags", "message"), [
    (["--sphere-start", "1"], "--sphere-start must be in [0, 1), got 1"),
    (["--sphere-start", "0.5", "--patch-border", "cut"], "--sphere-start needs --patch-border "
                                                          "sphere"),
])
def test_bad_sphere_start_is_refused_in_one_line(data, monkeypatch, capsys, flags, message):
    code, errors = run_cli(monkeypatch, capsys, [*sphere_args(data, data.root / "x", 1), *flags])
    assert code == 2 and len(errors) == 1, errors
    assert message in errors[0], errors
