"""The RD study end to end on its tiny preset: every method trained, evaluated and measured on
the bundled samples, then the CSVs, the BD-rate table, the report and the plot checked against
each other and against independent recomputations."""

import contextlib
import csv
import itertools
import math
import shutil
import warnings
from pathlib import Path

import bjontegaard
import numpy as np
import pytest
import torch
from PIL import Image

from experiments import rd_study
from experiments.rd.bd import bd_rows, unsupported
from experiments.rd.curves import Curve, classic_points, mean_curve, monotone_breaks, point_label
from experiments.rd.layout import Inputs, Layout
from experiments.rd.methods import METHODS
from experiments.rd.presets import PAPER_POINTS, PRESETS
from experiments.rd.report import _bd_cell
from experiments.rd.steps import study_steps
from utils.metrics import METRIC_NAMES
from utils.rd import bd_values, read_point

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@contextlib.contextmanager
def torch_threads(count):
    """Module fixtures run before the function fixture ``one_torch_thread``."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("rd") / "tiny"
    points = tmp_path_factory.mktemp("points") / "sphere_2562.txt"
    argv = ["--tiny", "-O", str(root), "-i", str(REPO / "samples"),
            "--train-image-dir", str(REPO / "samples" / "planets"), "--anchor", "jpeg",
            "-s", str(points)]
    with torch_threads(1):
        rd_study.main(argv)
    return root, argv


def test_every_output_is_written(study):
    root, _ = study
    results = root / "results"
    for name in ("rd_points.csv", "bd_rates.csv", "report.md", "rd_curves.png"):
        assert (results / name).stat().st_size > 0
    with Image.open(results / "rd_curves.png") as png:
        assert png.format == "PNG" and png.width > 500 and png.height > 300
    commands = (root / "commands.sh").read_text()
    # 2 samplings + 7 (hr, pr) pairs x 2 + 7 whole-sphere structures + 5 trained sphere methods
    # x 2 points x 3 + 2 other codings (no training) x 2 x 2 + 2 ERP x 2 x 2 + 2 ERP codings
    # whole x 2 + 3 classic + report
    assert commands.count("\npython ") == 2 + 14 + 7 + 30 + 8 + 8 + 4 + 3 + 1
    train = (root / "data" / "train" / "train.txt").read_text().split()
    test = (root / "data" / "test" / "test.txt").read_text().split()
    assert len(train) == len(list((REPO / "samples" / "planets").glob("*.jpg"))) == 12
    assert len(test) == len(list((REPO / "samples").glob("*.jpg"))) == 4


def test_points_are_the_mean_rows_of_the_rd_files(study):
    root, _ = study
    preset = PRESETS["tiny"]
    layout = Layout(root)
    rows = read_rows(root / "results" / "rd_points.csv")
    assert {r["method"] for r in rows} == set(METHODS)
    for method in METHODS.values():
        if method.kind == "classic":
            labels = classic_points(preset, method.model)
            files = {label: layout.rd_csv(method, label) for label in labels}
        else:
            files = {f"lambda={p[0]:g}": layout.rd_csv(method, p) for p in preset.points}
        mine = {point_label(method, r["lambda"]): r
                for r in rows if r["method"] == method.key}
        assert {r["seed"] for r in mine.values()} == {"" if method.kind == "classic" else "0"}
        assert set(mine) == set(files)
        for label, path in files.items():
            point = read_point(path)
            for key in ("bpp", *METRIC_NAMES):
                assert float(mine[label][key]) == pytest.approx(point[key], abs=1e-4)


def test_learned_bpp_is_the_actual_rate_per_healpix_pixel(study):
    root, _ = study
    preset = PRESETS["tiny"]
    npix = 12 * 4**preset.healpix_res
    for key in ("oslo_sh", "deepsphere_fp", "erp_sh"):
        method = METHODS[key]
        run = Layout(root).run(method, preset.points[0][0])
        rates = [line.split("\t") for line in
                 (run / "reconstruction" / "rates.txt").read_text().splitlines()
                 if not line.startswith("#")]
        rd = {r["name"]: r for r in read_rows(run / "reconstruction" / "rd.csv")}
        assert len(rates) == len(rd) - 1 == 4  # the four test maps, then the mean
        for name, _, actual in rates:
            short = name.removeprefix(f"healpix_sampling_res_{preset.healpix_res}_")
            assert float(rd[short]["bpp"]) == pytest.approx(int(actual) / npix, abs=1e-6)


def test_erp_models_are_coded_by_patch_and_whole(study):
    """``erp_sh`` codes each test image as independent patches of the preset's patch size (as
    the sphere models code by patch), ``erp_sh_whole`` the same checkpoint on the whole image:
    the patch coding's actual bits are its patches' strings, so the two codings differ, and
    each rd.csv holds its own coding's rates."""
    root, _ = study
    preset = PRESETS["tiny"]
    layout = Layout(root)
    commands = (root / "commands.sh").read_text().splitlines()
    for key, size in (("erp_sh", 2**preset.patch_res), ("erp_sh_whole", 0)):
        method = METHODS[key]
        run = layout.run(method, preset.points[0][0])
        assert run == root / "runs" / "erp_sh" / f"lambda{preset.points[0][0]:g}"
        evaluation = next(line for line in commands if f" -O {run} " in line
                          and "--checkpoint-file" in line and f"--foldername-valtest "
                          f"{method.reconstruction}" in line)
        assert f"--patch-size-valtest {size} " in evaluation
    run = layout.run(METHODS["erp_sh"], preset.points[0][0])
    bits = {}
    for folder in ("reconstruction", "reconstruction_erp_sh_whole"):
        rates = [line.split("\t") for line in (run / folder / "rates.txt").read_text()
                 .splitlines() if not line.startswith("#")]
        rd = {r["name"]: r for r in read_rows(run / folder / "rd.csv")}
        bits[folder] = {name: int(actual) for name, _, actual in rates}
        for name, actual in bits[folder].items():
            short = name.removeprefix(f"healpix_sampling_res_{preset.healpix_res}_")
            assert float(rd[short]["bpp"]) == pytest.approx(
                actual / (12 * 4**preset.healpix_res), abs=1e-6)
    assert bits["reconstruction"].keys() == bits["reconstruction_erp_sh_whole"].keys()
    assert bits["reconstruction"] != bits["reconstruction_erp_sh_whole"]


