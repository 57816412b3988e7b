"""main_sphere_compression.py end to end on tiny models (N=8, M=12) and maps at resolution 7:
training outputs, exact resumption, evaluation outputs and rates, refusals, DDP, weight
transfer."""

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from compressai.models import ScaleHyperprior
from PIL import Image

import generate_and_save_healpix_oslo_struct as oslo_script
import main_sphere_compression as script
import misc.create_mollweide_comparison as comparison_script
import spherical_models.training.checkpoint as checkpoints
import spherical_models.training.epoch as training
from spherical_models.coding.maps import compress_map
from spherical_models.geometry import SphereGeometry
from spherical_models.models import SCALE_TABLE_LEVELS, SphereScaleHyperprior
from spherical_models.training.loss import RateDistortionLoss
from utils.cli import run_main
from utils.io import write_list

REPO = Path(__file__).resolve().parent.parent
HR, PR = 7, 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def structures(folder, hr, pr):
    """The chain (hr, pr), (hr-1, pr-1), ... that a hyperprior needs, with the step-2 script."""
    for level in range(7):
        pr_level = pr - level if pr >= 0 else -1
        oslo_script.main(["-o", str(folder), "-hr", str(hr - level), "-pr", str(pr_level)])


@pytest.fixture(scope="module")
def data(tmp_path_factory, smooth_maps):
    """Four smooth, noisy RGB maps at resolution 7 (2 train, 1 validation, 1 test), and the
    structures for (7, 6) down to (1, 0)."""
    root = tmp_path_factory.mktemp("oslo_main")
    maps = root / "healpix_res_7"
    maps.mkdir()
    files = smooth_maps(maps, HR, 4)
    write_list(maps / "train.txt", files[:2])
    write_list(maps / "validation.txt", files[2:3])
    write_list(maps / "test.txt", files[3:])
    structures(root / "structures", HR, PR)
    return SimpleNamespace(
        root=root, structures=root / "structures", files=files, train=maps / "train.txt",
        validation=maps / "validation.txt", test=maps / "test.txt",
    )


def base_args(data, workers=0):
    return [
        "-nd", str(data.structures), "-hr", str(HR), "-prt", str(PR), "--channels", "8", "12",
        "-np", "3", "-bst", "2", "--dataloader-num-workers", str(workers), "--seed", "1",
        "--no-progress", "--print-freq", "0", "--lambda", "0.01",
    ]


def train_args(data, out, epochs, workers=0):
    return [*base_args(data, workers), "-i", str(data.train), "-v", str(data.validation),
            "-o", str(out), "-e", str(epochs), "--checkpoint-interval", "1"]


@pytest.fixture(scope="module")
def trained(data):
    """An uninterrupted 3-epoch run with validation, then evaluation of the test map."""
    out = data.root / "run"
    script.main([*train_args(data, out, 3), "-t", str(data.test)])
    return out


def history(out):
    with (out / "log.csv").open() as handle:
        return [{k: row[k] for k in ("epoch", "loss", "bpp", "mse", "val_loss")}
                for row in csv.DictReader(handle)]


