r"""Initialising a spherical codec from a planar CompressAI checkpoint (``--weight-transfer``).

The planar models are CompressAI's ``FactorizedPrior``, ``ScaleHyperprior`` and
``MeanScaleHyperprior`` (``compressai.models.google``), whose transforms are 5x5 convolutions
of stride 2 (``conv``), 5x5 transposed convolutions of stride 2 (``deconv``), 3x3 convolutions
of stride 1 (ends of the hyper-transforms) and GDN. Inside a HEALPix face, a pixel's neighbour
of face-local offset ``(dx, dy)`` plays the role of the image pixel ``[y + dy, x + dx]``
(:func:`spherical_models.layers.sdpa_conv.kernel_cells`), so each planar layer maps onto an
OSLO layer:

* ``conv`` (5x5, stride 2) -> encoder stage with **one 2-hop** ``SDPAConv`` (``--single-conv``)
  followed by ``stride`` pooling (keep child 0, at face-local ``(2x, 2y)``): exactly the
  same function, the 25 taps being the 25 kernel cells. The default stage (two 1-hop
  convolutions, outputs summed) cannot hold a general 5x5 kernel: the first convolution
  takes its central 3x3 cells and the second is zeroed (an approximation, logged).
* ``deconv`` (5x5, stride 2, padding 2, output padding 1) -> decoder stage with
  ``pixel_shuffle`` up-sampling: the transposed convolution is a *sub-pixel* convolution.
  Output pixel ``(2Y + a, 2X + b)`` reads inputs ``(Y + e_y, X + e_x)`` with
  :math:`e \in \{-1, 0, 1\}` through kernel cell ``(a + 2 - 2 e_y, b + 2 - 2 e_x)`` when it
  lies in ``0..4``: a 3x3 convolution to ``4 C_out`` channels at the coarse resolution, output
  channel ``4c + 2a + b``, then ``PixelShuffle(2)`` (child ``k = dx + 2 dy`` takes channel
  ``4c + k``). This is exact both for a 2-hop single convolution (the outer ring of its 5x5
  taps is zero) and for the default two 1-hop convolutions summed (the second one is zeroed);
  with ``cat`` aggregation the projection keeps the first output, with ``max`` it is only an
  approximation (logged).
* 3x3 ``conv`` (stride 1) -> the 1-hop convolutions at the ends of ``h_a`` and ``h_s``: exact.
* GDN / inverse GDN -> :class:`~spherical_models.layers.gdn.SphereGDN` (same parameters).
* entropy bottleneck and Gaussian conditional: the same CompressAI modules, copied.

So with ``--single-conv`` (and the defaults ``-c SDPAConv -pf stride -upf pixel_shuffle -nl
GDN``, no ``-at``, no ``-cm``, ``identity`` weights) the spherical model computes on every
patch exactly what the planar model computes on that patch seen as an image (zero padding at
the patch border = graph cut at the patch border). Other up-sampling (``nearest``,
``SDPAConvTransposed``), pooling (``avg_pool``, ``max_pool``), residual-block non-linearities,
attention, context models and DeepSphere convolutions have no planar counterpart and are
refused.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from spherical_models.layers.blocks import SphereConvBlock, SphereDown, SphereUp
from spherical_models.layers.sdpa_conv import SDPAConv, kernel_cells
from spherical_models.models import (
    SphereCompressionModel,
    SphereFactorizedPrior,
    SphereMeanScaleHyperprior,
    SphereScaleHyperprior,
)
from spherical_models.training.checkpoint import read_torch_file
from utils.cli import get_logger
from utils.errors import OsloError

PLANAR_NAMES = {
    SphereFactorizedPrior: "FactorizedPrior",
    SphereScaleHyperprior: "ScaleHyperprior",
    SphereMeanScaleHyperprior: "MeanScaleHyperprior",
}


def load_planar_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict of a planar CompressAI checkpoint file (a bare state dict, or a dict with
    ``state_dict`` / ``model`` as CompressAI's ``examples/train.py`` saves; a ``module.`` prefix
    of DataParallel is removed). :class:`OsloError` if unreadable."""
    content = read_torch_file(path, "weight-transfer file")
    for key in ("state_dict", "model"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
    if not isinstance(content, dict) or not all(isinstance(v, Tensor) for v in content.values()):
        raise OsloError(f"weight-transfer file '{path}' holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in content.items()}


def sdpa_weight_from_conv2d(kernel: Tensor, num_hops: int) -> Tensor:
    """The :class:`SDPAConv` weight ``[1 + K, C_in, C_out]`` whose
    :meth:`~SDPAConv.conv2d_weight` is ``kernel`` ``[C_out, C_in, 2h+1, 2h+1]``."""
    size = 2 * num_hops + 1
    if kernel.shape[-2:] != (size, size):
        raise ValueError(f"a {num_hops}-hop weight needs a {size}x{size} kernel")
    c_out, c_in = kernel.shape[:2]
    cells = torch.from_numpy(kernel_cells(num_hops))
    weight = kernel.new_empty(len(cells), c_in, c_out)
    weight[cells] = kernel.reshape(c_out, c_in, size * size).permute(2, 1, 0)
    return weight


def resize_kernel(kernel: Tensor, size: int) -> tuple[Tensor, bool]:
    """Centre ``kernel`` ``[..., k, k]`` in ``size x size`` (zero ring) or crop its centre.

    Returns:
        ``(kernel, exact)``: ``exact`` is False when a crop dropped non-zero cells.
    """
    k = kernel.shape[-1]
    if k <= size:
        pad = (size - k) // 2
        return torch.nn.functional.pad(kernel, (pad, pad, pad, pad)), True
    cut = (k - size) // 2
    cropped = kernel[..., cut : cut + size, cut : cut + size]
    dropped = kernel.abs().sum() - cropped.abs().sum()
    return cropped, bool(dropped == 0)


def subpixel_kernel(weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The 3x3 convolution + ``PixelShuffle(2)`` equal to ``ConvTranspose2d(kernel_size=5,
    stride=2, padding=2, output_padding=1)`` (module docstring).

    Args:
        weight: transposed-convolution weight ``[C_in, C_out, 5, 5]``.
        bias: ``[C_out]`` or :obj:`None`.

    Returns:
        ``(kernel [4 C_out, C_in, 3, 3], bias [4 C_out])``, output channel ``4c + 2a + b``.
    """
    c_in, c_out = weight.shape[:2]
    if weight.shape[-2:] != (5, 5):
        raise ValueError("sub-pixel conversion needs a 5x5 transposed convolution")
    kernel = weight.new_zeros(c_out, 2, 2, c_in, 3, 3)
    for a in range(2):
        for b in range(2):
            for ey in (-1, 0, 1):
                for ex in (-1, 0, 1):
                    ky, kx = a + 2 - 2 * ey, b + 2 - 2 * ex
                    if 0 <= ky <= 4 and 0 <= kx <= 4:
                        kernel[:, a, b, :, 1 + ey, 1 + ex] = weight[:, :, ky, kx].T
    kernel = kernel.reshape(4 * c_out, c_in, 3, 3)
    return kernel, None if bias is None else bias.repeat_interleave(4)


class _Transfer:
    """Collects the sphere state dict being built and the approximations made."""

    def __init__(self, model: SphereCompressionModel, planar: dict[str, Tensor], path: str):
        self.model = model
        self.planar = planar
        self.path = path
        self.state = model.state_dict()
        self.approximations: list[str] = []

    def planar_tensor(self, key: str) -> Tensor:
        if key not in self.planar:
            raise OsloError(
                f"weight-transfer file '{self.path}' lacks '{key}': not a CompressAI "
                f"{PLANAR_NAMES[type(self.model)]}"
            )
        return self.planar[key]

    def put(self, key: str, value: Tensor) -> None:
        if key not in self.state:
            raise OsloError(f"the sphere model has no '{key}' (weight transfer)")
        if self.state[key].shape != value.shape:
            raise OsloError(
                f"weight-transfer file '{self.path}' does not fit the model: '{key}' would get "
                f"shape {list(value.shape)}, the model (N={self.model.N}, M={self.model.M}) "
                f"needs {list(self.state[key].shape)}"
            )
        self.state[key] = value.to(self.state[key].dtype)

    def conv_block(self, prefix: str, block: SphereConvBlock, kernel: Tensor,
                   bias: Tensor | None, what: str) -> None:
        """Set the convolution block ``prefix`` to the Conv2d ``kernel`` (any odd size)."""
        convs = block.convs
        first = convs[0]
        if not isinstance(first, SDPAConv):
            raise OsloError("--weight-transfer needs OSLO convolutions (-c SDPAConv)")
        size = 2 * first.num_hops + 1
        fitted, exact = resize_kernel(kernel, size)
        if fitted.shape[:2] != (first.out_channels, first.in_channels):
            raise OsloError(
                f"weight-transfer file '{self.path}' does not fit the model: {what} has "
                f"{kernel.shape[1]} -> {kernel.shape[0]} channels, the model needs "
                f"{first.in_channels} -> {first.out_channels} (N={self.model.N}, "
                f"M={self.model.M})"
            )
        self.put(f"{prefix}.convs.0.weight", sdpa_weight_from_conv2d(fitted, first.num_hops))
        if first.bias is not None:
            self.put(f"{prefix}.convs.0.bias",
                     bias if bias is not None else torch.zeros(first.out_channels))
        if not exact:
            self.approximations.append(f"{what}: {kernel.shape[-1]}x{kernel.shape[-1]} kernel "
                                       f"cropped to {size}x{size}")
        for j, conv in enumerate(convs[1:], start=1):
            self.put(f"{prefix}.convs.{j}.weight", torch.zeros_like(conv.weight))
            if conv.bias is not None:
                self.put(f"{prefix}.convs.{j}.bias", torch.zeros_like(conv.bias))
        if len(convs) > 1:
            if block.skip_aggregation == "cat":
                width = first.out_channels
                keep_first = torch.zeros(width, width * len(convs))
                keep_first[:, :width] = torch.eye(width)
                self.put(f"{prefix}.project.weight", keep_first)
                self.put(f"{prefix}.project.bias", torch.zeros(width))
            elif block.skip_aggregation == "max":
                self.approximations.append(f"{what}: 'max' skip aggregation keeps max(conv, 0)")

    def down(self, prefix: str, stage: SphereDown, planar_key: str) -> None:
        if stage.pool.mode != "stride":
            raise OsloError("--weight-transfer needs stride pooling (-pf stride), the planar "
                            "stride-2 convolution")
        self.conv_block(f"{prefix}.block", stage.block, self.planar_tensor(f"{planar_key}.weight"),
                        self.planar.get(f"{planar_key}.bias"), planar_key)

    def up(self, prefix: str, stage: SphereUp, planar_key: str) -> None:
        if stage.unpool != "pixel_shuffle":
            raise OsloError("--weight-transfer needs pixel-shuffle up-sampling (-upf "
                            "pixel_shuffle), the exact form of the planar transposed convolution")
        kernel, bias = subpixel_kernel(self.planar_tensor(f"{planar_key}.weight"),
                                       self.planar.get(f"{planar_key}.bias"))
        self.conv_block(f"{prefix}.block", stage.block, kernel, bias, planar_key)

    def level_conv(self, prefix: str, block: SphereConvBlock, planar_key: str) -> None:
        self.conv_block(prefix, block, self.planar_tensor(f"{planar_key}.weight"),
                        self.planar.get(f"{planar_key}.bias"), planar_key)

    def gdn(self, prefix: str, planar_key: str) -> None:
        for name in ("beta", "gamma"):
            self.put(f"{prefix}.gdn.gdn.{name}", self.planar_tensor(f"{planar_key}.{name}"))

    def copy_prefix(self, prefix: str) -> None:
        """Copy every planar entry under ``prefix`` (entropy models) as it is."""
        found = False
        for key, value in self.planar.items():
            if key.startswith(f"{prefix}."):
                found = True
                if key not in self.state:
                    raise OsloError(f"weight-transfer file '{self.path}' has '{key}', which the "
                                    f"sphere model lacks")
                self.state[key] = value
        if not found:
            self.planar_tensor(f"{prefix}.*")


def _check_options(model: SphereCompressionModel) -> None:
    options = model.options
    if type(model) not in PLANAR_NAMES:
        raise OsloError(f"--weight-transfer does not support {type(model).__name__}")
    if options.conv != "SDPAConv":
        raise OsloError("--weight-transfer needs OSLO convolutions (-c SDPAConv)")
    if options.nonlinearity != "GDN":
        raise OsloError("--weight-transfer needs GDN non-linearities (-nl GDN)")
    if options.attention:
        raise OsloError("--weight-transfer: the planar models have no attention modules (-at)")
    if getattr(model, "context_model", None) is not None:
        raise OsloError("--weight-transfer: the planar MeanScaleHyperprior has no context "
                        "model (-cm)")


def transfer_planar_weights(
    model: SphereCompressionModel, planar: dict[str, Tensor], path: str = "<state dict>"
) -> list[str]:
    """Load a planar CompressAI state dict into ``model`` (module docstring).

    Args:
        model: a :class:`SphereFactorizedPrior`, :class:`SphereScaleHyperprior` or
            :class:`SphereMeanScaleHyperprior` of the same ``N``, ``M``.
        planar: the planar model's state dict (:func:`load_planar_state_dict`).
        path: the file name, for messages.

    Returns:
        The approximations made (empty when the spherical model reproduces the planar one
        exactly). Raises :class:`OsloError` for a model or file that does not fit.
    """
    _check_options(model)
    transfer = _Transfer(model, planar, path)
    for j, stage in enumerate(model.g_a.stages):
        transfer.down(f"g_a.stages.{j}", stage, f"g_a.{2 * j}")
        if stage.activation is not None:
            transfer.gdn(f"g_a.stages.{j}.activation", f"g_a.{2 * j + 1}")
    for j, stage in enumerate(model.g_s.stages):
        transfer.up(f"g_s.stages.{j}", stage, f"g_s.{2 * j}")
        if stage.activation is not None:
            transfer.gdn(f"g_s.stages.{j}.activation", f"g_s.{2 * j + 1}")
    if hasattr(model, "h_a"):
        transfer.level_conv("h_a.conv.conv", model.h_a["conv"].conv, "h_a.0")
        for j, stage in enumerate(model.h_a["down"].stages):
            transfer.down(f"h_a.down.stages.{j}", stage, f"h_a.{2 * j + 2}")
        for j, stage in enumerate(model.h_s["up"].stages):
            transfer.up(f"h_s.up.stages.{j}", stage, f"h_s.{2 * j}")
        transfer.level_conv("h_s.conv.conv", model.h_s["conv"].conv, "h_s.4")
    transfer.copy_prefix("entropy_bottleneck")
    if hasattr(model, "gaussian_conditional"):
        for key, value in planar.items():
            if key.startswith("gaussian_conditional."):
                transfer.state[key] = value
    extra = [k for k in planar if k.split(".")[0] in ("h_a", "h_s") and not hasattr(model, "h_a")]
    if extra:
        raise OsloError(f"weight-transfer file '{path}' is a hyperprior model, the sphere model "
                        f"is {type(model).__name__}")
    model.load_state_dict(transfer.state)
    return transfer.approximations


def apply_weight_transfer(model: SphereCompressionModel, path: str | os.PathLike) -> None:
    """:func:`transfer_planar_weights` from the file ``path``, logging what was done."""
    approximations = transfer_planar_weights(model, load_planar_state_dict(path), str(path))
    log = get_logger()
    if approximations:
        log.warning("weight transfer from '%s' is approximate (use --single-conv for exact "
                    "5x5 kernels): %s", path, "; ".join(approximations))
    else:
        log.info("weight transfer from '%s': exact", path)


__all__ = [
    "apply_weight_transfer",
    "load_planar_state_dict",
    "resize_kernel",
    "sdpa_weight_from_conv2d",
    "subpixel_kernel",
    "transfer_planar_weights",
]
