"""utils/seams.py (border mask against healpy, the seam ratio, the run's patch resolution) and
compute_spherical_psnr.py --metrics seams end to end."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import healpy
import numpy as np
import pytest
from test_spherical_psnr_script import PREFIX, RES, STEMS, data, seed_args  # noqa: F401 (data)

from misc.compute_spherical_psnr import main
from spherical_models.training.logs import write_config
from utils.errors import OsloError
from utils.metrics import METRIC_NAMES
from utils.seams import patch_border_mask, run_patch_res, seam_ratio


def brute_force_mask(healpix_res, patch_res, width):
    """Border pixels patch by patch: face-local (x, y) from healpy, each patch's own corner."""
    nside, size = 2**healpix_res, 4**patch_res
    x, y, face = healpy.pix2xyf(nside, np.arange(12 * 4**healpix_res), nest=True)
    mask = np.zeros(12 * 4**healpix_res, dtype=bool)
    for start in range(0, len(mask), size):
        px, py = x[start:start + size], y[start:start + size]
        assert len(set(face[start:start + size])) == 1
        assert px.max() - px.min() == py.max() - py.min() == 2**patch_res - 1  # a square
        mask[start:start + size] = ((px - px.min() < width) | (px.max() - px < width)
                                    | (py - py.min() < width) | (py.max() - py < width))
    return mask


@pytest.mark.parametrize(("healpix_res", "patch_res", "width"), [
    (0, 0, 1), (1, 0, 1), (2, 1, 1), (3, 2, 1), (3, 3, 1), (4, 2, 1), (4, 3, 2), (4, 4, 3),
    (4, 3, 4), (5, 3, 1), (5, 5, 2),
])
def test_mask_matches_healpy_brute_force(healpix_res, patch_res, width):
    mask = patch_border_mask(healpix_res, patch_res, width)
    assert mask.dtype == bool and mask.shape == (12 * 4**healpix_res,)
    np.testing.assert_array_equal(mask, brute_force_mask(healpix_res, patch_res, width))


def test_mask_counts():
    """Width 1 at patch side s: 4 s - 4 border pixels per patch."""
    for patch_res in range(1, 5):
        side = 2**patch_res
        per_patch = side * side - max(side - 2, 0) ** 2
        assert patch_border_mask(5, patch_res).sum() == 12 * 4 ** (5 - patch_res) * per_patch


def maps_with_errors(healpix_res, patch_res, width, border_error, interior_error, seed=0):
    """An original ``uint8 [npix, 3]`` in [20, 235] and a reconstruction off by the given
    absolute errors, with random signs per pixel and channel."""
    rng = np.random.default_rng(seed)
    npix = 12 * 4**healpix_res
    original = rng.integers(20, 236, (npix, 3), dtype=np.uint8)
    mask = patch_border_mask(healpix_res, patch_res, width)
    error = np.where(mask[:, None], border_error, interior_error)
    signs = rng.choice([-1, 1], (npix, 3))
    return original, (original + signs * error).astype(np.uint8)


@pytest.mark.parametrize(("patch_res", "width"), [(2, 1), (3, 1), (3, 2), (4, 1), (4, 4)])
def test_equal_errors_give_exactly_one(patch_res, width):
    original, reconstruction = maps_with_errors(4, patch_res, width, 7, 7)
    assert seam_ratio(original, reconstruction, patch_res, width) == 1.0


@pytest.mark.parametrize(("border", "interior"), [(6, 4), (3, 12), (1, 17), (15, 1)])
def test_closed_form_border_over_interior(border, interior):
    for patch_res, width in ((2, 1), (3, 2), (4, 1)):
        original, reconstruction = maps_with_errors(4, patch_res, width, border, interior)
        assert seam_ratio(original, reconstruction, patch_res, width) == border / interior
        # float maps, one channel or none: the same ratio
        assert seam_ratio(original[:, 0].astype(np.float32), reconstruction[:, 0], patch_res,
                          width) == border / interior


