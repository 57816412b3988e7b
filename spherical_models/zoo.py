"""The pretrained zoo: OSLO models shipped in ``zoo/``, found by ``(model, quality)`` as in
CompressAI's zoo, or by the checkpoint hash a ``.oslo`` file records.

``zoo/registry.json`` lists the entries, written by ``experiments/train_zoo.py``: each one's
file, its SHA-256, its training record (commands, steps, data, seconds, machine) and what it
measures on the bundled test images and on a check map (the figures ``oslo_codec.py models``
prints and the tests verify). The files are checkpoints of ``main_sphere_compression.py``
with half-precision weights; the figures are those of these files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from utils.errors import OsloError

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
REGISTRY_NAME = "registry.json"
ZOO_MODELS = {"oslo-hyperprior": "SphereScaleHyperprior"}
"""Zoo model names (``oslo_codec.py encode --model``) and the model class each one is."""
DEFAULT_MODEL = "oslo-hyperprior"


def _folder(folder: Path | None) -> Path:
    """``folder``, else the zoo of the repository (:data:`ZOO_DIR`, read at call time)."""
    return ZOO_DIR if folder is None else Path(folder)


@dataclass(frozen=True)
class ZooEntry:
    """One pretrained model.

    Attributes:
        model: zoo model name (:data:`ZOO_MODELS`).
        quality: quality level, 1 (lowest rate) up.
        lmbda: the rate-distortion trade-off it was trained for.
        file: the checkpoint's name in the zoo folder.
        sha256: hex SHA-256 of the file.
        digest: hex checkpoint hash (:func:`spherical_models.coding.codec.checkpoint_hash`), the one
            a ``.oslo`` file records.
        record: how it was trained (``experiments/train_zoo.py``).
        results: what it measures (``samples``: mean bpp and S-PSNR Y per resolution on the
            test images; ``check``: the check map's bytes and S-PSNR Y).
    """

    model: str
    quality: int
    lmbda: float
    file: str
    sha256: str
    digest: str
    record: dict[str, Any]
    results: dict[str, Any]

    def path(self, folder: Path | None = None) -> Path:
        return _folder(folder) / self.file


def read_registry(folder: Path | None = None) -> list[ZooEntry]:
    """The entries of ``folder/registry.json``, by model then quality; :class:`OsloError` if
    it is missing or unreadable."""
    path = _folder(folder) / REGISTRY_NAME
    try:
        rows = json.loads(path.read_text())["entries"]
        entries = [ZooEntry(**row) for row in rows]
    except FileNotFoundError:
        raise OsloError(f"zoo registry '{path}' does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise OsloError(f"zoo registry '{path}' is unreadable: {error}") from None
    return sorted(entries, key=lambda e: (e.model, e.quality))


def write_registry(entries: list[ZooEntry], folder: Path | None = None) -> None:
    """Write ``folder/registry.json`` atomically."""
    from utils.io import write_text

    rows = [entry.__dict__ for entry in sorted(entries, key=lambda e: (e.model, e.quality))]
    write_text(_folder(folder) / REGISTRY_NAME, json.dumps({"entries": rows}, indent=1) + "\n")


def qualities(model: str = DEFAULT_MODEL, folder: Path | None = None) -> list[int]:
    """The qualities of ``model`` in the zoo, ascending."""
    return [e.quality for e in read_registry(folder) if e.model == model]


def default_quality(model: str = DEFAULT_MODEL, folder: Path | None = None) -> int:
    """A middle quality of ``model``: the upper median of its qualities."""
    levels = qualities(model, folder)
    if not levels:
        raise OsloError(f"the zoo has no model '{model}'")
    return levels[len(levels) // 2]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_path(entry: ZooEntry, folder: Path | None = None) -> Path:
    """The entry's file, once its SHA-256 is the registry's; :class:`OsloError` naming the file
    if it is missing or differs (corrupt, or replaced without the registry)."""
    path = entry.path(folder)
    if not path.is_file():
        raise OsloError(f"zoo file '{path}' ({entry.model} quality {entry.quality}) is missing")
    if file_sha256(path) != entry.sha256:
        raise OsloError(f"zoo file '{path}' is corrupt: its SHA-256 is not the registry's")
    return path


def zoo_entry(model: str = DEFAULT_MODEL, quality: int | None = None,
              folder: Path | None = None) -> ZooEntry:
    """The entry of ``(model, quality)`` (default quality: :func:`default_quality`);
    :class:`OsloError` for an unknown model or quality."""
    if model not in ZOO_MODELS:
        raise OsloError(f"unknown zoo model '{model}' (choose from {', '.join(ZOO_MODELS)})")
    quality = default_quality(model, folder) if quality is None else quality
    for entry in read_registry(folder):
        if (entry.model, entry.quality) == (model, quality):
            return entry
    levels = ", ".join(map(str, qualities(model, folder)))
    raise OsloError(f"the zoo has no quality {quality} of '{model}' (qualities: {levels})")


def entry_by_digest(digest: bytes, folder: Path | None = None) -> ZooEntry | None:
    """The entry whose checkpoint hash is ``digest``, or :obj:`None`."""
    for entry in read_registry(folder):
        if bytes.fromhex(entry.digest) == digest:
            return entry
    return None


def listing(entries: list[ZooEntry]) -> str:
    """The table of ``oslo_codec.py models``: per entry its model, quality, lambda, training
    steps, and per resolution the mean bpp and S-PSNR Y of the bundled test images."""
    resolutions = sorted({res for e in entries for res in e.results.get("samples", {})}, key=int)
    head = ["model", "quality", "lambda", "steps"]
    head += [f"{kind} r{res}" for res in resolutions for kind in ("bpp", "S-PSNR-Y")]
    rows = []
    for e in entries:
        row = [e.model, str(e.quality), f"{e.lmbda:g}", str(e.record.get("steps", "?"))]
        for res in resolutions:
            point = e.results.get("samples", {}).get(res)
            row += [f"{point['bpp']:.4f}", f"{point['s_psnr_y']:.2f}"] if point else ["-", "-"]
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]]
    note = ("mean over the test images of samples/ (S-PSNR Y against the original ERP image, "
            "bpp per HEALPix pixel)")
    return "\n".join([*lines, note]) + "\n"


def code_erp_image(model: Any, image: np.ndarray, res: int,
                   points: tuple[np.ndarray, np.ndarray],
                   patch_res: int | None = None,
                   refinement: Any = None) -> tuple[dict[str, float], np.ndarray]:
    """Code an ERP image ``[H, W, 3]`` at HEALPix resolution ``res`` with a codec
    (:func:`spherical_models.coding.codec.load_codec`, deterministic mode) by patches of
    ``patch_res`` (default: the checkpoint's; -1: the whole sphere), its latents refined by
    ``refinement`` (:class:`~spherical_models.coding.refine.Refinement`) if given, and decode
    it.

    Returns:
        ``({"bytes", "bpp", "s_psnr_y", "ws_psnr_y", "s_psnr_rgb", "ws_psnr_rgb"}, decoded map
        [12 * 4**res, 3])``: S-PSNR and WS-PSNR (Y and RGB) against the ERP image at the sphere
        ``points`` (latitudes, longitudes), bpp over the HEALPix pixels.
    """
    from spherical_models.coding import codec
    from utils.metrics import spherical_psnr
    from utils.sampling import erp_to_healpix

    hp_map = erp_to_healpix(image, res)
    data = codec.encode_map(model, hp_map, patch_res=patch_res, image_shape=image.shape[:2],
                            refinement=refinement)
    decoded = codec.decode(model, codec.unpack(data))
    metrics = spherical_psnr(image, "erp", decoded, "healpix", *points)
    return {"bytes": len(data), "bpp": 8 * len(data) / len(hp_map), **metrics}, decoded
