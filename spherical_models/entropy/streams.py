r"""Entropy coding of the latents: rANS streams that span patches, batches and decoding
groups, with a CRC-32 of the coded symbols.

CompressAI's entropy models code each batch element into a string of its own
(``EntropyModel.compress``). A string costs its length in the file and about 8 to 11 bytes of
rANS flush and 32-bit alignment, so a map coded as 48 patches x 2 latents pays about 1,000
bytes that the likelihoods do not count. Here a *coder* holds one
:class:`~compressai.ans.BufferedRansEncoder` (or :class:`~compressai.ans.RansDecoder`) per
latent, and every call appends to (or reads from) it:

.. math::
    \text{stream}_\ell = \text{rANS}\big(s^{(1)}_\ell \,\|\, s^{(2)}_\ell \,\|\, \dots\big),

the symbols :math:`s^{(c)}_\ell` of latent :math:`\ell` of every call :math:`c` in call order,
each call's ``[B, ...]`` symbols in C order (batch element after batch element). A model writes
its coding once, as a sequence of :meth:`LatentCoder.code` calls, and the same sequence encodes
(a :class:`LatentEncoder`) or decodes (a :class:`LatentDecoder`): the decoder reads what the
encoder wrote because it makes the same calls in the same order.

With ``per_element=True`` a coder keeps one stream per latent *and batch element*: exactly the
strings of CompressAI's ``compress`` (``strings[latent][element]``).

Both sides also keep :math:`\mathrm{CRC32}` of the ``int32`` little-endian symbols of each
stream in coding order. The encoder's checksums travel with the strings; the decoder compares
its own after entropy decoding, before any pixel is synthesised: a stream decoded with other
entropy parameters (another platform, thread count or device) or from altered bytes is
refused by :meth:`LatentDecoder.verify` instead of turning into a wrong image.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from torch import Tensor

from utils.errors import OsloError

PADDING_BYTES_PER_SYMBOL = 4
PADDING_BYTES = 65536


class LatentMismatchError(OsloError):
    """A decoded latent whose CRC-32 is not the encoder's."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"decoded {name} does not match the encoder's: a different platform, thread count, "
            f"device or corrupted data"
        )
        self.latent = name


class RansTables:
    """The quantised CDFs of an :class:`~compressai.entropy_models.EntropyModel` (an
    ``EntropyBottleneck`` or a ``GaussianConditional``, after ``update()``) as the Python lists
    that CompressAI's rANS coder takes.

    Each CDF is cut to its length ``cdf_length[s]`` (the rest is padding), which makes the
    lists up to 7x smaller; :meth:`subset` gives the few tables a call uses, since converting
    the tables is what a short ``encode_with_indexes`` / ``decode_stream`` call costs.

    Attributes:
        cdfs (list[list[int]]), lengths (list[int]), offsets (list[int]): one entry per table,
            as ``encode_with_indexes`` and ``decode_stream`` take them.
    """

    def __init__(self, entropy_model: EntropyModel) -> None:
        em = entropy_model
        self.lengths = em._cdf_length.reshape(-1).int().tolist()
        self.offsets = em._offset.reshape(-1).int().tolist()
        cdfs = em._quantized_cdf.tolist()
        self.cdfs = [cdf[:length] for cdf, length in zip(cdfs, self.lengths, strict=True)]

    def subset(self, indexes: Tensor) -> tuple[Tensor, list, list, list]:
        """The tables that ``indexes`` use, and ``indexes`` renumbered into them.

        Returns:
            ``(indexes, cdfs, lengths, offsets)``: ``indexes`` of the input's shape (on the
            CPU), pointing into the returned lists.
        """
        used, renumbered = torch.unique(indexes.cpu(), return_inverse=True)
        used = used.tolist()
        return (
            renumbered,
            [self.cdfs[s] for s in used],
            [self.lengths[s] for s in used],
            [self.offsets[s] for s in used],
        )


def tables_of(entropy_model: EntropyModel) -> RansTables:
    """The :class:`RansTables` of ``entropy_model``, cached on it until its CDFs change."""
    stamp = (
        entropy_model._quantized_cdf.data_ptr(), entropy_model._quantized_cdf._version,
        tuple(entropy_model._quantized_cdf.shape),
    )
    cached = entropy_model.__dict__.get("_rans_tables")
    if cached is None or cached[0] != stamp:
        cached = (stamp, RansTables(entropy_model))
        entropy_model.__dict__["_rans_tables"] = cached
    return cached[1]


