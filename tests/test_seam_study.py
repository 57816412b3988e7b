"""experiments/seam_study.py end to end on the --tiny preset (one seed)."""

import csv
from pathlib import Path

import pytest

from experiments import seam_study

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("seams") / "tiny"
    text = seam_study.main(["--tiny", "-O", str(root), "--seeds", "0"])
    return root, text


def test_report_has_every_coding_and_measure(study):
    root, text = study
    with (root / "seam_results" / "seams.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} == set(seam_study.METHODS)
    assert len(rows) == 4 * 2  # 4 codings x 2 lambdas
    for row in rows:
        assert float(row["bpp"]) > 0 and float(row["seam_ratio"]) > 0
        assert float(row["encode_seconds"]) > 0 and float(row["decode_seconds"]) > 0
    for key in seam_study.METHODS[1:]:
        assert f"| {key} | s_psnr_y |" in text
    assert (root / "seam_results" / "seams.md").read_text() == text
    with (root / "seam_results" / "seams_training.csv").open() as handle:
        training = list(csv.DictReader(handle))
    assert {r["method"] for r in training} == {"oslo_sh", "oslo_sh_sphere"}
    # tiny: 12 maps x 1 patch of (6, 6) an epoch = one whole map of 12 patches
    assert {r["epoch_patches"] for r in training} == {"12"}
    assert "Sphere over cut, seconds per patch:" in text
    # the study's report of the four curves sits beside, not in the RD study's results/
    assert (root / "seam_results" / "report.md").is_file()
    assert not (root / "results").exists()


def test_whole_and_patch_codings_share_the_trained_models(study):
    root, _ = study
    runs = root / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["oslo_sh", "oslo_sh_sphere"]
    run = runs / "oslo_sh_sphere" / "lambda0.002"
    assert (run / "reconstruction").is_dir()
    assert (run / "reconstruction_oslo_sh_sphere_patches").is_dir()


def test_whole_over_patch_ratio_is_the_bpp_ratio():
    rows = [{"method": m, "seed": 0, "lambda": 0.01, "bpp": b}
            for m, b in (("oslo_sh", 0.2), ("oslo_sh_whole", 0.3), ("oslo_sh_sphere", 0.21),
                         ("oslo_sh_sphere_patches", 0.2))]
    ratios = {r["models"]: r["ratio"] for r in seam_study.whole_over_patch(rows)}
    assert ratios == pytest.approx({"oslo_sh": 1.5, "oslo_sh_sphere_patches": 1.05})
