"""The decoder fuzz of benchmarks/fuzz_codec.py, 30 cases (5 of each kind): files whose rANS
strings are altered, framed again so that they parse, are refused by the latent CRC-32 (or
decode exactly), each in a forked child within 10 s: never a wrong image, another exception, a
crash or a hang."""

from pathlib import Path

import pytest

from benchmarks.fuzz_codec import FAILURES, KINDS, OUTCOMES, run_fuzz

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "tests" / "data" / "checkpoints" / "scale_hyperprior.pth.tar"
"""The committed checkpoint (tests/data/make_checkpoints.py): a scale hyperprior trained a few
minutes, whose ``y`` string of the earth sample at resolution 7 takes about 3 kB."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_altered_strings_are_refused_never_decoded_wrong(capsys):
    result = run_fuzz(CHECKPOINT, ROOT / "samples" / "earth_day.jpg", patch_res=6,
                      batch_size=12, cases=30, seed=0, timeout=10, workers=2)
    print(capsys.readouterr().out)
    assert result["cases"] == 30
    assert {kind: sum(counts.values()) for kind, counts in result["kinds"].items()} == {
        kind: 5 for kind in KINDS}
    assert set(result["total"]) <= set(OUTCOMES)
    assert not any(result["total"].get(outcome) for outcome in FAILURES), \
        result["cases_not_refused"]
    assert result["total"].get("refused", 0) + result["total"].get("exact", 0) == 30
    assert result["refused_fraction"] >= 0.9, result["cases_not_refused"]
    assert all(message.startswith(("decoded y does not match the encoder's",
                                   "decoded z does not match the encoder's"))
               for message in result["messages"])
    assert result["max_seconds"] < 10