def test_errors_only_on_the_border_and_identical_maps():
    original, reconstruction = maps_with_errors(3, 2, 1, 5, 0)
    assert seam_ratio(original, reconstruction, 2) == math.inf
    original, reconstruction = maps_with_errors(3, 2, 1, 5, 0)
    reconstruction[np.flatnonzero(~patch_border_mask(3, 2))[0]] += 1  # one interior error
    assert seam_ratio(original, reconstruction, 2) > 100
    assert math.isnan(seam_ratio(original, original.copy(), 2))


def test_faces_as_patches_measure_face_edges():
    """patch_res = hr: the borders are the 12 face edges."""
    original, reconstruction = maps_with_errors(3, 3, 1, 9, 3)
    assert seam_ratio(original, reconstruction, 3) == 3.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: seam_ratio(a, a[:-12], 1), r"original \[768, 3\] and the reconstruction "
                                          r"\[756, 3\] differ in shape"),
    (lambda a: seam_ratio(a, a, 4), r"patch resolution must be in 0..3 .*got 4"),
    (lambda a: seam_ratio(a, a, -1), r"patch resolution must be in 0..3 .*got -1"),
    (lambda a: seam_ratio(a, a, 2, 0), "seam width must be at least 1 pixel, got 0"),
    (lambda a: seam_ratio(a, a, 2, 2), "seam width 2 leaves no interior pixel in patches of 4x4"),
    (lambda a: seam_ratio(a, a, 0), "seam width 1 leaves no interior pixel"),
    (lambda a: seam_ratio(a[:700], a[:700], 1), "700 is not a HEALPix pixel count"),
    (lambda a: patch_border_mask(3, 4), "must be in 0..3"),
    (lambda a: patch_border_mask(3, 1, 0), "at least 1 pixel"),
])
def test_bad_input_is_one_line_error(call, message):
    hp_map = np.zeros((12 * 4**3, 3), dtype=np.uint8)
    with pytest.raises(OsloError, match=message) as info:
        call(hp_map)
    assert "\n" not in str(info.value)


@pytest.fixture
def psnr_data(request):
    """The tiny ERP originals, step-1 maps, reconstructions and rates.txt of
    test_spherical_psnr_script (its fixture ``data``)."""
    return request.getfixturevalue("data")


