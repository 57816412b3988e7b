r"""Pooling and unpooling over the HEALPix hierarchy (4 NESTED children per pixel).

In NESTED order the children of pixel :math:`p` are :math:`4p, 4p+1, 4p+2, 4p+3`, at face-local
offsets :math:`(0,0), (1,0), (0,1), (1,1)` from :math:`(2x, 2y)`: child :math:`k = d_x + 2 d_y`.
So going one resolution down is a reshape ``[B, N, C] -> [B, N/4, 4, C]`` and a reduction over
the children, and going one resolution up is the inverse: no index table is needed. On a patch
laid out as an image ``image[y, x]`` (:func:`utils.healpix.patch_image_index`), and on each of
the 12 base faces of a whole sphere, these layers are exactly ``avg_pool2d(2)``,
``max_pool2d(2)``, ``image[::2, ::2]``, ``interpolate(scale_factor=2, mode="nearest")`` and
``PixelShuffle(2)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spherical_models.layers.face_layout import is_faces

__all__ = ["POOL_MODES", "UNPOOL_MODES", "SpherePool", "SphereUnpool", "child_zero"]

POOL_MODES = ("stride", "avg_pool", "max_pool")
UNPOOL_MODES = ("nearest", "pixel_shuffle")


def child_zero(x: Tensor) -> Tensor:
    """Child 0 of every pixel one resolution down: ``x[:, 0::4]`` of a NESTED ``[B, N, C]``,
    ``x[:, :, ::2, ::2]`` of faces ``[B F, C, S, S]`` (the pixels a stride-2 convolution
    keeps)."""
    return x[:, :, ::2, ::2] if is_faces(x) else x[:, ::4]


class SpherePool(torch.nn.Module):
    r"""Pools each HEALPix pixel's 4 NESTED children into the pixel, one resolution down.

    .. math::
        y_p = \operatorname{reduce}_{k=0}^{3} x_{4p + k}

    with the reduction chosen by ``mode``:

    * ``"stride"``: :math:`y_p = x_{4p}`, the child at offset :math:`(0, 0)`, i.e. the pixels
      that a stride-2 convolution keeps (``image[::2, ::2]``);
    * ``"avg_pool"``: the mean of the 4 children (``avg_pool2d(2)``);
    * ``"max_pool"``: their maximum (``max_pool2d(2)``).

    Args:
        mode (str, optional): ``"stride"``, ``"avg_pool"`` or ``"max_pool"``.
            (default: ``"stride"``)

    Shapes:
        - **input:** :math:`(B, N, C)`, :math:`N` a multiple of 4, NESTED order, or faces
          :math:`(B F, C, S, S)` (:mod:`~spherical_models.layers.face_layout`)
        - **output:** :math:`(B, N / 4, C)`, or :math:`(B F, C, S / 2, S / 2)`
    """

    def __init__(self, mode: str = "stride") -> None:
        super().__init__()
        if mode not in POOL_MODES:
            raise ValueError(f"unknown pooling mode '{mode}' (choose from {POOL_MODES})")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if is_faces(x):
            if self.mode == "stride":
                return child_zero(x)
            return (F.avg_pool2d if self.mode == "avg_pool" else F.max_pool2d)(x, 2)
        batch, pixels, channels = x.shape
        if pixels % 4:
            raise ValueError(f"cannot pool {pixels} pixels by 4 children")
        if self.mode == "stride":
            return child_zero(x)
        children = x.reshape(batch, pixels // 4, 4, channels)
        if self.mode == "avg_pool":
            return children.mean(dim=2)
        return children.amax(dim=2)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class SphereUnpool(torch.nn.Module):
    r"""Spreads each HEALPix pixel over its 4 NESTED children, one resolution up.

    * ``"nearest"``: every child copies its parent, :math:`y_{4p + k} = x_p`
      (``interpolate(scale_factor=2, mode="nearest")``);
    * ``"pixel_shuffle"``: the :math:`4C` input channels are split into 4 groups of :math:`C`,
      one per child, :math:`y_{4p + k, c} = x_{p, 4c + k}`. With child
      :math:`k = d_x + 2 d_y`, this is ``torch.nn.PixelShuffle(2)`` on the image layout, which
      sends input channel :math:`4c + 2i + j` to output :math:`(c, 2y + i, 2x + j)`:
      :math:`i = d_y`, :math:`j = d_x`.

    Args:
        mode (str, optional): ``"nearest"`` or ``"pixel_shuffle"``.
            (default: ``"pixel_shuffle"``)

    Shapes:
        - **input:** :math:`(B, N, C)` for ``"nearest"``, :math:`(B, N, 4C)` for
          ``"pixel_shuffle"``, NESTED order, or faces :math:`(B F, C \text{ or } 4C, S, S)`
        - **output:** :math:`(B, 4N, C)`, or :math:`(B F, C, 2S, 2S)`
    """

    def __init__(self, mode: str = "pixel_shuffle") -> None:
        super().__init__()
        if mode not in UNPOOL_MODES:
            raise ValueError(f"unknown unpooling mode '{mode}' (choose from {UNPOOL_MODES})")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if is_faces(x):
            if self.mode == "nearest":
                return F.interpolate(x, scale_factor=2, mode="nearest")
            return F.pixel_shuffle(x, 2)
        batch, pixels, channels = x.shape
        if self.mode == "nearest":
            return (
                x.unsqueeze(2)
                .expand(batch, pixels, 4, channels)
                .reshape(batch, 4 * pixels, channels)
            )
        if channels % 4:
            raise ValueError(f"pixel shuffle needs a multiple of 4 channels, got {channels}")
        # channel 4c + k -> [c, k] -> [k, c]: child k receives channels k, 4 + k, 8 + k, ...
        grouped = x.reshape(batch, pixels, channels // 4, 4).transpose(2, 3)
        return grouped.reshape(batch, 4 * pixels, channels // 4)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
