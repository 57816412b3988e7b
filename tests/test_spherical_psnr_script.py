"""misc/compute_spherical_psnr.py end to end on tiny data, its flags and its bad input."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from misc.compute_spherical_psnr import build_parser, main
from utils.errors import OsloError
from utils.io import load_image
from utils.metrics import METRIC_NAMES, spherical_psnr
from utils.sampling import erp_to_healpix
from utils.sphere_points import read_sphere_points, write_sphere_points

RES = 4
NPIX = 12 * 4**RES
PREFIX = f"healpix_sampling_res_{RES}_"
STEMS = ("img0", "img1")
BITS = {"img0": 6000, "img1": 9000}


@pytest.fixture
def data(tmp_path):
    """ERP originals (PNG), their HEALPix samples, noisy reconstructions, rates.txt, points."""
    rng = np.random.default_rng(0)
    originals, maps = tmp_path / "originals", tmp_path / "maps"
    recon = tmp_path / "run" / "reconstruction"
    for folder in (originals, maps, recon):
        folder.mkdir(parents=True)
    for stem in STEMS:
        image = rng.integers(30, 220, (32, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(originals / f"{stem}.png")
        hp_map = erp_to_healpix(image, RES)
        np.save(maps / f"{PREFIX}{stem}.npy", hp_map)
        noisy = np.clip(hp_map + rng.integers(-5, 6, hp_map.shape), 0, 255).astype(np.uint8)
        np.save(recon / f"{PREFIX}{stem}_reconstructed.npy", noisy)
    (maps / "test.txt").write_text("".join(f"{PREFIX}{s}.npy\n" for s in STEMS))
    (recon / "rates.txt").write_text(
        "# name\ttheoretical_bits\tactual_bits\n"
        + "".join(f"{PREFIX}{s}\t{BITS[s] - 100}\t{BITS[s]}\n" for s in STEMS))
    write_sphere_points(tmp_path / "sphere_2562.txt", 4)
    return tmp_path


def seed_args(root, **changes):
    """The seed README's command line on the test data."""
    args = {
        "--original-dir": root / "originals", "--original-ext": "png",
        "--projection-original": "erp", "-t": root / "maps" / "test.txt",
        "--test-files-prefix": PREFIX, "--reconstruction-dir": root / "run",
        "--reconstruction-subfolder": "reconstruction", "--reconstruction-ext": "npy",
        "--reconstruction-prefix": PREFIX, "--reconstruction-suffix": "_reconstructed",
        "--projection": "healpix", "--rate-prefix": PREFIX,
        "--sphere-points": root / "sphere_2562.txt",
    }
    args.update(changes)
    return [str(item) for pair in args.items() for item in pair]


