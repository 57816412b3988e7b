"""docs/usage.md is the scripts' ``--help`` (scripts/make_usage.py): a test fails when a parser
changes and the file does not, and every flag of every script shows its default."""

import argparse
import importlib.util
from pathlib import Path

import pytest

from utils.errors import OsloError
from utils.usage import python_version, recorded_python, split_sections, stale_commands, subcommands

REPO = Path(__file__).resolve().parent.parent
USAGE = REPO / "docs" / "usage.md"
REGENERATE = "python scripts/make_usage.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("make_usage", REPO / "scripts" / "make_usage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_usage = load_generator()


def test_usage_doc_matches_the_parsers():
    version = recorded_python(USAGE.read_text())
    if version != python_version():
        pytest.skip(f"docs/usage.md was generated with Python {version} and this is Python "
                    f"{python_version()}, whose argparse lays help out differently: the file "
                    f"is compared under Python {version} only")
    stale = make_usage.stale(USAGE)
    assert not stale, (f"docs/usage.md no longer matches the parsers of {', '.join(stale)}: "
                       f"regenerate it with `{REGENERATE}` and commit it")


def test_usage_doc_covers_every_command():
    commands = set(split_sections(USAGE.read_text())) - {""}
    assert {"main_sphere_compression.py", "oslo_codec.py encode", "oslo_codec.py decode",
            "misc/compute_spherical_psnr.py", "experiments/rd_study.py",
            "scripts/make_usage.py"} <= commands
    assert commands == {s.command for s in make_usage.sections()}


def changed_help(module, flag: str):
    """``module.build_parser`` with the help of ``flag`` changed."""
    original = module.build_parser

    def build_parser():
        parser = original()
        action = next(a for a in parser._actions if flag in a.option_strings)
        action.help += " (changed)"
        return parser

    return build_parser


def test_check_names_the_script_whose_help_changed(tmp_path, monkeypatch):
    """The check can fail: written by this Python, so it runs under any version."""
    import misc.generate_sphere_points as script

    written = tmp_path / "usage.md"
    make_usage.main(["-o", str(written)])
    make_usage.main(["--check", "-o", str(written)])
    monkeypatch.setattr(script, "build_parser", changed_help(script, "-l"))
    with pytest.raises(OsloError, match=r"of: misc/generate_sphere_points\.py; regenerate it "
                       r"with `python scripts/make_usage\.py`"):
        make_usage.main(["--check", "-o", str(written)])
    assert make_usage.stale(written) == ["misc/generate_sphere_points.py"]


def test_check_names_a_changed_subcommand_and_a_removed_command(monkeypatch):
    import oslo_codec

    fresh = make_usage.usage_text()
    original = oslo_codec.build_parser

    def build_parser():
        parser = original()
        decode = subcommands(parser)["decode"][1]
        next(a for a in decode._actions if "--erp-width" in a.option_strings).help = "changed"
        return parser

    monkeypatch.setattr(oslo_codec, "build_parser", build_parser)
    assert stale_commands(fresh, make_usage.usage_text()) == ["oslo_codec.py decode"]
    removed = fresh.replace("## `scripts/gpu_check.py`", "## `scripts/gone.py`")
    assert stale_commands(removed, fresh) == ["scripts/gpu_check.py", "scripts/gone.py"]


def test_a_check_under_another_python_is_refused(tmp_path):
    written = tmp_path / "usage.md"
    written.write_text(make_usage.usage_text().replace(
        f"Generated with Python {python_version()}", "Generated with Python 2.7"))
    with pytest.raises(OsloError, match=r"generated with Python 2\.7 and this is Python"):
        make_usage.stale(written)


def all_parsers():
    for script in make_usage.SCRIPTS:
        parser = make_usage.load(script).build_parser()
        yield script, parser
        for name, (_, sub) in subcommands(parser).items():
            yield f"{script} {name}", sub


def test_help_shows_the_default_of_every_flag():
    """The developers' guide: ``--help`` documents every flag with its default (required
    options and switches aside)."""
    missing = []
    for command, parser in all_parsers():
        formatter = parser.formatter_class(prog=parser.prog)
        for action in parser._actions:
            if (not action.option_strings or action.required or action.nargs == 0
                    or action.help == argparse.SUPPRESS):
                continue
            if "default" not in formatter._get_help_string(action).lower():
                missing.append(f"{command} {action.option_strings[-1]}")
    assert not missing
