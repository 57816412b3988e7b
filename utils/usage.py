"""The command-line reference ``docs/usage.md``: every script's ``--help``, rendered the same on
every terminal, and the check that the file still matches the parsers.

A section is ``## `command` ``, the command's one-line purpose and its ``--help`` in a code
block; a script with subcommands (``oslo_codec.py``) has one section for itself and one per
subcommand. The help is laid out at :data:`HELP_WIDTH` columns whatever the terminal. argparse
lays help out differently from one Python version to the next (3.13 shows ``-o, --out OUT``
where 3.11 shows ``-o OUT, --out OUT``), so the file records the ``major.minor`` it was written
with, and only a Python of that version can compare it exactly (:func:`recorded_python`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

HELP_WIDTH = 100
"""Columns of the help text (``COLUMNS``, which argparse reads, while a parser is built and
formatted)."""

PYTHON_LINE = re.compile(r"^Generated with Python (\d+\.\d+)\b", re.MULTILINE)
SECTION_TITLE = re.compile(r"^## `(.+)`$", re.MULTILINE)


@dataclass(frozen=True)
class Section:
    """One command of the reference: its name as typed (``oslo_codec.py encode``), its
    one-line purpose and its ``--help``."""

    command: str
    purpose: str
    help: str

    def markdown(self) -> str:
        return f"## `{self.command}`\n\n{self.purpose}\n\n```text\n{self.help}```\n"


def python_version() -> str:
    """The running Python's ``major.minor``."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def first_sentence(text: str) -> str:
    """The first sentence of the first paragraph of ``text``, on one line."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    match = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", paragraph)
    return paragraph[:match.start() + 1] if match else paragraph


@contextmanager
def _fixed_terminal(prog: str) -> Iterator[None]:
    """Build and format parsers as ``prog`` (argparse's ``prog`` is ``sys.argv[0]``'s name,
    and a subcommand's is computed when it is added) on a terminal of :data:`HELP_WIDTH`
    columns, without colour (Python 3.14 colours help on a terminal)."""
    saved_argv0 = sys.argv[0]
    saved_env = {key: os.environ.get(key) for key in ("COLUMNS", "NO_COLOR")}
    sys.argv[0] = prog
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    os.environ["NO_COLOR"] = "1"
    try:
        yield
    finally:
        sys.argv[0] = saved_argv0
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def command_sections(prog: str, purpose: str,
                     build_parser: Callable[[], argparse.ArgumentParser]) -> list[Section]:
    """The sections of the script ``prog`` (its path from the repository root): its own
    ``--help``, then one per subcommand (its purpose is the subcommand's ``help=``)."""
    with _fixed_terminal(prog):
        parser = build_parser()
        return [Section(prog, purpose, parser.format_help()),
                *(Section(f"{prog} {name}", text, sub.format_help())
                  for name, (text, sub) in subcommands(parser).items())]


def subcommands(parser: argparse.ArgumentParser,
                ) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """The subcommands of ``parser`` by name, each with its ``help=`` and its parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            found |= {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    return found


def render(sections: list[Section], generator: str, intro: str) -> str:
    """The whole file: title, a header naming ``generator`` and the Python version, ``intro``,
    the list of commands, then every section."""
    contents = "\n".join(f"- [`{s.command}`](#{anchor(s.command)})" for s in sections)
    header = (f"# Command-line reference\n\n"
              f"Generated with Python {python_version()} by `{generator}` from the scripts' "
              f"parsers: do not edit it by hand. `tests/test_usage_doc.py` fails when it no "
              f"longer matches them.\n\n{intro}\n\n{contents}\n")
    return "\n".join([header, *(s.markdown() for s in sections)])


def anchor(title: str) -> str:
    """GitHub's anchor of a heading ``## `title` ``: lower case, punctuation dropped, spaces
    as ``-``."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def recorded_python(text: str) -> str | None:
    """The ``major.minor`` a generated file records, or :obj:`None`."""
    match = PYTHON_LINE.search(text)
    return match.group(1) if match else None


def split_sections(text: str) -> dict[str, str]:
    """The text of each section of a generated file, by command; ``""``: the header."""
    titles = list(SECTION_TITLE.finditer(text))
    parts = {"": text[:titles[0].start()] if titles else text}
    for title, end in zip(titles, [*titles[1:], None], strict=True):
        parts[title.group(1)] = text[title.start():end.start() if end else len(text)]
    return parts


def stale_commands(written: str, fresh: str) -> list[str]:
    """The commands whose section differs between the file ``written`` and the ``fresh``
    rendering (missing from either counts), in the fresh order, then the removed ones;
    ``"(header)"`` when only the header differs."""
    old, new = split_sections(written), split_sections(fresh)
    changed = [c for c in new if c and old.get(c) != new[c]]
    changed += [c for c in old if c and c not in new]
    if old[""] != new[""]:
        changed.append("(header)")
    return changed
