"""The planar baseline: CompressAI's own models on ERP images, trained by the
epochs of :mod:`spherical_models.training` and evaluated with real bitstreams; their images,
crops, loss and coding (``erp``) and their steps 3 and 4 (``pipeline``)."""
