"""File input and output: atomic writes, images, ``.npy`` maps and list files.

Readers raise :class:`OsloError` naming the file when it is missing, unreadable or not what is
expected (:func:`check_map` for HEALPix maps).

Every writer goes through :func:`atomic_path`: the data is written to a temporary name in the
destination folder and renamed into place only once complete, so an interrupted or failed run
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from utils.errors import OsloError
from utils.healpix import res_of_npix

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


def rows_csv(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """CSV text of dict rows: the header ``columns`` (default: the first row's keys), then one
    line a row, floats written with 6 significant digits."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or rows[0]), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


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


def check_map(hp_map: np.ndarray, path: str | os.PathLike | None = None, what: str = "map",
              uint8: bool = True) -> int:
    """Resolution ``r`` of an RGB HEALPix map ``[12 * 4**r, 3]``, ``uint8`` (any integer or
    floating dtype with ``uint8=False``); :class:`OsloError` naming it otherwise: as
    ``<what> '<path>'``, or ``the <what>`` for a map without a file."""
    name = f"the {what}" if path is None else f"{what} '{path}'"
    if hp_map.ndim != 2 or hp_map.shape[1] != 3:
        raise OsloError(f"{name} has shape {list(hp_map.shape)}, expected [npix, 3] "
                        "(an RGB HEALPix map, npix = 12 * 4**r)")
    try:
        res = res_of_npix(len(hp_map))
    except ValueError:
        raise OsloError(f"{name} has {len(hp_map)} pixels: not a HEALPix map "
                        "(12 * 4**r)") from None
    if uint8 and hp_map.dtype != np.uint8:
        raise OsloError(f"{name} is {hp_map.dtype}, expected uint8")
    return res


def load_rgb(path: str | os.PathLike, projection: str, what: str) -> np.ndarray:
    """An RGB image ``[H, W, 3]`` (``projection`` ``erp``) or HEALPix map ``[npix, 3]``
    (``healpix``) of numbers in [0, 255] from ``path`` (an image, or a ``.npy``);
    :class:`OsloError` naming it (as ``<what> '<path>'``) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise OsloError(f"{what} '{path}' does not exist")
    if path.suffix.lower() == ".npy":
        data = load_map(path)
    else:
        data = load_image(path)
    if projection == "healpix":
        check_map(data, path, what, uint8=False)
    elif data.ndim != 3 or data.shape[2] != 3:
        raise OsloError(f"{what} '{path}' has shape {data.shape}, expected an ERP image [H, W, 3]")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise OsloError(f"{what} '{path}' has dtype {data.dtype}, expected numbers in [0, 255]")
    return data


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


def original_names(list_file: str | os.PathLike, prefix: str, suffix: str) -> list[str]:
    """Names of the originals from a list file (step 1's ``test.txt``): the stems of its
    entries without ``prefix`` and ``suffix``; :class:`OsloError` for an empty list or an entry
    without them."""
    entries = read_list(list_file)
    if not entries:
        raise OsloError(f"test list '{list_file}' names no file")
    names = []
    for entry in entries:
        stem = entry.stem
        if not (stem.startswith(prefix) and stem.endswith(suffix)
                and len(stem) > len(prefix) + len(suffix)):
            raise OsloError(f"test file '{entry}' does not have the prefix '{prefix}' and the "
                            f"suffix '{suffix}' (--test-files-prefix/--test-files-suffix)")
        names.append(stem[len(prefix) : len(stem) - len(suffix)])
    return names
