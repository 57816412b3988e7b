r"""Spherical versions of the codecs of Ballé et al. and Minnen et al. (CompressAI's
``compressai/models/google.py``), with OSLO (or DeepSphere) layers on HEALPix maps.

Sphere tensors are ``[B, N, C]`` in NESTED order; each stage changes the resolution by one
(4x fewer or more pixels). For an input at level 0, ``y`` is at level 4 and ``z`` at level 6.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from spherical_models.entropy.streams import LatentCoder, bottleneck_parameters
from spherical_models.layers.blocks import SphereAttention, SphereConvBlock
from spherical_models.layers.face_layout import from_faces, supports_faces, to_faces
from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed
from spherical_models.models.base import (
    Y_LEVEL,
    Z_LEVEL,
    LayerOptions,
    SphereCompressionModel,
    from_entropy_layout,
    to_entropy_layout,
)
from spherical_models.models.context import decoding_groups, masked_rows


def code_bottleneck(
    coder: LatentCoder, name: str, bottleneck: EntropyBottleneck, values: Tensor | None,
    shape,
) -> Tensor:
    """Code a latent of ``shape`` ``[B, C, n, 1]`` with an ``EntropyBottleneck`` (channel ``c``
    with table ``c``, around its median, as ``EntropyBottleneck.compress`` does) and return
    its quantised values."""
    indexes, medians = bottleneck_parameters(bottleneck, shape)
    return coder.code(name, bottleneck, values, indexes, medians)


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

    @property
    def last_level(self) -> int:
        """The level of the output."""
        return self.first_level + self.step * len(self.stages)

    def runs_on_faces(self, geometry) -> bool:
        """Whether :meth:`forward` runs in the face layout on ``geometry``: OSLO convolutions,
        none forced onto the gather path, and a face path at every level it visits."""
        if any(isinstance(m, SDPAConv | SDPAConvTransposed) and m.path == "gather"
               for m in self.modules()):
            return False
        levels = range(self.first_level, self.last_level + self.step, self.step)
        return all(supports_faces(geometry[level]) for level in levels)

    def forward(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> Tensor:
        """``x`` NESTED ``[B, N, C_in]`` -> NESTED ``[B, N', C_out]``.

        Where :meth:`runs_on_faces`, ``x`` is laid out as faces once
        (:func:`~spherical_models.layers.face_layout.to_faces`), every stage runs on images
        (``Conv2d``, pooling, pixel shuffle, GDN) and the output goes back to NESTED order
        once; otherwise every stage runs on NESTED tensors. Both give the same function.
        """
        if not self.runs_on_faces(geometry):
            return self.run_stages(x, geometry, patch_ids)
        faces = to_faces(x, geometry[self.first_level])
        out = self.run_stages(faces, geometry, patch_ids)
        return from_faces(out, geometry[self.last_level])

    def run_stages(self, x: Tensor, geometry, patch_ids: Tensor | None = None) -> Tensor:
        """The stages (and attention) on ``x`` in either layout."""
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

    def latent_forward(
        self, y: Tensor, geometry, patch_ids: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        y_hat, y_likelihoods = self.entropy_bottleneck(to_entropy_layout(y))
        return from_entropy_layout(y_hat), {"y": y_likelihoods}

    def code_latents(
        self, coder: LatentCoder, x: Tensor | None, geometry, patch_ids: Tensor | None = None,
        batch_size: int | None = None, y: Tensor | None = None,
    ) -> Tensor:
        shape = (batch_size, self.M, geometry[Y_LEVEL].num_pixels, 1)
        y = self.analysed(coder, x, geometry, patch_ids, y)
        if y is not None:
            y = to_entropy_layout(y)
            shape = y.shape
        return from_entropy_layout(code_bottleneck(coder, "y", self.entropy_bottleneck, y, shape))


class HyperLatent:
    """The hyper-latent ``z`` of the hyperprior models (a mixin of modules that define
    ``h_a``, ``h_s``, ``entropy_bottleneck`` and ``N``): ``z = h_a(hyper_input(y))``, coded
    with the entropy bottleneck, and ``h_s(z_hat)``."""

    def hyper_analysis(self, y: Tensor, geometry, patch_ids: Tensor | None) -> Tensor:
        return self.h_a["down"](self.h_a["conv"](y, geometry, patch_ids), geometry, patch_ids)

    def hyper_synthesis(self, z_hat: Tensor, geometry, patch_ids: Tensor | None) -> Tensor:
        return self.h_s["conv"](self.h_s["up"](z_hat, geometry, patch_ids), geometry, patch_ids)

    def hyper_input(self, y: Tensor) -> Tensor:
        """What ``h_a`` analyses: ``|y|``."""
        return torch.abs(y)

    def code_hyper_latent(
        self, coder: LatentCoder, y: Tensor | None, geometry, patch_ids: Tensor | None,
        batch_size: int | None,
    ) -> Tensor:
        """Code ``z = h_a(hyper_input(y))`` and return ``z_hat`` in the entropy layout
        ``[B, N, n_z, 1]`` (``y`` is :obj:`None` when decoding)."""
        shape = (batch_size, self.N, geometry[Z_LEVEL].num_pixels, 1)
        z = None
        if coder.encoding:
            z = to_entropy_layout(self.hyper_analysis(self.hyper_input(y), geometry, patch_ids))
            shape = z.shape
        return code_bottleneck(coder, "z", self.entropy_bottleneck, z, shape)


class SphereScaleHyperprior(HyperLatent, SphereCompressionModel):
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
    latent_names = ("y", "z")

    def __init__(self, N: int, M: int, options: LayerOptions | None = None) -> None:
        super().__init__(N, M, options)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.g_a = analysis(N, M, self.options)
        self.g_s = synthesis(N, M, self.options)
        self.h_a = nn.ModuleDict({
            "conv": SphereLevelConv(M, N, 4, self.options, nn.ReLU()),
            "down": SphereTransform([N, N, N], ["relu", None], self.options, 4, "down"),
        })
        self.h_s = nn.ModuleDict({
            "up": SphereTransform([N, N, N], ["relu", "relu"], self.options, 6, "up"),
            "conv": SphereLevelConv(N, M, 4, self.options, nn.ReLU()),
        })

    def latent_forward(
        self, y: Tensor, geometry, patch_ids: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.hyper_analysis(torch.abs(y), geometry, patch_ids)
        z_hat, z_likelihoods = self.entropy_bottleneck(to_entropy_layout(z))
        scales_hat = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        y_hat, y_likelihoods = self.gaussian_conditional(
            to_entropy_layout(y), to_entropy_layout(scales_hat)
        )
        return from_entropy_layout(y_hat), {"y": y_likelihoods, "z": z_likelihoods}

    def code_latents(
        self, coder: LatentCoder, x: Tensor | None, geometry, patch_ids: Tensor | None = None,
        batch_size: int | None = None, y: Tensor | None = None,
    ) -> Tensor:
        y = self.analysed(coder, x, geometry, patch_ids, y)
        z_hat = self.code_hyper_latent(coder, y, geometry, patch_ids, batch_size)
        indexes, means = self.coding_parameters(z_hat, geometry, patch_ids)
        y_hat = coder.code("y", self.gaussian_conditional,
                           None if y is None else to_entropy_layout(y), indexes, means)
        return from_entropy_layout(y_hat)

    def coding_parameters(
        self, z_hat: Tensor, geometry, patch_ids: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """The scale indexes of ``y`` and its means (:obj:`None` without means), both in
        CompressAI's layout ``[B, M, n, 1]``, from ``z_hat`` (that layout too), as
        ``compress`` and ``decompress`` use them.

        In deterministic mode (:meth:`set_deterministic`) ``h_s`` runs on the CPU in float64
        on one thread, the indexes come from those float64 scales and the means are rounded
        to float32 (then moved to ``z_hat``'s device); otherwise ``h_s`` runs where the model
        is, in float32, as in CompressAI.
        """
        gc = self.gaussian_conditional
        if not self.deterministic:
            hyper = to_entropy_layout(
                self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
            )
            scales, means = self._split_hyper(hyper)
            return gc.build_indexes(scales), means
        hyper = from_entropy_layout(z_hat)
        hyper = self.run_float64(self.h_s["up"], hyper, geometry, patch_ids)
        hyper = self.run_float64(self.h_s["conv"], hyper, geometry, patch_ids)
        scales, means = self._split_hyper(to_entropy_layout(hyper))
        # CompressAI's build_indexes (lower bound, then the number of table entries below),
        # in float64: index = #{t in table[:-1] : t < scale}
        table = gc.scale_table.to(torch.float64)[:-1].cpu()
        scales = scales.clamp_min(float(gc.scale_bound))
        indexes = torch.searchsorted(table, scales.contiguous()).to(torch.int32)
        if means is not None:
            means = means.float().to(z_hat.device)
        return indexes.to(z_hat.device), means

    def _split_hyper(self, hyper: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(scales, means)`` of ``h_s``'s output in the entropy layout (no means here)."""
        return hyper, None


class SphereMeanScaleHyperprior(SphereScaleHyperprior):
    r"""Mean and scale hyperprior of Minnen et al., `"Joint Autoregressive and Hierarchical
    Priors for Learned Image Compression" <https://arxiv.org/abs/1809.02736>`_ (NeurIPS 2018),
    on the sphere: each element of ``y`` is coded with a Gaussian
    :math:`\mathcal{N}(\mu_i, \sigma_i^2)`, :math:`(\sigma, \mu) = h_s(\hat z)`.

    ``h_a`` (on ``y`` itself) uses LeakyReLU; ``h_s`` = 2 up stages N -> M -> 3M/2 with
    LeakyReLU, then a 1-hop conv 3M/2 -> 2M, whose output is ``[scales, means]``.

    Args:
        N (int): channels of the hidden stages and of ``z``.
        M (int): channels of the latent ``y``.
        options (LayerOptions, optional): layer choices.
    """

    def __init__(self, N: int, M: int, options: LayerOptions | None = None) -> None:
        super().__init__(N, M, options)
        self.h_a = mean_scale_hyper_analysis(N, M, self.options)
        self.h_s = mean_scale_hyper_synthesis(N, M, self.options)

    @property
    def config(self) -> dict:
        # the keys of the former single class: checkpoints and their hashes stay the same
        return {**super().config, "context_model": None, "ar_hops": 1}

    def hyper_input(self, y: Tensor) -> Tensor:
        """What ``h_a`` analyses: ``y`` itself (its sign matters for the means)."""
        return y

    def latent_forward(
        self, y: Tensor, geometry, patch_ids: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.hyper_analysis(y, geometry, patch_ids)
        z_hat, z_likelihoods = self.entropy_bottleneck(to_entropy_layout(z))
        hyper = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        scales_hat, means_hat = to_entropy_layout(hyper).chunk(2, 1)
        y_hat, y_likelihoods = self.gaussian_conditional(
            to_entropy_layout(y), scales_hat, means=means_hat
        )
        return from_entropy_layout(y_hat), {"y": y_likelihoods, "z": z_likelihoods}

    def _split_hyper(self, hyper: Tensor) -> tuple[Tensor, Tensor | None]:
        """``h_s``'s output ``[B, 2M, n, 1]`` is ``[scales, means]``."""
        scales, means = hyper.chunk(2, 1)
        return scales, means


def mean_scale_hyper_analysis(N: int, M: int, options: LayerOptions) -> nn.ModuleDict:
    """``h_a`` of the mean-scale models: 1-hop conv M -> N + LeakyReLU, 2 down stages."""
    return nn.ModuleDict({
        "conv": SphereLevelConv(M, N, 4, options, nn.LeakyReLU()),
        "down": SphereTransform([N, N, N], ["leaky_relu", None], options, 4, "down"),
    })


def mean_scale_hyper_synthesis(N: int, M: int, options: LayerOptions) -> nn.ModuleDict:
    """``h_s`` of the mean-scale models: 2 up stages N -> M -> 3M/2 (LeakyReLU), 1-hop conv
    3M/2 -> 2M."""
    return nn.ModuleDict({
        "up": SphereTransform([N, M, M * 3 // 2], ["leaky_relu", "leaky_relu"], options, 6, "up"),
        "conv": SphereLevelConv(M * 3 // 2, M * 2, 4, options, None),
    })


CONTEXT_MODELS = ("autoregressive", "full")
"""Variants of :class:`SphereJointAutoregressiveHierarchicalPriors` (``-cm``)."""


class SphereJointAutoregressiveHierarchicalPriors(HyperLatent, SphereCompressionModel):
    r"""Joint autoregressive and hierarchical priors of Minnen et al., `"Joint Autoregressive
    and Hierarchical Priors for Learned Image Compression"
    <https://arxiv.org/abs/1809.02736>`_ (NeurIPS 2018), on the sphere, and its context-only
    variant.

    Each element of ``y`` (level 4 of the geometry) is coded with a Gaussian
    :math:`\mathcal{N}(\mu_i, \sigma_i^2)` whose parameters come, according to
    ``context_model`` (the paper's terms), from

    * ``"full"``, the *joint autoregressive and hierarchical prior*:
      :math:`(\sigma_i, \mu_i) = e([h_s(\hat z)_i, c(\hat y)_i])`, with the hyperprior of
      :class:`SphereMeanScaleHyperprior`;
    * ``"autoregressive"``, the *context-only* model: :math:`(\sigma_i, \mu_i) =
      e(c(\hat y)_i)`. There is no hyper-latent: no ``h_a``, ``h_s``, entropy bottleneck nor
      ``z`` string, and only the levels 0 to 4 of the geometry are used.

    The context :math:`c` is ``SDPAConv(M, 2M, num_hops=ar_hops, mask="A")`` on the level-4
    graph: pixel :math:`i` reads the quantised neighbours of smaller NESTED index (the sphere's
    counterpart of CompressAI's 5x5 ``MaskedConv2d`` for ``ar_hops=2``). The entropy
    parameters :math:`e` are a per-pixel MLP (CompressAI's 1x1 convolutions, here
    ``nn.Linear`` on ``[B, n, C]``): ``4M -> 10M/3 -> 8M/3 -> 2M`` with LeakyReLU, or
    ``2M -> 10M/3 -> 8M/3 -> 2M`` without hyperprior; its output is ``[scales, means]``.

    Quantisation:

    * training: :math:`\tilde y = y + u`, :math:`u \sim \mathcal{U}(-\frac12, \frac12)`, all
      pixels at once; the context reads :math:`\tilde y`, and the likelihood is that of the
      same sample that ``g_s`` decodes;
    * evaluation, ``compress`` and ``decompress``: :math:`\hat y_i = \mathrm{round}(y_i -
      \mu_i) + \mu_i` (``GaussianConditional``'s quantisation around the means: its rANS
      tables are centred on zero and code :math:`\hat y_i - \mu_i`). As :math:`\mu_i` depends
      on :math:`\hat y` at earlier pixels, the three run the same computation: the groups of
      :func:`~spherical_models.models.context.decoding_groups` in turn, the context evaluated at the
      rows of the group only (:func:`~spherical_models.models.context.masked_rows`). So
      ``decompress(compress(x))`` gives exactly the :math:`\hat y` of the evaluation forward
      pass, whose likelihoods are those of the coded symbols. (CompressAI's
      ``JointAutoregressiveHierarchicalPriors`` evaluates :math:`\mathrm{round}(y)` instead,
      which its bitstream does not decode to.) The evaluation forward pass does not propagate
      gradients through the context model.

    The ``y`` stream holds, group after group, the symbols of the group's pixels for every
    batch element, in increasing NESTED order, channels innermost (:meth:`code_latents`; with
    ``per_element`` coders, each element's string holds its own rows in that order). Decoding
    needs the entropy parameters bitwise equal to the encoder's (no deterministic mode here):
    decode on the same kind of device, with the same batches of patches.

    Args:
        N (int): channels of the hidden stages and of ``z``.
        M (int): channels of the latent ``y``.
        options (LayerOptions, optional): layer choices; the context needs ``SDPAConv``.
        context_model (str, optional): ``"full"`` or ``"autoregressive"``.
            (default: ``"full"``)
        ar_hops (int, optional): reach of the context convolution, 1 or 2 hops; 2 needs a
            geometry built with ``num_hops=2`` (see :attr:`graph_hops`). (default: :obj:`1`)
    """

    def __init__(
        self,
        N: int,
        M: int,
        options: LayerOptions | None = None,
        context_model: str = "full",
        ar_hops: int = 1,
    ) -> None:
        super().__init__(N, M, options)
        if context_model not in CONTEXT_MODELS:
            raise ValueError(
                f"context_model must be one of {CONTEXT_MODELS}, got {context_model!r}"
            )
        if ar_hops not in (1, 2):
            raise ValueError(f"ar_hops must be 1 or 2, got {ar_hops!r}")
        if self.options.conv != "SDPAConv":
            raise ValueError("a context model is a masked SDPAConv: it needs conv='SDPAConv'")
        self.context_model = context_model
        self.ar_hops = ar_hops
        self.hyperprior = context_model == "full"
        self.num_levels = 7 if self.hyperprior else 5
        self.latent_names = ("y", "z") if self.hyperprior else ("y",)
        self.gaussian_conditional = GaussianConditional(None)
        self.g_a = analysis(N, M, self.options)
        self.g_s = synthesis(N, M, self.options)
        if self.hyperprior:
            self.entropy_bottleneck = EntropyBottleneck(N)
            self.h_a = mean_scale_hyper_analysis(N, M, self.options)
            self.h_s = mean_scale_hyper_synthesis(N, M, self.options)
        self.context_prediction = SDPAConv(M, 2 * M, num_hops=ar_hops, mask="A")
        hyper_channels = 2 * M if self.hyperprior else 0
        self.entropy_parameters = nn.Sequential(
            nn.Linear(hyper_channels + 2 * M, M * 10 // 3),
            nn.LeakyReLU(),
            nn.Linear(M * 10 // 3, M * 8 // 3),
            nn.LeakyReLU(),
            nn.Linear(M * 8 // 3, 2 * M),
        )

    @property
    def config(self) -> dict:
        return {**super().config, "context_model": self.context_model, "ar_hops": self.ar_hops}

    @property
    def graph_hops(self) -> int:
        """Hops the geometry's graphs need: also 2 for a 2-hop context model."""
        return max(super().graph_hops, self.ar_hops)

    @property
    def supports_deterministic(self) -> bool:
        """No: the parameters of each group depend on the decoded ``y`` through the context
        convolution and the entropy-parameter MLP, which the deterministic mode does not
        cover."""
        return False

    def hyper_input(self, y: Tensor) -> Tensor:
        """What ``h_a`` analyses: ``y`` itself."""
        return y

    def latent_forward(
        self, y: Tensor, geometry, patch_ids: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        hyper, likelihoods = None, {}
        if self.hyperprior:
            z = self.hyper_analysis(y, geometry, patch_ids)
            z_hat, likelihoods["z"] = self.entropy_bottleneck(to_entropy_layout(z))
            hyper = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        graph = geometry[Y_LEVEL]
        if self.training:
            y_hat = self.gaussian_conditional.quantize(y, "noise")
            context = self.context_prediction(y_hat, graph, patch_ids)
            scales_hat, means_hat = self._entropy_parameters(hyper, context)
        else:
            groups = decoding_groups(self.context_prediction, graph)
            y_hat, scales_hat, means_hat = self._quantize_in_order(
                y, hyper, graph, patch_ids, groups
            )
        y_likelihoods = to_entropy_layout(self._likelihood(y_hat, scales_hat, means_hat))
        return y_hat, {"y": y_likelihoods, **likelihoods}

    def code_latents(
        self, coder: LatentCoder, x: Tensor | None, geometry, patch_ids: Tensor | None = None,
        batch_size: int | None = None, y: Tensor | None = None,
    ) -> Tensor:
        y = self.analysed(coder, x, geometry, patch_ids, y)
        hyper = None
        if self.hyperprior:
            z_hat = self.code_hyper_latent(coder, y, geometry, patch_ids, batch_size)
            hyper = self.hyper_synthesis(from_entropy_layout(z_hat), geometry, patch_ids)
        graph = geometry[Y_LEVEL]
        gc = self.gaussian_conditional

        def code_rows(rows: Tensor, scales: Tensor, means: Tensor) -> Tensor:
            values = None if y is None else y[:, rows]
            return coder.code("y", gc, values, gc.build_indexes(scales), means)

        batch = len(y) if y is not None else batch_size
        y_hat = self.context_prediction.weight.new_zeros(batch, graph.num_pixels, self.M)
        groups = decoding_groups(self.context_prediction, graph)
        self._autoregress(y_hat, hyper, graph, patch_ids, groups, code_rows)
        return y_hat

    def _entropy_parameters(self, hyper: Tensor | None, context: Tensor) -> tuple[Tensor, Tensor]:
        """``(scales, means)``, each ``[B, R, M]``, from the context ``[B, R, 2M]`` and the
        hyperprior's output ``[B, R, 2M]`` (:obj:`None` for the context-only model)."""
        features = context if hyper is None else torch.cat([hyper, context], dim=-1)
        return self.entropy_parameters(features).chunk(2, dim=-1)

    def _likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        """Likelihoods of ``y_hat`` (the very sample ``g_s`` decodes), lower-bounded."""
        gc = self.gaussian_conditional
        likelihood = gc._likelihood(y_hat, scales, means)
        return gc.likelihood_lower_bound(likelihood) if gc.use_likelihood_bound else likelihood

    @torch.no_grad()
    def _autoregress(
        self,
        y_hat: Tensor,
        hyper: Tensor | None,
        graph,
        patch_ids: Tensor | None,
        groups: list[Tensor],
        quantize,
    ) -> tuple[Tensor, Tensor]:
        """Fill ``y_hat`` ``[B, n, M]`` (zeros on entry) group after group.

        For each group of rows: the entropy parameters from the context of the rows decoded so
        far, then ``y_hat[:, rows] = quantize(rows, scales, means)``. Returns the scales and
        the means ``[B, n, M]``.
        """
        scales = torch.empty_like(y_hat)
        means = torch.empty_like(y_hat)
        for rows in groups:
            context = masked_rows(self.context_prediction, y_hat, graph, rows, patch_ids)
            rows_hyper = None if hyper is None else hyper[:, rows]
            rows_scales, rows_means = self._entropy_parameters(rows_hyper, context)
            scales[:, rows] = rows_scales
            means[:, rows] = rows_means
            y_hat[:, rows] = quantize(rows, rows_scales, rows_means)
        return scales, means

    def _quantize_in_order(
        self, y: Tensor, hyper: Tensor | None, graph, patch_ids: Tensor | None,
        groups: list[Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The encoder's ``(y_hat, scales, means)``, each ``[B, n, M]``."""
        gc = self.gaussian_conditional
        y_hat = torch.zeros_like(y)
        scales, means = self._autoregress(
            y_hat, hyper, graph, patch_ids, groups,
            lambda rows, _, rows_means: gc.quantize(y[:, rows], "dequantize", rows_means),
        )
        return y_hat, scales, means
