"""The planar baseline: CompressAI's own models on ERP images, or on the maps' HEALPix patches
laid out as images, trained by the epochs of :mod:`spherical_models.training` and evaluated with
real bitstreams; their ERP images, crops, loss and coding (``erp``), their HEALPix patches as
images (``faces``), the epoch's random items (``draws``), the coding of a batch of images
(``coding``) and their steps 3 and 4 (``pipeline``)."""
