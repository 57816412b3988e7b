r"""Spherical versions of the codecs of Ballé et al. and Minnen et al. (CompressAI's
``compressai/models/google.py``), with OSLO (or DeepSphere) layers on HEALPix maps.

Sphere tensors are ``[B, N, C]`` in NESTED order; each stage changes the resolution by one
(4x fewer or more pixels). For an input at level 0, ``y`` is at level 4 and ``z`` at level 6.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from spherical_models.layers.blocks import SphereAttention, SphereConvBlock
from spherical_models.models.base import (
    LayerOptions,
    SphereCompressionModel,
    from_entropy_layout,
    to_entropy_layout,
)


class SphereTransform(nn.Module):
    """A chain of down (``direction="down"``) or up stages starting at ``first_level``, with
    optional attention modules after the stages listed in ``attention_after`` (-1: before the
    first stage).

    Shapes: :math:`(B, N, C_{in}) \\to (B, N / 4^s, C_{out})` (down) or
    :math:`(B, N 4^s, C_{out})` (up) for ``s`` stages.
    """

    def __init__(
        self,
        channels: list[int],
        activations: list[str | None],
        options: LayerOptions,
        first_level: int,
        direction: str,
        attention_after: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        make = options.down if direction == "down" else options.up
        self.step = 1 if direction == "down" else -1
        self.first_level = first_level
        self.stages = nn.ModuleList(
            make(c_in, c_out, act)
            for c_in, c_out, act in zip(channels[:-1], channels[1:], activations, strict=True)
        )
        attention_channels = {-1: channels[0]}
        attention_channels.update({j: channels[j + 1] for j in range(len(self.stages))})
        self.attention = nn.ModuleDict(
            {str(j): SphereAttention(attention_channels[j], options.conv) for j in attention_after}
        )

    def forward(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> Tensor:
        level = self.first_level
        if "-1" in self.attention:
            x = self.attention["-1"](x, geometry[level], patch_ids)
        for j, stage in enumerate(self.stages):
            if self.step == 1:
                x = stage(x, geometry[level], patch_ids)
            else:
                x = stage(x, geometry[level], geometry[level - 1], patch_ids)
            level += self.step
            if str(j) in self.attention:
                x = self.attention[str(j)](x, geometry[level], patch_ids)
        return x


class SphereLevelConv(nn.Module):
    """A 1-hop convolution at one level followed by an optional activation (the ends of the
    hyper-transforms)."""

    def __init__(
        self, in_channels: int, out_channels: int, level: int, options: LayerOptions,
        activation: nn.Module | None,
    ) -> None:
        super().__init__()
        self.level = level
        self.conv = SphereConvBlock(in_channels, out_channels, options.conv, hop=1)
        self.activation = activation

    def forward(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> Tensor:
        x = self.conv(x, geometry[self.level], patch_ids)
        return x if self.activation is None else self.activation(x)


def analysis(N: int, M: int, options: LayerOptions) -> SphereTransform:
    """``g_a``: 4 down stages 3 -> N -> N -> N -> M, GDN after the first three."""
    nl = options.nonlinearity
    return SphereTransform(
        [3, N, N, N, M], [nl, nl, nl, None], options, 0, "down",
        (1, 3) if options.attention else (),
    )


def synthesis(N: int, M: int, options: LayerOptions) -> SphereTransform:
    """``g_s``: 4 up stages M -> N -> N -> N -> 3, inverse GDN after the first three."""
    nl = options.nonlinearity
    return SphereTransform(
        [M, N, N, N, 3], [nl, nl, nl, None], options, 4, "up",
        (-1, 1) if options.attention else (),
    )


class SphereFactorizedPrior(SphereCompressionModel):
    r"""Factorized prior model of Ballé et al., `"End-to-end Optimized Image Compression"
    <https://arxiv.org/abs/1611.01704>`_ (ICLR 2017), on the sphere.

    Args:
        N (int): channels of the hidden stages.
        M (int): channels of the latent ``y``.
        options (LayerOptions, optional): layer choices (default: OSLO convolutions, 2 hops,
            stride pooling, pixel-shuffle up-sampling, GDN).
    """

    num_levels = 5

    def __init__(self, N: int, M: int, options: LayerOptions | None = None) -> None:
        super().__init__(N, M, options)
        self.entropy_bottleneck = EntropyBottleneck(M)
        self.g_a = analysis(N, M, self.options)
        self.g_s = synthesis(N, M, self.options)

    def forward(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        y = self.g_a(x, geometry, patch_ids)
        y_hat, y_likelihoods = self.entropy_bottleneck(to_entropy_layout(y))
        x_hat = self.g_s(from_entropy_layout(y_hat), geometry, patch_ids)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods}}

    def compress(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        y = to_entropy_layout(self.g_a(x, geometry, patch_ids))
        return {"strings": [self.entropy_bottleneck.compress(y)], "shape": y.shape[-2:]}

    def decompress(
        self, strings: list, shape, geometry, patch_ids: Tensor | None = None
    ) -> dict:
        y_hat = self.entropy_bottleneck.decompress(strings[0], shape)
        x_hat = self.g_s(from_entropy_layout(y_hat), geometry, patch_ids).clamp_(0, 1)
        return {"x_hat": x_hat}


class SphereScaleHyperprior(SphereCompressionModel):
    r"""Scale hyperprior model of Ballé et al., `"Variational Image Compression with a Scale
    Hyperprior" <https://arxiv.org/abs/1802.01436>`_ (ICLR 2018), on the sphere.

    ``h_a``: 1-hop conv M -> N + ReLU, then 2 down stages (ReLU, then none); ``h_s``: 2 up
    stages with ReLU, then a 1-hop conv N -> M + ReLU giving the scales of ``y``.

    Args:
        N (int): channels of the hidden stages and of ``z``.
        M (int): channels of the latent ``y``.
        options (LayerOptions, optional): layer choices.
    """

    num_levels = 7

    def __init__(self, N: int, M: int, options: LayerOptions | None = None) -> None:
        super().__init__(N, M, options)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.g_a = analysis(N, M, self.options)
        self.g_s = synthesis(N, M, self.options)
        self.h_a = nn.ModuleDict({
            "conv": SphereLevelConv(M, N, 4, self.options, nn.ReLU(inplace=True)),
            "down": SphereTransform([N, N, N], ["relu", None], self.options, 4, "down"),
        })
        self.h_s = nn.ModuleDict({
            "up": SphereTransform([N, N, N], ["relu", "relu"], self.options, 6, "up"),
            "conv": SphereLevelConv(N, M, 4, self.options, nn.ReLU(inplace=True)),
        })

    def hyper_analysis(self, y: Tensor, geometry, patch_ids: Tensor | None) -> Tensor:
        return self.h_a["down"](self.h_a["conv"](y, geometry, patch_ids), geometry, patch_ids)

    def hyper_synthesis(self, z_hat: Tensor, geometry, patch_ids: Tensor | None) -> Tensor:
        return self.h_s["conv"](self.h_s["up"](z_hat, geometry, patch_ids), geometry, patch_ids)

    def forward(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        y = self.g_a(x, geometry, patch_ids)
        z = self.hyper_analysis(torch.abs(y), geometry, patch_ids)
        z_hat, z_likelihoods = self.entropy_bottleneck(to_entropy_layout(z))
        scales_hat = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        y_hat, y_likelihoods = self.gaussian_conditional(
            to_entropy_layout(y), to_entropy_layout(scales_hat)
        )
        x_hat = self.g_s(from_entropy_layout(y_hat), geometry, patch_ids)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        y = self.g_a(x, geometry, patch_ids)
        z = to_entropy_layout(self.hyper_analysis(torch.abs(y), geometry, patch_ids))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales_hat = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        indexes = self.gaussian_conditional.build_indexes(to_entropy_layout(scales_hat))
        y_strings = self.gaussian_conditional.compress(to_entropy_layout(y), indexes)
        return {"strings": [y_strings, z_strings], "shape": z.shape[-2:]}

    def decompress(
        self, strings: list, shape, geometry, patch_ids: Tensor | None = None
    ) -> dict:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        indexes = self.gaussian_conditional.build_indexes(to_entropy_layout(scales_hat))
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)
        x_hat = self.g_s(from_entropy_layout(y_hat), geometry, patch_ids).clamp_(0, 1)
        return {"x_hat": x_hat}


class SphereMeanScaleHyperprior(SphereScaleHyperprior):
    r"""Mean and scale hyperprior of Minnen et al., `"Joint Autoregressive and Hierarchical
    Priors for Learned Image Compression" <https://arxiv.org/abs/1809.02736>`_ (NeurIPS 2018),
    on the sphere, without context model.

    ``h_a`` uses LeakyReLU; ``h_s`` = 2 up stages N -> M -> 3M/2 with LeakyReLU, then a 1-hop
    conv 3M/2 -> 2M giving the scales and means of ``y``.
    """

    def __init__(self, N: int, M: int, options: LayerOptions | None = None) -> None:
        super().__init__(N, M, options)
        self.h_a = nn.ModuleDict({
            "conv": SphereLevelConv(M, N, 4, self.options, nn.LeakyReLU(inplace=True)),
            "down": SphereTransform([N, N, N], ["leaky_relu", None], self.options, 4, "down"),
        })
        self.h_s = nn.ModuleDict({
            "up": SphereTransform(
                [N, M, M * 3 // 2], ["leaky_relu", "leaky_relu"], self.options, 6, "up"
            ),
            "conv": SphereLevelConv(M * 3 // 2, M * 2, 4, self.options, None),
        })

    def forward(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        y = self.g_a(x, geometry, patch_ids)
        z = self.hyper_analysis(y, geometry, patch_ids)
        z_hat, z_likelihoods = self.entropy_bottleneck(to_entropy_layout(z))
        params = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        scales_hat, means_hat = to_entropy_layout(params).chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(
            to_entropy_layout(y), scales_hat, means=means_hat
        )
        x_hat = self.g_s(from_entropy_layout(y_hat), geometry, patch_ids)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> dict:
        y = self.g_a(x, geometry, patch_ids)
        z = to_entropy_layout(self.hyper_analysis(y, geometry, patch_ids))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        params = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        scales_hat, means_hat = to_entropy_layout(params).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_strings = self.gaussian_conditional.compress(
            to_entropy_layout(y), indexes, means=means_hat
        )
        return {"strings": [y_strings, z_strings], "shape": z.shape[-2:]}

    def decompress(
        self, strings: list, shape, geometry, patch_ids: Tensor | None = None
    ) -> dict:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        params = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        scales_hat, means_hat = to_entropy_layout(params).chunk(2, 1)
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_hat = self.gaussian_conditional.decompress(
            strings[0], indexes, z_hat.dtype, means=means_hat
        )
        x_hat = self.g_s(from_entropy_layout(y_hat), geometry, patch_ids).clamp_(0, 1)
        return {"x_hat": x_hat}