def final_weights(out):
    return torch.load(out / "final.pth.tar", weights_only=True)["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- command line -----------------------------------------------------------------------------


def test_help_documents_every_flag_with_its_default():
    text = " ".join(script.build_parser().format_help().split()) + " "
    flags = [
        "-m", "--model", "-i", "--train-data", "-v", "--validation-data", "-t", "--test-data",
        "-nd", "--neighbor-struct-dir", "-o", "--out-dir", "--lambda", "-q", "--quality",
        "--dataloader-num-workers", "-bst", "--batch-size-train", "-bsvt",
        "--batch-size-valtest", "--checkpoint-interval", "--no-scheduler",
        "--scheduler-patience", "--checkpoint-file", "-pf", "--pool-func", "-upf",
        "--unpool-func", "-c", "--conv-name", "-w", "--weight-type", "-g", "--gpu", "-gid",
        "--gpu_id", "--foldername-valtest", "-hr", "--healpix-res", "-prt", "--patch-res-train",
        "-prvt", "--patch-res-valtest", "-np", "--n-patch-per-sample", "-e", "--max-epochs",
        "-lr", "--learning-rate", "-lraux", "--aux-learning-rate", "--clip_max_norm", "-at",
        "--attention", "-cm", "--context-model", "-arhops", "--ar-hops", "-nl",
        "--non-linearity", "-sc", "--skip-conn-aggr", "--single-conv", "--validation-start",
        "--only-npy-valtest", "--skip-tested", "--seed", "--print-freq", "--weight-transfer",
        "--channels", "--lr-schedule", "--lr-step-at", "--lr-step-factor", "--lr-min",
        "--patience-unit", "--plateau-patches",
    ]
    for flag in flags:
        assert f"{flag} " in text or f"{flag}," in text, flag
    for default in ("(default: 0.0018)", "(default: 1000)", "(default: 0.0001)",
                    "(default: 0.001)", "(default: 1.0)", "(default: 10)", "(default: 8)",
                    "(default: 20)", "(default: reconstruction)", "(default: stride)",
                    "(default: pixel_shuffle)", "(default: SphereScaleHyperprior)",
                    "(default: plateau)", "(default: 0.6 0.9)", "(default: epochs)",
                    "--patience-unit {epochs,steps}", "--plateau-patches N",
                    "the training loss. Ignored with -v (default: 0)"):
        assert default in text, default


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("SphereScaleHyperprior", "SphereScaleHyperprior"),
        ("spherescalehyperprior", "SphereScaleHyperprior"),
        ("scaleHyperprior", "SphereScaleHyperprior"),
        ("bmshj2018-hyperprior", "SphereScaleHyperprior"),
        ("SphereFactorizedPrior", "SphereFactorizedPrior"),
        ("factorized_prior", "SphereFactorizedPrior"),
        ("mean-scale-hyperprior", "SphereMeanScaleHyperprior"),
    ],
)
def test_model_spellings(spelling, name):
    assert script.build_parser().parse_args(["-nd", "s", "-o", "o", "-m", spelling]).model == name


# --- training ---------------------------------------------------------------------------------


