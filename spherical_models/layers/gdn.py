r"""Generalized divisive normalisation over the channels of sphere tensors ``[B, N, C]``."""

from __future__ import annotations

import torch
from compressai.layers import GDN
from torch import Tensor

from spherical_models.layers.face_layout import is_faces

__all__ = ["SphereGDN"]


class SphereGDN(torch.nn.Module):
    r"""GDN (or inverse GDN) across the channels of each HEALPix pixel.

    Introduced in `"Density Modeling of Images Using a Generalized Normalization
    Transformation" <https://arxiv.org/abs/1511.06281>`_ (Ballé, Laparra and Simoncelli, 2016):

    .. math::
        y_{i,c} = \frac{x_{i,c}}{\sqrt{\beta_c + \sum_{c'} \gamma_{c,c'} \, x_{i,c'}^2}}

    and, with ``inverse=True``, :math:`y_{i,c} = x_{i,c} \sqrt{\beta_c + \sum_{c'}
    \gamma_{c,c'} x_{i,c'}^2}`. The normalisation acts on each pixel :math:`i` separately, so
    it needs no neighbourhood: this layer runs :class:`compressai.layers.GDN` (kept as the
    submodule ``gdn``, so that the state dict holds CompressAI's ``gdn.beta``, ``gdn.gamma``
    and reparametrisation buffers) on the tensor viewed as ``[B, C, N, 1]``. That view of a
    contiguous ``[B, N, C]`` tensor is ``channels_last`` and needs no copy; the output comes
    back contiguous.

    Args:
        channels (int): number of channels :math:`C`.
        inverse (bool, optional): compute the inverse GDN (decoder side).
            (default: ``False``)
        beta_min (float, optional): lower bound of :math:`\beta`. (default: ``1e-6``)
        gamma_init (float, optional): initial diagonal of :math:`\gamma`. (default: ``0.1``)

    Shapes:
        - **input:** :math:`(B, N, C)`, or faces :math:`(B F, C, S, S)`
          (:mod:`~spherical_models.layers.face_layout`)
        - **output:** the same shape
    """

    def __init__(
        self,
        channels: int,
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.gamma_init = float(gamma_init)
        self.gdn = GDN(channels, inverse=inverse, beta_min=beta_min, gamma_init=gamma_init)

    @property
    def inverse(self) -> bool:
        """True for the inverse GDN."""
        return self.gdn.inverse

    @torch.no_grad()
    def reset_parameters(self) -> None:
        r"""Reset :math:`\beta` to 1 and :math:`\gamma` to ``gamma_init`` times the identity."""
        gdn = self.gdn
        beta = torch.ones_like(gdn.beta)
        gamma = self.gamma_init * torch.eye(self.channels, dtype=beta.dtype, device=beta.device)
        gdn.beta.copy_(gdn.beta_reparam.init(beta))
        gdn.gamma.copy_(gdn.gamma_reparam.init(gamma))

    def forward(self, x: Tensor) -> Tensor:
        if is_faces(x):
            return self.gdn(x)
        image = x.unsqueeze(2).permute(0, 3, 1, 2)  # [B, C, N, 1]
        return self.gdn(image).permute(0, 2, 3, 1).squeeze(2)

    def extra_repr(self) -> str:
        return f"{self.channels}, inverse={self.inverse}"