def pareto_front(curve, metric):
    """The points no other point dominates (lower or equal bpp and higher or equal quality,
    one of them strictly), by brute force."""
    bpp, quality = curve["bpp"], curve[metric]
    keep = [i for i in range(len(bpp))
            if not any(bpp[j] <= bpp[i] and quality[j] >= quality[i]
                       and (bpp[j] < bpp[i] or quality[j] > quality[i])
                       for j in range(len(bpp)))]
    keep.sort(key=lambda i: bpp[i])
    return {key: values[keep] for key, values in curve.items()}


def test_bd_table_is_recomputed_from_the_points(study):
    root, _ = study
    points = read_rows(root / "results" / "rd_points.csv")
    curves = {}
    for row in points:
        curve = curves.setdefault(row["method"], {k: [] for k in ("bpp", *METRIC_NAMES)})
        for key in curve:
            curve[key].append(float(row[key]))
    curves = {k: {m: np.array(v) for m, v in c.items()} for k, c in curves.items()}
    rows = read_rows(root / "results" / "bd_rates.csv")
    assert {r["method"] for r in rows} == set(METHODS) - {"jpeg"}
    finite = 0
    for row in rows:
        metric = row["metric"]
        anchor = pareto_front(curves[row["anchor"]], metric)
        curve = pareto_front(curves[row["method"]], metric)
        sizes = (len(anchor["bpp"]), len(curve["bpp"]))
        assert (row["interpolation"] == "cubic") <= (min(sizes) >= 4)
        if min(sizes) < 2:
            assert math.isnan(float(row["bd_rate_percent"]))
        else:  # nan too where the package finds no overlap of the two curves
            rate, quality = bd_values(anchor, curve, metric, row["interpolation"])
            assert float(row["bd_rate_percent"]) == pytest.approx(rate, abs=1e-3, nan_ok=True)
            assert float(row["bd_psnr_db"]) == pytest.approx(quality, abs=1e-4, nan_ok=True)
            finite += math.isfinite(rate)
        full = len(curves[row["method"]]["bpp"])
        assert (f"{row['method']}: {sizes[1]} of {full} points" in row["note"]) == (sizes[1] < full)
    assert finite >= 2  # WebP and JPEG 2000 against JPEG at least