def test_training_writes_logs_checkpoints_and_config(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"checkpoint_1.pth.tar", "checkpoint_2.pth.tar", "checkpoint_3.pth.tar",
            "checkpoint_best_loss.pth.tar", "final.pth.tar", "log.csv", "loss.txt",
            "config.txt"} <= names
    rows = list(csv.DictReader((trained / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0])[:7] == ["epoch", "loss", "bpp", "mse", "psnr", "lr", "seconds"]
    assert all(r["val_loss"] for r in rows)
    assert len((trained / "loss.txt").read_text().splitlines()) == 4
    config = (trained / "config.txt").read_text()
    assert "seed = 1" in config and "lmbda = 0.01" in config
    checkpoint = checkpoints.load_checkpoint(trained / "final.pth.tar")
    assert checkpoint["epoch"] == 3 and checkpoint["seed"] == 1
    assert checkpoint["config"]["model"] == "SphereScaleHyperprior"
    assert (checkpoint["config"]["N"], checkpoint["config"]["M"]) == (8, 12)
    assert checkpoint["config"]["healpix_res"] == HR and checkpoint["config"]["lambda"] == 0.01
    assert checkpoint["position"] is None and len(checkpoint["history"]) == 3
    assert float(rows[0]["val_loss"]) > float(rows[-1]["val_loss"])  # same patches each epoch


def test_resuming_from_an_epoch_checkpoint_repeats_the_run_exactly(data, trained):
    out = data.root / "resumed_epoch"
    script.main([*train_args(data, out, 3), "--checkpoint-file",
                 str(trained / "checkpoint_2.pth.tar")])
    assert history(out) == history(trained)
    assert_same_weights(final_weights(out), final_weights(trained))


def test_interrupted_run_saves_and_resumes_exactly(data, trained, monkeypatch):
    """Ctrl-C in the middle of epoch 2 (3 batches per epoch), with 2 loader workers."""
    out = data.root / "interrupted"
    steps = []
    original = training.train_step

    def step_then_interrupt(*args, **kwargs):
        steps.append(None)
        if len(steps) == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        script.main(train_args(data, out, 3, workers=2))
    monkeypatch.setattr(training, "train_step", original)
    checkpoint = checkpoints.load_checkpoint(out / "interrupted.pth.tar")
    assert checkpoint["epoch"] == 1 and checkpoint["position"]["epoch"] == 2
    assert checkpoint["position"]["batch"] == 2
    assert not (out / "final.pth.tar").exists()
    script.main([*train_args(data, out, 3, workers=2), "--checkpoint-file",
                 str(out / "interrupted.pth.tar")])
    assert history(out) == history(trained)
    assert_same_weights(final_weights(out), final_weights(trained))


# --- evaluation -------------------------------------------------------------------------------


def test_evaluation_outputs_and_rates_match_the_strings(data, trained):
    folder = trained / "reconstruction"
    stem = data.files[3].stem
    reconstruction = np.load(folder / f"{stem}_reconstructed.npy")
    assert reconstruction.dtype == np.uint8 and reconstruction.shape == (12 * 4**HR, 3)
    assert (folder / f"{stem}_reconstructed.png").is_file()
    lines = (folder / "rates.txt").read_text().splitlines()
    assert lines[0].startswith("#") and len(lines) == 2
    name, theoretical, actual = lines[1].split("\t")
    assert name == stem

    model = SphereScaleHyperprior(8, 12)
    model.load_state_dict(final_weights(trained))
    # evaluation defaults: deterministic entropy parameters, the new models' scale table
    model.set_deterministic(True)
    model.scale_table_levels = SCALE_TABLE_LEVELS
    model.update(force=True)
    model.eval()
    geometry = SphereGeometry.build(HR, PR, model.num_levels)
    original = np.load(data.files[3])
    x = torch.from_numpy(original.astype(np.float32) / 255).reshape(-1, 4**PR, 3)
    with torch.no_grad():
        encoded = model.compress(x, geometry)
        likelihoods = model(x, geometry)["likelihoods"]
        decoded = model.decompress(encoded["strings"], encoded["shape"], geometry)["x_hat"]
    coded = compress_map(model, geometry, original, PR, 10, torch.device("cpu"))
    assert int(actual) == 8 * coded.num_bytes
    # one string per latent, not one per patch and latent
    assert coded.num_bytes < sum(len(s) for strings in encoded["strings"] for s in strings)
    expected = sum(int(np.ceil(-torch.log2(v.double()).sum().item()))
                   for v in likelihoods.values())
    assert int(theoretical) == expected
    expected_map = (decoded * 255).round().clamp(0, 255).to(torch.uint8).reshape(-1, 3).numpy()
    np.testing.assert_array_equal(reconstruction, expected_map)

    [row] = list(csv.DictReader((folder / "test_results.csv").open()))
    assert row["name"] == stem
    assert float(row["bpp_actual"]) == pytest.approx(int(actual) / (12 * 4**HR), abs=1e-6)
    assert float(row["bpp_theoretical"]) == pytest.approx(int(theoretical) / (12 * 4**HR),
                                                          abs=1e-6)
    mse = np.mean((original.astype(float) - reconstruction.astype(float)) ** 2)
    assert float(row["psnr"]) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-3)
    assert float(row["encode_seconds"]) > 0 and float(row["decode_seconds"]) > 0


def test_comparison_view_of_original_and_reconstruction(data, trained, tmp_path):
    recon = trained / "reconstruction" / f"{data.files[3].stem}_reconstructed.npy"
    comparison_script.main(["-a", str(data.files[3]), "-b", str(recon), "-o",
                            str(tmp_path / "c.png"), "-w", "200"])
    image = np.asarray(Image.open(tmp_path / "c.png"))
    assert image.shape == (2 * (100 + comparison_script.LABEL_HEIGHT), 200, 3)


def test_evaluation_only_is_deterministic_and_skip_tested_keeps_results(data, trained):
    args = [*base_args(data), "-t", str(data.test), "-o", str(trained), "--checkpoint-file",
            str(trained / "final.pth.tar"), "--foldername-valtest", "again", "-bsvt", "7",
            "--only-npy-valtest"]
    script.main(args)
    again = trained / "again"
    assert not list(again.glob("*.png"))
    assert (again / "rates.txt").read_text() == (trained / "reconstruction/rates.txt").read_text()
    recon = next(again.glob("*_reconstructed.npy"))
    mtime = recon.stat().st_mtime_ns
    script.main([*args, "--skip-tested"])
    assert recon.stat().st_mtime_ns == mtime
    assert (again / "rates.txt").read_text() == (trained / "reconstruction/rates.txt").read_text()


