r"""The rate-distortion loss of the spherical codecs (CompressAI's ``RateDistortionLoss``).

Loss (DESIGN.md section 6), for inputs in :math:`[0, 1]`:

.. math::
    L = \underbrace{\frac{\sum_{\text{latents}} \sum -\log_2 p(\hat y)}{\text{HEALPix pixels}}}
    _{\text{bpp}} + \lambda \cdot 255^2 \cdot \mathrm{MSE}(x, \hat x)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


class RateDistortionLoss(nn.Module):
    r"""``bpp + lambda * 255**2 * MSE`` of a codec's output (CompressAI's ``RateDistortionLoss``).

    Args:
        lmbda (float): the rate-distortion trade-off :math:`\lambda`.

    Shapes:
        - **output:** ``{"x_hat": (B, n, 3), "likelihoods": {name: tensor}}``
        - **target:** :math:`(B, n, 3)` in :math:`[0, 1]`
        - **returns:** ``{"loss", "bpp_loss", "mse_loss"}``, scalars; bpp is the total of the
          bits of all latents over the :math:`B n` HEALPix pixels.
    """

    def __init__(self, lmbda: float) -> None:
        super().__init__()
        self.lmbda = lmbda

    def forward(self, output: Mapping[str, Any], target: Tensor) -> dict[str, Tensor]:
        num_pixels = target.shape[0] * target.shape[1]
        bits = sum(
            torch.log(likelihoods).sum() for likelihoods in output["likelihoods"].values()
        ) / -math.log(2)
        bpp = bits / num_pixels
        mse = torch.mean((output["x_hat"] - target) ** 2)
        return {"loss": bpp + self.lmbda * 255**2 * mse, "bpp_loss": bpp, "mse_loss": mse}
