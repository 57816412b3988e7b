"""What every command-line script shares: the help format, logging, the entry-point wrapper.

Scripts are ``build_parser()`` + ``main(argv=None)``; expected failures raise :class:`OsloError`,
which :func:`run_main` prints as one line ``error: ...`` and turns into exit code 2. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from utils.errors import OsloError

LOGGER_NAME = "oslo"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except for required options and switches."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default is None or action.nargs == 0:
            return action.help or ""
        return super()._get_help_string(action)


def get_logger() -> logging.Logger:
    """The toolkit's logger (``oslo``)."""
    return logging.getLogger(LOGGER_NAME)


def setup_logging(verbose: bool = False) -> None:
    """Log ``INFO`` (``DEBUG`` if ``verbose``) to stderr as ``[oslo] message``."""
    logger = get_logger()
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[oslo] %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def run_main(main: Callable[[Sequence[str] | None], object]) -> None:
    """Call ``main()`` and exit: 0 on success, 2 with ``error: <message>`` on :class:`OsloError`,
    130 on Ctrl-C."""
    try:
        main(None)
    except OsloError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(0)