def test_whole_sphere_evaluation(data, trained):
    structures(data.structures, HR, -1)
    script.main([*base_args(data), "-t", str(data.test), "-o", str(trained), "-prvt", "-1",
                 "--checkpoint-file", str(trained / "final.pth.tar"), "--foldername-valtest",
                 "sphere", "--only-npy-valtest"])
    recon = np.load(trained / "sphere" / f"{data.files[3].stem}_reconstructed.npy")
    assert recon.shape == (12 * 4**HR, 3)
    _, theoretical, actual = (trained / "sphere/rates.txt").read_text().splitlines()[1].split()
    assert int(actual) > 0 and int(theoretical) > 0


def test_weight_transfer_evaluates_a_planar_model_on_the_sphere(data, tmp_path, caplog):
    torch.manual_seed(0)
    torch.save(ScaleHyperprior(8, 12).state_dict(), tmp_path / "planar.pth")
    script.main([*base_args(data), "-t", str(data.test), "-o", str(tmp_path / "out"),
                 "--weight-transfer", str(tmp_path / "planar.pth"), "--single-conv",
                 "--only-npy-valtest"])
    assert "exact" in caplog.text
    assert (tmp_path / "out/reconstruction/rates.txt").is_file()


# --- refusals ---------------------------------------------------------------------------------


def run_cli(monkeypatch, capsys, args):
    """Run the script as a command (``run_main``): exit code and the ``error:`` lines."""
    monkeypatch.setattr(sys, "argv", ["main_sphere_compression.py", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(script.main)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exit_info.value.code, [line for line in err.splitlines() if line.startswith("error")]


@pytest.mark.parametrize(
    "flags,message",
    [
        (["-m", "SphereFactorizedPrior"], "it was trained with -m/--model SphereScaleHyperprior, "
         "the flags give -m/--model SphereFactorizedPrior"),
        (["-q", "3"], "-q/--quality 1, the flags give -q/--quality 3"),
        (["--lambda", "0.0018"], "--lambda 0.01, the flags give --lambda 0.0018"),
        (["-c", "ChebConv"], "-c/--conv-name SDPAConv, the flags give -c/--conv-name ChebConv"),
    ],
)
def test_mismatched_checkpoints_are_refused_in_one_line(data, trained, monkeypatch, capsys,
                                                        flags, message):
    args = [*base_args(data), "-t", str(data.test), "-o", str(data.root / "refused"),
            "--checkpoint-file", str(trained / "final.pth.tar"), *flags]
    code, errors = run_cli(monkeypatch, capsys, args)
    assert code == 2 and len(errors) == 1 and message in errors[0], errors


def test_bad_data_and_structures_are_refused_in_one_line(data, monkeypatch, capsys, tmp_path):
    (tmp_path / "missing.txt").write_text(f"{data.files[0]}\nnot_there.npy\n")
    code, errors = run_cli(monkeypatch, capsys, [
        *base_args(data), "-i", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "o")])
    assert code == 2 and len(errors) == 1
    assert "names a missing map" in errors[0] and "not_there.npy" in errors[0]

    code, errors = run_cli(monkeypatch, capsys, [
        *base_args(data), "-i", str(data.train), "-o", str(tmp_path / "o"), "-hr", "8"])
    assert code == 2 and len(errors) == 1
    assert "has HEALPix resolution 7, not the -hr/--healpix-res 8" in errors[0]

    partial = tmp_path / "partial"
    shutil.copytree(data.structures, partial)
    (partial / "oslo_struct_hr3_pr2_hops2.npz").unlink()
    code, errors = run_cli(monkeypatch, capsys, [
        *base_args(data), "-nd", str(partial), "-i", str(data.train), "-o", str(tmp_path / "o")])
    assert code == 2 and len(errors) == 1
    assert (f"create it with python generate_and_save_healpix_oslo_struct.py -o {partial} "
            f"-hr 3 -pr 2") in errors[0]

    code, errors = run_cli(monkeypatch, capsys, [
        *base_args(data), "-t", str(data.test), "-o", str(tmp_path / "o")])
    assert code == 2 and errors == [
        "error: evaluation (-t) without training needs --checkpoint-file (or --weight-transfer)"
    ]


def test_the_command_prints_one_line_and_exits_2(data, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "main_sphere_compression.py"), *base_args(data), "-i",
         str(data.train), "-o", str(tmp_path / "o"), "-prt", "8"],
        capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: -prt/--patch-res-train 8 is above -hr/--healpix-res 7"
    ]


