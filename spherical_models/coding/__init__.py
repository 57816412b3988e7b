"""Whole maps and ``.oslo`` files, with a trained codec: a map coded into one rANS string per
latent and back (``maps``), the file format (``oslo_format``) and the codec behind
``oslo_codec.py`` (``codec``)."""
