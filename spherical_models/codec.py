"""The ``.oslo`` file format and the codec behind ``oslo_codec.py``: a 360-degree image (ERP)
or a HEALPix map in, one file out, and back.

Encoding samples an ERP image on HEALPix (:func:`utils.sampling.erp_to_healpix`, the
convention of DESIGN.md section 3) or takes a ``uint8`` ``[12 * 4**r, 3]`` map, and codes it
with :func:`spherical_models.map_coding.compress_map`, exactly as the evaluation of
``main_sphere_compression.py`` does: one rANS string per latent for the whole map, so the
payload of the file is ``rates.txt``'s ``actual`` bits / 8 for the same checkpoint, patch
resolution, batch size and mode.

File layout (little-endian), format version 2. *varint* is unsigned LEB128 (7 bits a byte)::

    offset  bytes  field
    0       4      magic b"OSLO"
    4       1      format version (2)
    5       4      CRC-32 (zlib) of every byte after this field (offset 9 to the end)
    9       1      flags: bit 0 = deterministic entropy parameters; other bits 0
    10      1      L, length of the model name (1..64)
    11      L      model name, ASCII (e.g. SphereScaleHyperprior)
            1      quality -q (uint8)
            4      lambda (float32)
            1      HEALPix resolution r (0..13)
            1      patch resolution + 1 (0: whole sphere)
            var    batch size: patches per batch (1..65535)
            8      checkpoint hash (:func:`checkpoint_hash`)
            var    height, then width of the ERP image encoded (0, 0 for a map)
            var    scale table levels of y (:attr:`Header.scale_table_levels`)
            1      S, latents (1: y; 2: y, z)
            4 x S  CRC-32 of the symbols of each latent in coding order (y first)
            var    the byte length of each string but the last (S - 1 varints)
            ...    the S strings, y first; the last one runs to the end of the file

The *header* is everything but the strings (at most 64 bytes plus the model name for any map
up to resolution 10), so ``file bytes = actual bits / 8 + header bytes``. bpp = 8 x file
bytes / (12 * 4**r).

Reading checks, in order: magic, version (a newer one is refused by name; version 1, with a
string per patch, is refused with the command that reads it), CRC-32 (any truncation or
altered byte), then every field and length against its bounds and the file's size, before any
allocation that depends on them. Each failure is one :class:`OsloError` line; a file whose
hash is not that of the checkpoint is refused before decoding, and a decoded latent whose
CRC-32 is not the encoder's is refused before any pixel is synthesised.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spherical_models.checkpoint import load_checkpoint
from spherical_models.geometry import SphereGeometry
from spherical_models.map_coding import CodedMap, compress_map, decompress_map, patch_count
from spherical_models.models import SphereCompressionModel, model_from_config
from spherical_models.models.base import DEFAULT_SCALE_TABLE_LEVELS
from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION, npix_of, nside_of
from utils.io import IMAGE_EXTENSIONS, atomic_path, check_map, load_image, load_map, save_npy
from utils.sampling import erp_to_healpix, healpix_to_erp

MAGIC = b"OSLO"
FORMAT_VERSION = 2
VERSION_1_COMMIT = "4ff145f"
"""The last commit whose ``oslo_codec.py`` reads format version 1."""
HASH_BYTES = 8
MAX_NAME_BYTES = 64
MAX_LATENTS = 4
MAX_BATCH_SIZE = 0xFFFF
MAX_SCALE_TABLE_LEVELS = 1 << 16
FLAG_DETERMINISTIC = 1
SUFFIX = ".oslo"

_PREFIX = struct.Struct("<4sBI")  # magic, version, CRC-32
_FIXED = struct.Struct("<BfBB")  # quality, lambda, r, patch resolution + 1
MAP_EXTENSIONS = ("npy",)


@dataclass(frozen=True)
class Header:
    """What a ``.oslo`` file says besides its strings (module docstring).

    Attributes:
        model: the model's class name.
        quality: ``-q`` of the checkpoint.
        lmbda: ``--lambda`` of the checkpoint (as float32).
        healpix_res: resolution ``r`` of the coded map.
        patch_res: patch resolution, -1 for the whole sphere.
        batch_size: patches per batch (decoding uses the same batches).
        checkpoint_hash: :func:`checkpoint_hash` of the checkpoint that encoded it.
        image_shape: ``(height, width)`` of the ERP image encoded, ``(0, 0)`` for a map.
        scale_table_levels: entries of the scale table that coded ``y``.
        checksums: CRC-32 of each latent's symbols, ``y`` first.
        deterministic: deterministic entropy parameters
            (:meth:`~spherical_models.models.SphereCompressionModel.set_deterministic`).
    """

    model: str
    quality: int
    lmbda: float
    healpix_res: int
    patch_res: int
    batch_size: int
    checkpoint_hash: bytes
    image_shape: tuple[int, int]
    scale_table_levels: int
    checksums: tuple[int, ...]
    deterministic: bool = True

    @property
    def num_pixels(self) -> int:
        return npix_of(self.healpix_res)

    @property
    def num_patches(self) -> int:
        return patch_count(self.num_pixels, self.patch_res)

    @property
    def num_latents(self) -> int:
        return len(self.checksums)


@dataclass
class OsloFile:
    """A parsed ``.oslo`` file: its header, one string per latent (``y`` first), and sizes."""

    header: Header
    strings: list[bytes]
    header_bytes: int
    file_bytes: int
    version: int = FORMAT_VERSION

    @property
    def payload_bytes(self) -> int:
        return self.file_bytes - self.header_bytes

    @property
    def bpp(self) -> float:
        return 8 * self.file_bytes / self.header.num_pixels

    @property
    def payload_bpp(self) -> float:
        return 8 * self.payload_bytes / self.header.num_pixels


# ---------------------------------------------------------------------------------------------
# Bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    """Bounds-checked reading of a byte string; every failure is an :class:`OsloError`."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position

    @property
    def left(self) -> int:
        return len(self.data) - self.position

    def take(self, count: int, what: str) -> bytes:
        if count > self.left:
            raise OsloError(f"corrupt file: {what} runs past the end of the file")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def varint(self, what: str, limit: int = 1 << 35) -> int:
        """A varint of at most 5 bytes, at most ``limit``."""
        value = 0
        for shift in range(0, 35, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > limit:
                    raise OsloError(f"corrupt file: {what} {value} is above {limit}")
                return value
        raise OsloError(f"corrupt file: {what} is not a valid varint")


def pack_header(header: Header, lengths: list[int]) -> bytes:
    """The header bytes of a ``.oslo`` file whose strings have ``lengths`` bytes, the file CRC
    left at 0 (:func:`pack` fills it in)."""
    name = header.model.encode("ascii")
    if not 1 <= len(name) <= MAX_NAME_BYTES:
        raise ValueError(f"model name of {len(name)} bytes")
    if len(lengths) != header.num_latents or not 1 <= len(lengths) <= MAX_LATENTS:
        raise ValueError(f"{len(lengths)} strings for {header.num_latents} checksums")
    body = bytearray()
    body.append(FLAG_DETERMINISTIC if header.deterministic else 0)
    body.append(len(name))
    body += name
    body += _FIXED.pack(header.quality, header.lmbda, header.healpix_res, header.patch_res + 1)
    body += _varint(header.batch_size)
    body += header.checkpoint_hash
    body += _varint(header.image_shape[0]) + _varint(header.image_shape[1])
    body += _varint(header.scale_table_levels)
    body.append(len(lengths))
    body += struct.pack(f"<{len(lengths)}I", *header.checksums)
    for length in lengths[:-1]:
        body += _varint(length)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, 0) + bytes(body)


