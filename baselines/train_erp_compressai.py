"""Planar baseline of the RD study: CompressAI's own FactorizedPrior / ScaleHyperprior trained
on ERP crops of the training images of the sphere pipeline, and evaluated on the ERP test
images with real bitstreams.

Names: the lists -i / -t are step 1's train.txt / test.txt; only their names are used. The
name of an entry is its stem without --files-prefix (default ``healpix_sampling_res_{r}_``), and
its original is ``<-o>/<name>.<-oe>``.

ERP images of the codec: ``W x W/2`` with ``W`` = --erp-width (default ``4 * nside =
4 * 2**r``), made by sampling the original bilinearly at the ERP pixel centres, padded for the
codec to a multiple of 64 and cropped back (:mod:`spherical_models.planar.erp`).

Training (-i): ``-np`` random ``--crop-size`` crops per image and epoch (they wrap around in
longitude), drawn from the seed and the epoch, in batches of -bst; loss
``bpp + lambda * 255**2 * MSE`` (``compressai.losses.RateDistortionLoss``, bpp per pixel of the
crop; with ``--distortion-weight latitude`` the MSE weights each row by ``cos(latitude)``);
Adam (-lr) on the model, Adam (-lraux) on the ``quantiles``, gradient clipping, warm-up, the
entropy bottleneck's auxiliary loss; the learning-rate schedule of step 3 (--lr-schedule):
``ReduceLROnPlateau`` on the training loss (factor ``sqrt(0.1)``, --scheduler-patience epochs;
--no-scheduler), as step 3 without validation, or step / cosine decay over -e epochs. The epochs
are those of ``main_sphere_compression.py`` (:class:`spherical_models.training.trainer.Trainer`:
Ctrl-C saves ``interrupted.pth.tar``, and ``torchrun`` trains on several processes).
Outputs in -O: ``log.csv`` (epoch,loss,bpp,mse,lr,seconds), ``config.txt``,
``checkpoint_<epoch>.pth.tar`` every --checkpoint-interval epochs and ``final.pth.tar``.
--checkpoint-file resumes at the epoch after the checkpoint's; --init-from starts from another
checkpoint's weights (fine-tuning to a new lambda or ERP width).

Evaluation (-t, after training, or of --checkpoint-file), in ``<-O>/<--foldername-valtest>/``:
the decoded ERP images ``<listname>_reconstructed.png``, ``rates.txt`` (step 4's format) and
``rd.csv`` (bpp per HEALPix pixel at -r, S-PSNR and WS-PSNR; see
:mod:`spherical_models.planar.pipeline`).

Face layout (``--layout healpix``, the "layer" ablation of an RD study: HEALPix sampling with
planar layers): the lists' entries are the ``.npy`` maps of step 1 (NESTED, at -r), cut into
HEALPix patches laid out as images (``image[y, x]`` the patch's pixel at face-local ``(x, y)``,
:mod:`spherical_models.planar.faces`). Training: ``-np`` random patches of resolution ``-prt``
(``2**prt x 2**prt`` images) per map and epoch, the very patches that step 3 draws with the
same lists, ``-np``, ``-prt`` and ``--seed`` (balanced over the caps and the belt), in batches
of -bst, the plain MSE (HEALPix pixels have equal areas). Evaluation: each test map coded by
its patches of resolution ``-prvt`` (each an image with its own strings), the decoded patches
put back into a map, saved as step 4 saves its reconstructions
(``<listname>_reconstructed.npy`` and its gray Mollweide view ``.png``); ``rates.txt`` and
``rd.csv`` as with ERP images (S-PSNR and WS-PSNR of the decoded map against the original ERP
image). The ERP-only flags (--crop-size, --erp-width,
--distortion-weight, --patch-size-valtest, --train-original-dir) are refused.

Example:
    python baselines/train_erp_compressai.py -o ../oslo_data/images_equirectangular -oe jpg \\
        -i data/healpix_res_10/train.txt -t data/healpix_res_10/test.txt -r 10 \\
        -O runs/erp_hyperprior_0.0018 -m ScaleHyperprior -q 1 --lambda 0.0018 -e 100 -g
"""

from __future__ import annotations

# spherical_models first: it silences compressai's torch.jit.script warning
import spherical_models  # noqa: F401

# isort: split
import argparse
from collections.abc import Sequence

