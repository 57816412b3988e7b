"""The codec behind ``oslo_codec.py``: a 360-degree image (ERP) or a HEALPix map in, one
``.oslo`` file out (:mod:`spherical_models.coding.oslo_format`), and back.

Encoding samples an ERP image on HEALPix (:func:`utils.sampling.erp_to_healpix`, the
convention of DESIGN.md section 3) or takes a ``uint8`` ``[12 * 4**r, 3]`` map, and codes it
with :func:`spherical_models.coding.maps.compress_map`, exactly as the evaluation of
``main_sphere_compression.py`` does: one rANS string per latent for the whole map, so the
payload of the file is ``rates.txt``'s ``actual`` bits / 8 for the same checkpoint, patch
resolution, batch size and mode. Decoding refuses a file whose checkpoint hash is not the
checkpoint's, and a decoded latent whose CRC-32 is not the encoder's, before any pixel is
synthesised.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spherical_models.coding.maps import CodedMap, compress_map, decompress_map
from spherical_models.coding.oslo_format import (  # noqa: F401 (the format, re-exported)
    FORMAT_VERSION,
    HASH_BYTES,
    MAGIC,
    MAX_BATCH_SIZE,
    MAX_SCALE_TABLE_LEVELS,
    SUFFIX,
    Header,
    OsloFile,
    pack,
    pack_header,
    read_file,
    unpack,
)
from spherical_models.coding.refine import Refinement
from spherical_models.geometry import SphereGeometry
from spherical_models.models import SphereCompressionModel, model_from_config
from spherical_models.models.tiling import check_tile_res, check_tileable, coarse_geometry
from spherical_models.training.checkpoint import load_checkpoint, recorded_scale_table_levels
from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION, nside_of
from utils.io import IMAGE_EXTENSIONS, atomic_path, check_map, load_image, load_map, save_npy
from utils.sampling import erp_to_healpix, healpix_to_erp

MAP_EXTENSIONS = ("npy",)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_hash(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> bytes:
    """First 16 bytes of the SHA-256 of the weights and of what shapes the model.

    The tensors are hashed in the sorted order of their names, each as its name, dtype, shape
    and raw bytes; then the configuration (model, N, M, layer options, quality, lambda,
    structure weights...) as JSON with sorted keys.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(json.dumps(dict(config), sort_keys=True, default=str).encode())
    return digest.digest()[:HASH_BYTES]


@dataclass
class Codec:
    """A checkpoint ready to code: its model (evaluation mode, on ``device``), configuration,
    hash and default patch resolution, and the geometries built so far."""

    path: Path
    model: SphereCompressionModel
    config: dict[str, Any]
    digest: bytes
    default_patch_res: int
    device: torch.device
    _geometries: dict[tuple[int, int, bool], SphereGeometry] = field(default_factory=dict)
    _mode: tuple[bool, int] | None = None

    def set_mode(self, deterministic: bool | None, levels: int) -> bool:
        """Set the deterministic mode (:obj:`None`: on where the model supports it) and the
        scale table of ``levels`` entries, update the CDF tables for them, and return the
        mode."""
        try:
            deterministic = self.model.resolve_deterministic(deterministic)
        except ValueError:
            raise OsloError(
                f"the deterministic mode is not available for {self.config['model']} with the "
                f"context model '{self.config.get('context_model')}': use --no-deterministic "
                f"(then decode on the same kind of machine)"
            ) from None
        if self._mode == (deterministic, levels):
            return deterministic
        self.model.set_deterministic(deterministic)
        self.model.scale_table_levels = levels
        self.model.update(force=True)
        self._mode = (deterministic, levels)
        return deterministic

    def geometry(self, healpix_res: int, patch_res: int, tiled: bool = False) -> SphereGeometry:
        """The graphs of every level at ``(healpix_res, patch_res)``, built in memory (those
        of the checkpoint's structures: convolution, hops, weights, chord distances);
        :class:`OsloError` if the model cannot code at these resolutions. ``tiled``: for
        whole-sphere coding tile by tile, only the levels from ``y`` down
        (:func:`~spherical_models.models.tiling.coarse_geometry`; :class:`OsloError` for a model
        that cannot run by tiles)."""
        key = (healpix_res, patch_res, tiled)
        if key not in self._geometries and tiled:
            geometry = coarse_geometry(self.model, healpix_res, self.config.get("weight_type"),
                                       bool(self.config.get("use_euclidean")))
            check_tileable(self.model, geometry)
            self._geometries[key] = geometry.to(self.device)
        if key not in self._geometries:
            geometry = SphereGeometry.build(
                healpix_res, patch_res, self.model.num_levels,
                conv=self.config.get("conv", "SDPAConv"), num_hops=self.model.graph_hops,
                weight_type=self.config.get("weight_type"),
                use_euclidean=bool(self.config.get("use_euclidean")),
            )
            self._geometries[key] = geometry.to(self.device)
        return self._geometries[key]


