"""The classic image codecs of the RD baselines: JPEG, WebP and JPEG 2000 through Pillow, in
memory.

A :class:`Codec` knows its Pillow format and feature, its file extension and its quality knob
(JPEG, WebP: an integer quality in [0, 100]; JPEG 2000: a compression ratio > 1,
``quality_mode='rates'``); :func:`compress` encodes an RGB image and decodes it back.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from utils.errors import OsloError
from utils.metrics import METRIC_NAMES
from utils.rd import Row, format_metrics


@dataclass(frozen=True)
class Codec:
    """A Pillow codec: its name, Pillow format and feature, file extension and quality knob."""

    name: str
    pil_format: str
    feature: str
    extension: str
    default_qualities: str
    quality_help: str

    def save_options(self, quality: float) -> dict:
        """Pillow ``save`` options for one quality (JPEG 2000: a compression ratio)."""
        if self.name == "jpeg2000":
            return {"quality_mode": "rates", "quality_layers": [quality]}
        return {"quality": int(quality)}

    def parse_qualities(self, text: str) -> list[float]:
        """Comma-separated qualities: integers in [0, 100] (JPEG, WebP) or ratios > 1
        (JPEG 2000); sorted and without duplicates; :class:`OsloError` otherwise."""
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if self.name == "jpeg2000":
            valid = all(math.isfinite(v) and v > 1 for v in values)
        else:
            valid = all(v.is_integer() and 0 <= v <= 100 for v in values)
        if not values or not valid:
            raise OsloError(f"--{self.name}-qualities '{text}' is not a comma-separated list of "
                            f"{self.quality_help}")
        return sorted(set(values))


CODECS = {
    "jpeg": Codec("jpeg", "JPEG", "jpg", "jpg", "5,10,20,40,60,80,95",
                  "integer qualities in [0, 100]"),
    "webp": Codec("webp", "WEBP", "webp", "webp", "5,10,20,40,60,80,95",
                  "integer qualities in [0, 100]"),
    "jpeg2000": Codec("jpeg2000", "JPEG2000", "jpg_2000", "jp2", "200,100,50,25,12",
                      "compression ratios > 1 (quality_mode='rates')"),
}
RD_QUALITIES = (2, 5, 10, 20, 30, 40, 60, 80)
"""JPEG and WebP qualities of the zoo's comparisons (the zoo demo, ``experiments/zoo_bd.py``):
2 and 5 reach the zoo's lowest rates."""
SUMMARY_COLUMNS = ("codec", "quality", "bpp", *METRIC_NAMES)


def quality_label(quality: float) -> str:
    """``q<quality>`` without a trailing ``.0`` (``q95``, ``q12.5``)."""
    return f"q{quality:g}"


def compress(image: np.ndarray, codec: Codec, quality: float) -> tuple[bytes, np.ndarray]:
    """The compressed file (bytes) of an RGB ``uint8`` image ``[H, W, 3]`` and its decoded
    RGB ``uint8`` image, both in memory."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, codec.pil_format, **codec.save_options(quality))
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        return data, np.asarray(decoded.convert("RGB"))


def summary_csv(codec: str, points: Sequence[tuple[float, Row]]) -> str:
    """CSV with :data:`SUMMARY_COLUMNS`: one row per quality, its mean row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for quality, row in points:
        writer.writerow([codec, f"{quality:g}", f"{row.bpp:.6f}",
                         *format_metrics(row.values()[1:])])
    return buffer.getvalue()


def erp_rd_points(image: np.ndarray, res: int, points: tuple[np.ndarray, np.ndarray],
                  codec: Codec, qualities: Sequence[float]) -> list[tuple[float, float, dict]]:
    """``[(quality, bpp, metrics)]`` of ``codec`` coding the ERP image ``[H, W, 3]`` resampled
    to ``4 * 2**res x 2 * 2**res`` (the planar size of HEALPix resolution ``res``): bpp over the
    ``12 * 4**res`` HEALPix pixels, S-PSNR and WS-PSNR (:func:`utils.metrics.spherical_psnr`)
    against the original image at the sphere ``points`` (latitudes, longitudes)."""
    from utils.metrics import spherical_psnr
    from utils.sampling import resample_erp

    width = 4 * 2**res
    small = resample_erp(image, width, width // 2)
    rows = []
    for quality in qualities:
        data, decoded = compress(small, codec, quality)
        metrics = spherical_psnr(image, "erp", decoded, "erp", *points, resample=True)
        rows.append((quality, 8 * len(data) / (12 * 4**res), metrics))
    return rows
