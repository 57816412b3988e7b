"""Learning on the HEALPix sphere: OSLO layers (``layers``), neighbour graphs (``graph``,
``geometry``) and the spherical codecs (``models``)."""

import warnings

# compressai 1.2.8 decorates functions with torch.jit.script, deprecated in torch 2.14: the
# warning is harmless and would otherwise greet every command-line run.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
