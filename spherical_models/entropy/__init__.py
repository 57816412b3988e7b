"""Entropy coding, the floor under the models: rANS streams that span patches, with a
CRC-32 of the symbols of each latent (``streams``), and deterministic float64 CDF tables and
hyper-synthesis (``tables``)."""
