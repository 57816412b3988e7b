"""misc/compute_bd_rate.py: closed-form Bjontegaard deltas and bad input."""

import math

import bjontegaard
import pytest

from misc.compute_bd_rate import build_parser, main
from utils.errors import OsloError
from utils.metrics import METRIC_NAMES
from utils.rd import read_curve

BPP = (0.1, 0.2, 0.4, 0.8, 1.6)


def write_curve(folder, name, rate_scale=1.0, psnr_offset=0.0, bpp=BPP):
    """One CSV per point, as compute_spherical_psnr.py writes them; PSNR = 30 + 4 log2(bpp/0.1)
    (plus a different offset per metric)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rate in enumerate(bpp):
        psnrs = [30 + 4 * math.log2(rate / 0.1) + k + psnr_offset for k in range(4)]
        line = ",".join(f"{v:.6f}" for v in [rate * rate_scale, *psnrs])
        path = folder / f"{name}_{i}.csv"
        path.write_text(f"name,bpp,{','.join(METRIC_NAMES)}\nimg,{line}\nmean,{line}\n")
        paths.append(str(path))
    return paths


def test_curve_against_itself_is_zero(tmp_path):
    paths = write_curve(tmp_path, "a")
    results = main(["-c", "anchor", *paths, "-c", "same", *paths])
    assert len(results) == 2 * len(METRIC_NAMES)
    for r in results:
        assert r["bd_rate_percent"] == pytest.approx(0, abs=1e-9)
        assert r["bd_psnr_db"] == pytest.approx(0, abs=1e-9)


def test_rates_scaled_by_0_9_give_minus_10_percent(tmp_path):
    anchor = write_curve(tmp_path, "a")
    cheaper = write_curve(tmp_path, "b", rate_scale=0.9)
    results = main(["-c", "anchor", *anchor, "-c", "cheaper", *cheaper,
                    "--csv", str(tmp_path / "bd.csv")])
    for r in results:
        assert r["bd_rate_percent"] == pytest.approx(-10, abs=0.1)
        # PSNR = 30 + 4 log2(bpp / 0.1 / 0.9) on the cheaper curve: + 4 log2(1/0.9) dB
        assert r["bd_psnr_db"] == pytest.approx(-4 * math.log2(0.9), abs=0.01)
    lines = (tmp_path / "bd.csv").read_text().splitlines()
    assert lines[0] == "curve,anchor,method,metric,bd_rate_percent,bd_psnr_db"
    assert len(lines) == 1 + 2 * len(METRIC_NAMES)


def test_pchip_accepts_three_points_cubic_refuses_them(tmp_path):
    a = write_curve(tmp_path, "a", bpp=BPP[:3])
    b = write_curve(tmp_path, "b", psnr_offset=0.5, bpp=BPP[:3])
    results = main(["-c", "a", *a, "-c", "b", *b, "-M", "pchip"])
    assert all(r["bd_psnr_db"] == pytest.approx(0.5, abs=1e-6) for r in results)
    with pytest.raises(OsloError, match="at least 4 points"):
        main(["-c", "a", *a, "-c", "b", *b])


def test_akima_on_request_matches_bjontegaard(tmp_path):
    """-M akima adds akima rows (also from 3 points), equal to the package's own values; the
    default rows stay cubic and pchip."""
    anchor = write_curve(tmp_path, "a", bpp=BPP[:3])
    other = write_curve(tmp_path, "b", rate_scale=0.9, psnr_offset=0.3, bpp=BPP[:3])
    results = main(["-c", "anchor", *anchor, "-c", "other", *other, "-M", "pchip", "akima",
                    "--csv", str(tmp_path / "bd.csv")])
    assert [r["method"] for r in results] == ["pchip"] * 4 + ["akima"] * 4
    a_curve, b_curve = read_curve("a", anchor), read_curve("b", other)
    for r in results[4:]:
        metric = r["metric"]
        args = (a_curve["bpp"], a_curve[metric], b_curve["bpp"], b_curve[metric])
        assert r["bd_rate_percent"] == pytest.approx(
            bjontegaard.bd_rate(*args, method="akima", require_matching_points=False), abs=1e-12)
        assert r["bd_psnr_db"] == pytest.approx(
            bjontegaard.bd_psnr(*args, method="akima", require_matching_points=False), abs=1e-12)
    lines = (tmp_path / "bd.csv").read_text().splitlines()
    assert sum(",akima," in line for line in lines) == 4


def test_flags():
    args = build_parser().parse_args(["-c", "x", "1.csv", "2.csv", "-c", "y", "3.csv", "4.csv"])
    assert args.curve == [["x", "1.csv", "2.csv"], ["y", "3.csv", "4.csv"]]
    assert args.method == ["cubic", "pchip"]


@pytest.mark.parametrize("case,message", [
    ("one_curve", "at least two curves"),
    ("one_point", "at least 2 are needed"),
    ("no_mean", "'mean'"),
    ("missing", "cannot read RD file"),
    ("inf", "finite PSNRs"),
    ("not_monotonic", "not strictly increasing"),
])
def test_bad_input(tmp_path, case, message):
    a = write_curve(tmp_path, "a")
    b = write_curve(tmp_path, "b")
    argv = ["-c", "a", *a, "-c", "b", *b]
    if case == "one_curve":
        argv = ["-c", "a", *a]
    elif case == "one_point":
        argv = ["-c", "a", *a, "-c", "b", b[0]]
    elif case == "no_mean":
        (tmp_path / "b_1.csv").write_text("name,bpp\nimg,0.1\n")
    elif case == "missing":
        argv[-1] = str(tmp_path / "none.csv")
    elif case == "inf":
        text = (tmp_path / "b_1.csv").read_text().splitlines()
        (tmp_path / "b_1.csv").write_text("\n".join([*text[:2], "mean,0.2,inf,1,1,1"]) + "\n")
    elif case == "not_monotonic":
        write_curve(tmp_path, "b", bpp=(0.1, 0.2, 0.4, 0.8, 0.8))
    with pytest.raises(OsloError, match=message):
        main(argv)
