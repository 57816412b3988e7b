"""Spherical codecs and their registry (names as the ``-m`` flag takes them)."""

from spherical_models.models.base import (
    DEFAULT_SCALE_TABLE_LEVELS,
    SCALE_TABLE_LEVELS,
    LayerOptions,
    SphereCompressionModel,
)
from spherical_models.models.google import (
    CONTEXT_MODELS,
    SphereFactorizedPrior,
    SphereMeanScaleHyperprior,
    SphereScaleHyperprior,
)

MODELS: dict[str, type[SphereCompressionModel]] = {
    "SphereFactorizedPrior": SphereFactorizedPrior,
    "SphereScaleHyperprior": SphereScaleHyperprior,
    "SphereMeanScaleHyperprior": SphereMeanScaleHyperprior,
}

QUALITY_CHANNELS = {q: (128, 192) for q in range(1, 6)} | {q: (142, 270) for q in range(6, 9)}
"""``(N, M)`` of each quality level ``-q`` (DESIGN.md section 6)."""

__all__ = [
    "CONTEXT_MODELS",
    "DEFAULT_SCALE_TABLE_LEVELS",
    "MODELS",
    "QUALITY_CHANNELS",
    "SCALE_TABLE_LEVELS",
    "LayerOptions",
    "SphereCompressionModel",
    "SphereFactorizedPrior",
    "SphereMeanScaleHyperprior",
    "SphereScaleHyperprior",
]
