"""scripts/gpu_check.py without a GPU: it says so and exits 0 (with a GPU it would run the real
check, so the test is skipped there)."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: main would run the check")
def test_without_gpu_it_says_so_and_exits_0(capsys):
    assert load_script().main([]) == 0
    assert capsys.readouterr().out == "gpu_check: no GPU available " \
        "(torch.cuda.is_available() is false), nothing checked\n"


def test_flags_and_their_defaults():
    parser = load_script().build_parser()
    args = parser.parse_args([])
    assert (args.steps, args.healpix_res, args.patch_res, args.batch, args.codec_res) == \
        (20, 10, 8, 4, 8)
    help_text = parser.format_help()
    for flag in ("--steps", "--healpix-res", "--patch-res", "--batch", "--codec-res"):
        assert flag in help_text
    assert "(default: 20)" in help_text