def test_akima_rows_match_bjontegaard(study):
    """Every (method, metric) has an akima row beside pchip, equal to the package's own
    ``bd_rate`` / ``bd_psnr`` with ``method="akima"`` on the two Pareto fronts."""
    root, _ = study
    curves = {}
    for row in read_rows(root / "results" / "rd_points.csv"):
        curve = curves.setdefault(row["method"], {k: [] for k in ("bpp", *METRIC_NAMES)})
        for key in curve:
            curve[key].append(float(row[key]))
    curves = {k: {m: np.array(v) for m, v in c.items()} for k, c in curves.items()}
    rows = read_rows(root / "results" / "bd_rates.csv")
    pchip = {(r["method"], r["metric"]) for r in rows if r["interpolation"] == "pchip"}
    akima = [r for r in rows if r["interpolation"] == "akima"]
    assert {(r["method"], r["metric"]) for r in akima} == pchip
    for row in akima:
        metric = row["metric"]
        anchor = pareto_front(curves[row["anchor"]], metric)
        curve = pareto_front(curves[row["method"]], metric)
        if min(len(anchor["bpp"]), len(curve["bpp"])) < 2:
            assert math.isnan(float(row["bd_rate_percent"]))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            args = (anchor["bpp"], anchor[metric], curve["bpp"], curve[metric])
            rate = bjontegaard.bd_rate(*args, method="akima", require_matching_points=False)
            quality = bjontegaard.bd_psnr(*args, method="akima", require_matching_points=False)
        assert float(row["bd_rate_percent"]) == pytest.approx(rate, abs=1e-3, nan_ok=True)
        assert float(row["bd_psnr_db"]) == pytest.approx(quality, abs=1e-4, nan_ok=True)


def test_report_shows_the_csv_numbers(study):
    root, _ = study
    report = (root / "results" / "report.md").read_text()
    for row in read_rows(root / "results" / "rd_points.csv"):
        method = METHODS[row["method"]]
        label = point_label(method, row["lambda"])
        assert f"| {method.label} | {row['seed']} | {label} | {float(row['bpp']):.4f} | " \
               f"{float(row['s_psnr_y']):.2f} |" in report
    for row in read_rows(root / "results" / "bd_rates.csv"):
        if row["interpolation"] == "pchip" and row["metric"] == "s_psnr_y":
            value = float(row["bd_rate_percent"])
            assert ("nan" if math.isnan(value) else f"{value:.2f}") in report


@pytest.fixture(scope="module")
def two_seeds(study, tmp_path_factory):
    """The tiny study with seeds 0 and 1, one sphere and one ERP method against JPEG, two
    trainings at a time (``--jobs 2``, one thread each); the data, structures and JPEG files
    of ``study`` are copied, so only the trainings run."""
    source, argv = study
    root = tmp_path_factory.mktemp("rd_seeds") / "tiny"
    for name in ("data", "structures", "classic"):
        shutil.copytree(source / name, root / name)
    argv = [*argv, "--seeds", "0", "1", "--methods", "oslo_fp", "erp_fp", "jpeg", "--jobs", "2"]
    argv[argv.index("-O") + 1] = str(root)
    with torch_threads(2):  # two jobs of one thread each
        rows = rd_study.main(argv)
    return root, rows


