"""baselines/train_erp_compressai.py on tiny ERP images (r = 5: W = 128), checked against
CompressAI itself (an independent compress / decompress of the checkpoint), the metrics
recomputed from the saved PNG, and utils/sampling's bilinear rule; the shared epoch loop's
resumption (after Ctrl-C, and from checkpoints written before it) and processes; plus the
resampling path of utils/metrics."""

import csv
import math
import os
import signal
import sys

import numpy as np
import pytest
import torch
from compressai.losses import RateDistortionLoss
from compressai.models import FactorizedPrior, ScaleHyperprior
from PIL import Image

import baselines.train_erp_compressai as script
import spherical_models.training.epoch as training
from spherical_models.planar import erp
from utils.cli import run_main
from utils.errors import OsloError
from utils.metrics import METRIC_NAMES, erp_row_weights, luma, spherical_psnr, to_grid_of
from utils.sampling import bilinear_erp, erp_coordinates, erp_pixel_angles, resample_erp
from utils.sphere_points import load_or_create

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RES = 5
NPIX = 12 * 4**RES
WIDTH = 4 * 2**RES
CHANNELS = ("--channels", "8", "8")


def write_list(path, names):
    """A step-1 list naming ``healpix_sampling_res_{RES}_<name>.npy`` (the maps need not exist)."""
    path.write_text("".join(f"healpix_sampling_res_{RES}_{n}.npy\n" for n in names))
    return path


@pytest.fixture
def lists(tmp_path):
    return (write_list(tmp_path / "train.txt", ["img0", "img1", "img2"]),
            write_list(tmp_path / "test.txt", ["img3", "img4"]))


def run(image_dir, tmp_path, out, *extra):
    return script.main(["-o", str(image_dir), "-r", str(RES), "-O", str(out), *CHANNELS,
                        "--crop-size", "64", "-np", "2", "-bst", "4", "--no-progress",
                        "-s", str(tmp_path / "sphere_642.txt"), *extra])


def train(image_dir, tmp_path, lists, out, *extra):
    return run(image_dir, tmp_path, out, "-i", str(lists[0]), "-e", "2",
               "--checkpoint-interval", "1", *extra)


def reference_erp(original, width, height):
    """The original sampled bilinearly at the ERP pixel centres with utils.sampling, rounded."""
    theta, lon = erp_pixel_angles(width, height)
    u, v = erp_coordinates(np.repeat(theta, width), np.tile(lon, height), original.shape[1],
                           original.shape[0])
    values = np.clip(np.rint(bilinear_erp(original, u, v)), 0, 255).astype(np.uint8)
    return values.reshape(height, width, 3)


