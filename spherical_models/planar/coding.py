"""Coding a batch of images with a planar CompressAI model and real bitstreams: compress,
decompress, the bits (theoretical and actual) and the timings; what the ERP images
(:func:`spherical_models.planar.erp.code_image`) and the HEALPix patches laid out as images
(:func:`spherical_models.planar.faces.code_map`) share."""

from __future__ import annotations

import math
import time

import torch
from compressai.models import CompressionModel
from torch import Tensor

from spherical_models.evaluation.results import string_bytes, tensor_bits
from spherical_models.training.distributed import synchronize


@torch.no_grad()
def code_images(
    model: CompressionModel, x: Tensor, device: torch.device
) -> tuple[Tensor, dict[str, float]]:
    """Compress and decompress a batch of images ``x`` ``[n, 3, H, W]`` in [0, 1] on
    ``device`` (``H`` and ``W`` multiples of the model's down-sampling), each image with its
    own strings.

    The model must be in evaluation mode with its entropy models updated (``update()``).

    Returns:
        ``(x_hat, stats)``: the decoded images ``[n, 3, H, W]`` (``float``, CompressAI's
        ``decompress``), and ``theoretical_bits`` (sum over the latents of
        ``ceil(sum -log2 likelihoods)`` of the forward pass over the batch), ``actual_bits``
        (8 x the bytes of all strings), ``encode_seconds``, ``decode_seconds``.
    """
    likelihoods = model(x)["likelihoods"]
    theoretical = sum(math.ceil(tensor_bits(v)) for v in likelihoods.values())
    synchronize(device)
    start = time.perf_counter()
    encoded = model.compress(x)
    synchronize(device)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    x_hat = model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
    synchronize(device)
    decode_seconds = time.perf_counter() - start
    stats = {"theoretical_bits": theoretical, "actual_bits": 8 * string_bytes(encoded["strings"]),
             "encode_seconds": encode_seconds, "decode_seconds": decode_seconds}
    return x_hat, stats


def to_uint8(x_hat: Tensor) -> Tensor:
    """Decoded values in [0, 1] (any shape) -> ``uint8`` ``round(x_hat * 255)``, clamped."""
    return x_hat.mul(255).round_().clamp_(0, 255).to(torch.uint8)