def test_two_seeds_train_every_point_twice(two_seeds):
    root, _ = two_seeds
    preset = PRESETS["tiny"]
    commands = (root / "commands.sh").read_text()
    points = read_rows(root / "results" / "rd_points.csv")
    assert list(points[0]) == ["method", "seed", "lambda", "bpp", *METRIC_NAMES]
    layout = Layout(root, seeds=(0, 1))
    for key in ("oslo_fp", "erp_fp"):
        method = METHODS[key]
        found = {(r["seed"], r["lambda"]) for r in points if r["method"] == key}
        assert found == {(s, f"{p[0]:g}") for s in ("0", "1") for p in preset.points}
        for seed in (0, 1):
            run = layout.run(method, preset.points[0][0], seed)
            assert run.name == f"lambda{preset.points[0][0]:g}_seed{seed}"
            assert f"-o {run} " in commands or f"-O {run} " in commands
            assert f"--lambda {preset.points[0][0]:g} --seed {seed} " in commands
        # Two trainings, not one: the seeds' points differ. Not the rate alone: by 64 x 64
        # patches the tiny ERP model's strings reach their minimum length for both seeds.
        seed_points = [read_point(layout.rd_csv(method, preset.points[0], s)) for s in (0, 1)]
        assert seed_points[0] != seed_points[1]
    assert {r["seed"] for r in points if r["method"] == "jpeg"} == {""}
    report_command = commands.rstrip().splitlines()[-1]
    assert " --seeds 0 1 " in report_command and report_command.endswith("--report-only")


def test_parallel_jobs_give_the_points_of_the_sequential_study(study, two_seeds):
    """Seed 0 of the two-seed study (subprocesses, two at a time, one thread each) trains the
    same models as the sequential study (in this process, one thread): equal RD files."""
    root, _ = two_seeds
    source, _ = study
    for key in ("oslo_fp", "erp_fp"):
        method = METHODS[key]
        for point in PRESETS["tiny"].points:
            parallel = Layout(root, seeds=(0, 1)).rd_csv(method, point, 0)
            sequential = Layout(source).rd_csv(method, point)
            assert read_point(parallel) == read_point(sequential)
    logs = sorted(path.name for path in (root / "logs").iterdir())
    assert logs == sorted(f"{key}_lambda={p[0]:g}_seed={s}.log" for key in ("oslo_fp", "erp_fp")
                          for p in PRESETS["tiny"].points for s in (0, 1))
    assert all("$ python main_sphere_compression.py" in (root / "logs" / name).read_text()
               for name in logs if name.startswith("oslo_fp"))