def load_model(path, model_class=ScaleHyperprior):
    """The final checkpoint in a fresh CompressAI model, ready to code."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = model_class(8, 8)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    model.update(force=True)
    return model


def independent_coding(model, image):
    """Strings' total bytes, theoretical bits and the decoded image of CompressAI on ``image``
    padded at the right and bottom by edge replication to multiples of 64 (numpy)."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((0, -height % 64), (0, -width % 64), (0, 0)), mode="edge")
    x = torch.from_numpy(padded.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        likelihoods = model(x)["likelihoods"]
        encoded = model.compress(x)
        x_hat = model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
    total = sum(len(s) for strings in encoded["strings"] for s in strings)
    theoretical = sum(math.ceil(-torch.log2(v.double()).sum().item())
                      for v in likelihoods.values())
    decoded = torch.round(x_hat[0, :, :height, :width] * 255).clamp(0, 255)
    return total, theoretical, decoded.permute(1, 2, 0).to(torch.uint8).numpy()


def read_rates(path):
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    assert lines[0][0].startswith("#")
    return {name: (int(theoretical), int(actual)) for name, theoretical, actual in lines[1:]}


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_then_evaluate_matches_compressai_and_metrics(image_dir, tmp_path, lists):
    out = tmp_path / "out"
    rows = train(image_dir, tmp_path, lists, out, "-t", str(lists[1]))
    assert [r.name for r in rows] == ["img3", "img4", "mean"]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint_1.pth.tar", "checkpoint_2.pth.tar", "config.txt", "final.pth.tar",
        "log.csv", "reconstruction"]
    log = read_csv(out / "log.csv")
    assert [int(r["epoch"]) for r in log] == [1, 2]
    assert list(log[0]) == ["epoch", "loss", "bpp", "mse", "lr", "seconds"]
    assert float(log[0]["lr"]) == pytest.approx(1e-4)
    final = torch.load(out / "final.pth.tar", map_location="cpu", weights_only=True)
    assert final["epoch"] == 2
    assert final["config"]["model"] == "ScaleHyperprior" and final["config"]["N"] == 8
    assert final["config"]["erp_width"] == WIDTH

    folder = out / "reconstruction"
    rates = read_rates(folder / "rates.txt")
    csv_rows = read_csv(folder / "rd.csv")
    assert list(csv_rows[0]) == ["name", "bpp", *METRIC_NAMES]
    assert [r["name"] for r in csv_rows] == ["img3", "img4", "mean"]
    model = load_model(out / "final.pth.tar")
    lat, lon = load_or_create(tmp_path / "sphere_642.txt")
    for name, row in zip(["img3", "img4"], csv_rows, strict=False):
        listname = f"healpix_sampling_res_{RES}_{name}"
        original = np.asarray(Image.open(image_dir / f"{name}.jpg").convert("RGB"))
        total, theoretical, decoded = independent_coding(
            model, reference_erp(original, WIDTH, WIDTH // 2))
        assert rates[listname] == (theoretical, 8 * total)
        assert float(row["bpp"]) == pytest.approx(8 * total / NPIX, abs=1e-6)
        png = np.asarray(Image.open(folder / f"{listname}_reconstructed.png"))
        assert png.shape == (WIDTH // 2, WIDTH, 3) and png.dtype == np.uint8
        np.testing.assert_array_equal(png, decoded)
        metrics = spherical_psnr(original, "erp", png, "erp", lat, lon, resample=True)
        for key in METRIC_NAMES:
            assert float(row[key]) == pytest.approx(metrics[key], abs=1e-4)
    assert float(csv_rows[2]["bpp"]) == pytest.approx(
        np.mean([float(r["bpp"]) for r in csv_rows[:2]]), abs=1e-6)


def test_evaluate_checkpoint_pads_and_crops(image_dir, tmp_path, lists):
    """An ERP width of 96 (48 rows): the codec codes the image padded to 128 x 64."""
    out = tmp_path / "out"
    train(image_dir, tmp_path, lists, out, "-e", "1")
    rows = run(image_dir, tmp_path, out, "-t", str(lists[1]), "--checkpoint-file",
               str(out / "final.pth.tar"), "--erp-width", "96", "--foldername-valtest", "w96")
    model = load_model(out / "final.pth.tar")
    rates = read_rates(out / "w96" / "rates.txt")
    for row in rows[:2]:
        listname = f"healpix_sampling_res_{RES}_{row.name}"
        original = np.asarray(Image.open(image_dir / f"{row.name}.jpg").convert("RGB"))
        total, _, decoded = independent_coding(model, reference_erp(original, 96, 48))
        assert rates[listname][1] == 8 * total
        assert row.bpp == 8 * total / NPIX
        png = np.asarray(Image.open(out / "w96" / f"{listname}_reconstructed.png"))
        np.testing.assert_array_equal(png, decoded)


def test_patch_coding_codes_each_patch_as_an_image(image_dir, tmp_path, lists):
    """--patch-size-valtest 64 on the 128 x 64 images: two 64 x 64 patches, each coded as
    CompressAI codes an image, their bits summed and their decodings side by side."""
    out = tmp_path / "out"
    train(image_dir, tmp_path, lists, out, "-e", "1")
    rows = run(image_dir, tmp_path, out, "-t", str(lists[1]), "--checkpoint-file",
               str(out / "final.pth.tar"), "--patch-size-valtest", "64",
               "--foldername-valtest", "patches")
    model = load_model(out / "final.pth.tar")
    rates = read_rates(out / "patches" / "rates.txt")
    for row in rows[:2]:
        listname = f"healpix_sampling_res_{RES}_{row.name}"
        original = np.asarray(Image.open(image_dir / f"{row.name}.jpg").convert("RGB"))
        image = reference_erp(original, WIDTH, WIDTH // 2)
        left, right = (independent_coding(model, image[:, cols]) for cols in
                       (slice(0, 64), slice(64, 128)))
        theoretical, actual = rates[listname]
        assert actual == 8 * (left[0] + right[0])
        # ceil(a + b) of each latent (y, z) over the two patches, against ceil(a) + ceil(b)
        assert left[1] + right[1] - 2 <= theoretical <= left[1] + right[1]
        assert row.bpp == 8 * (left[0] + right[0]) / NPIX
        whole, _, _ = independent_coding(model, image)
        assert left[0] + right[0] != whole
        png = np.asarray(Image.open(out / "patches" / f"{listname}_reconstructed.png"))
        np.testing.assert_array_equal(png, np.concatenate([left[2], right[2]], axis=1))


def test_patches_round_trip():
    x = torch.arange(2 * 3 * 128 * 192, dtype=torch.float32).reshape(1, 6, 128, 192)
    patches = erp.to_patches(x, 64)
    assert patches.shape == (6, 6, 64, 64)
    torch.testing.assert_close(patches[4], x[0, :, 64:, 64:128], rtol=0, atol=0)
    torch.testing.assert_close(erp.from_patches(patches, 128, 192), x, rtol=0, atol=0)


def test_factorized_prior(image_dir, tmp_path, lists):
    out = tmp_path / "out"
    rows = train(image_dir, tmp_path, lists, out, "-e", "1", "-m", "FactorizedPrior", "-t",
                 str(lists[1]))
    model = load_model(out / "final.pth.tar", FactorizedPrior)
    rates = read_rates(out / "reconstruction" / "rates.txt")
    for row in rows[:2]:
        listname = f"healpix_sampling_res_{RES}_{row.name}"
        original = np.asarray(Image.open(image_dir / f"{row.name}.jpg").convert("RGB"))
        total, theoretical, decoded = independent_coding(
            model, reference_erp(original, WIDTH, WIDTH // 2))
        assert rates[listname] == (theoretical, 8 * total)
        png = np.asarray(Image.open(out / "reconstruction" / f"{listname}_reconstructed.png"))
        np.testing.assert_array_equal(png, decoded)


def test_resume_gives_the_weights_of_an_uninterrupted_run(image_dir, tmp_path, lists):
    train(image_dir, tmp_path, lists, tmp_path / "a")
    train(image_dir, tmp_path, lists, tmp_path / "b", "--checkpoint-file",
          str(tmp_path / "a" / "checkpoint_1.pth.tar"))
    a, b = (torch.load(tmp_path / run / "final.pth.tar", map_location="cpu", weights_only=True)
            for run in ("a", "b"))
    assert a["epoch"] == b["epoch"] == 2
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    log_a, log_b = read_csv(tmp_path / "a" / "log.csv"), read_csv(tmp_path / "b" / "log.csv")
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    assert not (tmp_path / "b" / "checkpoint_1.pth.tar").exists()


def assert_same_run(a, b):
    """The same final weights and per-epoch losses in the output folders ``a`` and ``b``."""
    final_a, final_b = (torch.load(out / "final.pth.tar", map_location="cpu", weights_only=True)
                        for out in (a, b))
    assert final_a["state_dict"].keys() == final_b["state_dict"].keys()
    for key, value in final_a["state_dict"].items():
        assert torch.equal(value, final_b["state_dict"][key]), key
    assert [r["loss"] for r in read_csv(a / "log.csv")] == \
        [r["loss"] for r in read_csv(b / "log.csv")]


def test_interrupted_training_saves_and_resumes_exactly(image_dir, tmp_path, lists,
                                                        monkeypatch):
    """Ctrl-C in the middle of epoch 2 (6 crops, 2 batches an epoch): the step's epoch loop
    saves ``interrupted.pth.tar`` in this script's format, which resumes to the weights and
    losses of an uninterrupted run."""
    train(image_dir, tmp_path, lists, tmp_path / "a")
    steps, original = [], training.train_step

    def step_then_interrupt(*args, **kwargs):
        steps.append(None)
        if len(steps) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(image_dir, tmp_path, lists, tmp_path / "b")
    monkeypatch.setattr(training, "train_step", original)
    interrupted = tmp_path / "b" / "interrupted.pth.tar"
    checkpoint = torch.load(interrupted, map_location="cpu", weights_only=True)
    assert checkpoint["format"] == "oslo-erp-compressai-checkpoint"
    assert checkpoint["epoch"] == 1 and checkpoint["position"]["epoch"] == 2
    assert checkpoint["position"]["batch"] == 1
    assert not (tmp_path / "b" / "final.pth.tar").exists()
    train(image_dir, tmp_path, lists, tmp_path / "b", "--checkpoint-file", str(interrupted))
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_checkpoints_written_before_the_shared_loop_resume(image_dir, tmp_path, lists):
    """A checkpoint without the entries the shared epoch loop added (random states, best and
    last loss, seed, position) resumes as before, to the weights of an uninterrupted run."""
    train(image_dir, tmp_path, lists, tmp_path / "a")
    checkpoint = torch.load(tmp_path / "a" / "checkpoint_1.pth.tar", map_location="cpu",
                            weights_only=True)
    for key in ("rng", "best_loss", "loss", "seed", "position"):
        del checkpoint[key]
    torch.save(checkpoint, tmp_path / "old.pth.tar")
    train(image_dir, tmp_path, lists, tmp_path / "b", "--checkpoint-file",
          str(tmp_path / "old.pth.tar"))
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_ddp_two_processes_end_with_identical_weights(image_dir, tmp_path, lists, ddp_training):
    """torchrun with 2 processes: each trains on its share of the epoch's crops, DDP keeps
    the weights equal, and the first process writes the checkpoints."""
    out = tmp_path / "ddp"
    rank0, rank1 = ddp_training(
        ["-o", str(image_dir), "-r", str(RES), "-O", str(out), *CHANNELS, "--crop-size", "64",
         "-np", "3", "-bst", "2", "--no-progress", "-i", str(lists[0]), "-e", "1"], out,
        erp=True)
    assert rank0.keys() == rank1.keys()
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
    final = torch.load(out / "final.pth.tar", map_location="cpu", weights_only=True)
    assert len(final["rng"]) == 2
    for key, value in rank0.items():
        assert torch.equal(value, final["state_dict"][key]), key


def test_random_crops_share_the_epochs_draw_between_processes():
    """Every process draws the epoch's crops from the same generator state and takes every
    world_size-th one, the draw repeated cyclically to a multiple of world_size: together the
    processes' crops are the draw of one process, each has as many."""
    images = torch.randint(0, 256, (3, 3, 16, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    shares = []
    for rank in range(2):
        crops = erp.RandomCrops(images, 8, 3, batch_size=2, rank=rank, world_size=2)
        torch.manual_seed(5)
        crops.set_epoch(1)
        assert crops.items_per_epoch == 5 and len(crops.crops) == 5
        shares.append(crops)
    whole = erp.RandomCrops(images, 8, 3, batch_size=4)
    torch.manual_seed(5)
    whole.set_epoch(1)
    order = [*range(9), 0]
    assert torch.equal(torch.cat([shares[0].crops, shares[1].crops]),
                       whole.crops[order[0::2] + order[1::2]])
    assert torch.equal(shares[1].top_rows, whole.top_rows[order[1::2]])
    shares[0].set_start(2)
    assert [len(crops) for crops, _ in shares[0]] == [2, 1]
    assert [len(crops) for crops, _ in whole] == [4, 4, 1]


def test_init_from_starts_a_new_training_from_the_weights_of_another_lambda(image_dir, tmp_path,
                                                                             lists):
    """--init-from: the start's weights, a fresh optimiser and schedule from epoch 1 at another
    --lambda and ERP width. With learning rates of 1e-30 (an Adam step moves a weight by about
    the learning rate), one epoch keeps the start's weights, which a fresh initialisation would
    not."""
    train(image_dir, tmp_path, lists, tmp_path / "a")
    start = torch.load(tmp_path / "a" / "final.pth.tar", map_location="cpu", weights_only=True)
    train(image_dir, tmp_path, lists, tmp_path / "b", "-e", "1", "--lambda", "0.002",
          "--lr-schedule", "cosine", "-lr", "1e-30", "-lraux", "1e-30",
          "--erp-width", str(2 * WIDTH), "--init-from", str(tmp_path / "a" / "final.pth.tar"))
    tuned = torch.load(tmp_path / "b" / "final.pth.tar", map_location="cpu", weights_only=True)
    assert tuned["epoch"] == 1 and len(tuned["history"]) == 1
    assert tuned["config"]["lambda"] == 0.002 and start["config"]["lambda"] != 0.002
    assert (start["config"]["erp_width"], tuned["config"]["erp_width"]) == (WIDTH, 2 * WIDTH)
    assert tuned["state_dict"].keys() == start["state_dict"].keys()
    for key, value in start["state_dict"].items():
        torch.testing.assert_close(tuned["state_dict"][key], value, rtol=0, atol=1e-20, msg=key)


def test_random_crops_give_their_rows_and_wrap_in_longitude():
    """Each crop is the image's rows ``top .. top + S - 1`` and ``S`` consecutive columns modulo
    the width, ``per_image`` crops of every image; pixel values encode (row, column, image)."""
    count, height, width, size, per_image = 2, 32, 64, 8, 5
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    images = torch.stack([torch.stack([rows, cols, torch.full_like(rows, n)])
                          for n in range(count)]).to(torch.uint8)  # [n, 3, H, W]
    torch.manual_seed(0)
    crops, top = erp.random_crops(images, size, per_image)
    assert crops.shape == (count * per_image, 3, size, size) and top.shape == (count * per_image,)
    for crop, first in zip(crops.long(), top.tolist(), strict=True):
        assert torch.equal(crop[0], (first + torch.arange(size))[:, None].expand(size, size))
        steps = (crop[1] - crop[1, :, :1]) % width
        assert torch.equal(steps, torch.arange(size).expand(size, size))
        assert torch.equal(crop[1], crop[1, :1].expand(size, size))
    assert sorted(crops[:, 2, 0, 0].tolist()) == [n for n in range(count) for _ in range(per_image)]
    assert 0 <= int(top.min()) and int(top.max()) <= height - size


def test_latitude_criterion_weighs_each_row_by_cos_latitude():
    """--distortion-weight latitude against the closed form: row ``v`` of an ERP image of height
    ``H`` lies at latitude ``pi/2 - (v + 0.5) pi / H``; its squared errors weigh
    ``cos(latitude)`` divided by the mean of these over the ``H`` rows. The rate term is
    CompressAI's RateDistortionLoss's; an error equal on every row of the image weighs as the
    plain MSE."""
    height, size, lmbda = 16, 4, 0.01
    top = torch.tensor([0, 5, 12])
    generator = torch.Generator().manual_seed(0)
    x, x_hat = (torch.rand(3, 3, size, size, generator=generator) for _ in range(2))
    output = {"x_hat": x_hat,
              "likelihoods": {"y": torch.rand(3, 2, 2, 2, generator=generator) * 0.9 + 0.05}}
    row_weights = erp.area_row_weights(height)
    weighted = erp.latitude_criterion(lmbda, row_weights, top, size)(output, x)
    plain = RateDistortionLoss(lmbda=lmbda)(output, x)
    cos = np.array([math.cos(math.pi / 2 - (v + 0.5) * math.pi / height) for v in range(height)])
    rows = top.numpy()[:, None] + np.arange(size)  # [3, S]
    weights = (cos / cos.mean())[rows][:, None, :, None]
    expected = np.mean(weights * (x_hat.double().numpy() - x.double().numpy()) ** 2)
    assert weighted["mse_loss"].item() == pytest.approx(expected, rel=1e-6)
    assert weighted["bpp_loss"].item() == pytest.approx(plain["bpp_loss"].item(), rel=1e-6)
    assert weighted["loss"].item() == pytest.approx(
        lmbda * 255**2 * expected + plain["bpp_loss"].item(), rel=1e-6)
    whole = torch.zeros(1, 3, height, size)
    uniform = erp.latitude_criterion(lmbda, row_weights, torch.tensor([0]), height)(
        {"x_hat": whole + 0.1, "likelihoods": {}}, whole)
    assert uniform["mse_loss"].item() == pytest.approx(0.01, rel=1e-6)


def test_distortion_weight_is_recorded_and_checked_on_resume(image_dir, tmp_path, lists):
    out = tmp_path / "latitude"
    train(image_dir, tmp_path, lists, out, "-e", "1", "--distortion-weight", "latitude")
    checkpoint = torch.load(out / "final.pth.tar", map_location="cpu", weights_only=True)
    assert checkpoint["config"]["distortion_weight"] == "latitude"
    assert np.isfinite(float(read_csv(out / "log.csv")[0]["mse"]))
    with pytest.raises(OsloError, match="it was trained with --distortion-weight latitude, the "
                                        "flags give --distortion-weight none"):
        train(image_dir, tmp_path, lists, out, "--checkpoint-file", str(out / "final.pth.tar"))


def run_cli(monkeypatch, capsys, argv):
    """``run_main(main)`` with ``argv``: the exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["train_erp_compressai.py", *argv])
    capsys.readouterr()  # what earlier runs logged
    with pytest.raises(SystemExit) as exit_info:
        run_main(script.main)
    return exit_info.value.code, capsys.readouterr().err


def test_bad_input_is_one_line_error(image_dir, tmp_path, lists, monkeypatch, capsys):
    out = tmp_path / "out"
    train(image_dir, tmp_path, lists, out, "-e", "1")
    final = str(out / "final.pth.tar")
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(b"not a checkpoint")
    missing = write_list(tmp_path / "missing.txt", ["img3", "img9"])
    common = ["-o", str(image_dir), "-r", str(RES), "-O", str(out), *CHANNELS, "--no-progress",
              "-s", str(tmp_path / "sphere_642.txt")]
    cases = {
        "img9.jpg": ["-t", str(missing), "--checkpoint-file", final],
        "-m/--model ScaleHyperprior": ["-t", str(lists[1]), "--checkpoint-file", final,
                                       "-m", "FactorizedPrior"],
        "N 8": ["-t", str(lists[1]), "--checkpoint-file", final, "--channels", "16", "8"],
        "cannot read checkpoint file": ["-t", str(lists[1]), "--checkpoint-file", str(corrupt)],
        "--erp-width must be even": ["-t", str(lists[1]), "--checkpoint-file", final,
                                     "--erp-width", "127"],
        "larger than the ERP images": ["-i", str(lists[0]), "-t", str(lists[1]),
                                       "--crop-size", "128"],
        "--patch-size-valtest must be 0 or a positive multiple of 64": [
            "-t", str(lists[1]), "--checkpoint-file", final, "--patch-size-valtest", "32"],
        "nothing to do": [],
        "needs --checkpoint-file": ["-t", str(lists[1])],
        "cannot read list file": ["-t", str(tmp_path / "none.txt"), "--checkpoint-file", final],
        "--init-from needs -i/--train-data": ["-t", str(lists[1]), "--init-from", final],
        "it was trained with -m/--model ScaleHyperprior, the flags give -m/--model "
        "FactorizedPrior": ["-i", str(lists[0]), "--crop-size", "64", "-m", "FactorizedPrior",
                            "--init-from", final],
    }
    for expected, extra in cases.items():
        code, err = run_cli(monkeypatch, capsys, [*common, *extra])
        assert code == 2, expected
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert expected in err, err
        with pytest.raises(OsloError):
            script.main([*common, *extra])
    assert not (out / "reconstruction").exists()


def test_resample_erp_is_the_bilinear_sampling_at_pixel_centres(image_dir, tmp_path):
    original = np.asarray(Image.open(image_dir / "img0.jpg").convert("RGB"))  # 32 x 64
    half = resample_erp(original, 32, 16)
    np.testing.assert_array_equal(half, reference_erp(original, 32, 16))
    np.testing.assert_array_equal(to_grid_of(original, "erp", half, "erp", resample=True), half)
    with pytest.raises(ValueError, match="same projection"):
        to_grid_of(original, "erp", half, "erp")
    lat, lon = load_or_create(tmp_path / "sphere_642.txt")
    own = spherical_psnr(original, "erp", half, "erp", lat, lon, resample=True)
    assert own["ws_psnr_y"] == math.inf  # the reference is the half-size image itself
    assert math.isfinite(own["s_psnr_y"]) and own["s_psnr_y"] > 0

    other = resample_erp(np.asarray(Image.open(image_dir / "img1.jpg").convert("RGB")), 32, 16)
    metrics = spherical_psnr(original, "erp", other, "erp", lat, lon, resample=True)
    weights = erp_row_weights(16)[:, None]
    mse_y = (weights * (luma(half) - luma(other)) ** 2).sum() / (32 * weights.sum())
    assert metrics["ws_psnr_y"] == pytest.approx(10 * math.log10(255**2 / mse_y), abs=1e-9)
    same = spherical_psnr(original, "erp", original, "erp", lat, lon, resample=True)
    assert same["ws_psnr_y"] == same["s_psnr_y"] == math.inf


def test_pad_matches_numpy_edge_padding():
    image = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    padded = erp.pad(erp.to_tensor(image))
    assert padded.shape == (1, 3, 64, 128)
    expected = np.pad(image, ((0, 24), (0, 58), (0, 0)), mode="edge").astype(np.float32) / 255
    np.testing.assert_array_equal(padded[0].permute(1, 2, 0).numpy(), expected)