from spherical_models.cli import (
    HelpFormatter,
    add_clamp_reconstruction_argument,
    add_lr_schedule_arguments,
    add_sphere_points_argument,
    run_erp,
)
from spherical_models.config import DEFAULT_PATCH_RES, DISTORTION_WEIGHTS, LAYOUTS
from spherical_models.models import PLANAR_MODELS
from utils.cli import run_main, setup_logging
from utils.rd import Row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog="Training: -i (resumes from --checkpoint-file if given), then evaluation if -t; "
               "evaluation only: -t with --checkpoint-file. bpp = actual bits / (12 * 4**r): "
               "bits per HEALPix pixel at -r, not per ERP pixel.")
    add = parser.add_argument
    add("-o", "--original-dir", required=True, help="folder of the original ERP images")
    add("-oe", "--original-ext", default="jpg", help="extension of the originals")
    add("-i", "--train-data", default=None, metavar="TRAIN_LIST",
        help="list file of the training maps (step 1's train.txt; only the names are used); "
             "trains")
    add("--train-original-dir", default=None,
        help="folder of the originals of the training list (default: -o)")
    add("-t", "--test-data", default=None, metavar="TEST_LIST",
        help="list file of the test maps (step 1's test.txt; only the names are used); "
             "evaluates")
    add("--files-prefix", default=None, metavar="PREFIX",
        help="prefix of the list entries' stems that the original names lack "
             "(default: healpix_sampling_res_{r}_)")
    add("-r", "--healpix-res", type=int, required=True,
        help="HEALPix resolution r: bpp = bits / (12 * 4**r), and the default ERP width 4 * 2**r")
    add("--layout", choices=LAYOUTS, default="erp",
        help="the codec's images. erp: ERP images (training on random --crop-size crops, "
             "evaluation of the whole image or of --patch-size-valtest patches); healpix: the "
             "maps of the lists (step 1's .npy, at -r) cut into HEALPix patches laid out as "
             "2**pr x 2**pr images (utils.healpix.patch_image_index): the patches the OSLO "
             "models see, trained on random -prt patches and evaluated patch by patch at -prvt")
    add("-prt", "--patch-res-train", type=int, default=None,
        help=f"with --layout healpix: resolution of the training patches (2**prt x 2**prt "
             f"images), 6..-r (default: {DEFAULT_PATCH_RES})")
    add("-prvt", "--patch-res-valtest", type=int, default=None,
        help="with --layout healpix: resolution of the patches by which the test maps are "
             "coded, each patch an image with its own strings, 6..-r (default: -prt)")
    add("-O", "--out-dir", required=True,
        help="output folder: checkpoints, log.csv, config.txt, evaluation folder")
    add("-m", "--model", choices=list(PLANAR_MODELS), default="ScaleHyperprior",
        help="CompressAI model (compressai.models)")
    channels = parser.add_mutually_exclusive_group()
    channels.add_argument("-q", "--quality", type=int, default=1, choices=range(1, 9),
                          metavar="{1..8}",
                          help="quality level: CompressAI's (N, M) of the model, (128, 192) for "
                               "1-5, (192, 320) for 6-8")
    channels.add_argument("--channels", type=int, nargs=2, metavar=("N", "M"), default=None,
                          help="(N, M) channels instead of -q's (default: -q's)")
    add("--lambda", dest="lmbda", type=float, default=0.0018, metavar="LAMBDA",
        help="rate-distortion trade-off in bpp + lambda * 255^2 * MSE")
    add("-e", "--epochs", type=int, default=1000, help="last epoch (epochs are numbered from 1)")
    add("-np", "--crops-per-image", type=int, default=12,
        help="random crops (--layout healpix: patches) per training image (map) and epoch")
    add("--crop-size", type=int, default=None,
        help="side of the square training crops (a multiple of 64, at most W/2; default: 256)")
    add("-bst", "--batch-size-train", type=int, default=8,
        help="crops (patches) per training batch")
    add("--distortion-weight", choices=DISTORTION_WEIGHTS, default="none",
        help="none: the MSE of the crops' pixels (CompressAI's); latitude: each ERP row's "
             "squared error weighted by cos(latitude) (WS-PSNR's weights, mean 1 over the "
             "image), so that the training distortion is the sphere's area-weighted MSE, as in "
             "S-PSNR and WS-PSNR and on the equal-area HEALPix pixels of the OSLO models")
    add("-lr", "--learning-rate", type=float, default=1e-4,
        help="Adam learning rate of the model")
    add("-lraux", "--aux-learning-rate", type=float, default=1e-3,
        help="Adam learning rate of the entropy bottleneck's quantiles")
    add("--clip-max-norm", type=float, default=1.0, help="gradient clipping norm (0: none)")
    add("--no-scheduler", action="store_true",
        help="keep the learning rate fixed (no ReduceLROnPlateau; only with --lr-schedule "
             "plateau)")
    add_lr_schedule_arguments(parser, monitored="the training loss")
    add_clamp_reconstruction_argument(parser)
    add("--scheduler-patience", type=int, default=20,
        help="with --lr-schedule plateau: epochs without improvement of the training loss "
             "before ReduceLROnPlateau divides the learning rate by sqrt(10)")
    add("--seed", type=int, default=0,
        help="seed of the weights' initialisation and of each epoch's crops and noise")
    add("--checkpoint-file", default=None, metavar="CKPT",
        help="checkpoint to resume training from (with -i), or to evaluate (with -t only)")
    add("--init-from", default=None, metavar="CKPT",
        help="start training (-i) from the weights of a checkpoint of this script (the same "
             "-m and channels, any --lambda and --erp-width), with a new optimiser and schedule "
             "from epoch 1: fine-tuning, e.g. the lower lambdas of an RD curve from its "
             "highest")
    add("--checkpoint-interval", type=int, default=10,
        help="save checkpoint_<epoch>.pth.tar every this many epochs (0: only final.pth.tar)")
    add("--erp-width", type=int, default=None, metavar="W",
        help="width W (even) of the codec's ERP images, height W/2 (default: 4 * 2**r)")
    add_sphere_points_argument(parser)
    add("--patch-size-valtest", type=int, default=0, metavar="P",
        help="code the test images by independent P x P patches (a multiple of 64; each "
             "patch its own strings, as the sphere models code by patch with -prvt), or 0: "
             "the whole image at once, CompressAI's way")
    add("--foldername-valtest", default="reconstruction",
        help="folder, inside -O, of the decoded images, rates.txt and rd.csv")
    add("-g", "--gpu", action="store_true", help="run on CUDA")
    add("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Train and/or evaluate (module docstring); return the evaluation's rows (one per test
    image, then the mean; empty without -t)."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_erp(args)


if __name__ == "__main__":
    run_main(main)