def load_codec(path: str | Path, device: str | torch.device = "cpu") -> Codec:
    """Read a checkpoint of ``main_sphere_compression.py`` and build its model.

    The default patch resolution is the checkpoint's evaluation one (``-prvt``), else the whole
    sphere (-1) for a model trained with ``--patch-border sphere``, else its training one
    (``-prt``).
    """
    path = Path(path)
    checkpoint = load_checkpoint(path)
    config = dict(checkpoint.get("config") or {})
    model = model_from_config(config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise OsloError(f"checkpoint '{path}' does not fit its own configuration: "
                        f"{first}") from None
    args = checkpoint.get("args") or {}
    patch_res = args.get("patch_res_valtest")
    if patch_res is None and config.get("patch_border") == "sphere":
        patch_res = -1
    if patch_res is None:
        patch_res = config.get("patch_res_train", args.get("patch_res_train", -1))
    device = torch.device(device)
    return Codec(
        path=path, model=model.to(device).eval(), config=config,
        digest=checkpoint_hash(checkpoint["state_dict"], config),
        default_patch_res=max(int(patch_res), -1), device=device,
    )


# ---------------------------------------------------------------------------------------------
# Encoding and decoding


@torch.no_grad()
def encode_map(
    codec: Codec,
    hp_map: np.ndarray,
    patch_res: int | None = None,
    batch_size: int = 10,
    deterministic: bool | None = None,
    image_shape: tuple[int, int] = (0, 0),
    scale_table_levels: int | None = None,
    tile_res: int | None = None,
    progress: bool = False,
    refinement: Refinement | None = None,
) -> bytes:
    """Compress a ``uint8`` ``[12 * 4**r, 3]`` map into the bytes of a ``.oslo`` file.

    Args:
        codec: :func:`load_codec`.
        hp_map: the map (NESTED).
        patch_res: patch resolution (default: the checkpoint's); -1: whole sphere.
        batch_size: patches per batch (``-bsvt`` of the evaluation).
        deterministic: deterministic entropy parameters (recorded in the header); default:
            on where the model supports it.
        image_shape: ``(height, width)`` of the ERP image the map was sampled from.
        scale_table_levels: entries of ``y``'s scale table (default: the checkpoint's).
        tile_res: on the whole sphere, run ``g_a`` by tiles of this resolution
            (:func:`~spherical_models.coding.maps.compress_map`; :obj:`None`: at once); not
            recorded (the strings are the same).
        progress: a progress bar over the tiles (or the refined batches).
        refinement: refine each batch's latent before coding it
            (:mod:`spherical_models.coding.refine`; its lambda by default the checkpoint's);
            not recorded (the decoder is the same). Not with ``tile_res``.
    """
    healpix_res = check_map(hp_map)
    patch_res = codec.default_patch_res if patch_res is None else max(patch_res, -1)
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise OsloError(f"batch size {batch_size} outside 1..{MAX_BATCH_SIZE}")
    levels = scale_table_levels
    if levels is None:
        levels = recorded_scale_table_levels(codec.config)
    if not 2 <= levels <= MAX_SCALE_TABLE_LEVELS:
        raise OsloError(f"scale table levels {levels} outside 2..{MAX_SCALE_TABLE_LEVELS}")
    tile_res = None if patch_res >= 0 else check_tile_res(tile_res, healpix_res)
    if refinement is not None:
        refinement = resolved_refinement(refinement, codec.config, tile_res)
    geometry = codec.geometry(healpix_res, patch_res, tile_res is not None)
    deterministic = codec.set_mode(deterministic, levels)
    coded = compress_map(codec.model, geometry, hp_map, patch_res, batch_size, codec.device,
                         tile_res, progress, refinement)
    header = Header(
        model=codec.config["model"], quality=int(codec.config.get("quality", 0)),
        lmbda=float(codec.config.get("lambda", 0.0)), healpix_res=healpix_res,
        patch_res=patch_res, batch_size=batch_size, checkpoint_hash=codec.digest,
        image_shape=tuple(int(s) for s in image_shape), scale_table_levels=levels,
        checksums=tuple(coded.checksums.values()), deterministic=deterministic,
    )
    return pack(header, list(coded.strings.values()))


def resolved_refinement(refinement: Refinement, config: Mapping[str, Any],
                        tile_res: int | None) -> Refinement:
    """``refinement`` with its lambda (default: the checkpoint's ``config["lambda"]``), or
    :class:`OsloError` where it cannot run."""
    if tile_res is not None:
        raise OsloError("latent refinement codes the whole sphere at once or by patches: give "
                        "--tile-res -1 or -p >= 0")
    if refinement.lmbda is not None:
        return refinement
    lmbda = float(config.get("lambda", 0.0))
    if not lmbda > 0:
        raise OsloError("the checkpoint records no lambda: give the refinement's lambda "
                        "(--refine-lambda)")
    return replace(refinement, lmbda=lmbda)


@torch.no_grad()
def decode(
    codec: Codec, coded: OsloFile, tile_res: int | None = None, progress: bool = False
) -> np.ndarray:
    """Decompress a parsed file into the ``uint8`` ``[12 * 4**r, 3]`` map.

    Refuses a file encoded with another checkpoint (hash) or whose latents do not fit the
    model, and (:class:`~spherical_models.entropy.streams.LatentMismatchError`) a decoded latent
    whose CRC-32 is not the encoder's; decodes with the file's batches, mode and scale table.
    A whole-sphere file is synthesised by tiles of ``tile_res`` (any: not the encoder's;
    :obj:`None`: at once), with a progress bar over them if ``progress``.
    """
    header = coded.header
    if header.checkpoint_hash != codec.digest:
        raise OsloError(
            f"checkpoint '{codec.path}' ({codec.config.get('model')}, hash "
            f"{codec.digest.hex()}) is not the one this file was encoded with ({header.model}, "
            f"hash {header.checkpoint_hash.hex()})"
        )
    names = codec.model.latent_names
    if header.num_latents != len(names):
        raise OsloError(f"corrupt file: {header.num_latents} latent(s), the model codes "
                        f"{len(names)}")
    tile_res = None if header.patch_res >= 0 else check_tile_res(tile_res, header.healpix_res)
    geometry = codec.geometry(header.healpix_res, header.patch_res, tile_res is not None)
    codec.set_mode(header.deterministic, header.scale_table_levels)
    coded_map = CodedMap(
        strings=dict(zip(names, coded.strings, strict=True)),
        checksums=dict(zip(names, header.checksums, strict=True)),
        num_pixels=header.num_pixels, patch_res=header.patch_res, batch_size=header.batch_size,
    )
    try:
        return decompress_map(codec.model, geometry, coded_map, codec.device, tile_res,
                              progress)
    except (RuntimeError, ValueError, IndexError, OverflowError) as error:
        raise OsloError(f"corrupt file: decoding failed ({type(error).__name__})") from None


# ---------------------------------------------------------------------------------------------
# Files


def read_input(
    path: str | Path, healpix_res: int | None
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(map, (height, width))`` of an input: an ERP image sampled on HEALPix at
    ``healpix_res``, or a ``.npy`` map (``(0, 0)``; ``healpix_res`` must then match)."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in MAP_EXTENSIONS:
        hp_map = load_map(path)
        res = check_map(hp_map, path)
        if healpix_res is not None and res != healpix_res:
            raise OsloError(f"map '{path}' has resolution {res}, not -r {healpix_res}")
        return hp_map, (0, 0)
    if suffix not in IMAGE_EXTENSIONS:
        raise OsloError(f"'{path}': unknown input type (an ERP image "
                        f"{'/'.join(IMAGE_EXTENSIONS)} or a .npy HEALPix map)")
    if healpix_res is None or not 0 <= healpix_res <= MAX_RESOLUTION:
        raise OsloError(f"HEALPix resolution {healpix_res} outside 0..{MAX_RESOLUTION}")
    image = load_image(path)
    return erp_to_healpix(image, healpix_res), image.shape[:2]


def erp_size(header: Header, width: int | None) -> tuple[int, int]:
    """``(width, height)`` of an ERP output: ``width`` (height ``width // 2``), else the size
    of the image encoded, else ``4 * nside x 2 * nside``."""
    if width is not None:
        if width < 2:
            raise OsloError(f"--erp-width must be at least 2, got {width}")
        return width, width // 2
    height, image_width = header.image_shape
    if height and image_width:
        return image_width, height
    nside = nside_of(header.healpix_res)
    return 4 * nside, 2 * nside


def write_output(
    path: str | Path, hp_map: np.ndarray, header: Header, erp_width: int | None = None
) -> None:
    """Write a decoded map atomically: ``.npy`` as it is, an image suffix as an ERP image
    resampled from it (:func:`utils.sampling.healpix_to_erp`)."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in MAP_EXTENSIONS:
        save_npy(path, hp_map)
        return
    if suffix not in IMAGE_EXTENSIONS:
        raise OsloError(f"'{path}': unknown output type (.npy for the HEALPix map, or an image "
                        f"{'/'.join(IMAGE_EXTENSIONS)} for an ERP image)")
    width, height = erp_size(header, erp_width)
    image = Image.fromarray(healpix_to_erp(hp_map, width, height))
    with atomic_path(path, path.suffix) as tmp:
        image.save(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def info_text(coded: OsloFile) -> str:
    """The header of a file and its sizes and bpp, one ``name: value`` per line."""
    h = coded.header
    rows = [
        ("format version", coded.version),
        ("model", h.model),
        ("quality", h.quality),
        ("lambda", f"{h.lmbda:.6g}"),
        ("healpix resolution", f"{h.healpix_res} ({h.num_pixels} pixels)"),
        ("patch resolution", f"{h.patch_res} ({h.num_patches} patches)" if h.patch_res >= 0
         else "-1 (whole sphere)"),
        ("batch size", h.batch_size),
        ("deterministic", "yes" if h.deterministic else "no"),
        ("checkpoint hash", h.checkpoint_hash.hex()),
        ("image shape", "none (HEALPix map)" if h.image_shape == (0, 0)
         else f"{h.image_shape[0]} x {h.image_shape[1]} (height x width)"),
        ("scale table levels", h.scale_table_levels),
        ("latents", h.num_latents),
        ("latent checksums", " ".join(f"{c:08x}" for c in h.checksums)),
        ("string bytes", " ".join(str(len(s)) for s in coded.strings)),
        ("file bytes", coded.file_bytes),
        ("header bytes", coded.header_bytes),
        ("payload bytes", coded.payload_bytes),
        ("bpp", f"{coded.bpp:.6f}"),
        ("payload bpp", f"{coded.payload_bpp:.6f}"),
    ]
    buffer = io.StringIO()
    for name, value in rows:
        buffer.write(f"{name}: {value}\n")
    return buffer.getvalue()
