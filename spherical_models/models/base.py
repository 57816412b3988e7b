"""What every spherical codec shares: CompressAI's base class, the layer options, and the
conversions between sphere tensors and the layout of CompressAI's entropy models."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from compressai.models import CompressionModel
from torch import Tensor, nn

from spherical_models.layers.blocks import SphereDown, SphereUp
from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed


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

    def __init__(self, N: int, M: int, options: LayerOptions | None = None) -> None:
        super().__init__()
        self.N = N
        self.M = M
        self.options = options or LayerOptions()

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

    def pixels_per_level(self, pixels: int) -> list[int]:
        """Pixels of one input at each level, from the input's ``pixels``."""
        return [pixels // 4**level for level in range(self.num_levels)]


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
