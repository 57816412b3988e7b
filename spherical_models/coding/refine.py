r"""Encoder-side latent refinement: the latent of each batch optimised for its own coding cost.

A trained analysis ``g_a`` is an amortised guess of the latent that minimises a map's
rate-distortion cost; the encoder may search further (Campos et al., `"Content Adaptive
Optimization for Neural Image Compression" <https://arxiv.org/abs/1906.01223>`_, CVPRW 2019).
Starting from :math:`y_0 = g_a(x)`, Adam minimises over :math:`y`

.. math::
    L(y) = \frac{R(\lfloor y \rceil)}{B n} + \lambda \cdot 255^2 \cdot
           \mathrm{MSE}\big(\mathrm{clamp}(g_s(\lfloor y \rceil), 0, 1), x\big)

with the model's own entropy models (``z = h_a(y)`` rounded too, so its bits count) and the
rounding :math:`\lfloor\cdot\rceil` of the decoder (around the medians or the means, as the
codec quantises), differentiated as the identity (straight-through). The learning rate decays
linearly to 0; the iterate of lowest :math:`L` is kept, :math:`y_0` included, so the cost of the
batch never rises. Only the encoder changes: the decoder, the model and the file format do not,
so a refined file decodes with any decoder of the model. The refined latent depends on float
sums, so the encoded bytes may differ between machines (each decodes everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from compressai.entropy_models import EntropyModel
from torch import Tensor

from spherical_models.training.epoch import clamped_reconstruction
from spherical_models.training.loss import RateDistortionLoss

DEFAULT_REFINE_LR = 1e-2
"""Adam's initial rate on the latent (quantisation step 1), decayed linearly to 0."""


@dataclass(frozen=True)
class Refinement:
    """Latent refinement of each coded batch.

    Args:
        steps: Adam steps per batch (at least 1).
        lr: initial learning rate, decayed linearly to 0 over ``steps``.
        lmbda: the rate-distortion trade-off of :math:`L`; :obj:`None`: the checkpoint's.
    """

    steps: int
    lr: float = DEFAULT_REFINE_LR
    lmbda: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"refinement steps must be at least 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"refinement learning rate must be positive, got {self.lr:g}")
        if self.lmbda is not None and not self.lmbda > 0:
            raise ValueError(f"refinement lambda must be positive, got {self.lmbda:g}")


@contextmanager
def straight_through_rounding(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, every entropy model of ``model`` quantises in evaluation mode as
    before (``round(v - m) + m``) but passes the gradient through as the identity."""
    entropy_models = [m for m in model.modules() if isinstance(m, EntropyModel)]

    def straight_through(quantize):
        def quantized(inputs: Tensor, mode: str, means: Tensor | None = None) -> Tensor:
            values = quantize(inputs, mode, means)
            return inputs + (values - inputs).detach() if mode == "dequantize" else values
        return quantized

    for module in entropy_models:
        module.quantize = straight_through(module.quantize)
    try:
        yield
    finally:
        for module in entropy_models:
            del module.quantize


def coding_cost(model, x: Tensor, y: Tensor, geometry, patch_ids: Tensor | None,
                lmbda: float) -> Tensor:
    r""":math:`L(y)` of the module docstring for ``x`` ``[B, n, 3]`` and ``y`` ``[B, n_y, M]``
    (the model in evaluation mode): the likelihood bits of the rounded latents per pixel plus
    :math:`\lambda \cdot 255^2` times the MSE of the clamped reconstruction."""
    with straight_through_rounding(model):
        y_hat, likelihoods = model.latent_forward(y, geometry, patch_ids)
    x_hat = clamped_reconstruction(model.g_s(y_hat, geometry, patch_ids))
    return RateDistortionLoss(lmbda)({"x_hat": x_hat, "likelihoods": likelihoods}, x)["loss"]


def refine_latent(model, x: Tensor, y: Tensor, geometry, patch_ids: Tensor | None,
                  refinement: Refinement) -> Tensor:
    """The latent of lowest :func:`coding_cost` among ``y`` and its ``refinement.steps`` Adam
    iterates, ``[B, n_y, M]`` (detached). ``refinement.lmbda`` must be set."""
    if refinement.lmbda is None:
        raise ValueError("the refinement's lambda is not set")
    latent = y.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=refinement.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 - step / refinement.steps)
    best_cost, best = math.inf, latent.detach().clone()
    with torch.enable_grad():
        for step in range(refinement.steps + 1):
            cost = coding_cost(model, x, latent, geometry, patch_ids, refinement.lmbda)
            if cost.item() < best_cost:
                best_cost, best = cost.item(), latent.detach().clone()
            if step == refinement.steps:
                break
            (latent.grad,) = torch.autograd.grad(cost, [latent])
            optimizer.step()
            schedule.step()
    return best
