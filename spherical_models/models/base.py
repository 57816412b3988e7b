"""What every spherical codec shares: CompressAI's base class, the layer options, and the
conversions between sphere tensors and the layout of CompressAI's entropy models."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table
from torch import Tensor, nn

from spherical_models.entropy_coding import LatentCoder, LatentDecoder, LatentEncoder
from spherical_models.layers.blocks import SphereDown, SphereUp
from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed

DEFAULT_SCALE_TABLE_LEVELS = 64
"""Entries of the scale table of ``y`` (CompressAI's 64) for checkpoints that do not say."""

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

    # -- coding -------------------------------------------------------------------------------

    def code_latents(
        self,
        coder: LatentCoder,
        x: Tensor | None,
        geometry,
        patch_ids: Tensor | None = None,
        batch_size: int | None = None,
    ) -> Tensor:
        """Entropy-code the latents of a batch with ``coder`` and return ``y_hat``
        ``[B, n, M]``.

        The one description of a model's bitstream: with a
        :class:`~spherical_models.entropy_coding.LatentEncoder`, ``x`` ``[B, N, 3]`` is
        analysed and its latents written; with a
        :class:`~spherical_models.entropy_coding.LatentDecoder`, the same calls read them back
        (``x`` is :obj:`None` and ``batch_size`` gives ``B``).
        """
        raise NotImplementedError

    def reconstruct(self, y_hat: Tensor, geometry, patch_ids: Tensor | None = None) -> Tensor:
        """``x_hat = clamp(g_s(y_hat), 0, 1)``, ``[B, N, 3]``."""
        return self.g_s(y_hat, geometry, patch_ids).clamp_(0, 1)

    def latent_symbols(self, geometry, batch_size: int = 1) -> dict[str, int]:
        """Symbols of each latent for ``batch_size`` inputs on ``geometry``."""
        y_pixels = geometry[4].num_pixels
        symbols = {"y": batch_size * self.M * y_pixels}
        if "z" in self.latent_names:
            symbols["z"] = batch_size * self.N * geometry[6].num_pixels
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
        raises :class:`~spherical_models.entropy_coding.LatentMismatchError`."""
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
        if enabled and not self.supports_deterministic:
            raise ValueError(
                f"deterministic entropy parameters are not available for {type(self).__name__} "
                f"with a context model"
            )
        self.__dict__["_deterministic"] = bool(enabled)
        self.__dict__["_float64_copies"] = {}

    @contextlib.contextmanager
    def deterministic_entropy(self, enabled: bool = True) -> Iterator[SphereCompressionModel]:
        """Context manager around :meth:`set_deterministic`; restores the previous mode."""
        previous = self.deterministic
        self.set_deterministic(enabled)
        try:
            yield self
        finally:
            self.set_deterministic(previous)

    def run_float64(
        self, module: nn.Module, x: Tensor, geometry, patch_ids: Tensor | None
    ) -> Tensor:
        """``module(x, geometry, patch_ids)`` on the CPU in float64 on one thread (a cached
        float64 copy of ``module`` and ``geometry``); returns a float64 CPU tensor.

        The copy is remade when ``module``'s parameters change (their storage or version).
        """
        copies = self.__dict__.setdefault("_float64_copies", {})
        stamp = tuple((p.data_ptr(), p._version) for p in module.parameters())
        key = (id(module), id(geometry))
        if key not in copies or copies[key][0] != stamp:
            copies[key] = (
                stamp,
                copy.deepcopy(module).to("cpu", torch.float64),
                copy.deepcopy(geometry).to("cpu", torch.float64),
            )
        _, module64, geometry64 = copies[key]
        ids = None if patch_ids is None else patch_ids.cpu()
        with one_cpu_thread(), torch.no_grad():
            return module64(x.detach().to("cpu", torch.float64), geometry64, ids)

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
        updated = False
        with one_cpu_thread(), torch.no_grad():
            for module in self.modules():
                if isinstance(module, EntropyBottleneck):
                    if module._offset.numel() > 0 and not force:
                        continue
                    work = copy.deepcopy(module).to("cpu", torch.float64)
                    work.update(force=True, update_quantiles=update_quantiles)
                    if update_quantiles:
                        module.quantiles.data.copy_(work.quantiles.data)
                elif isinstance(module, GaussianConditional):
                    if module._offset.numel() > 0 and not force:
                        continue
                    work = copy.deepcopy(module).to("cpu")
                    work.scale_table = work._prepare_scale_table(scale_table)
                    update_gaussian_float64(work)
                else:
                    continue
                device = module._offset.device
                for name in ("_offset", "_quantized_cdf", "_cdf_length"):
                    setattr(module, name, getattr(work, name).to(device))
                if isinstance(module, GaussianConditional):
                    module.scale_table = work.scale_table.to(device, module.scale_bound.dtype)
                updated = True
        return updated

    def pixels_per_level(self, pixels: int) -> list[int]:
        """Pixels of one input at each level, from the input's ``pixels``."""
        return [pixels // 4**level for level in range(self.num_levels)]


@contextlib.contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run torch's CPU operations on one thread inside the block (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def update_gaussian_float64(gc: GaussianConditional) -> None:
    """``GaussianConditional.update`` (CompressAI 1.2.8) computed in float64 instead of float32:
    the CDF tables of the scales of ``gc.scale_table`` (CPU)."""
    table = gc.scale_table.to(torch.float64)
    multiplier = -float(gc._standardized_quantile(gc.tail_mass / 2))
    pmf_center = torch.ceil(table * multiplier).int()
    pmf_length = 2 * pmf_center + 1
    max_length = int(torch.max(pmf_length).item())
    samples = torch.abs(torch.arange(max_length).int() - pmf_center[:, None]).to(torch.float64)
    scales = table.unsqueeze(1)
    upper = gc._standardized_cumulative((0.5 - samples) / scales)
    lower = gc._standardized_cumulative((-0.5 - samples) / scales)
    pmf = upper - lower
    tail_mass = 2 * lower[:, :1]
    gc._quantized_cdf = gc._pmf_to_cdf(pmf, tail_mass, pmf_length, max_length)
    gc._offset = -pmf_center
    gc._cdf_length = pmf_length + 2


def deterministic_scale_table(
    low: float = 0.11, high: float = 256.0, levels: int = 64
) -> list[float]:
    """CompressAI's default scale table ``exp(linspace(log low, log high, levels))``, computed
    with Python floats (IEEE float64, correctly rounded ``log``/``exp`` in practice) and rounded
    to float32 values."""
    step = (math.log(high) - math.log(low)) / (levels - 1)
    table = [math.exp(math.log(low) + i * step) for i in range(levels)]
    return torch.tensor(table, dtype=torch.float64).float().tolist()


def run_analysis(
    stages: nn.ModuleList, x: Tensor, geometry, first_level: int, patch_ids: Tensor | None
) -> Tensor:
    """Run down stages: stage ``j`` takes the graph of level ``first_level + j``."""
    for j, stage in enumerate(stages):
        x = stage(x, geometry[first_level + j], patch_ids)
    return x


def run_synthesis(
    stages: nn.ModuleList, x: Tensor, geometry, first_level: int, patch_ids: Tensor | None
) -> Tensor:
    """Run up stages from level ``first_level`` (coarse) towards level 0."""
    for j, stage in enumerate(stages):
        level = first_level - j
        x = stage(x, geometry[level], geometry[level - 1], patch_ids)
    return x
