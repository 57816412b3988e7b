"""HEALPix geometry, files, data sets and quality measures: the floor below the models."""
