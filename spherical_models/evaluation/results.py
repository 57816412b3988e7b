"""The results of step 4 and their files: the rates, quality and timings of a coded map, and
the evaluation folder's tables, written and read back.

Outputs in the evaluation folder (DESIGN.md section 7):

* ``healpix_sampling_res_{r}_{stem}_reconstructed.npy`` and ``.png``;
* ``rates.txt``: a ``#`` comment line, then ``name<TAB>theoretical<TAB>actual`` per map, in
  **total bits** of the map: theoretical = sum over the latents (``y``, ``z``) of
  ``ceil(sum of -log2 likelihoods)`` of the quantised latents, actual = 8 x the bytes of the
  strings (one per latent). Divide by the ``12 * 4**r`` HEALPix pixels for bits per pixel;
* ``test_results.csv``: per map, bpp (theoretical, actual), PSNR on the sphere (all HEALPix
  pixels have the same area, so it is the plain PSNR over the pixels and channels of the
  ``uint8`` maps), encoding and decoding seconds.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from utils.errors import OsloError
from utils.healpix import npix_of, nside_of
from utils.rd import read_rates

RECONSTRUCTION_SUFFIX = "_reconstructed"
RESULT_COLUMNS = (
    "name", "bpp_theoretical", "bpp_actual", "psnr", "encode_seconds", "decode_seconds",
)


@dataclass
class ImageResult:
    """Rates, quality and timings of one coded map.

    Attributes:
        name: the map's ``.npy`` stem.
        theoretical_bits: sum over latents of ``ceil(sum -log2 likelihoods)``.
        actual_bits: 8 x the bytes of the strings.
        num_pixels: HEALPix pixels of the map.
        psnr: PSNR (dB) of the ``uint8`` reconstruction on the sphere.
        encode_seconds, decode_seconds: wall time of ``compress`` and ``decompress``.
    """

    name: str
    theoretical_bits: int
    actual_bits: int
    num_pixels: int
    psnr: float
    encode_seconds: float
    decode_seconds: float

    @property
    def bpp_theoretical(self) -> float:
        return self.theoretical_bits / self.num_pixels

    @property
    def bpp_actual(self) -> float:
        return self.actual_bits / self.num_pixels


def reconstruction_stem(map_path: str | os.PathLike) -> str:
    """``healpix_sampling_res_{r}_{stem}_reconstructed`` for the map ``..._{stem}.npy``."""
    return Path(map_path).stem + RECONSTRUCTION_SUFFIX


def string_bytes(strings: object) -> int:
    """Total bytes of the (nested lists of) byte strings of a ``compress`` output."""
    if isinstance(strings, bytes | bytearray):
        return len(strings)
    return sum(string_bytes(s) for s in strings)


def tensor_bits(likelihoods: Tensor) -> float:
    """``sum -log2 likelihoods`` in double precision."""
    return -torch.log2(likelihoods.double()).sum().item()


def mollweide_width(healpix_res: int) -> int:
    """Width of the Mollweide views: ``4 * nside`` within ``[800, 4000]``."""
    return int(min(4000, max(800, 4 * nside_of(healpix_res))))


def rates_text(results: Sequence[ImageResult], healpix_res: int) -> str:
    """The content of ``rates.txt`` (module docstring)."""
    npix = npix_of(healpix_res)
    lines = [
        f"# name\ttheoretical_bits\tactual_bits (total bits per map; bpp = bits / {npix} "
        f"HEALPix pixels at resolution {healpix_res})"
    ]
    lines += [f"{r.name}\t{r.theoretical_bits}\t{r.actual_bits}" for r in results]
    return "\n".join(lines) + "\n"


def results_csv(results: Sequence[ImageResult]) -> str:
    """The content of ``test_results.csv`` (:data:`RESULT_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for r in results:
        writer.writerow([
            r.name, f"{r.bpp_theoretical:.6f}", f"{r.bpp_actual:.6f}", f"{r.psnr:.4f}",
            f"{r.encode_seconds:.3f}", f"{r.decode_seconds:.3f}",
        ])
    return buffer.getvalue()


def read_previous_results(folder: Path) -> dict[str, dict]:
    """Results of an earlier evaluation in ``folder`` (``rates.txt`` and ``test_results.csv``):
    the fields of :class:`ImageResult` but ``name`` and ``num_pixels``, by name; empty where
    either file is missing or unreadable."""
    rates_path, csv_path = folder / "rates.txt", folder / "test_results.csv"
    if not rates_path.is_file() or not csv_path.is_file():
        return {}
    try:
        rates = read_rates(rates_path)
        with csv_path.open(newline="") as handle:
            rows = {row["name"]: row for row in csv.DictReader(handle)}
    except (OsloError, OSError, ValueError, KeyError):
        return {}
    return {
        name: {
            "theoretical_bits": theoretical, "actual_bits": actual,
            "psnr": float(rows[name]["psnr"]),
            "encode_seconds": float(rows[name]["encode_seconds"]),
            "decode_seconds": float(rows[name]["decode_seconds"]),
        }
        for name, (theoretical, actual) in rates.items()
        if name in rows
    }