# --- several processes ------------------------------------------------------------------------

def test_ddp_two_processes_end_with_identical_weights(data, tmp_path, ddp_training):
    out = tmp_path / "ddp"
    rank0, rank1 = ddp_training(train_args(data, out, 2), out)
    assert_same_weights(rank0, rank1)
    assert_same_weights(rank0, final_weights(out))
    initial = SphereScaleHyperprior(8, 12).state_dict()
    assert not torch.equal(rank0["g_a.stages.0.block.convs.0.weight"],
                           initial["g_a.stages.0.block.convs.0.weight"])
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 2 and all(r["val_loss"] for r in rows)
    assert "world_size = 2" in (out / "config.txt").read_text()


def test_resuming_with_another_lr_schedule_is_refused_in_one_line(data, trained, monkeypatch,
                                                                  capsys):
    args = [*train_args(data, data.root / "refused_schedule", 4), "--lr-schedule", "cosine",
            "--checkpoint-file", str(trained / "checkpoint_2.pth.tar")]
    code, errors = run_cli(monkeypatch, capsys, args)
    assert code == 2 and len(errors) == 1, errors
    assert ("it was trained with --lr-schedule plateau, the flags give --lr-schedule cosine"
            in errors[0]), errors


def test_step_schedule_trains_and_resumes_with_the_same_learning_rates(data, tmp_path):
    """-e 4, x0.1 after epoch 2 (0.5 * 4): the rates of log.csv, and a run resumed from the
    checkpoint of epoch 1 repeats them (and the weights) exactly."""
    flags = ["--lr-schedule", "step", "--lr-step-at", "0.5", "-lr", "1e-3"]
    out, resumed = tmp_path / "step", tmp_path / "resumed"
    script.main([*train_args(data, out, 4), *flags])
    script.main([*train_args(data, resumed, 4), *flags, "--checkpoint-file",
                 str(out / "checkpoint_1.pth.tar")])

    def rates(folder):
        with (folder / "log.csv").open() as handle:
            return [float(row["lr"]) for row in csv.DictReader(handle)]

    assert rates(out) == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4], rel=1e-9)
    assert rates(resumed) == rates(out)
    assert history(resumed) == history(out)
    assert_same_weights(final_weights(resumed), final_weights(out))
    checkpoint = torch.load(out / "final.pth.tar", weights_only=True)
    assert checkpoint["config"]["lr_schedule"] == "step"
    assert checkpoint["lr_scheduler"]["last_epoch"] == 4


# --- --plateau-patches and --patience-unit ----------------------------------------------------


def plateau_args(data, out, epochs, *flags):
    """Training without -v: 2 maps x 3 patches, batches of 2 (3 steps per epoch)."""
    return [*base_args(data), "-i", str(data.train), "-o", str(out), "-e", str(epochs),
            "--checkpoint-interval", "1", "--plateau-patches", "5", *flags]


