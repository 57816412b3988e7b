"""Spherical codecs (CompressAI style) and the registry of these and of the planar ones."""

from spherical_models.models.base import (
    DEFAULT_SCALE_TABLE_LEVELS,
    SCALE_TABLE_LEVELS,
    LayerOptions,
    SphereCompressionModel,
)
from spherical_models.models.google import (
    CONTEXT_MODELS,
    SphereFactorizedPrior,
    SphereJointAutoregressiveHierarchicalPriors,
    SphereMeanScaleHyperprior,
    SphereScaleHyperprior,
)
from spherical_models.models.registry import (
    MODEL_ALIASES,
    MODELS,
    PLANAR_MODELS,
    QUALITY_CHANNELS,
    canonical_config,
    model_from_config,
    model_name,
    planar_channels,
    planar_model_from_config,
)

__all__ = [
    "CONTEXT_MODELS",
    "DEFAULT_SCALE_TABLE_LEVELS",
    "MODELS",
    "MODEL_ALIASES",
    "PLANAR_MODELS",
    "QUALITY_CHANNELS",
    "SCALE_TABLE_LEVELS",
    "LayerOptions",
    "SphereCompressionModel",
    "SphereFactorizedPrior",
    "SphereJointAutoregressiveHierarchicalPriors",
    "SphereMeanScaleHyperprior",
    "SphereScaleHyperprior",
    "canonical_config",
    "model_from_config",
    "model_name",
    "planar_channels",
    "planar_model_from_config",
]
