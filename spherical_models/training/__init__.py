"""Step 3, training the codecs: the rate-distortion loss (``loss``), optimisers and learning
rates (``optim``), one epoch of training and validation (``epoch``), the logs (``logs``), the
loaders (``data``), the epochs of a run (``trainer``), checkpoints (``checkpoint``), processes
(``distributed``) and the start from planar CompressAI weights (``weight_transfer``)."""
