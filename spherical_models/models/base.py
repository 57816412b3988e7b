"""What every spherical codec shares: CompressAI's base class, the layer options, and the
conversions between sphere tensors and the layout of CompressAI's entropy models."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table
from compressai.ops import LowerBound, NonNegativeParametrizer
from torch import Tensor, nn

from spherical_models.entropy.streams import LatentCoder, LatentDecoder, LatentEncoder
from spherical_models.entropy.tables import deterministic_scale_table, run_float64, update_float64
from spherical_models.layers.blocks import SphereDown, SphereUp
from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed

DEFAULT_SCALE_TABLE_LEVELS = 64
"""Entries of the scale table of ``y`` (CompressAI's 64) for checkpoints that do not say."""

Y_LEVEL = 4
"""Geometry level of the latent ``y`` (four down-sampling stages)."""

Z_LEVEL = 6
"""Geometry level of the hyper-latent ``z`` (two more)."""

SCALE_TABLE_LEVELS = 256
"""Entries of the scale table of ``y`` of new models. Rounding a scale up to the next entry
costs a symbol at most ``log2 r`` bits, ``r = (256 / 0.11)^(1 / (L - 1))`` the ratio of two
entries: 0.18 bits for 64 levels, 0.031 for 256. Measured by benchmarks/bench_scale_table.py on
the test checkpoints, the rounding costs up to 3.1% of ``y``'s likelihoods with 64 levels and
at most 0.64% with 256, for 3.1 MiB of CDF tables and an ``update()`` of 0.2 to 0.3 s (1024
levels: 12 MiB and 1.1 s for 0.5% more)."""


@dataclass(frozen=True)
class LayerOptions:
    """The options of the seed's command line that shape a model's layers.

    Attributes:
        conv: ``"SDPAConv"`` (OSLO) or ``"ChebConv"`` (DeepSphere), ``-c``.
        hop: neighbourhood reach of a convolution block, 1 or 2.
        skip_aggregation: ``"sum"``, ``"cat"`` or ``"max"`` for 2-hop blocks, ``-sc``.
        single_conv: one 2-hop convolution instead of two 1-hop ones, ``--single-conv``.
        pool: ``"stride"``, ``"avg_pool"`` or ``"max_pool"``, ``-pf``.
        unpool: ``"pixel_shuffle"``, ``"nearest"`` or ``"SDPAConvTransposed"``, ``-upf``.
        nonlinearity: ``"GDN"`` or ``"RB"`` (residual blocks), ``-nl``.
        attention: attention modules (Cheng et al. 2020) in the transforms, ``-at``.
    """

    conv: str = "SDPAConv"
    hop: int = 2
    skip_aggregation: str = "sum"
    single_conv: bool = False
    pool: str = "stride"
    unpool: str = "pixel_shuffle"
    nonlinearity: str = "GDN"
    attention: bool = False

    def down(self, in_channels: int, out_channels: int, activation: str | None) -> SphereDown:
        """An encoder stage with these options."""
        return SphereDown(
            in_channels, out_channels, activation, self.pool, self.conv, self.hop,
            self.skip_aggregation, self.single_conv,
        )

    def up(self, in_channels: int, out_channels: int, activation: str | None) -> SphereUp:
        """A decoder stage with these options."""
        return SphereUp(
            in_channels, out_channels, activation, self.unpool, self.conv, self.hop,
            self.skip_aggregation, self.single_conv,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def to_entropy_layout(x: Tensor) -> Tensor:
    """``[B, N, C]`` sphere tensor -> ``[B, C, N, 1]`` for CompressAI's entropy models."""
    return x.transpose(1, 2).unsqueeze(-1)


def from_entropy_layout(x: Tensor) -> Tensor:
    """``[B, C, N, 1]`` -> ``[B, N, C]``."""
    return x.squeeze(-1).transpose(1, 2)


class SphereCompressionModel(CompressionModel):
    """Base class of the spherical codecs.

    CompressAI's :class:`~compressai.models.CompressionModel` gives ``update()``,
    ``aux_loss()`` and a ``load_state_dict`` that restores the entropy models' CDF buffers.
    Subclasses declare their transforms and entropy models and the number of resolution levels
    they use (:attr:`num_levels`); ``forward``, ``compress`` and ``decompress`` take the
    :class:`~spherical_models.geometry.SphereGeometry` of the input besides CompressAI's
    arguments, and optional ``patch_ids`` for graphs with per-patch weights.
    """

    num_levels: int
    latent_names: tuple[str, ...] = ("y",)
    """The latents, in the order of ``compress``'s ``strings``."""

    def __init__(self, N: int, M: int, options: LayerOptions | None = None) -> None:
        super().__init__()
        self.N = N
        self.M = M
        self.options = options or LayerOptions()
        self.scale_table_levels = DEFAULT_SCALE_TABLE_LEVELS

    def load_state_dict(self, state_dict, strict: bool = True):
        """CompressAI's loading, except that the constants of the method keep this model's
        values: the lower bounds (:class:`compressai.ops.LowerBound`: likelihoods at least
        1e-9, scales at least 0.11, GDN's beta and gamma) and GDN's pedestal (``2**-36``).
        They are not learned, and a file with half-precision buffers holds 1e-9 and the
        pedestal as 0, which would let a likelihood be 0 and the rate infinite."""
        constants = {f"{name}.bound" for name, module in self.named_modules()
                     if isinstance(module, LowerBound)}
        constants |= {f"{name}.pedestal" for name, module in self.named_modules()
                      if isinstance(module, NonNegativeParametrizer)}
        own = self.state_dict()
        return super().load_state_dict(
            {k: own[k] if k in constants else v for k, v in state_dict.items()}, strict=strict)

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        """``{"x_hat": g_s(y_hat), "likelihoods": {latent: [B, C, n, 1]}}`` for ``x``
        ``[B, N, 3]``, ``y = g_a(x)`` and :meth:`latent_forward`'s ``y_hat`` and
        likelihoods."""
        y_hat, likelihoods = self.latent_forward(self.g_a(x, geometry, patch_ids), geometry,
                                                 patch_ids)
        return {"x_hat": self.g_s(y_hat, geometry, patch_ids), "likelihoods": likelihoods}

    def latent_forward(
        self, y: Tensor, geometry, patch_ids: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """What :meth:`forward` does between ``g_a`` and ``g_s``: ``(y_hat [B, n, M],
        likelihoods)`` of ``y`` ``[B, n, M]`` (noisy in training, quantised in evaluation);
        it reads only the levels from :data:`Y_LEVEL` down of ``geometry``."""
        raise NotImplementedError

    # -- coding -------------------------------------------------------------------------------

    def code_latents(
        self,
        coder: LatentCoder,
        x: Tensor | None,
        geometry,
        patch_ids: Tensor | None = None,
        batch_size: int | None = None,
        y: Tensor | None = None,
    ) -> Tensor:
        """Entropy-code the latents of a batch with ``coder`` and return ``y_hat``
        ``[B, n, M]``.

        The one description of a model's bitstream: with a
        :class:`~spherical_models.entropy.streams.LatentEncoder`, ``x`` ``[B, N, 3]`` is
        analysed and its latents written; with a
        :class:`~spherical_models.entropy.streams.LatentDecoder`, the same calls read them back
        (``x`` is :obj:`None` and ``batch_size`` gives ``B``). ``y`` ``[B, n, M]``, when
        given, is ``g_a(x)`` computed elsewhere (tile by tile,
        :func:`spherical_models.coding.maps.analyse_tiled`; ``x`` is then :obj:`None`): only
        the levels from :data:`Y_LEVEL` down of ``geometry`` are read.
        """
        raise NotImplementedError

    def analysed(
        self, coder: LatentCoder, x: Tensor | None, geometry, patch_ids: Tensor | None,
        y: Tensor | None,
    ) -> Tensor | None:
        """The ``y`` that :meth:`code_latents` codes: ``y`` if given, else ``g_a(x)`` when
        encoding, :obj:`None` when decoding."""
        if not coder.encoding or y is not None:
            return y
        return self.g_a(x, geometry, patch_ids)

    def reconstruct(self, y_hat: Tensor, geometry, patch_ids: Tensor | None = None) -> Tensor:
        """``x_hat = clamp(g_s(y_hat), 0, 1)``, ``[B, N, 3]``."""
        return self.g_s(y_hat, geometry, patch_ids).clamp_(0, 1)

    def latent_symbols(self, geometry, batch_size: int = 1) -> dict[str, int]:
        """Symbols of each latent for ``batch_size`` inputs on ``geometry``."""
        symbols = {"y": batch_size * self.M * geometry[Y_LEVEL].num_pixels}
        if "z" in self.latent_names:
            symbols["z"] = batch_size * self.N * geometry[Z_LEVEL].num_pixels
        return symbols

    def compressed_shape(self, geometry) -> tuple[int, int]:
        """The ``shape`` that ``compress`` returns: ``(pixels of the coarsest latent, 1)``."""
        return (geometry[self.num_levels - 1].num_pixels, 1)

    def compress(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        """CompressAI's ``compress``: ``{"strings": [[string per element] per latent of
        latent_names], "shape": compressed_shape, "checksums": {latent: [CRC-32 per
        element]}}``."""
        coder = LatentEncoder(per_element=True)
        self.code_latents(coder, x, geometry, patch_ids)
        coded = coder.finish()
        return {
            "strings": [coded.strings[name] for name in self.latent_names],
            "shape": torch.Size(self.compressed_shape(geometry)),
            "checksums": coded.checksums,
        }

    def decompress(
        self,
        strings: list,
        shape,
        geometry,
        patch_ids: Tensor | None = None,
        checksums: dict | None = None,
    ) -> dict:
        """CompressAI's ``decompress`` of ``compress``'s ``strings``: ``{"x_hat": [B, N, 3],
        "y_hat": [B, n, M]}``; with ``checksums``, a decoded latent that does not match them
        raises :class:`~spherical_models.entropy.streams.LatentMismatchError`."""
        expected = self.compressed_shape(geometry)
        if tuple(shape) != expected:
            raise ValueError(f"the strings hold a latent of shape {tuple(shape)}, the geometry "
                             f"gives {expected}")
        if len(strings) != len(self.latent_names):
            raise ValueError(f"{len(strings)} latents, {type(self).__name__} codes "
                             f"{len(self.latent_names)}")
        batch = len(strings[0])
        coder = LatentDecoder(
            dict(zip(self.latent_names, strings, strict=True)), checksums,
            self.latent_symbols(geometry, 1), per_element=True,
        )
        y_hat = self.code_latents(coder, None, geometry, patch_ids, batch)
        coder.verify()
        return {"x_hat": self.reconstruct(y_hat, geometry, patch_ids), "y_hat": y_hat}

    @property
    def config(self) -> dict:
        """What shapes the model: stored in checkpoints to refuse a mismatched one."""
        return {"model": type(self).__name__, "N": self.N, "M": self.M, **self.options.to_dict()}

    @property
    def graph_hops(self) -> int:
        """Hops the geometry's graphs need (``SphereGeometry.build/from_folder(num_hops=)``):
        2 for single 2-hop convolutions, 1 otherwise."""
        return self.options.hop if self.options.single_conv else 1

    def set_conv_path(self, path: str) -> None:
        """Run every OSLO convolution on ``path``: ``"auto"``, ``"gather"`` or ``"face"``."""
        for module in self.modules():
            if isinstance(module, SDPAConv | SDPAConvTransposed):
                module.path = path

    # -- deterministic entropy parameters -----------------------------------------------------

    @property
    def supports_deterministic(self) -> bool:
        """Whether :meth:`set_deterministic` can be turned on (all models but those with a
        context model: see :class:`~spherical_models.models.SphereMeanScaleHyperprior`)."""
        return True

    @property
    def deterministic(self) -> bool:
        """Deterministic entropy parameters (:meth:`set_deterministic`); off by default."""
        return self.__dict__.get("_deterministic", False)

    def resolve_deterministic(self, requested: bool | None) -> bool:
        """The mode to use for a request: ``requested``, or where it is :obj:`None`,
        :attr:`supports_deterministic`; :class:`ValueError` for ``True`` on a model that does
        not support it."""
        if requested is None:
            return self.supports_deterministic
        if requested and not self.supports_deterministic:
            raise ValueError(
                f"deterministic entropy parameters are not available for {type(self).__name__} "
                f"with a context model"
            )
        return requested

    def set_deterministic(self, enabled: bool = True) -> None:
        """Make what ``compress`` and ``decompress`` derive from the hyper-latent bit-identical
        across thread counts and devices, so that a bitstream decodes on another machine.

        The entropy coder needs the encoder's and the decoder's entropy parameters (the scale
        *indexes* of ``y``, and the CDF tables) to be equal to the bit: a float32 scale that
        falls on the other side of a scale-table threshold on the other machine selects another
        CDF and the rest of the string decodes into garbage. In float32, a convolution's result
        depends on the summation order, which depends on the thread count and on the device.
        When on:

        * the hyper-synthesis ``h_s`` (scales, and means for the mean-scale model) runs on the
          CPU in float64 on one thread (a float64 copy of ``h_s`` and of the geometry, cached),
          from ``z_hat``, itself exact (integers plus the entropy bottleneck's medians); the
          scale indexes are built from these float64 scales, and the means are rounded to
          float32 before use, on both sides;
        * :meth:`update` computes the CDF tables on the CPU on one thread, the entropy
          bottleneck's in float64, with the scale table computed in float64 and rounded to
          float32.

        Both ``compress`` and ``decompress`` take this path, so the strings, the decoded
        latents and the parsing are the same on every machine. What remains in float32 on the
        model's device is ``g_a`` (encoder only: it chooses the symbols, which are then written)
        and ``g_s`` (the pixels; a different summation order can move a pixel by one level
        after rounding on another device, without affecting the parsing). float64 does not make
        a threshold crossing impossible, only about 1e9 times less likely than float32.

        Raises:
            ValueError: for a model with a context model (its entropy parameters depend on the
                decoded ``y``; not covered).
        """
        self.__dict__["_deterministic"] = self.resolve_deterministic(bool(enabled))
        self.__dict__["_float64_copies"] = {}

    def run_float64(
        self, module: nn.Module, x: Tensor, geometry, patch_ids: Tensor | None
    ) -> Tensor:
        """``module(x, geometry, patch_ids)`` on the CPU in float64 on one thread
        (:func:`~spherical_models.entropy.tables.run_float64`, copies cached on the model)."""
        return run_float64(self.__dict__.setdefault("_float64_copies", {}), module, x, geometry,
                           patch_ids)

    def update(
        self, scale_table=None, force: bool = False, update_quantiles: bool = False
    ) -> bool:
        """CompressAI's ``update``; in deterministic mode (:meth:`set_deterministic`) the CDF
        tables are computed on the CPU on one thread in float64 (CompressAI computes them in
        float32 where the model is, and a last-bit difference of a probability can move an
        entry of the 16-bit quantised CDF), and the default scale table
        ``exp(linspace(log 0.11, log 256, 64))`` in float64 then rounded to float32, so that
        they are the same on every machine.

        Without ``scale_table``, the table has :attr:`scale_table_levels` entries
        (:data:`DEFAULT_SCALE_TABLE_LEVELS`, CompressAI's 64, unless set; the training and the
        codec set it from the checkpoint)."""
        if not self.deterministic:
            if scale_table is None and self.scale_table_levels != DEFAULT_SCALE_TABLE_LEVELS:
                scale_table = get_scale_table(levels=self.scale_table_levels)
            return super().update(scale_table, force, update_quantiles)
        if scale_table is None:
            scale_table = deterministic_scale_table(levels=self.scale_table_levels)
        return update_float64(self, scale_table, force, update_quantiles)