def pack(header: Header, strings: list[bytes]) -> bytes:
    """The bytes of a ``.oslo`` file (module docstring); ``strings`` one per latent, ``y``
    first."""
    body = pack_header(header, [len(s) for s in strings])[_PREFIX.size :] + b"".join(strings)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, zlib.crc32(body)) + body


def unpack(data: bytes) -> OsloFile:
    """Parse and validate the bytes of a ``.oslo`` file (module docstring)."""
    if len(data) < len(MAGIC) and MAGIC.startswith(bytes(data)):
        raise OsloError(f"corrupt file: truncated to {len(data)} bytes")
    if data[: len(MAGIC)] != MAGIC:
        raise OsloError(f"not an OSLO file: the magic bytes are {bytes(data[:4])!r}, not "
                        f"{MAGIC!r}")
    if len(data) < _PREFIX.size:
        raise OsloError(f"corrupt file: truncated to {len(data)} bytes")
    _, version, crc = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise OsloError(f"file format version {version} is newer than this codec's "
                        f"{FORMAT_VERSION}: decode it with a newer oslo_codec.py")
    if version == 1:
        raise OsloError(
            f"file format version 1 (one string per patch) is no longer read: decode it with "
            f"the oslo_codec.py of commit {VERSION_1_COMMIT} (git worktree add ../oslo-v1 "
            f"{VERSION_1_COMMIT} && python ../oslo-v1/oslo_codec.py decode ...)"
        )
    if version < 1:
        raise OsloError(f"unknown file format version {version}")
    if zlib.crc32(memoryview(data)[_PREFIX.size :]) != crc:
        raise OsloError("corrupt file: CRC-32 mismatch (the file is truncated or altered)")
    reader = _Reader(data, _PREFIX.size)
    flags, name_length = reader.take(2, "the header")
    if flags & ~FLAG_DETERMINISTIC:
        raise OsloError(f"corrupt file: unknown flags {flags:#04x}")
    if not 1 <= name_length <= MAX_NAME_BYTES:
        raise OsloError(f"corrupt file: model name of {name_length} bytes")
    try:
        model = reader.take(name_length, "the model name").decode("ascii")
    except UnicodeDecodeError:
        raise OsloError("corrupt file: the model name is not ASCII") from None
    quality, lmbda, healpix_res, patch_res = _FIXED.unpack(reader.take(_FIXED.size, "the header"))
    patch_res -= 1
    if not 0 <= healpix_res <= MAX_RESOLUTION:
        raise OsloError(f"corrupt file: HEALPix resolution {healpix_res} outside "
                        f"0..{MAX_RESOLUTION}")
    if not -1 <= patch_res <= healpix_res:
        raise OsloError(f"corrupt file: patch resolution {patch_res} outside -1..{healpix_res}")
    batch_size = reader.varint("the batch size", MAX_BATCH_SIZE)
    digest = reader.take(HASH_BYTES, "the checkpoint hash")
    height = reader.varint("the image height", 1 << 32)
    width = reader.varint("the image width", 1 << 32)
    levels = reader.varint("the scale table levels", MAX_SCALE_TABLE_LEVELS)
    (count,) = reader.take(1, "the number of latents")
    if batch_size < 1 or not 1 <= count <= MAX_LATENTS or levels < 2:
        raise OsloError("corrupt file: batch size, latents or scale table levels out of range")
    checksums = struct.unpack(f"<{count}I", reader.take(4 * count, "the checksums"))
    lengths = [reader.varint("a string length") for _ in range(count - 1)]
    header_bytes = reader.position
    if sum(lengths) > reader.left:
        raise OsloError(f"corrupt file: the strings take {sum(lengths)} bytes, the file has "
                        f"{reader.left} after the header")
    lengths.append(reader.left - sum(lengths))
    strings = [bytes(reader.take(n, "a string")) for n in lengths]
    header = Header(
        model=model, quality=quality, lmbda=lmbda, healpix_res=healpix_res,
        patch_res=patch_res, batch_size=batch_size, checkpoint_hash=digest,
        image_shape=(height, width), scale_table_levels=levels, checksums=checksums,
        deterministic=bool(flags & FLAG_DETERMINISTIC),
    )
    return OsloFile(header, strings, header_bytes, len(data), version)