def test_end_to_end_csv_and_table(data, capsys):
    rows = main([*seed_args(data), "--csv", str(data / "rd.csv")])
    assert [r.name for r in rows] == [*STEMS, "mean"]
    lat, lon = read_sphere_points(data / "sphere_2562.txt")
    for row, stem in zip(rows, STEMS, strict=False):
        assert row.bpp == BITS[stem] / NPIX
        original = load_image(data / "originals" / f"{stem}.png")
        recon = np.load(data / "run" / "reconstruction" / f"{PREFIX}{stem}_reconstructed.npy")
        reference = spherical_psnr(original, "erp", recon, "healpix", lat, lon)
        for m in METRIC_NAMES:
            assert row.metrics[m] == pytest.approx(reference[m])
            assert 15 < row.metrics[m] < 50  # random content: S-PSNR sees interpolation
    # WS-PSNR on HEALPix is the plain PSNR against the step-1 map
    hp_map = np.load(data / "maps" / f"{PREFIX}img0.npy").astype(float)
    recon = np.load(data / "run" / "reconstruction" / f"{PREFIX}img0_reconstructed.npy")
    mse = ((hp_map - recon) ** 2).mean()
    assert rows[0].metrics["ws_psnr_rgb"] == pytest.approx(10 * math.log10(255**2 / mse))
    with open(data / "rd.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["name", "bpp", *METRIC_NAMES]
    assert [r["name"] for r in table] == [*STEMS, "mean"]
    assert float(table[2]["bpp"]) == pytest.approx((BITS["img0"] + BITS["img1"]) / 2 / NPIX,
                                                   abs=1e-6)
    assert float(table[2]["s_psnr_y"]) == pytest.approx(
        (rows[0].metrics["s_psnr_y"] + rows[1].metrics["s_psnr_y"]) / 2, abs=1e-4)
    out = capsys.readouterr().out
    assert "s_psnr_y" in out and "mean" in out and "img1" in out


def test_identical_erp_reconstruction_gives_inf(data):
    """Originals as ERP reconstructions (-p erp): every metric is infinite, written 'inf'."""
    recon = data / "run" / "reconstruction"
    for stem in STEMS:
        (recon / f"{stem}.png").write_bytes((data / "originals" / f"{stem}.png").read_bytes())
    rows = main([*seed_args(data, **{"--reconstruction-ext": "png", "--reconstruction-prefix": "",
                                     "--reconstruction-suffix": "", "--projection": "erp"}),
                 "--csv", str(data / "rd.csv")])
    assert all(r.metrics[m] == math.inf for r in rows for m in METRIC_NAMES)
    assert rows[0].bpp == BITS["img0"] / (32 * 64)
    assert (data / "rd.csv").read_text().splitlines()[1].endswith("inf,inf,inf,inf")


def test_short_long_and_single_dash_flags_agree(data):
    long = build_parser().parse_args(seed_args(data))
    short = build_parser().parse_args([
        "-o", str(data / "originals"), "-oe", "png", "-po", "erp", "-t",
        str(data / "maps" / "test.txt"), "--test-files-prefix", PREFIX, "--test-files-suffix", "",
        "-r", str(data / "run"), "-rf", "reconstruction", "-re", "npy", "-rp", PREFIX,
        "-rs", "_reconstructed", "-p", "healpix", "-ratef", PREFIX, "-rates", "",
        "-s", str(data / "sphere_2562.txt")])
    assert vars(long) == vars(short)
    seed_spelling = build_parser().parse_args([*seed_args(data), "-reconstruction-subfolder", "x"])
    assert seed_spelling.reconstruction_subfolder == "x"


def test_missing_default_named_sphere_points_are_generated(data):
    main(seed_args(data, **{"--sphere-points": data / "sphere_642.txt"}))
    assert read_sphere_points(data / "sphere_642.txt")[0].shape == (642,)


def bad_missing_reconstruction(root):
    (root / "run" / "reconstruction" / f"{PREFIX}img1_reconstructed.npy").unlink()
    return {}, "reconstruction .*img1_reconstructed.npy' does not exist"


def bad_rates_without_image(root):
    rates = root / "run" / "reconstruction" / "rates.txt"
    rates.write_text("\n".join(rates.read_text().splitlines()[:2]) + "\n")
    return {}, f"'{PREFIX}img1' is not in"


def bad_resolution(root):
    recon = root / "run" / "reconstruction"
    for stem in STEMS:
        Image.new("RGB", (32, 16)).save(recon / f"{stem}.png")
    return ({"--reconstruction-ext": "png", "--reconstruction-prefix": "",
             "--reconstruction-suffix": "", "--projection": "erp"}, "resolution mismatch")


def bad_empty_list(root):
    (root / "maps" / "test.txt").write_text("\n")
    return {}, "names no file"


def bad_sphere_points(root):
    (root / "sphere_2562.txt").write_text("2562\n0 0\n")
    return {}, "sphere-points file .* is malformed"


def bad_rates_format(root):
    (root / "run" / "reconstruction" / "rates.txt").write_text(f"{PREFIX}img0 12\n")
    return {}, "line 1 is not"


@pytest.mark.parametrize("make_bad", [
    bad_missing_reconstruction, bad_rates_without_image, bad_resolution, bad_empty_list,
    bad_sphere_points, bad_rates_format,
])
def test_bad_input_is_one_error(data, make_bad):
    changes, message = make_bad(data)
    with pytest.raises(OsloError, match=message):
        main([*seed_args(data, **changes), "--csv", str(data / "rd.csv")])
    assert not (data / "rd.csv").exists()


def test_command_line_prints_one_error_line_and_exits_2(data):
    (data / "maps" / "test.txt").write_text("")
    script = Path(__file__).resolve().parent.parent / "misc" / "compute_spherical_psnr.py"
    result = subprocess.run([sys.executable, str(script), *seed_args(data)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: test list '{data / 'maps' / 'test.txt'}' names no file"]


def test_metrics_flag_adds_cpp_and_viewport_columns(data, capsys):
    """--metrics cpp viewport: the four extra columns after the default ones; identical ERP
    reconstructions give inf in them too."""
    recon = data / "run" / "reconstruction"
    for stem in STEMS:
        (recon / f"{stem}.png").write_bytes((data / "originals" / f"{stem}.png").read_bytes())
    extra = ["cpp_psnr_y", "cpp_psnr_rgb", "vp_psnr_y", "vp_psnr_rgb"]
    rows = main([*seed_args(data, **{"--reconstruction-ext": "png", "--reconstruction-prefix": "",
                                     "--reconstruction-suffix": "", "--projection": "erp"}),
                 "--csv", str(data / "rd.csv"), "--metrics", "cpp", "viewport"])
    assert list(rows[-1].metrics) == [*METRIC_NAMES, *extra]
    assert all(r.metrics[m] == math.inf for r in rows for m in extra)
    lines = (data / "rd.csv").read_text().splitlines()
    assert lines[0] == ",".join(["name", "bpp", *METRIC_NAMES, *extra])
    assert "vp_psnr_rgb" in capsys.readouterr().out