def test_two_seeds_bd_rows_per_seed_and_of_the_mean_curve(two_seeds):
    root, returned = two_seeds
    by_lambda = {}
    for row in read_rows(root / "results" / "rd_points.csv"):
        by_lambda.setdefault((row["method"], row["seed"]), {})[row["lambda"]] = {
            k: float(row[k]) for k in ("bpp", *METRIC_NAMES)}
    lambdas = {key: sorted(points) for key, points in by_lambda.items()}
    curves = {key: {k: np.array([points[lmbda][k] for lmbda in lambdas[key]])
                    for k in ("bpp", *METRIC_NAMES)} for key, points in by_lambda.items()}
    rows = read_rows(root / "results" / "bd_rates.csv")
    assert len(rows) == len(returned)
    assert {(r["method"], r["seed"]) for r in rows} == {
        (m, s) for m in ("oslo_fp", "erp_fp") for s in ("0", "1", "mean")}
    anchor = curves[("jpeg", "")]
    for row in rows:
        metric, interpolation = row["metric"], row["interpolation"]
        if row["seed"] == "mean":  # the BD of the mean curve, and the per-seed statistics
            seeds = [curves[(row["method"], s)] for s in ("0", "1")]  # same lambda order
            curve = {k: np.mean([c[k] for c in seeds], axis=0) for k in seeds[0]}
            order = np.argsort(curve["bpp"], kind="stable")
            curve = {k: v[order] for k, v in curve.items()}
            per_seed = [float(r["bd_rate_percent"]) for r in rows
                        if (r["method"], r["metric"], r["interpolation"])
                        == (row["method"], metric, interpolation) and r["seed"] in ("0", "1")]
            finite = [v for v in per_seed if math.isfinite(v)]
            if finite:
                assert float(row["bd_rate_mean"]) == pytest.approx(np.mean(finite), abs=2e-3)
                assert float(row["bd_rate_min"]) == pytest.approx(min(finite), abs=1e-3)
                assert float(row["bd_rate_max"]) == pytest.approx(max(finite), abs=1e-3)
                opposite = min(finite) < 0 < max(finite)
                assert ("ranking unsupported" in row["note"]) == opposite
        else:
            curve = curves[(row["method"], row["seed"])]
            assert row["bd_rate_mean"] == ""
        front, base = pareto_front(curve, metric), pareto_front(anchor, metric)
        if min(len(front["bpp"]), len(base["bpp"])) < 2:
            assert math.isnan(float(row["bd_rate_percent"]))
            continue
        rate, quality = bd_values(base, front, metric, interpolation)
        assert float(row["bd_rate_percent"]) == pytest.approx(rate, abs=1e-3, nan_ok=True)
        assert float(row["bd_psnr_db"]) == pytest.approx(quality, abs=1e-4, nan_ok=True)
    report = (root / "results" / "report.md").read_text()
    assert "### Per seed" in report
    for row in rows:
        if row["seed"] == "mean" and unsupported(
                {k: float(row[k]) for k in ("bd_rate_min", "bd_rate_max")}):
            assert "unsupported" in report


def test_seeds_of_opposite_signs_make_an_unsupported_ranking():
    """Synthetic curves: seed 0 below the anchor's rate, seed 1 above it."""
    def curve(key, seed, bpps):
        points = [(f"lambda={i}", {"bpp": b, **{m: 30.0 + 3 * i for m in METRIC_NAMES}})
                  for i, b in enumerate(bpps)]
        return Curve(METHODS[key], points, seed)

    curves = {"jpeg": [curve("jpeg", None, [1.0, 2.0, 3.0])],
              "oslo_fp": [curve("oslo_fp", 0, [0.8, 1.6, 2.4]),
                          curve("oslo_fp", 1, [1.1, 2.2, 3.3])]}
    rows = bd_rows(curves, "jpeg")
    mean = [r for r in rows if r["seed"] == "mean"]
    assert {r["seed"] for r in rows} == {"0", "1", "mean"} and mean
    for row in mean:
        per_seed = [r["bd_rate_percent"] for r in rows if r["seed"] in ("0", "1")
                    and (r["metric"], r["interpolation"]) == (row["metric"],
                                                              row["interpolation"])]
        assert min(per_seed) < 0 < max(per_seed)
        assert row["bd_rate_min"] == pytest.approx(min(per_seed))
        assert row["bd_rate_max"] == pytest.approx(max(per_seed))
        assert row["bd_rate_mean"] == pytest.approx(np.mean(per_seed))
        assert "ranking unsupported" in row["note"]
        assert _bd_cell(row, "bd_rate_percent", 2).endswith(" unsupported")
        mean_front = mean_curve(curves["oslo_fp"]).front(row["metric"])
        anchor = curves["jpeg"][0].front(row["metric"])
        assert row["bd_rate_percent"] == pytest.approx(
            bd_values(anchor, mean_front, row["metric"], row["interpolation"])[0])


