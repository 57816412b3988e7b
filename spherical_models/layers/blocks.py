r"""The building blocks of the spherical codecs: convolution blocks, down and up blocks,
residual blocks and attention, all on sphere tensors ``[B, N, C]`` in NESTED order or, for
OSLO convolutions on graphs with a face path, on faces ``[B F, C, S, S]``
(:mod:`~spherical_models.layers.face_layout`), in which they are ``Conv2d``, ``avg_pool2d``
and ``PixelShuffle`` blocks.

Every block takes the graphs it runs on at call time (PyTorch Geometric style): a convolution
block at one resolution takes that level's graph, a down block the graph of its input level,
an up block the graphs of its input (coarse) and output (fine) levels. A graph is a
:class:`spherical_models.graph.OsloGraph` for OSLO convolutions or a
:class:`spherical_models.layers.cheb_conv.ChebGraph` for the DeepSphere baseline.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from spherical_models.layers.cheb_conv import SphereChebConv
from spherical_models.layers.face_layout import is_faces, pixel_linear
from spherical_models.layers.gdn import SphereGDN
from spherical_models.layers.pooling import SpherePool, SphereUnpool, child_zero
from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed

CONV_TYPES = ("SDPAConv", "ChebConv")
SKIP_AGGREGATIONS = ("sum", "cat", "max")
NONLINEARITIES = ("GDN", "RB")
UNPOOL_TYPES = ("pixel_shuffle", "nearest", "SDPAConvTransposed")


def sphere_conv(conv: str, in_channels: int, out_channels: int, num_hops: int = 1) -> nn.Module:
    """A graph convolution ``forward(x, graph, patch_ids=None, stride=False)`` of ``num_hops``
    reach (``stride``: only the pixels ``4p`` that stride pooling keeps).

    ``SDPAConv``: the OSLO convolution (3x3-like for 1 hop, 5x5-like for 2). ``ChebConv``:
    DeepSphere's Chebyshev filter of order ``K = num_hops + 1`` (reaching ``num_hops`` hops).
    """
    if conv == "SDPAConv":
        return SDPAConv(in_channels, out_channels, num_hops=num_hops)
    if conv == "ChebConv":
        return SphereChebConv(in_channels, out_channels, K=num_hops + 1)
    raise ValueError(f"unknown convolution '{conv}' (choose from {CONV_TYPES})")


class SphereConvBlock(nn.Module):
    r"""The OSLO convolution block: ``hop`` successive 1-hop convolutions whose outputs are
    aggregated (skip connections), or one ``hop``-hop convolution (``single_conv``).

    .. math::
        h_1 = \mathrm{conv}_1(x), \quad h_j = \mathrm{conv}_j(h_{j-1}), \quad
        y = \mathrm{aggr}(h_1, \dots, h_{hop})

    with ``aggr`` = ``sum``, elementwise ``max``, or ``cat`` followed by a per-pixel linear
    map back to ``out_channels``.

    With ``stride=True``, only the pixels that stride pooling keeps (:math:`y_{4p}`, child 0 of
    every coarse pixel) are output: every convolution but the last runs at full resolution
    (the next one needs all its pixels), the last one computes only pixels :math:`4p`
    (``stride=True`` of the convolution: a stride-2 ``Conv2d`` on the face path), and the
    aggregation, pointwise, runs on those pixels of every :math:`h_j`.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        conv (str, optional): ``"SDPAConv"`` or ``"ChebConv"``. (default: ``"SDPAConv"``)
        hop (int, optional): neighbourhood reach, 1 or 2. (default: ``2``)
        skip_aggregation (str, optional): ``"sum"``, ``"cat"`` or ``"max"``. (default: ``"sum"``)
        single_conv (bool, optional): one ``hop``-hop convolution instead. (default: ``False``)

    Shapes:
        - **input:** :math:`(B, N, C_{in})` and the graph of that resolution, ``patch_ids``
          :math:`(B)` *(optional)*, ``stride`` (bool, default ``False``)
        - **output:** :math:`(B, N, C_{out})`, or :math:`(B, N / 4, C_{out})` in coarse NESTED
          order with ``stride``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv: str = "SDPAConv",
        hop: int = 2,
        skip_aggregation: str = "sum",
        single_conv: bool = False,
    ) -> None:
        super().__init__()
        if skip_aggregation not in SKIP_AGGREGATIONS:
            raise ValueError(
                f"unknown skip aggregation '{skip_aggregation}' (choose from {SKIP_AGGREGATIONS})"
            )
        self.skip_aggregation = skip_aggregation
        if single_conv or hop == 1:
            self.convs = nn.ModuleList([sphere_conv(conv, in_channels, out_channels, hop)])
        else:
            self.convs = nn.ModuleList(
                sphere_conv(conv, in_channels if j == 0 else out_channels, out_channels, 1)
                for j in range(hop)
            )
        many = len(self.convs) > 1
        self.project = (
            nn.Linear(len(self.convs) * out_channels, out_channels)
            if many and skip_aggregation == "cat"
            else None
        )

    def forward(
        self,
        x: Tensor,
        graph: nn.Module,
        patch_ids: Tensor | None = None,
        stride: bool = False,
    ) -> Tensor:
        *hidden, last = self.convs
        outputs = []
        for conv in hidden:
            x = conv(x, graph, patch_ids)
            outputs.append(child_zero(x) if stride else x)
        outputs.append(last(x, graph, patch_ids, stride=stride))
        if len(outputs) == 1:
            return outputs[0]
        if self.skip_aggregation == "sum":
            return functools.reduce(torch.add, outputs)
        if self.skip_aggregation == "max":
            return functools.reduce(torch.maximum, outputs)
        return pixel_linear(self.project, torch.cat(outputs, dim=1 if is_faces(x) else -1))


