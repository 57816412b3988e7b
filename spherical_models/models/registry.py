"""The model registry: names and aliases of the codecs, the quality table, and the model that a
configuration (flags or checkpoint) describes; the spherical codecs (trained on HEALPix maps by
``main_sphere_compression.py``) and CompressAI's planar ones (trained on ERP images by
``baselines/train_erp_compressai.py``)."""

from __future__ import annotations

import re
from typing import Any

from compressai.models import CompressionModel, FactorizedPrior, ScaleHyperprior
from compressai.zoo.image import cfgs as ZOO_CHANNELS

from spherical_models.models.base import LayerOptions, SphereCompressionModel
from spherical_models.models.google import (
    SphereFactorizedPrior,
    SphereJointAutoregressiveHierarchicalPriors,
    SphereMeanScaleHyperprior,
    SphereScaleHyperprior,
)
from utils.errors import OsloError

MODELS: dict[str, type[SphereCompressionModel]] = {
    "SphereFactorizedPrior": SphereFactorizedPrior,
    "SphereScaleHyperprior": SphereScaleHyperprior,
    "SphereMeanScaleHyperprior": SphereMeanScaleHyperprior,
}
"""The codecs by the name ``-m`` takes (the joint model is ``-m SphereMeanScaleHyperprior`` with
``-cm full|autoregressive``, as in the seed)."""

CLASSES: dict[str, type[SphereCompressionModel]] = {
    **MODELS,
    "SphereJointAutoregressiveHierarchicalPriors": SphereJointAutoregressiveHierarchicalPriors,
}
"""Every codec by the class name that checkpoints and ``.oslo`` files record."""

MODEL_ALIASES = {
    "factorizedprior": "SphereFactorizedPrior",
    "factorized": "SphereFactorizedPrior",
    "bmshj2018factorized": "SphereFactorizedPrior",
    "scalehyperprior": "SphereScaleHyperprior",
    "hyperprior": "SphereScaleHyperprior",
    "bmshj2018hyperprior": "SphereScaleHyperprior",
    "meanscalehyperprior": "SphereMeanScaleHyperprior",
    "meanscale": "SphereMeanScaleHyperprior",
    "mbt2018mean": "SphereMeanScaleHyperprior",
}
"""Other spellings of the names (the seed's and CompressAI's zoo names), lower case without
``-``, ``_`` or a ``Sphere`` prefix."""

QUALITY_CHANNELS = {q: (128, 192) for q in range(1, 6)} | {q: (142, 270) for q in range(6, 9)}
"""``(N, M)`` of each quality level ``-q`` (DESIGN.md section 6)."""


def model_name(text: str) -> str:
    """The registry name of a spelling (``SphereScaleHyperprior``, ``scalehyperprior``,
    ``scale_hyperprior``, ``bmshj2018-hyperprior``...); :class:`ValueError` if unknown."""
    key = re.sub(r"[^a-z0-9]", "", text.lower()).removeprefix("sphere")
    for name in MODELS:
        if key == name.lower().removeprefix("sphere"):
            return name
    if key in MODEL_ALIASES:
        return MODEL_ALIASES[key]
    raise ValueError(f"unknown model '{text}' (choose from {', '.join(MODELS)})")


def canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the model's current name: the seed's ``-m SphereMeanScaleHyperprior -cm
    full|autoregressive`` (and the checkpoints written before the joint model had a class of
    its own) name :class:`SphereJointAutoregressiveHierarchicalPriors`."""
    if config.get("model") == "SphereMeanScaleHyperprior" and config.get("context_model"):
        return {**config, "model": "SphereJointAutoregressiveHierarchicalPriors"}
    return dict(config)


def model_from_config(config: dict[str, Any]) -> SphereCompressionModel:
    """The codec (random initialisation) that a configuration describes: ``model.config`` plus
    anything else (a checkpoint's ``config``, or the flags'; :func:`canonical_config` first);
    :class:`OsloError` if it is not one this toolkit builds."""
    config = canonical_config(config)
    name = config.get("model")
    try:
        cls = CLASSES[name]
        options = LayerOptions(**{
            key: config[key] for key in LayerOptions.__dataclass_fields__ if key in config
        })
        kwargs: dict[str, Any] = {}
        if cls is SphereJointAutoregressiveHierarchicalPriors:
            kwargs = {"context_model": config.get("context_model") or "full",
                      "ar_hops": config.get("ar_hops", 1)}
        return cls(int(config["N"]), int(config["M"]), options, **kwargs)
    except (KeyError, TypeError, ValueError) as error:
        raise OsloError(f"cannot build {name}: {type(error).__name__}: {error}") from None


# ---------------------------------------------------------------------------------------------
# The planar models

PLANAR_MODELS: dict[str, type[CompressionModel]] = {
    "FactorizedPrior": FactorizedPrior,
    "ScaleHyperprior": ScaleHyperprior,
}
"""CompressAI's own codecs on ERP images, by the name ``baselines/train_erp_compressai.py -m``
takes and their checkpoints record. Their data set: random crops of the ERP images
(:class:`spherical_models.planar.erp.RandomCrops`); their evaluation: the whole ERP image or
independent patches (:func:`spherical_models.planar.erp.code_image`)."""

PLANAR_ZOO_NAMES = {"FactorizedPrior": "bmshj2018-factorized",
                    "ScaleHyperprior": "bmshj2018-hyperprior"}
"""CompressAI zoo name of each planar model, whose ``cfgs`` give the ``(N, M)`` of a quality."""


def planar_channels(model: str, quality: int) -> tuple[int, int]:
    """``(N, M)`` of a planar model at a quality level: CompressAI's zoo configuration,
    ``(128, 192)`` for 1-5 and ``(192, 320)`` for 6-8."""
    n, m = ZOO_CHANNELS[PLANAR_ZOO_NAMES[model]][quality]
    return n, m


def planar_model_from_config(config: dict[str, Any]) -> CompressionModel:
    """The planar codec (random initialisation) of a configuration's ``model``, ``N`` and
    ``M`` (the flags', or a checkpoint's)."""
    return PLANAR_MODELS[config["model"]](config["N"], config["M"])
