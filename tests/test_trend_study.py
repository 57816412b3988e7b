"""The trend study (experiments/trend_study.py): the BD table against closed forms, and the
--tiny preset end to end with the columns the issue asks for, resumable."""

import csv
import math

import numpy as np
import pytest

from experiments import trend_study
from experiments.trend import table as trend_table
from experiments.trend.runs import METRICS
from experiments.trend.setting import TINY_PRESETS
from utils.errors import OsloError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_rows(rate_factors: dict[int, float], steps: int = 100) -> list[dict]:
    """ERP points on a log-linear curve, OSLO's at the same qualities with ``factor`` times
    the rate, per seed."""
    rows = []
    for seed, factor in rate_factors.items():
        for k, lmbda in enumerate((0.002, 0.01, 0.05)):
            erp_bpp = 0.1 * 2.0**k
            quality = {m: 30.0 + 2.0 * k + d for d, m in enumerate(METRICS)}
            for method, bpp in (("erp", erp_bpp), ("oslo", factor * erp_bpp)):
                rows.append({"method": method, "seed": seed, "steps": steps,
                             "lambda": f"{lmbda:g}", "bpp": bpp, **quality})
    return rows


def test_bd_table_of_scaled_rates_and_its_spread():
    """A rate scaled by f at equal quality is a BD-rate of (f - 1) * 100 % exactly; two seeds
    at 0.9 and 0.8 give the mean -15 % and the spread (half the range) 5 %."""
    table = trend_table.bd_table(synthetic_rows({0: 0.9, 1: 0.8}))
    assert {r["method"] for r in table} == {"oslo"} and {r["anchor"] for r in table} == {"erp"}
    by_key = {(r["seed"], r["metric"]): r for r in table}
    for metric in trend_table.BD_METRICS:
        assert float(by_key[0, metric]["bd_rate"]) == pytest.approx(-10.0, abs=0.01)
        assert float(by_key[1, metric]["bd_rate"]) == pytest.approx(-20.0, abs=0.01)
        assert by_key[0, metric]["monotone"] is True
        assert float(by_key["all", metric]["bd_rate"]) == pytest.approx(-15.0, abs=0.01)
        assert float(by_key["all", metric]["spread_bd_rate"]) == pytest.approx(5.0, abs=0.01)
        assert float(by_key[0, metric]["bd_psnr"]) > 0


def test_a_non_monotone_curve_is_flagged():
    rows = synthetic_rows({0: 1.0})
    oslo = [r for r in rows if r["method"] == "oslo"]
    oslo[2]["s_psnr_y"] = oslo[1]["s_psnr_y"] - 0.5
    table = trend_table.bd_table(rows)
    flags = {r["metric"]: r["monotone"] for r in table if r["seed"] == 0}
    assert flags == {"s_psnr_y": False, "ws_psnr_y": True}


def test_lengths_must_be_checkpoints_and_patches_fit_the_maps():
    args = trend_study.build_parser().parse_args(["--lengths", "10", "15"])
    with pytest.raises(OsloError, match="--lengths 15"):
        trend_study.setting_of(args)
    args = trend_study.build_parser().parse_args(["--tiny", "--variants", "oslo_p128"])
    with pytest.raises(OsloError, match="--variants oslo_p128"):
        trend_study.setting_of(args)
    args = trend_study.build_parser().parse_args(["--preset", "ablation", "--variants", "oslo"])
    assert trend_study.setting_of(args).variants == ("erp", "oslo")


def test_tiny_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "trend"
    trend_study.main(["-O", str(out), "--tiny"])
    setting = TINY_PRESETS["trend"]
    with open(out / "trend_points.csv") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames) == ("method", "seed", "steps", "lambda", "bpp",
                                            "s_psnr_y", "ws_psnr_y", "s_psnr_rgb",
                                            "ws_psnr_rgb")
        points = list(reader)
    assert len(points) == len(setting.variants) * len(setting.lengths) * len(setting.lambdas)
    per_epoch = setting.recipe.steps_per_epoch(len(setting.images()))
    assert sorted({int(p["steps"]) for p in points}) == [e * per_epoch for e in setting.lengths]
    for point in points:
        assert 0 < float(point["bpp"]) < 8
        assert all(10 < float(point[m]) < 60 for m in METRICS)
    with open(out / "trend_bd.csv") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames) == trend_table.BD_COLUMNS
        table = list(reader)
    assert {r["metric"] for r in table} == set(trend_table.BD_METRICS)
    assert (out / "trend.png").stat().st_size > 0
    # a second run trains and codes nothing again: the same files, the same points
    finals = sorted(out.glob("seed0/*/*/final.pth.tar"))
    stamps = [f.stat().st_mtime_ns for f in finals]
    trend_study.main(["-O", str(out), "--tiny"])
    assert [f.stat().st_mtime_ns for f in finals] == stamps
    with open(out / "trend_points.csv") as stream:
        again = list(csv.DictReader(stream))
    assert again == points
    assert not any(math.isnan(float(p["bpp"])) for p in again)
    assert np.isfinite([float(p["s_psnr_y"]) for p in again]).all()
    # a fine-tuning stopped after its checkpoint resumes from it (without its --init-from)
    point = next(out.glob("seed0/oslo/e1_*"))
    (point / "final.pth.tar").unlink()
    assert list(point.glob("checkpoint_*.pth.tar"))
    trend_study.main(["-O", str(out), "--tiny"])
    assert (point / "final.pth.tar").exists()
    # the ablation in the trend's folder reuses its runs at the ablation's length (the bases'
    # checkpoint there, not their end): nothing trains, the same points
    stamps = [f.stat().st_mtime_ns for f in finals]
    trend_study.main(["--preset", "ablation", "-O", str(out), "--tiny", "--variants", "oslo"])
    assert [f.stat().st_mtime_ns for f in finals] == stamps
    with open(out / "ablation_points.csv") as stream:
        ablation = list(csv.DictReader(stream))
    first = min(int(p["steps"]) for p in points)
    def key(point: dict) -> tuple:
        return point["method"], point["lambda"]

    assert sorted(ablation, key=key) == sorted((p for p in points if int(p["steps"]) == first),
                                               key=key)
    assert (out / "ablation.png").stat().st_size > 0


def test_tiny_ablation_codes_every_variant(tmp_path):
    """The ablation preset: the variants trained (oslo, erp, faces) and those that code their
    runs whole, each a curve against the erp anchor."""
    out = tmp_path / "ablation"
    trend_study.main(["--preset", "ablation", "-O", str(out), "--tiny"])
    setting = TINY_PRESETS["ablation"]
    with open(out / "ablation_points.csv") as stream:
        points = list(csv.DictReader(stream))
    assert [p["method"] for p in points[:len(setting.variants)]] == list(setting.variants)
    assert len(points) == len(setting.variants) * len(setting.lambdas)
    whole = {p["lambda"]: p for p in points if p["method"] == "oslo_whole"}
    for point in (p for p in points if p["method"] == "oslo"):
        # the same weights coded on the whole sphere instead of by face: a few bits apart
        assert float(whole[point["lambda"]]["bpp"]) == pytest.approx(float(point["bpp"]),
                                                                     rel=0.5)
    with open(out / "ablation_bd.csv") as stream:
        table = list(csv.DictReader(stream))
    assert {r["method"] for r in table} == set(setting.variants) - {"erp"}
    assert not (out / "seed0" / "oslo_whole").exists()  # no training of its own