def read_file(path: str | Path) -> OsloFile:
    """Read and parse a ``.oslo`` file; errors name the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise OsloError(f"cannot read '{path}': {error.strerror or error}") from None
    try:
        return unpack(data)
    except OsloError as error:
        raise OsloError(f"'{path}': {error}") from None


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
    _geometries: dict[tuple[int, int], SphereGeometry] = field(default_factory=dict)
    _mode: tuple[bool, int] | None = None

    @property
    def scale_table_levels(self) -> int:
        """The checkpoint's scale table levels (64 for checkpoints that do not say)."""
        return int(self.config.get("scale_table_levels", DEFAULT_SCALE_TABLE_LEVELS))

    def deterministic_default(self, deterministic: bool | None) -> bool:
        """``deterministic``, or where it is :obj:`None`, whether the model supports it."""
        return self.model.supports_deterministic if deterministic is None else deterministic

    def set_mode(self, deterministic: bool, scale_table_levels: int | None = None) -> None:
        """Turn the deterministic mode on or off and choose the scale table (default: the
        checkpoint's), and update the CDF tables for them."""
        levels = self.scale_table_levels if scale_table_levels is None else scale_table_levels
        if self._mode == (deterministic, levels):
            return
        if deterministic and not self.model.supports_deterministic:
            raise OsloError(
                f"the deterministic mode is not available for {self.config['model']} with the "
                f"context model '{self.config.get('context_model')}': use --no-deterministic "
                f"(then decode on the same kind of machine)"
            )
        self.model.set_deterministic(deterministic)
        self.model.scale_table_levels = levels
        self.model.update(force=True)
        self._mode = (deterministic, levels)

    def geometry(self, healpix_res: int, patch_res: int) -> SphereGeometry:
        """The graphs of every level at ``(healpix_res, patch_res)``, built in memory (those
        of the checkpoint's structures: convolution, hops, weights, chord distances);
        :class:`OsloError` if the model cannot code at these resolutions."""
        key = (healpix_res, patch_res)
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

    The default patch resolution is the checkpoint's evaluation one (``-prvt``), else its
    training one (``-prt``).
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
    """
    healpix_res = check_map(hp_map)
    patch_res = codec.default_patch_res if patch_res is None else max(patch_res, -1)
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise OsloError(f"batch size {batch_size} outside 1..{MAX_BATCH_SIZE}")
    levels = codec.scale_table_levels if scale_table_levels is None else scale_table_levels
    if not 2 <= levels <= MAX_SCALE_TABLE_LEVELS:
        raise OsloError(f"scale table levels {levels} outside 2..{MAX_SCALE_TABLE_LEVELS}")
    geometry = codec.geometry(healpix_res, patch_res)
    deterministic = codec.deterministic_default(deterministic)
    codec.set_mode(deterministic, levels)
    coded = compress_map(codec.model, geometry, hp_map, patch_res, batch_size, codec.device)
    header = Header(
        model=codec.config["model"], quality=int(codec.config.get("quality", 0)),
        lmbda=float(codec.config.get("lambda", 0.0)), healpix_res=healpix_res,
        patch_res=patch_res, batch_size=batch_size, checkpoint_hash=codec.digest,
        image_shape=tuple(int(s) for s in image_shape), scale_table_levels=levels,
        checksums=tuple(coded.checksums.values()), deterministic=deterministic,
    )
    return pack(header, list(coded.strings.values()))


@torch.no_grad()
def decode(codec: Codec, coded: OsloFile) -> np.ndarray:
    """Decompress a parsed file into the ``uint8`` ``[12 * 4**r, 3]`` map.

    Refuses a file encoded with another checkpoint (hash) or whose latents do not fit the
    model, and (:class:`~spherical_models.entropy_coding.LatentMismatchError`) a decoded latent
    whose CRC-32 is not the encoder's; decodes with the file's batches, mode and scale table.
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
    geometry = codec.geometry(header.healpix_res, header.patch_res)
    codec.set_mode(header.deterministic, header.scale_table_levels)
    coded_map = CodedMap(
        strings=dict(zip(names, coded.strings, strict=True)),
        checksums=dict(zip(names, header.checksums, strict=True)),
        num_pixels=header.num_pixels, patch_res=header.patch_res, batch_size=header.batch_size,
    )
    try:
        return decompress_map(codec.model, geometry, coded_map, codec.device)
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
