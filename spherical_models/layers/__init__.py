"""Layers of the spherical models: the OSLO convolutions on HEALPix maps."""

from spherical_models.layers.sdpa_conv import SDPAConv, SDPAConvTransposed, gather_conv

__all__ = ["SDPAConv", "SDPAConvTransposed", "gather_conv"]
