"""The ``.oslo`` file format: its header and strings, written and read with every field checked.

A file holds one map coded by :func:`spherical_models.coding.maps.compress_map` (the codec is
:mod:`spherical_models.coding.codec`).

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

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from spherical_models.coding.maps import patch_count
from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION, npix_of

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