def test_undefined_bd_values_say_why_in_the_report():
    def curve(key, seed, psnrs):
        points = [(f"lambda={i}", {"bpp": 1.0 + i, **{m: p for m in METRIC_NAMES}})
                  for i, p in enumerate(psnrs)]
        return Curve(METHODS[key], points, seed)

    curves = {"jpeg": [curve("jpeg", None, [30.0, 32.0, 34.0])],
              "oslo_fp": [curve("oslo_fp", s, [20.0 + s, 22.0, 24.0]) for s in (0, 1)]}
    rows = bd_rows(curves, "jpeg")
    assert rows and all(math.isnan(r["bd_rate_percent"]) for r in rows)
    for row in rows:
        assert _bd_cell(row, "bd_rate_percent", 2) == "no overlap"
        assert "nan" not in _bd_cell(row, "bd_psnr_db", 3)

    curves["oslo_fp"] = [curve("oslo_fp", 0, [24.0, 22.0, 20.0])]  # a front of 1 point
    for row in bd_rows(curves, "jpeg"):
        assert _bd_cell(row, "bd_rate_percent", 2) == "under 2 points"
        assert _bd_cell(row, "bd_psnr_db", 3) == "under 2 points"


def test_a_one_seed_method_is_measured_on_the_seeds_it_has():
    """DeepSphere with seed 0 only against a two-seed anchor: one per-seed row (seed 0
    against the anchor's seed 0), then the mean curves."""
    def curve(key, seed, bpps):
        points = [(f"lambda={i}", {"bpp": b, **{m: 30.0 + 3 * i for m in METRIC_NAMES}})
                  for i, b in enumerate(bpps)]
        return Curve(METHODS[key], points, seed)

    anchor = [curve("erp_sh", 0, [1.0, 2.0, 3.0]), curve("erp_sh", 1, [1.2, 2.4, 3.6])]
    curves = {"erp_sh": anchor, "deepsphere_sh": [curve("deepsphere_sh", 0, [0.9, 1.8, 2.7])],
              "jpeg": [curve("jpeg", None, [1.1, 2.1, 3.1])]}
    rows = bd_rows(curves, "erp_sh")
    deepsphere = [r for r in rows if r["method"] == "deepsphere_sh"]
    assert {r["seed"] for r in deepsphere} == {"0", "mean"}
    for row in deepsphere:
        base = (anchor[0] if row["seed"] == "0" else mean_curve(anchor))
        assert row["bd_rate_percent"] == pytest.approx(bd_values(
            base.front(row["metric"]), curves["deepsphere_sh"][0].front(row["metric"]),
            row["metric"], row["interpolation"])[0])
    assert {r["seed"] for r in rows if r["method"] == "jpeg"} == {"0", "1", "mean"}


def test_report_counts_the_monotone_curves(study):
    """The report's count, recomputed from rd_points.csv in lambda order."""
    root, _ = study
    curves = {}
    for row in read_rows(root / "results" / "rd_points.csv"):
        if row["seed"] != "":
            curves.setdefault((row["method"], row["seed"]), []).append(
                (float(row["lambda"]), float(row["bpp"]), float(row["s_psnr_y"])))
    monotone = sum(all(b[1] > a[1] and b[2] > a[2] for a, b in itertools.pairwise(c))
                   for c in (sorted(points) for points in curves.values()))
    report = (root / "results" / "report.md").read_text()
    assert f"{monotone} of {len(curves)} learned curves are monotone" in report


def test_monotone_breaks_name_the_lambda_steps():
    def curve(values):
        points = [(f"lambda={lmbda:g}", {"bpp": bpp, "s_psnr_y": psnr})
                  for lmbda, bpp, psnr in values]
        return Curve(METHODS["oslo_sh"], points, 0)

    assert monotone_breaks(curve([(0.002, 0.1, 24.0), (0.005, 0.2, 25.0),
                                  (0.012, 0.3, 26.0)])) == []
    # listed by bpp, as Curve keeps them: the lambda order is read from the labels
    broken = curve([(0.012, 0.15, 26.0), (0.002, 0.1, 24.0), (0.005, 0.2, 25.0)])
    assert monotone_breaks(broken) == ["0.005 -> 0.012"]  # fewer bits
    assert monotone_breaks(curve([(0.002, 0.1, 24.0), (0.005, 0.2, 23.5)])) == [
        "0.002 -> 0.005"]  # lower S-PSNR Y