def bottleneck_parameters(
    bottleneck: EntropyBottleneck, shape: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """``(indexes, medians)`` of an ``EntropyBottleneck`` for a latent of ``shape``
    ``[B, C, n, 1]``: channel ``c`` uses table ``c`` and is coded around its median, as in
    ``EntropyBottleneck.compress``."""
    indexes = bottleneck._build_indexes(torch.Size(shape)).to(bottleneck._quantized_cdf.device)
    medians = bottleneck._get_medians().detach()
    medians = bottleneck._extend_ndims(medians, len(shape) - 2)
    return indexes, medians.expand(shape[0], *([-1] * (len(shape) - 1)))


def symbol_crc(symbols: Tensor, crc: int = 0) -> int:
    """``zlib.crc32`` of ``symbols`` as ``int32`` little-endian, in C order, continuing
    ``crc``."""
    array = symbols.detach().to(torch.int32).cpu().numpy().astype("<i4", copy=False)
    return zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)


@dataclass(frozen=True)
class CodedLatents:
    """What a :class:`LatentEncoder` produced: per latent name, its string (a list of strings,
    one per batch element, with ``per_element``) and the CRC-32 of its symbols (a list too)."""

    strings: dict[str, bytes | list[bytes]]
    checksums: dict[str, int | list[int]]


class LatentCoder:
    """Base of :class:`LatentEncoder` and :class:`LatentDecoder`: the one call a model's coding
    is written with (:meth:`code`).

    Args:
        per_element: one stream per latent and batch element (CompressAI's strings) instead of
            one per latent.
    """

    encoding: bool

    def __init__(self, per_element: bool = False) -> None:
        self.per_element = per_element
        self._checksums: dict[str, list[int]] = {}

    def code(
        self,
        name: str,
        entropy_model: EntropyModel,
        values: Tensor | None,
        indexes: Tensor,
        means: Tensor | None = None,
    ) -> Tensor:
        """Code latent ``name`` (its next symbols) and return its quantised values.

        Encoding, the symbols are ``round(values - means)`` (``entropy_model.quantize(values,
        "symbols", means)``); decoding, they are read with the same ``indexes`` (``values`` is
        :obj:`None`). Either way the result is ``symbols + means`` in ``indexes``' shape,
        ``float32``, as ``entropy_model.decompress`` returns it.

        Args:
            name: the latent (one stream each), e.g. ``"y"`` or ``"z"``.
            entropy_model: the model whose CDF tables code the symbols (after ``update()``).
            values: the latent to encode, or :obj:`None` when decoding.
            indexes: ``int`` table index of every symbol, ``[B, ...]``.
            means: values the symbols are centred on (broadcast to ``indexes``), or :obj:`None`.
        """
        symbols = self._symbols(name, entropy_model, values, indexes, means)
        checksums = self._checksums.setdefault(name, [0] * (len(symbols) if self.per_element
                                                             else 1))
        if self.per_element:
            for element, element_symbols in enumerate(symbols):
                checksums[element] = symbol_crc(element_symbols, checksums[element])
        else:
            checksums[0] = symbol_crc(symbols, checksums[0])
        return entropy_model.dequantize(symbols.to(indexes.device), means, torch.float32)

    def _symbols(self, name, entropy_model, values, indexes, means) -> Tensor:
        raise NotImplementedError

    def checksums(self) -> dict[str, int | list[int]]:
        """CRC-32 of the symbols of each latent so far (a list per element with
        ``per_element``)."""
        return {
            name: list(crcs) if self.per_element else crcs[0]
            for name, crcs in self._checksums.items()
        }


