"""The face layout of the planar baseline (``baselines/train_erp_compressai.py --layout
healpix``, spherical_models/planar/faces.py) on resolution-6 maps with 8-channel models: the
layout and its inverse, checked against healpy's face coordinates; training patches are the
maps' patches; a map's coding is CompressAI's compress / decompress of its patch images; the
script end to end; the ERP layout's records unchanged; bad flags refused with one line."""

import csv
import math

import healpy
import numpy as np
import pytest
import torch
from compressai.models import ScaleHyperprior
from PIL import Image

import baselines.train_erp_compressai as script
from spherical_models.cli import ERP_ONLY_FLAGS
from spherical_models.config import FACE_FLAGS, ErpRunConfig
from spherical_models.planar import faces
from spherical_models.planar.coding import code_images, to_uint8
from spherical_models.planar.pipeline import model_config
from utils.cli import run_main
from utils.datasets import BalancedPatchSampler
from utils.errors import OsloError
from utils.healpix import patch_image_index
from utils.metrics import METRIC_NAMES, spherical_psnr
from utils.sampling import erp_to_healpix
from utils.sphere_points import load_or_create

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RES = 6
NPIX = 12 * 4**RES
CHANNELS = ("--channels", "8", "8")


def reference_images(hp_map, patch_res):
    """The patch images of a map ``[npix, C]`` from healpy's face coordinates: pixel ``p`` at
    face-local ``(X, Y)`` lies in patch ``p // 4**pr`` at ``image[Y mod 2**pr, X mod 2**pr]``."""
    npix, side = len(hp_map), 2**patch_res
    x, y, _ = healpy.pix2xyf(2**RES if npix == NPIX else int(math.sqrt(npix // 12)),
                             np.arange(npix), nest=True)
    images = np.zeros((npix // side**2, side, side, hp_map.shape[1]), hp_map.dtype)
    images[np.arange(npix) // side**2, y % side, x % side] = hp_map
    return images.transpose(0, 3, 1, 2)


def test_images_to_map_inverts_map_to_images():
    values = torch.randn(12 * 4**4, 5)
    for patch_res in (0, 2, 4):
        images = faces.map_to_images(values, patch_res)
        assert images.shape == (12 * 4 ** (4 - patch_res), 5, 2**patch_res, 2**patch_res)
        torch.testing.assert_close(faces.images_to_map(images), values, rtol=0, atol=0)
        torch.testing.assert_close(faces.map_to_images(faces.images_to_map(images), patch_res),
                                   images, rtol=0, atol=0)


@pytest.mark.parametrize("patch_res", [1, 3, 6])
def test_patch_images_are_healpys_face_coordinates(patch_res):
    hp_map = np.random.default_rng(1).integers(0, 256, (NPIX, 3), dtype=np.uint8)
    images = faces.map_to_images(torch.from_numpy(hp_map), patch_res).numpy()
    np.testing.assert_array_equal(images, reference_images(hp_map, patch_res))


def test_training_patches_are_the_oslo_samplers_patches_laid_out():
    """The epoch's patches are the (map, patch) pairs of BalancedPatchSampler (the OSLO
    training's) for the same seed, epoch and process, each the map's pixels of the patch in the
    layout of patch_image_index."""
    maps = torch.randint(0, 256, (3, NPIX, 3), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    index = patch_image_index(4)
    for rank, world_size, count in ((0, 1, 15), (1, 2, 10)):
        patches = faces.RandomPatches(maps, 4, 5, batch_size=4, seed=7, rank=rank,
                                      world_size=world_size)
        patches.set_epoch(2)
        sampler = BalancedPatchSampler(3, RES, 4, 5, 7, rank, world_size)
        sampler.set_epoch(2)
        pairs = sampler.samples()
        assert patches.items_per_epoch == count and patches.items.shape == (count, 3, 16, 16)
        assert patches.items.dtype == torch.uint8
        np.testing.assert_array_equal(patches.tags.numpy(), pairs[:, 1])
        for image, (m, k) in zip(patches.items, pairs, strict=True):
            expected = maps[m, k * 256 : (k + 1) * 256].numpy()[index]  # [16, 16, 3]
            np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)
    patches.set_start(5)
    assert [len(batch) for batch, _ in patches] == [4, 1]


@pytest.fixture
def model():
    torch.manual_seed(0)
    model = ScaleHyperprior(8, 8).eval()
    model.update(force=True)
    return model


def test_coding_is_the_models_quantised_forward(model):
    """decompress(compress(x)) is the eval-mode forward's x_hat, clamped to [0, 1] as
    decompress does (CompressAI's guarantee: the same quantised latents), and
    code_map is that on the map's patch images, put back in NESTED order, with the bytes of
    the strings of all patches."""
    hp_map = erp_to_healpix(np.random.default_rng(2).integers(0, 256, (64, 128, 3)).astype(
        np.uint8), RES)
    x = torch.from_numpy(reference_images(hp_map, 6)).float() / 255
    with torch.no_grad():
        forward = model(x)
        encoded = model.compress(x)
    x_hat, stats = code_images(model, x, torch.device("cpu"))
    torch.testing.assert_close(x_hat, forward["x_hat"].clamp(0, 1), rtol=0, atol=1e-5)
    decoded, map_stats = faces.code_map(model, hp_map, 6, torch.device("cpu"))
    assert decoded.shape == (NPIX, 3) and decoded.dtype == np.uint8
    expected = to_uint8(forward["x_hat"]).numpy()  # [12, 3, 64, 64]
    assert np.abs(reference_images(decoded, 6).astype(int) - expected).max() <= 1
    total = sum(len(s) for strings in encoded["strings"] for s in strings)
    assert stats["actual_bits"] == map_stats["actual_bits"] == 8 * total
    theoretical = sum(math.ceil(-torch.log2(v.double()).sum().item())
                      for v in forward["likelihoods"].values())
    assert map_stats["theoretical_bits"] == theoretical


@pytest.fixture
def data(tmp_path):
    """ERP originals img0..img2 (64 x 128) in images/, their maps at RES (step 1's sampling)
    in maps/, and the lists train.txt (img0, img1) and test.txt (img2)."""
    images, maps = tmp_path / "images", tmp_path / "maps"
    images.mkdir()
    maps.mkdir()
    rng = np.random.default_rng(0)
    lat = np.linspace(0, np.pi, 64)[:, None, None]
    for i in range(3):
        smooth = 127 + 100 * np.sin((i + 1) * lat) * np.cos(np.linspace(0, 6, 128))[None, :, None]
        image = np.clip(smooth + rng.normal(0, 10, (64, 128, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(images / f"img{i}.png")
        np.save(maps / f"healpix_sampling_res_{RES}_img{i}.npy", erp_to_healpix(image, RES))
    for name, stems in (("train.txt", ["img0", "img1"]), ("test.txt", ["img2"])):
        (maps / name).write_text("".join(f"healpix_sampling_res_{RES}_{s}.npy\n"
                                         for s in stems))
    return tmp_path


def common(data, out):
    return ["-o", str(data / "images"), "-oe", "png", "-r", str(RES), "-O", str(out),
            *CHANNELS, "--no-progress", "-s", str(data / "sphere_642.txt")]


def test_train_and_evaluate_on_healpix_patches_end_to_end(data):
    out = data / "out"
    rows = script.main([*common(data, out), "--layout", "healpix", "-prt", "6", "-np", "3",
                        "-bst", "2", "-e", "1", "-i", str(data / "maps" / "train.txt"),
                        "-t", str(data / "maps" / "test.txt")])
    assert [r.name for r in rows] == ["img2", "mean"]
    final = torch.load(out / "final.pth.tar", map_location="cpu", weights_only=True)
    assert final["config"]["layout"] == "healpix" and final["config"]["patch_res_train"] == 6
    assert "layout = healpix" in (out / "config.txt").read_text()
    folder = out / "reconstruction"
    stem = f"healpix_sampling_res_{RES}_img2_reconstructed"
    decoded = np.load(folder / f"{stem}.npy")
    assert decoded.shape == (NPIX, 3) and decoded.dtype == np.uint8
    assert (folder / f"{stem}.png").is_file()
    with (folder / "rd.csv").open(newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert list(csv_rows[0]) == ["name", "bpp", *METRIC_NAMES]
    assert all(math.isfinite(float(v)) for row in csv_rows for k, v in row.items() if k != "name")
    # an independent coding of the map's patch images with the checkpoint's weights
    model = ScaleHyperprior(8, 8)
    model.load_state_dict(final["state_dict"])
    model.eval().update(force=True)
    hp_map = np.load(data / "maps" / f"healpix_sampling_res_{RES}_img2.npy")
    x = torch.from_numpy(reference_images(hp_map, 6)).float() / 255
    with torch.no_grad():
        encoded = model.compress(x)
        x_hat = model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
    np.testing.assert_array_equal(reference_images(decoded, 6), to_uint8(x_hat).numpy())
    actual = int((folder / "rates.txt").read_text().splitlines()[1].split("\t")[2])
    assert actual == 8 * sum(len(s) for strings in encoded["strings"] for s in strings)
    assert float(csv_rows[0]["bpp"]) == pytest.approx(actual / NPIX, abs=1e-6)
    original = np.asarray(Image.open(data / "images" / "img2.png"))
    lat, lon = load_or_create(data / "sphere_642.txt")
    metrics = spherical_psnr(original, "erp", decoded, "healpix", lat, lon)
    for name in METRIC_NAMES:
        assert float(csv_rows[0][name]) == pytest.approx(metrics[name], abs=1e-3)
    # resuming in the other layout is refused, naming the flag
    with pytest.raises(OsloError, match="trained with --layout healpix, the flags give "
                                        "--layout erp"):
        script.main([*common(data, out), "--crop-size", "64", "-e", "2",
                     "-i", str(data / "maps" / "train.txt"), "--checkpoint-file",
                     str(out / "final.pth.tar")])


def test_the_erp_layout_records_what_it_recorded_before():
    """--layout erp (the default) records neither the face flags in config.txt and the
    checkpoints' arguments nor a layout in the checkpoints' model configuration."""
    args = script.build_parser().parse_args(["-o", "x", "-r", "5", "-O", "y", "-i", "t.txt"])
    config = ErpRunConfig.from_args(args)
    assert not set(FACE_FLAGS) & set(config.training.arguments)
    assert list(model_config(config)) == [
        "model", "N", "M", "lambda", "erp_width", "healpix_res", "crop_size", "seed",
        "lr_schedule", "distortion_weight"]
    parser = script.build_parser()
    assert {dest: parser.get_default(dest) for dest, _ in ERP_ONLY_FLAGS.values()} == dict(
        ERP_ONLY_FLAGS.values())


def test_bad_flags_are_one_line_errors(data, monkeypatch, capsys):
    out = data / "out"
    train = ["-i", str(data / "maps" / "train.txt")]
    healpix = ["--layout", "healpix", *train]
    (data / "maps" / "missing.txt").write_text(f"healpix_sampling_res_{RES}_img9.npy\n")
    cases = {
        "-prt/--patch-res-train 7 is above -r/--healpix-res 6": [*healpix, "-prt", "7"],
        "-prt/--patch-res-train 8 is above": healpix,
        "-prt/--patch-res-train 5 is below 6": [*healpix, "-prt", "5"],
        "-prvt/--patch-res-valtest 7 is above": [*healpix, "-prt", "6", "-prvt", "7"],
        "-prt/--patch-res-train needs --layout healpix": [*train, "-prt", "6"],
        "-prvt/--patch-res-valtest needs --layout healpix": [*train, "-prvt", "6"],
        "--crop-size is a flag of --layout erp": [*healpix, "-prt", "6", "--crop-size", "256"],
        "--erp-width is a flag of --layout erp": [*healpix, "-prt", "6", "--erp-width", "64"],
        "--distortion-weight is a flag of --layout erp": [
            *healpix, "-prt", "6", "--distortion-weight", "latitude"],
        "--patch-size-valtest is a flag of --layout erp": [
            *healpix, "-prt", "6", "--patch-size-valtest", "64"],
        "--train-original-dir is a flag of --layout erp": [
            *healpix, "-prt", "6", "--train-original-dir", str(data)],
        "names a missing map": ["--layout", "healpix", "-prt", "6", "-i",
                                str(data / "maps" / "missing.txt")],
        "has HEALPix resolution 6, not the -hr/--healpix-res 7": [*healpix, "-prt", "6",
                                                                   "-r", "7"],
    }
    for expected, extra in cases.items():
        monkeypatch.setattr("sys.argv", ["train_erp_compressai.py", *common(data, out), *extra])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run_main(script.main)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, expected
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert expected in err, err
    assert not out.exists()