class SphereResidualBlock(nn.Module):
    """Residual block ``x + conv(LeakyReLU(conv(x)))`` with 1-hop convolutions (``-nl RB``).

    Shapes: :math:`(B, N, C) \\to (B, N, C)`.
    """

    def __init__(self, channels: int, conv: str = "SDPAConv") -> None:
        super().__init__()
        self.conv1 = sphere_conv(conv, channels, channels, 1)
        self.conv2 = sphere_conv(conv, channels, channels, 1)
        self.activation = nn.LeakyReLU()

    def forward(self, x: Tensor, graph: nn.Module, patch_ids: Tensor | None = None) -> Tensor:
        out = self.activation(self.conv1(x, graph, patch_ids))
        return x + self.conv2(out, graph, patch_ids)


class SphereNonlinearity(nn.Module):
    """The non-linearity of a codec stage: GDN (or inverse GDN), or 3 residual blocks (``RB``).

    Shapes: :math:`(B, N, C) \\to (B, N, C)`.
    """

    def __init__(
        self, channels: int, kind: str = "GDN", inverse: bool = False, conv: str = "SDPAConv"
    ) -> None:
        super().__init__()
        if kind not in NONLINEARITIES:
            raise ValueError(f"unknown non-linearity '{kind}' (choose from {NONLINEARITIES})")
        self.kind = kind
        if kind == "GDN":
            self.gdn = SphereGDN(channels, inverse=inverse)
        else:
            self.blocks = nn.ModuleList(SphereResidualBlock(channels, conv) for _ in range(3))

    def forward(self, x: Tensor, graph: nn.Module, patch_ids: Tensor | None = None) -> Tensor:
        if self.kind == "GDN":
            return self.gdn(x)
        for block in self.blocks:
            x = block(x, graph, patch_ids)
        return x


