"""What every command-line script shares at run time: logging and the entry-point wrapper
(the parser helpers are in :mod:`spherical_models.cli`, the command line's one boundary).

Scripts are ``build_parser()`` + ``main(argv=None)``; expected failures raise :class:`OsloError`,
which :func:`run_main` prints as one line ``error: ...`` and turns into exit code 2. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from utils.errors import OsloError

LOGGER_NAME = "oslo"


def get_logger() -> logging.Logger:
    """The toolkit's logger (``oslo``)."""
    return logging.getLogger(LOGGER_NAME)


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when a record comes, not as it was when
    the handler was made (tests and tools replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Log ``INFO`` (``DEBUG`` if ``verbose``) to stderr as ``[oslo] message``."""
    logger = get_logger()
    if not logger.handlers:
        handler = _StderrHandler()
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