def test_plateau_patches_are_fixed_and_their_loss_drives_the_scheduler(data, tmp_path,
                                                                       monkeypatch):
    """The scheduler watches the loss on the same 5 patches every epoch, also after a resume,
    and that loss is the model's loss on those patches computed directly."""
    import spherical_models.training.trainer as trainer_module
    from spherical_models.config import RunConfig
    from spherical_models.pipeline import build_model, load_geometry
    from utils.datasets import MapPatches, fixed_patch_pairs, read_map_list

    seen, monitored = [], []
    validate, step = trainer_module.validate, trainer_module.step_scheduler

    def recording_validate(module, loader, *args, **kwargs):
        seen.append([tuple(pair) for pair in loader.sampler])
        return validate(module, loader, *args, **kwargs)

    def recording_step(scheduler, loss):
        monitored.append(loss)
        step(scheduler, loss)

    monkeypatch.setattr(trainer_module, "validate", recording_validate)
    monkeypatch.setattr(trainer_module, "step_scheduler", recording_step)
    out, resumed = tmp_path / "plateau", tmp_path / "resumed"
    script.main(plateau_args(data, out, 3))
    rows = list(csv.DictReader((out / "log.csv").open()))
    plateau = [float(r["plateau_loss"]) for r in rows]
    assert monitored == pytest.approx(plateau, rel=1e-9)
    assert not any(r["val_loss"] for r in rows)
    assert [float(r["loss"]) for r in rows] != pytest.approx(plateau)  # not the training loss
    expected = [tuple(pair) for pair in fixed_patch_pairs(2, HR, PR, 5, seed=1).tolist()]
    assert len(seen) == 3 and all(pairs == expected for pairs in seen)
    assert len(set(expected)) == 5 and {image for image, _ in expected} == {0, 1}

    seen.clear()
    monitored.clear()
    script.main([*plateau_args(data, resumed, 3), "--checkpoint-file",
                 str(out / "checkpoint_1.pth.tar")])
    assert len(seen) == 2 and all(pairs == expected for pairs in seen)
    assert list(csv.DictReader((resumed / "log.csv").open())) != []
    assert [float(r["plateau_loss"]) for r in csv.DictReader((resumed / "log.csv").open())] \
        == plateau
    assert_same_weights(final_weights(resumed), final_weights(out))

    # the loss of the epoch-2 weights on the 5 patches, computed directly
    args = script.build_parser().parse_args(plateau_args(data, out, 3))
    config = RunConfig.from_args(args)
    model = build_model(config)
    checkpoint = checkpoints.load_checkpoint(out / "checkpoint_2.pth.tar")
    model.scale_table_levels = checkpoint["config"]["scale_table_levels"]
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    dataset = MapPatches(read_map_list(data.train, HR), HR, PR)
    items = [dataset[pair] for pair in expected]
    x = torch.stack([item[0] for item in items])
    ids = torch.tensor([item[1] for item in items])
    with torch.no_grad():
        loss = RateDistortionLoss(0.01)(model(x, load_geometry(config, model, PR), ids),
                                        x)["loss"].item()
    assert loss == pytest.approx(plateau[1], rel=1e-5)
    assert checkpoint["config"]["plateau_patches"] == 5
    assert checkpoint["config"]["patience_unit"] == "epochs"


def test_patience_in_steps_becomes_epochs_and_is_checked_on_resume(data, tmp_path,
                                                                  monkeypatch, capsys):
    out = tmp_path / "steps"
    script.main([*base_args(data), "-i", str(data.train), "-o", str(out), "-e", "1",
                 "--patience-unit", "steps", "--scheduler-patience", "7"])
    checkpoint = checkpoints.load_checkpoint(out / "final.pth.tar")
    assert checkpoint["lr_scheduler"]["patience"] == 3  # ceil(7 / 3 steps per epoch)
    assert checkpoint["config"]["patience_unit"] == "steps"
    assert checkpoint["config"]["plateau_patches"] == 0
    code, errors = run_cli(monkeypatch, capsys, [
        *base_args(data), "-i", str(data.train), "-o", str(tmp_path / "refused"), "-e", "1",
        "--checkpoint-file", str(out / "final.pth.tar")])
    assert code == 2 and len(errors) == 1, errors
    assert ("it was trained with --patience-unit steps, the flags give --patience-unit epochs"
            in errors[0]), errors


def test_checkpoints_without_the_plateau_flags_count_as_their_defaults(data, trained, tmp_path,
                                                                       monkeypatch, capsys):
    checkpoint = checkpoints.load_checkpoint(trained / "final.pth.tar")
    for key in ("patience_unit", "plateau_patches"):
        del checkpoint["config"][key]
    old = checkpoints.save_checkpoint(tmp_path / "old.pth.tar", checkpoint)
    script.main([*train_args(data, tmp_path / "accepted", 3), "--checkpoint-file", str(old)])
    code, errors = run_cli(monkeypatch, capsys, [
        *train_args(data, tmp_path / "refused", 3), "--plateau-patches", "4",
        "--checkpoint-file", str(old)])
    assert code == 2 and len(errors) == 1, errors
    assert ("it was trained with --plateau-patches 0, the flags give --plateau-patches 4"
            in errors[0]), errors