def test_medium_preset_commands(tmp_path):
    """The medium preset: two seeds of every learned method but DeepSphere and the
    sphere-border OSLO, cosine, both training folders linked into one, two jobs; per method and
    seed a base model of 50 epochs at the highest lambda, then every point fine-tuned from it
    for 25 epochs at 5e-4 (sphere-border models: on whole maps at 1e-4), after it in the same
    chain."""
    out = tmp_path / "medium"
    rd_study.main(["--medium", "-O", str(out), "-i", str(REPO / "samples"), "--dry-run"])
    preset = PRESETS["medium"]
    commands = (out / "commands.sh").read_text()
    trainings = [line for line in commands.splitlines()
                 if " --lambda " in line and (" -e " in line)]
    top = max(lmbda for lmbda, _ in preset.points)
    for key, seeds in (("oslo_fp", 2), ("oslo_sh", 2), ("erp_fp", 2), ("erp_sh", 2),
                       ("deepsphere_sh", 1), ("oslo_sh_sphere", 1)):
        runs = [line for line in trainings if f"/runs/{key}/" in line]
        assert len(runs) == seeds * (1 + len(preset.points)), key
        assert all("--lr-schedule cosine" in line and "--channels 64 96 " in line
                   for line in runs)
        for seed in range(seeds):
            base = out / "runs" / key / f"base_seed{seed}"
            first = runs.index(next(line for line in runs if f" {base} " in line))
            assert f"--lambda {top:g} --seed {seed} " in runs[first]
            assert " -e 50 " in runs[first] and " -lr 0.001 " in runs[first]
            assert "--init-from" not in runs[first]
            tuned = [line for line in runs if f"--init-from {base}/final.pth.tar" in line]
            assert len(tuned) == len(preset.points)
            lr = "0.0001" if key == "oslo_sh_sphere" else "0.0005"
            assert all(" -e 25 " in line and f" -lr {lr} " in line and f"--seed {seed} " in line
                       for line in tuned)
            assert all(runs.index(line) > first for line in tuned)
            if key == "oslo_sh_sphere":  # the base on patches, then whole maps at 1e-4
                assert "--sphere-start 0.8 " in runs[first]
                assert not any("--sphere-start" in line for line in tuned)
    steps = [step for step in study_steps(
        preset, Layout(out, separate_training=True, seeds=(0, 1)),
        [METHODS["oslo_sh"]], Inputs("samples", "jpg", "t", "s"))
        if step.chain]
    assert [step.chain for step in steps] == ["oslo_sh seed=0"] * (1 + 3 * 4) + \
        ["oslo_sh seed=1"] * (1 + 3 * 4)
    assert steps[0].name == f"oslo_sh lambda={top:g} seed=0: base training"
    images = sorted(path.name for path in (out / "train_images").iterdir())
    expected = sorted(f"{folder}_{image.name}" for folder in ("planets", "photos")
                      for image in (REPO / "samples" / folder).glob("*.jpg"))
    assert images == expected and len(images) == 24
    assert all((out / "train_images" / name).resolve().is_file() for name in images)
    assert f"--train-original-dir {out}/train_images" in commands
    assert "--seeds 0 1" in commands.rstrip().splitlines()[-1]


