"""Step 4, evaluating a trained codec on HEALPix maps with real bitstreams: every map coded,
decoded and measured (``maps``), and the results and their files (``results``)."""