def test_init_from_starts_a_new_training_from_the_weights_of_another_lambda(data, trained,
                                                                             tmp_path):
    """--init-from: the weights of the start, a fresh optimiser and schedule from epoch 1, and
    any --lambda and schedule. With learning rates of 1e-30 (Adam moves each weight by at most
    about the learning rate), one epoch leaves the start's weights: a run that did not load
    them would keep its random initialisation."""
    start = final_weights(trained)
    out = tmp_path / "finetuned"
    script.main([*train_args(data, out, 1), "--lambda", "0.002", "--lr-schedule", "cosine",
                 "-lr", "1e-30", "-lraux", "1e-30", "--init-from",
                 str(trained / "final.pth.tar")])
    weights = final_weights(out)
    assert weights.keys() == start.keys()
    for key, value in start.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-20, msg=key)
    checkpoint = torch.load(out / "final.pth.tar", weights_only=True)
    assert checkpoint["epoch"] == 1 and len(checkpoint["history"]) == 1
    assert checkpoint["config"]["lambda"] == 0.002
    assert checkpoint["config"]["lr_schedule"] == "cosine"


def test_another_resolution_initialises_and_evaluates_but_does_not_resume(data, trained,
                                                                          tmp_path, monkeypatch,
                                                                          capsys):
    """A convolution's weights do not depend on the resolution: a checkpoint recorded at -hr 6
    starts a training at -hr 7 with its weights (learning rates of 1e-30 keep them) and codes
    the -hr 7 test map exactly as the same weights recorded at -hr 7; resuming it at -hr 7 is
    refused in one line."""
    checkpoint = checkpoints.load_checkpoint(trained / "final.pth.tar")
    checkpoint["config"]["healpix_res"] = HR - 1
    other = checkpoints.save_checkpoint(tmp_path / "hr6.pth.tar", checkpoint)
    out = tmp_path / "finetuned"
    script.main([*train_args(data, out, 1), "-lr", "1e-30", "-lraux", "1e-30", "--init-from",
                 str(other)])
    weights = final_weights(out)
    for key, value in checkpoint["state_dict"].items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-20, msg=key)
    assert torch.load(out / "final.pth.tar", weights_only=True)["config"]["healpix_res"] == HR

    outputs = {}
    for name, path in (("hr6", other), ("hr7", trained / "final.pth.tar")):
        script.main([*base_args(data), "-t", str(data.test), "-o", str(tmp_path / name),
                     "--checkpoint-file", str(path)])
        outputs[name] = sorted((tmp_path / name).rglob("*_reconstructed.npy"))
    assert outputs["hr6"] and len(outputs["hr6"]) == len(outputs["hr7"])
    for a, b in zip(outputs["hr6"], outputs["hr7"], strict=True):
        np.testing.assert_array_equal(np.load(a), np.load(b))

    code, errors = run_cli(monkeypatch, capsys, [
        *train_args(data, tmp_path / "refused", 4), "--checkpoint-file", str(other)])
    assert code == 2 and len(errors) == 1, errors
    assert (f"it was trained with -hr/--healpix-res {HR - 1}, the flags give "
            f"-hr/--healpix-res {HR}" in errors[0]), errors


@pytest.mark.parametrize("flags,message", [
    (["--channels", "8", "16"], "it was trained with -q/--quality (or --channels) M 12, the "
     "flags give -q/--quality (or --channels) M 16"),
    (["-m", "SphereFactorizedPrior"], "-m/--model SphereScaleHyperprior, the flags give "
     "-m/--model SphereFactorizedPrior"),
    (["--checkpoint-file", "x.pth.tar"], "--checkpoint-file and --init-from exclude each other"),
])
def test_init_from_another_model_is_refused_in_one_line(data, trained, monkeypatch, capsys,
                                                        tmp_path, flags, message):
    args = [*train_args(data, tmp_path / "refused", 1), "--init-from",
            str(trained / "final.pth.tar"), *flags]
    code, errors = run_cli(monkeypatch, capsys, args)
    assert code == 2 and len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "refused" / "final.pth.tar").exists()


def test_init_from_needs_a_training(data, trained, monkeypatch, capsys, tmp_path):
    args = [*base_args(data), "-t", str(data.test), "-o", str(tmp_path / "o"), "--init-from",
            str(trained / "final.pth.tar")]
    code, errors = run_cli(monkeypatch, capsys, args)
    assert code == 2 and errors == ["error: --init-from needs -i/--train-data (it starts a "
                                    "training)"], errors