def test_finetuned_points_start_from_the_base_model(study, tmp_path):
    """``--finetune-epochs 1`` on the tiny study: one base training per method, every point
    trained from its weights (``--init-from``, recorded in the checkpoint's arguments) at its
    own lambda, the base trained first."""
    source, argv = study
    root = tmp_path / "tiny"
    for name in ("data", "structures", "classic"):
        shutil.copytree(source / name, root / name)
    argv = [*argv, "--methods", "oslo_fp", "erp_fp", "jpeg", "--finetune-epochs", "1"]
    argv[argv.index("-O") + 1] = str(root)
    rd_study.main(argv)
    layout = Layout(root)
    for key in ("oslo_fp", "erp_fp"):
        method = METHODS[key]
        base = layout.base(method) / "final.pth.tar"
        assert torch.load(base, weights_only=True)["config"]["lambda"] == 0.02
        for lmbda, _ in PRESETS["tiny"].points:
            checkpoint = torch.load(layout.run(method, lmbda) / "final.pth.tar",
                                    weights_only=True)
            assert checkpoint["args"]["init_from"] == str(base)
            assert checkpoint["config"]["lambda"] == lmbda
    points = read_rows(root / "results" / "rd_points.csv")
    lambdas = [f"{p[0]:g}" for p in PRESETS["tiny"].points]
    assert {(r["method"], r["lambda"]) for r in points if r["seed"] == "0"} == {
        (key, lmbda) for key in ("oslo_fp", "erp_fp") for lmbda in lambdas}
    steps = read_rows(root / "steps.csv")
    assert [r["step"] for r in steps if "base training" in r["step"]] == [
        "oslo_fp lambda=0.02: base training", "erp_fp lambda=0.02: base training"]
    assert "--finetune-epochs 1" in (root / "commands.sh").read_text().splitlines()[-1]
    report = (root / "results" / "report.md").read_text()
    assert ("at lambda 0.02: a base model per method and seed, from which every point is "
            "fine-tuned for 1 epoch(s) at lr 0.0005" in report)


def test_a_second_run_skips_every_step(study):
    root, argv = study
    before = (root / "steps.csv").read_text()
    report = (root / "results" / "report.md").read_text()
    rd_study.main(argv)
    assert (root / "steps.csv").read_text() == before
    assert (root / "results" / "report.md").read_text() == report


def test_paper_preset_writes_the_commands_only(tmp_path):
    rd_study.main(["--paper", "-O", str(tmp_path), "-i", str(REPO / "samples")])
    commands = (tmp_path / "commands.sh").read_text()
    # one step 1 that splits -i 0.8 / 0.1 / 0.1, and the lists of data/
    assert commands.count("generate_healpix_samples_and_split_to_train_and_test.py") == 1
    assert "-t 0.8 -v 0.1" in commands and f"-v {tmp_path}/data/validation.txt" in commands
    assert not (tmp_path / "data").exists()
    for lmbda, quality in PAPER_POINTS:
        assert f"--lambda {lmbda:g} " in commands and f"-q {quality} " in commands
    trainings = [line for line in commands.splitlines() if line.startswith("torchrun")]
    assert len(trainings) == 4 * 10
    assert all("-hr 10 -prt 8" in line and "-e 1000" in line and " -g" in line
               for line in trainings)
    assert commands.rstrip().endswith("--report-only")


@pytest.mark.parametrize("argv, message", [
    (["--methods", "oslo_fp", "jpeg"], "anchor 'erp_sh' is not among --methods"),
    (["--methods", "erp_sh"], "at least two --methods"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--train-image-dir", "no_such_folder"], "image folder 'no_such_folder' does not exist"),
    (["--report-only"], "RD file(s) missing"),
    (["--finetune-epochs", "-1"], "--finetune-epochs must be >= 0, got -1"),
    (["--results", "runs"], "--results must be the name of a new folder inside -O, got 'runs'"),
    (["--results", "a/b"], "--results must be the name of a new folder inside -O, got 'a/b'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        rd_study.run_main(lambda _: rd_study.main(
            ["--tiny", "-O", str(tmp_path / "out"), "-i", str(REPO / "samples"), *argv]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("error")]
    assert "Traceback" not in err and len(error) == 1 and message in error[0], err