class SphereAttention(nn.Module):
    """Simplified attention module of Cheng et al. (CVPR 2020) on the sphere (``-at``).

    ``x + a(x) * sigmoid(b(x))`` where ``a`` is 3 residual units and ``b`` is 3 residual
    units followed by a per-pixel linear map (CompressAI's ``AttentionBlock`` with
    OSLO convolutions in place of the 3x3 ones).

    Shapes: :math:`(B, N, C) \\to (B, N, C)`.
    """

    def __init__(self, channels: int, conv: str = "SDPAConv") -> None:
        super().__init__()
        self.trunk = nn.ModuleList(_BottleneckUnit(channels, conv) for _ in range(3))
        self.mask = nn.ModuleList(_BottleneckUnit(channels, conv) for _ in range(3))
        self.mask_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor, graph: nn.Module, patch_ids: Tensor | None = None) -> Tensor:
        a, b = x, x
        for unit in self.trunk:
            a = unit(a, graph, patch_ids)
        for unit in self.mask:
            b = unit(b, graph, patch_ids)
        return x + a * torch.sigmoid(pixel_linear(self.mask_out, b))


class _BottleneckUnit(nn.Module):
    """``x + lin(relu(conv(relu(lin(x)))))`` at half the channels (CompressAI's residual unit)."""

    def __init__(self, channels: int, conv: str) -> None:
        super().__init__()
        half = max(1, channels // 2)
        self.reduce = nn.Linear(channels, half)
        self.conv = sphere_conv(conv, half, half, 1)
        self.expand = nn.Linear(half, channels)

    def forward(self, x: Tensor, graph: nn.Module, patch_ids: Tensor | None = None) -> Tensor:
        out = torch.relu(pixel_linear(self.reduce, x))
        out = torch.relu(self.conv(out, graph, patch_ids))
        return torch.relu(x + pixel_linear(self.expand, out))


class SphereDown(nn.Module):
    """Encoder stage: convolution block, non-linearity, pooling by the 4 NESTED children.

    ``activation`` is ``"GDN"``, ``"RB"``, ``"relu"`` or ``None``. With ``stride`` pooling and
    a pointwise non-linearity (GDN, ReLU, none), the block computes only the pixels that the
    pooling keeps (``SphereConvBlock(..., stride=True)``: its last convolution is a stride-2
    one) and the non-linearity runs on them, the same result as convolving, activating and
    pooling, for less work. With ``RB`` (residual blocks, which convolve) the non-linearity
    runs at the fine resolution, so the block runs in full, then the pooling keeps child 0.

    Shapes: :math:`(B, N, C_{in}) \\to (B, N/4, C_{out})`; ``forward(x, graph, patch_ids)``
    with the graph of the input resolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        activation: str | None,
        pool: str = "stride",
        conv: str = "SDPAConv",
        hop: int = 2,
        skip_aggregation: str = "sum",
        single_conv: bool = False,
    ) -> None:
        super().__init__()
        self.block = SphereConvBlock(
            in_channels, out_channels, conv, hop, skip_aggregation, single_conv
        )
        self.pool = SpherePool(pool)
        self.activation = _activation(activation, out_channels, inverse=False, conv=conv)
        self.strided = pool == "stride" and activation != "RB"

    def forward(self, x: Tensor, graph: nn.Module, patch_ids: Tensor | None = None) -> Tensor:
        if self.strided:
            x = self.block(x, graph, patch_ids, stride=True)
            return _apply(self.activation, x, None, patch_ids)
        x = self.block(x, graph, patch_ids)
        return self.pool(_apply(self.activation, x, graph, patch_ids))


class SphereUp(nn.Module):
    """Decoder stage: up-sampling by the 4 NESTED children, then the non-linearity.

    * ``pixel_shuffle`` (default): convolution block to ``4 C_out`` channels at the coarse
      resolution, then pixel shuffle (``PixelShuffle(2)`` in a face);
    * ``nearest``: copy each pixel to its children, then the convolution block at the fine
      resolution;
    * ``SDPAConvTransposed``: one learned transposed OSLO convolution (1 hop).

    Shapes: :math:`(B, N, C_{in}) \\to (B, 4N, C_{out})`; ``forward(x, coarse_graph,
    fine_graph, patch_ids)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        activation: str | None,
        unpool: str = "pixel_shuffle",
        conv: str = "SDPAConv",
        hop: int = 2,
        skip_aggregation: str = "sum",
        single_conv: bool = False,
    ) -> None:
        super().__init__()
        if unpool not in UNPOOL_TYPES:
            raise ValueError(f"unknown up-sampling '{unpool}' (choose from {UNPOOL_TYPES})")
        if unpool == "SDPAConvTransposed" and conv != "SDPAConv":
            raise ValueError("SDPAConvTransposed up-sampling needs SDPAConv convolutions")
        self.unpool = unpool
        if unpool == "SDPAConvTransposed":
            self.transposed = SDPAConvTransposed(in_channels, out_channels, num_hops=1)
        else:
            width = 4 * out_channels if unpool == "pixel_shuffle" else out_channels
            self.block = SphereConvBlock(
                in_channels, width, conv, hop, skip_aggregation, single_conv
            )
            self.shuffle = SphereUnpool(unpool)
        self.activation = _activation(activation, out_channels, inverse=True, conv=conv)

    def forward(
        self,
        x: Tensor,
        coarse_graph: nn.Module,
        fine_graph: nn.Module,
        patch_ids: Tensor | None = None,
    ) -> Tensor:
        if self.unpool == "SDPAConvTransposed":
            x = self.transposed(x, fine_graph, patch_ids)
        elif self.unpool == "pixel_shuffle":
            x = self.shuffle(self.block(x, coarse_graph, patch_ids))
        else:
            x = self.block(self.shuffle(x), fine_graph, patch_ids)
        return _apply(self.activation, x, fine_graph, patch_ids)