def write_run_config(folder, patch_res_train, patch_res_valtest=None):
    """A config.txt as main_sphere_compression.py writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, {"healpix_res": RES, "patch_res_train": patch_res_train,
                          "patch_res_valtest": patch_res_valtest, "lmbda": 0.01}, {"seed": 0})


def test_run_patch_res_from_the_nearest_config(tmp_path):
    run, recon = tmp_path / "run", tmp_path / "run" / "reconstruction"
    recon.mkdir(parents=True)
    write_run_config(run, 3)
    assert run_patch_res(recon) == (3, (run / "config.txt").resolve())
    write_run_config(run, 3, 2)  # -prvt is what step 4 codes with
    assert run_patch_res(recon)[0] == 2
    write_run_config(recon, 1)  # the nearest wins
    assert run_patch_res(recon)[0] == 1
    write_run_config(recon, 3, -1)
    with pytest.raises(OsloError, match=r"codes the whole sphere \(patch_res_valtest = -1\)"):
        run_patch_res(recon)
    (recon / "config.txt").write_text("# other tool\nlmbda = 0.1\n")
    with pytest.raises(OsloError, match=r"records no patch_res_train: .*--seam-patch-res"):
        run_patch_res(recon)


def seam_reconstructions(root, patch_res, width, border, interior):
    """Reconstructions of the step-1 maps off by ``border`` / ``interior`` grey levels."""
    rng = np.random.default_rng(1)
    mask = patch_border_mask(RES, patch_res, width)
    for stem in STEMS:
        hp_map = np.load(root / "maps" / f"{PREFIX}{stem}.npy")
        error = np.where(mask[:, None], border, interior) * rng.choice([-1, 1], hp_map.shape)
        np.save(root / "run" / "reconstruction" / f"{PREFIX}{stem}_reconstructed.npy",
                (hp_map + error).astype(np.uint8))


def test_metrics_seams_column_from_the_run_config(psnr_data, capsys):
    """ERP originals (sampled on HEALPix as step 1 does), patch resolution from config.txt:
    border error 6, interior 3 -> 2.0 exactly."""
    seam_reconstructions(psnr_data, 2, 1, 6, 3)
    write_run_config(psnr_data / "run", 2)
    rows = main([*seed_args(psnr_data), "--csv", str(psnr_data / "rd.csv"),
                 "--metrics", "seams"])
    assert list(rows[-1].metrics) == [*METRIC_NAMES, "seam_ratio"]
    assert [r.metrics["seam_ratio"] for r in rows] == [2.0, 2.0, 2.0]
    with open(psnr_data / "rd.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["seam_ratio"] for r in table] == ["2.0000"] * 3
    assert "seam_ratio" in capsys.readouterr().out
    # the flag overrides the run: in 8x8 patches, the border ring has error 6 and 20 of the
    # 36 interior pixels 6, the others 3 (mean 14/3)
    rows = main([*seed_args(psnr_data), "--metrics", "seams", "--seam-patch-res", "3"])
    original = np.load(psnr_data / "maps" / f"{PREFIX}img0.npy")
    recon = np.load(psnr_data / "run" / "reconstruction" / f"{PREFIX}img0_reconstructed.npy")
    assert rows[0].metrics["seam_ratio"] == seam_ratio(original, recon, 3)
    assert rows[0].metrics["seam_ratio"] == pytest.approx(6 / (14 / 3), rel=1e-12)


def test_metrics_seams_with_healpix_originals(psnr_data):
    """HEALPix originals (the step-1 maps) beside CPP-PSNR, borders of 2 pixels: border error
    2, interior 4 -> 0.5."""
    seam_reconstructions(psnr_data, 3, 2, 2, 4)
    changes = {"--original-dir": psnr_data / "maps", "--original-ext": "npy",
               "--projection-original": "healpix", "--test-files-prefix": "",
               "--reconstruction-prefix": "", "--rate-prefix": ""}
    rows = main([*seed_args(psnr_data, **changes), "--metrics", "cpp", "seams",
                 "--seam-patch-res", "3", "--seam-width", "2"])
    assert list(rows[-1].metrics)[-3:] == ["cpp_psnr_y", "cpp_psnr_rgb", "seam_ratio"]
    assert [r.metrics["seam_ratio"] for r in rows] == [0.5, 0.5, 0.5]


def bad_erp_reconstructions(root):
    for stem in STEMS:
        (root / "run" / "reconstruction" / f"{stem}.png").write_bytes(
            (root / "originals" / f"{stem}.png").read_bytes())
    return ({"--reconstruction-ext": "png", "--reconstruction-prefix": "",
             "--reconstruction-suffix": "", "--projection": "erp"}, ["--seam-patch-res", "2"],
            r"--metrics seams needs HEALPix reconstructions \(-p/--projection healpix\), got "
            "-p erp")


def bad_no_run_config(root):
    return {}, [], r"give the patch resolution \(--seam-patch-res\)"


def bad_patch_res_above_map(root):
    return {}, ["--seam-patch-res", "5"], f"'img0': seam patch resolution must be in 0..{RES}"


def bad_width(root):
    return {}, ["--seam-patch-res", "2", "--seam-width", "0"], "--seam-width must be at least 1"


def bad_width_without_interior(root):
    return {}, ["--seam-patch-res", "2", "--seam-width", "2"], "leaves no interior pixel"


@pytest.mark.parametrize("make_bad", [
    bad_erp_reconstructions, bad_no_run_config, bad_patch_res_above_map, bad_width,
    bad_width_without_interior,
])
def test_metrics_seams_refusals(psnr_data, make_bad):
    changes, flags, message = make_bad(psnr_data)
    with pytest.raises(OsloError, match=message) as info:
        main([*seed_args(psnr_data, **changes), "--csv", str(psnr_data / "rd.csv"),
              "--metrics", "seams", *flags])
    assert "\n" not in str(info.value)
    assert not (psnr_data / "rd.csv").exists()


def test_command_line_refusal_is_one_line_exit_2(psnr_data):
    script = Path(__file__).resolve().parent.parent / "misc" / "compute_spherical_psnr.py"
    result = subprocess.run([sys.executable, str(script), *seed_args(psnr_data), "--metrics",
                             "seams", "--seam-patch-res", "9"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: 'img0': seam patch resolution must be in 0..{RES} (the map's resolution), "
        "got 9"]
