"""File input and output: atomic writes, images, ``.npy`` maps and list files.

Every writer goes through :func:`atomic_path`: the data is written to a temporary name in the
destination folder and renamed into place only once complete, so an interrupted or failed run
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from utils.errors import OsloError

Image.MAX_IMAGE_PIXELS = None  # 360-degree images are legitimately huge (SUN360: 9104x4552)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "tiff")

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    ``suffix`` is kept at the end of the temporary name for writers that append an extension
    (``numpy.save`` adds ``.npy``, ``numpy.savez`` adds ``.npz`` unless the name has it).
    On failure the temporary file is removed and the exception propagates.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Atomically save ``array`` as ``path`` (``.npy``)."""
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, array)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Atomically save ``arrays`` as the uncompressed archive ``path`` (``.npz``)."""
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file into an RGB ``uint8`` array ``[H, W, 3]``.

    Raises :class:`OsloError` naming the file if it is missing, unreadable or truncated.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise OsloError(f"cannot read image '{path}': {error}") from None


def load_map(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """Load a HEALPix map ``.npy`` (``[npix]`` or ``[npix, C]``); :class:`OsloError` if unreadable.

    ``mmap=True`` memory-maps it read-only instead of reading it whole.
    """
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise OsloError(f"cannot read map '{path}': {error}") from None


def write_list(path: str | os.PathLike, files: Sequence[str | os.PathLike]) -> None:
    """Atomically write a list file: one path per line, relative to the list's own folder."""
    folder = Path(path).resolve().parent
    lines = [os.path.relpath(Path(f).resolve(), folder) for f in files]
    write_text(path, "".join(f"{line}\n" for line in lines))


def read_list(path: str | os.PathLike) -> list[Path]:
    """Read a list file; relative entries are taken relative to the list's folder.

    Blank lines and lines starting with ``#`` are skipped. :class:`OsloError` if unreadable.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise OsloError(f"cannot read list file '{path}': {error}") from None
    entries = [line.strip() for line in lines]
    return [path.parent / e for e in entries if e and not e.startswith("#")]
