"""docs/usage.md is the scripts' ``--help`` (scripts/make_usage.py): a test fails when a parser
changes and the file does not, and every flag of every script shows its default. The commands
that README.md and the guides print (the seed's among them) still parse."""

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

from utils.errors import OsloError
from utils.usage import (
    anchor,
    python_version,
    recorded_python,
    split_sections,
    stale_commands,
    subcommands,
)

REPO = Path(__file__).resolve().parent.parent
USAGE = REPO / "docs" / "usage.md"
REGENERATE = "python scripts/make_usage.py"
GUIDES = ("README.md", "docs/guide.md", "docs/codec.md", "docs/studies.md")


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


def documented_commands(text: str) -> list[str]:
    """The ``python <script> ...`` commands of the code blocks of a Markdown ``text``, with
    their continuation lines joined; those with shell variables are left out."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh)?\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.startswith("python ") and "$" not in command:
                commands.append(command)
    return commands


def test_the_documented_commands_parse():
    """Every command of README.md and the guides, the seed's four steps among them, is accepted
    by its script's parser as written (paths and all)."""
    scripts = {script: make_usage.load(script) for script in make_usage.SCRIPTS}
    refused, checked = [], 0
    for guide in GUIDES:
        for command in documented_commands((REPO / guide).read_text()):
            _, script, *args = shlex.split(command, comments=True)
            module = scripts.get(script.removeprefix("./"))
            if module is None:
                continue
            checked += 1
            with contextlib.redirect_stderr(io.StringIO()) as errors:
                try:
                    module.build_parser().parse_args(args)
                except SystemExit:
                    refused.append(f"{guide}: {command}: {errors.getvalue().strip()}")
    assert not refused
    assert checked >= 20


def headings(text: str) -> set[str]:
    """The anchors of the headings of a Markdown ``text`` (code blocks left out)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return {anchor(title) for title in re.findall(r"^#+ (.+)$", prose, re.MULTILINE)}


def test_relative_links_resolve():
    """Every relative link of README.md and docs/ names a file that exists, and its #anchor,
    if any, a heading of that file."""
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text()
        prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif fragment and linked.suffix == ".md" and fragment not in headings(
                    linked.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken


def test_every_script_with_a_parser_is_in_the_reference():
    """A new script cannot be left out: every top-level, misc/, baselines/, experiments/ and
    scripts/ file that defines ``build_parser`` is one of the generator's scripts."""
    folders = (".", "misc", "baselines", "experiments", "scripts")
    found = {str(path.relative_to(REPO)) for folder in folders
             for path in (REPO / folder).glob("*.py")
             if "def build_parser(" in path.read_text()}
    assert found <= set(make_usage.SCRIPTS), sorted(found - set(make_usage.SCRIPTS))


def test_the_reference_names_no_folder_of_this_checkout():
    """A default shown as this checkout's absolute path would make the file differ in every
    other clone."""
    assert str(REPO) not in USAGE.read_text()
