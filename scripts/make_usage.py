"""Write the command-line reference docs/usage.md from the scripts' parsers, or check it.

Every user-facing script's ``build_parser()`` is imported (no subprocess) and its ``--help``
written at a fixed width (:mod:`utils.usage`), with one section per ``oslo_codec.py``
subcommand. ``--check`` writes nothing: when the file no longer matches the parsers, it names
the commands whose help changed, with the command that regenerates the file, and exits with
code 2. The file records the Python ``major.minor`` it was written with, because argparse's
layout differs between versions: a check under another version is refused (exit 2 too).

Example:
    python scripts/make_usage.py            # after changing a flag
    python scripts/make_usage.py --check
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spherical_models.cli import HelpFormatter  # noqa: E402
from utils.cli import run_main  # noqa: E402
from utils.errors import OsloError  # noqa: E402
from utils.io import write_text  # noqa: E402
from utils.usage import (  # noqa: E402
    Section,
    command_sections,
    first_sentence,
    python_version,
    recorded_python,
    render,
    stale_commands,
)

USAGE = REPO / "docs" / "usage.md"
GENERATOR = "python scripts/make_usage.py"

SCRIPTS = (
    "generate_healpix_samples_and_split_to_train_and_test.py",
    "generate_and_save_healpix_oslo_struct.py",
    "generate_and_save_healpix_sdpa_struct.py",
    "generate_and_save_healpix_deepsphere_graph.py",
    "main_sphere_compression.py",
    "oslo_codec.py",
    "misc/create_mollweide_projection.py",
    "misc/create_mollweide_comparison.py",
    "misc/generate_sphere_points.py",
    "misc/compute_spherical_psnr.py",
    "misc/compress_erp_baseline.py",
    "misc/compute_bd_rate.py",
    "misc/plot_rd_curves.py",
    "baselines/train_erp_compressai.py",
    "experiments/rd_study.py",
    "experiments/seam_study.py",
    "experiments/train_zoo.py",
    "experiments/trend_study.py",
    "experiments/warmup_study.py",
    "experiments/zoo_bd.py",
    "scripts/zoo_demo.py",
    "scripts/gpu_check.py",
    "scripts/make_usage.py",
)
"""The scripts of the reference, in the README's order: the seed's steps, the codec, the
metrics and baselines, the studies, the tools."""

INTRO = ("Every script runs from the repository root as `python <command> ...`. The "
         "[README](../README.md) says what each step does, and [guide.md](guide.md) gives the "
         "file formats and the rules behind the flags. `(default: none)`: the flag has no "
         "value unless it is given; a switch is off unless it is given.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail, naming the commands whose help no longer "
                        "matches the file")
    parser.add_argument("-o", "--output", default=str(USAGE.relative_to(REPO)),
                        help="the reference to write or check, relative to the repository")
    return parser


def load(script: str) -> ModuleType:
    """The module of ``script``: imported by name from the repository root and its packages,
    loaded from its file for ``scripts/``, which is not a package."""
    path = Path(script)
    if path.parent.name != "scripts":
        return importlib.import_module(".".join(path.with_suffix("").parts))
    spec = importlib.util.spec_from_file_location(f"scripts_{path.stem}", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections() -> list[Section]:
    """Every section of the reference, from the parsers as they are now."""
    found = []
    for script in SCRIPTS:
        module = load(script)
        found += command_sections(script, first_sentence(module.__doc__), module.build_parser)
    return found


def usage_text() -> str:
    """The reference as the parsers give it now."""
    return render(sections(), GENERATOR, INTRO)


def stale(path: Path) -> list[str]:
    """The commands whose help differs from the reference at ``path`` (all of them if it is
    missing). Raises :class:`OsloError` if the file was written with another Python."""
    if not path.is_file():
        return [s.command for s in sections()]
    written = path.read_text()
    version = recorded_python(written)
    if version != python_version():
        raise OsloError(f"'{path}' was generated with Python {version} and this is Python "
                        f"{python_version()}, whose argparse lays help out differently: "
                        f"check it with Python {version}")
    return stale_commands(written, usage_text())


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    path = REPO / args.output
    if not args.check:
        write_text(path, usage_text())
        print(f"wrote {args.output}")
        return
    changed = stale(path)
    if changed:
        raise OsloError(f"{args.output} no longer matches the parsers of: {', '.join(changed)}; "
                        f"regenerate it with `{GENERATOR}`")
    print(f"{args.output} matches the parsers")


if __name__ == "__main__":
    run_main(main)
