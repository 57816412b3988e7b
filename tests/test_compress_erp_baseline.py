"""misc/compress_erp_baseline.py on tiny images: monotonic RD points, readable CSVs, bad input."""

import csv
import logging

import numpy as np
import pytest
from PIL import Image

import misc.compress_erp_baseline as baseline
from utils.errors import OsloError
from utils.metrics import METRIC_NAMES
from utils.rd import read_curve, read_point

RES = 4
NPIX = 12 * 4**RES


@pytest.fixture
def originals(tmp_path):
    """Two smooth 32x64 ERP images with some texture (PNG) and a small sphere-points file."""
    folder = tmp_path / "originals"
    folder.mkdir()
    v, u = np.mgrid[0:32, 0:64]
    rng = np.random.default_rng(0)
    for k in range(2):
        base = 128 + 60 * np.sin(u / (5 + k)) * np.cos(v / 4)
        image = np.stack([base, base[::-1], 255 - base], axis=-1) + rng.normal(0, 8, (32, 64, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"img{k}.png")
    return folder


def run(tmp_path, folder, *extra):
    out = tmp_path / "out"
    results = baseline.main(["-o", str(folder), "-oe", "png", "-r", str(RES), "-O", str(out),
                             "-s", str(tmp_path / "sphere_642.txt"), *extra])
    return out, results


def test_jpeg_bpp_and_psnr_increase_with_quality(tmp_path, originals):
    out, results = run(tmp_path, originals, "-c", "jpeg", "--jpeg-qualities", "10,50,95",
                       "--keep-files")
    points = results["jpeg"]
    assert [q for q, _ in points] == [10, 50, 95]
    bpp = [row.bpp for _, row in points]
    assert np.all(np.diff(bpp) > 0)
    for metric in METRIC_NAMES:
        assert np.all(np.diff([row.metrics[metric] for _, row in points]) > 0), metric
    # bpp is the file's bits over the HEALPix pixel count at -r
    files = sorted((out / "jpeg" / "q50").glob("*.jpg"))
    assert [f.name for f in files] == ["img0.jpg", "img1.jpg"]
    assert points[1][1].bpp == pytest.approx(np.mean([8 * f.stat().st_size / NPIX
                                                      for f in files]), abs=1e-9)


def test_csvs_are_read_by_compute_bd_rate(tmp_path, originals):
    out, results = run(tmp_path, originals, "-c", "jpeg", "webp", "jpeg2000",
                       "--jpeg-qualities", "20,80", "--webp-qualities", "20,80",
                       "--jpeg2000-qualities", "50,10")
    for codec in ("jpeg", "webp", "jpeg2000"):
        paths = sorted(str(p) for p in (out / codec).glob("q*.csv"))
        assert len(paths) == 2
        with open(paths[0], newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["name"] for r in rows] == ["img0", "img1", "mean"]
        point = read_point(paths[0])
        assert set(point) == {"bpp", *METRIC_NAMES}
        curve = read_curve(codec, paths, monotonic=False)
        assert len(curve["bpp"]) == 2
        with open(out / f"{codec}_summary.csv", newline="") as handle:
            summary = list(csv.DictReader(handle))
        assert [r["codec"] for r in summary] == [codec, codec]
        assert float(summary[0]["bpp"]) == pytest.approx(results[codec][0][1].bpp, abs=1e-6)
    assert not list((out / "jpeg").glob("q20/*"))  # no compressed files without --keep-files


def test_missing_codec_is_skipped_with_a_warning(tmp_path, originals, monkeypatch, caplog):
    monkeypatch.setattr(baseline.features, "check", lambda feature: feature != "webp")
    with caplog.at_level(logging.WARNING, logger="oslo"):
        out, results = run(tmp_path, originals, "-c", "jpeg", "webp",
                           "--jpeg-qualities", "50", "--webp-qualities", "50")
    assert set(results) == {"jpeg"}
    assert not (out / "webp_summary.csv").exists()
    assert any("webp skipped" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(baseline.features, "check", lambda feature: False)
    with pytest.raises(OsloError, match="supports none"):
        run(tmp_path, originals, "-c", "webp")


def test_erp_width_codes_the_resampled_image(tmp_path, originals):
    """With --erp-width the file is the JPEG of the resampled image (the planar baseline's
    input), and the metrics compare its decoding with the full-size original."""
    from utils.io import load_image
    from utils.metrics import spherical_psnr
    from utils.sampling import resample_erp
    from utils.sphere_points import read_sphere_points

    out, _ = run(tmp_path, originals, "-c", "jpeg", "--jpeg-qualities", "50",
                 "--erp-width", "32", "--keep-files")
    original = load_image(originals / "img0.png")
    data, decoded = baseline.compress(resample_erp(original, 32, 16), baseline.CODECS["jpeg"], 50)
    assert decoded.shape == (16, 32, 3)
    assert (out / "jpeg" / "q50" / "img0.jpg").read_bytes() == data
    with open(out / "jpeg" / "q50.csv", newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["name"] == "img0")
    assert float(row["bpp"]) == pytest.approx(8 * len(data) / NPIX, abs=1e-6)
    lat, lon = read_sphere_points(tmp_path / "sphere_642.txt")
    expected = spherical_psnr(original, "erp", decoded, "erp", lat, lon, resample=True)
    for metric in METRIC_NAMES:
        assert float(row[metric]) == pytest.approx(expected[metric], abs=1e-4)
    with pytest.raises(OsloError, match="--erp-width must be even"):
        run(tmp_path, originals, "--erp-width", "33")


@pytest.mark.parametrize("extra, message", [
    (["--jpeg-qualities", "10,abc"], "not a comma-separated list"),
    (["--jpeg-qualities", "101"], "not a comma-separated list"),
    (["--jpeg2000-qualities", "0.5"], "not a comma-separated list"),
    (["-oe", "tiff"], "no '\\*.tiff' image"),
])
def test_bad_input(tmp_path, originals, extra, message):
    with pytest.raises(OsloError, match=message):
        run(tmp_path, originals, *extra)


def test_missing_folder_and_test_list(tmp_path, originals):
    with pytest.raises(OsloError, match="does not exist"):
        run(tmp_path, tmp_path / "nowhere")
    listing = tmp_path / "test.txt"
    listing.write_text("maps/healpix_sampling_res_4_img1.npy\n")
    out, _ = run(tmp_path, originals, "-c", "jpeg", "--jpeg-qualities", "50",
               "-t", str(listing), "--test-files-prefix", "healpix_sampling_res_4_")
    rows = (out / "jpeg" / "q50.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["img1", "mean"]


def test_help_says_bpp_is_per_healpix_pixel():
    text = baseline.build_parser().format_help()
    assert "HEALPix pixel" in text and "--healpix-res" in text
