"""experiments/warmup_study.py runs end to end, measures the ratio it reports from the losses it
records, and resumes without training again."""

import csv

import pytest

from experiments import warmup_study

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def read(path):
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_study_records_every_step_and_resumes(tmp_path, capsys):
    argv = ["-O", str(tmp_path), "--models", "oslo-zoo", "erp", "--lambdas", "0.013",
            "--seeds", "0", "1", "--warmups", "50", "0", "--steps", "3", "--images", "2"]
    warmup_study.main(argv)
    runs, losses = read(tmp_path / "runs.csv"), read(tmp_path / "losses.csv")
    # 2 models x (2 seeds with warm-up + 1 without)
    assert len(runs) == 6 and len(losses) == 6 * 3
    for run in runs:
        mine = [float(r["loss"]) for r in losses
                if (r["model"], r["seed"], r["warmup"]) == (run["model"], run["seed"],
                                                            run["warmup"])]
        assert len(mine) == 3
        assert float(run["first_loss"]) == pytest.approx(mine[0], rel=1e-5)
        assert float(run["max_loss"]) == pytest.approx(max(mine), rel=1e-5)
        assert float(run["max_ratio"]) == pytest.approx(max(mine) / mine[0], rel=1e-3)
        assert int(run["max_step"]) == mine.index(max(mine)) + 1
    # the two models see different data and weights: different first losses
    assert len({r["first_loss"] for r in runs if r["seed"] == "0"}) == 2
    summary = capsys.readouterr().out
    assert "oslo-zoo" in summary and "erp" in summary
    before = (tmp_path / "losses.csv").read_bytes()
    warmup_study.main(argv)
    assert (tmp_path / "losses.csv").read_bytes() == before
    assert len(read(tmp_path / "runs.csv")) == 6


def test_a_seed_repeats_its_losses(tmp_path):
    argv = ["--models", "oslo-zoo", "--lambdas", "0.013", "--seeds", "3", "--warmups", "50",
            "--steps", "2", "--images", "1"]
    warmup_study.main(["-O", str(tmp_path / "a"), *argv])
    warmup_study.main(["-O", str(tmp_path / "b"), *argv])
    assert (tmp_path / "a" / "losses.csv").read_bytes() == \
        (tmp_path / "b" / "losses.csv").read_bytes()
