"""Learning on the HEALPix sphere, floor by floor: neighbour graphs (``graph``, ``geometry``),
OSLO layers (``layers``), entropy coding (``entropy``), the spherical codecs (``models``), the
typed run configurations (``config``), training (``training``), whole maps and ``.oslo`` files
(``coding``), evaluation (``evaluation``), steps 3 and 4 (``pipeline``; the planar baseline's
in ``planar``), the pretrained ``zoo``, and the command line's boundary (``cli``).
docs/ARCHITECTURE.md draws them."""

import warnings

# compressai 1.2.8 decorates functions with torch.jit.script, deprecated in torch 2.14: the
# warning is harmless and would otherwise greet every command-line run.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