class LatentEncoder(LatentCoder):
    """Encodes the latents into one rANS stream each (module docstring)."""

    encoding = True

    def __init__(self, per_element: bool = False) -> None:
        super().__init__(per_element)
        self._encoders: dict[str, list[BufferedRansEncoder]] = {}

    def _symbols(self, name, entropy_model, values, indexes, means) -> Tensor:
        if values is None:
            raise ValueError(f"encoding {name} needs its values")
        symbols = entropy_model.quantize(values, "symbols", means).cpu()
        renumbered, cdfs, lengths, offsets = tables_of(entropy_model).subset(indexes)
        groups = list(zip(symbols, renumbered, strict=True)) if self.per_element else [
            (symbols, renumbered)
        ]
        encoders = self._encoders.setdefault(
            name, [BufferedRansEncoder() for _ in range(len(groups))]
        )
        if len(encoders) != len(groups):
            raise ValueError(f"{name}: {len(groups)} batch elements, earlier calls had "
                             f"{len(encoders)}")
        for encoder, (group_symbols, group_indexes) in zip(encoders, groups, strict=True):
            encoder.encode_with_indexes(
                group_symbols.reshape(-1).tolist(), group_indexes.reshape(-1).tolist(),
                cdfs, lengths, offsets,
            )
        return symbols

    def finish(self) -> CodedLatents:
        """Flush every stream: the strings and checksums, latents in the order first coded."""
        strings: dict[str, bytes | list[bytes]] = {}
        for name, encoders in self._encoders.items():
            flushed = [encoder.flush() for encoder in encoders]
            strings[name] = flushed if self.per_element else flushed[0]
        return CodedLatents(strings, self.checksums())


class LatentDecoder(LatentCoder):
    """Decodes the streams of a :class:`LatentEncoder`, making the same :meth:`code` calls.

    Each string is handed to CompressAI's ``RansDecoder`` followed by zero bytes: 4 per symbol
    still to decode (``symbols``, the most the decoder reads outside escape codes) plus 64 KiB,
    so that a truncated or altered string never makes it read past its buffer.

    Args:
        strings: per latent, its string (a list of strings with ``per_element``).
        checksums: per latent, the encoder's CRC-32 (lists with ``per_element``), checked by
            :meth:`verify`; :obj:`None` to skip the check.
        symbols: per latent, the number of symbols of one stream (for the padding; 0 if
            unknown).
        per_element: as for :class:`LatentEncoder`.
    """

    encoding = False

    def __init__(
        self,
        strings: Mapping[str, bytes | Sequence[bytes]],
        checksums: Mapping[str, int | Sequence[int]] | None = None,
        symbols: Mapping[str, int] | None = None,
        per_element: bool = False,
    ) -> None:
        super().__init__(per_element)
        self.expected = None if checksums is None else dict(checksums)
        self._decoders: dict[str, list[RansDecoder]] = {}
        for name, value in strings.items():
            group = list(value) if per_element else [value]
            padding = bytes(
                PADDING_BYTES_PER_SYMBOL * int((symbols or {}).get(name, 0)) + PADDING_BYTES
            )
            decoders = []
            for string in group:
                decoder = RansDecoder()
                decoder.set_stream(bytes(string) + padding)
                decoders.append(decoder)
            self._decoders[name] = decoders

    def _symbols(self, name, entropy_model, values, indexes, means) -> Tensor:
        if name not in self._decoders:
            raise ValueError(f"no string for latent {name}")
        decoders = self._decoders[name]
        renumbered, cdfs, lengths, offsets = tables_of(entropy_model).subset(indexes)
        if self.per_element:
            if len(decoders) != len(renumbered):
                raise ValueError(f"{name}: {len(renumbered)} batch elements, "
                                 f"{len(decoders)} strings")
            decoded = [
                decoder.decode_stream(element.reshape(-1).tolist(), cdfs, lengths, offsets)
                for decoder, element in zip(decoders, renumbered, strict=True)
            ]
        else:
            decoded = decoders[0].decode_stream(renumbered.reshape(-1).tolist(), cdfs, lengths,
                                                offsets)
        return torch.tensor(decoded, dtype=torch.int32).reshape(indexes.shape)

    def verify(self) -> None:
        """Compare the checksums of what was decoded with the encoder's, latent after latent
        in decoding order; :class:`LatentMismatchError` naming the first that differs."""
        if self.expected is None:
            return
        decoded = self.checksums()
        for name in [*decoded, *(n for n in self.expected if n not in decoded)]:
            if decoded.get(name) != self.expected.get(name):
                raise LatentMismatchError(name)