@torch.no_grad()
def icnr_(model: nn.Module) -> int:
    r"""ICNR start of every pixel-shuffle up block of ``model`` (Aitken et al., `"Checkerboard
    artifact free sub-pixel convolution" <https://arxiv.org/abs/1707.02937>`_, 2017), in place;
    the number of blocks changed.

    Pixel shuffle sends channel :math:`4c + k` of the block's output to child :math:`k`
    (:class:`~spherical_models.layers.pooling.SphereUnpool`). Every output channel
    :math:`4c + k` of each convolution of the block (weight ``[1 + K, C_in, 4 C]``, bias, and the
    projection of ``cat`` aggregation) takes the values of channel :math:`4c`, so the block's
    output is the same for the four children whatever its input: at this start pixel shuffle is
    nearest up-sampling of a ``C``-channel map, and training then lets the children differ.

    Raises:
        ValueError: a pixel-shuffle block with convolutions other than SDPA ones.
    """
    changed = 0
    for module in model.modules():
        if not isinstance(module, SphereUp) or module.unpool != "pixel_shuffle":
            continue
        for conv in module.block.convs:
            if not isinstance(conv, SDPAConv):
                raise ValueError(f"ICNR needs SDPA convolutions, not {type(conv).__name__}")
            _tie_children(conv.weight, -1)
            if conv.bias is not None:
                _tie_children(conv.bias, 0)
        if module.block.project is not None:
            _tie_children(module.block.project.weight, 0)
            _tie_children(module.block.project.bias, 0)
        changed += 1
    return changed


def _tie_children(tensor: Tensor, dim: int) -> None:
    """Along ``dim`` (channels ``4c + k``), copy the slices ``4c`` onto ``4c + 1 .. 4c + 3``."""
    moved = tensor.movedim(dim, -1)
    groups = moved.reshape(*moved.shape[:-1], -1, 4)
    tied = groups[..., :1].expand_as(groups).reshape(moved.shape).clone()
    tensor.copy_(tied.movedim(-1, dim))


def _activation(kind: str | None, channels: int, inverse: bool, conv: str) -> nn.Module | None:
    if kind is None:
        return None
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU()
    return SphereNonlinearity(channels, kind, inverse=inverse, conv=conv)


def _apply(
    module: nn.Module | None, x: Tensor, graph: nn.Module | None, patch_ids: Tensor | None
) -> Tensor:
    if module is None:
        return x
    if isinstance(module, SphereNonlinearity):
        return module(x, graph, patch_ids)
    return module(x)
