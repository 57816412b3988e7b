"""Steps 3 and 4: train a spherical codec on HEALPix maps, and evaluate it with real bitstreams.

Training (-i): random patches of the maps of a list file, rate-distortion loss
bpp + lambda * 255^2 * MSE, checkpoints, log.csv / loss.txt / config.txt in -o.
Evaluation (-t): compress and decompress every map of a list file, write the reconstructions,
their Mollweide views, rates.txt (total bits per map) and test_results.csv in
-o/--foldername-valtest. Both can run in one call (training first).

Examples:
    python main_sphere_compression.py -m SphereScaleHyperprior -nd data/neighbor_structure \\
        -i data/healpix_res_10/train.txt -v data/healpix_res_10/validation.txt \\
        -o runs/hyperprior_0.0018 --lambda 0.0018 -q 1 -bst 10 -bsvt 10
    python main_sphere_compression.py -m SphereScaleHyperprior -nd data/neighbor_structure \\
        -t data/healpix_res_10/test.txt -o runs/hyperprior_0.0018 --lambda 0.0018 -q 1 \\
        --checkpoint-file runs/hyperprior_0.0018/final.pth.tar --foldername-valtest reconstruction
Multi-GPU / multi-node: torchrun --nproc_per_node 4 main_sphere_compression.py -g ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from spherical_models.cli import (
    PATCH_BORDERS,
    PATIENCE_UNITS,
    HelpFormatter,
    add_clamp_reconstruction_argument,
    add_lr_schedule_arguments,
    run,
)
from spherical_models.layers.blocks import (
    CONV_TYPES,
    NONLINEARITIES,
    SKIP_AGGREGATIONS,
    UNPOOL_TYPES,
)
from spherical_models.layers.pooling import POOL_MODES
from spherical_models.layers.sdpa_conv import INIT_RULES
from spherical_models.models import CONTEXT_MODELS, QUALITY_CHANNELS, model_name
from spherical_models.models.tiling import DEFAULT_TILE_RES
from utils.cli import run_main, setup_logging
from utils.structures import WEIGHT_TYPES

CONTEXT_CHOICES = ("none", *(name for name in CONTEXT_MODELS if name))


def model_type(text: str) -> str:
    """``-m``'s value as a registry name (:func:`spherical_models.models.model_name`)."""
    try:
        return model_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def unpool_name(text: str) -> str:
    """``-upf`` value; ``SDPAConvTranspose`` (the original spelling) is accepted."""
    for name in UNPOOL_TYPES:
        if text.lower() in (name.lower(), name.lower().removesuffix("d")):
            return name
    raise argparse.ArgumentTypeError(
        f"unknown up-sampling '{text}' (choose from {', '.join(UNPOOL_TYPES)})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Training: -i (and -v); evaluation: -t with --checkpoint-file (or "
        "--weight-transfer). See docs/guide.md, steps 3 and 4.",
        formatter_class=HelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("-i", "--train-data",
                      help="list file of the training maps (train.txt of step 1); trains")
    data.add_argument("-v", "--validation-data",
                      help="list file of the validation maps; validation loss each epoch from "
                      "--validation-start, which drives the scheduler")
    data.add_argument("-t", "--test-data",
                      help="list file of the test maps; evaluates (after training, if -i)")
    data.add_argument("-nd", "--neighbor-struct-dir", required=True,
                      help="folder of the neighbour structures (step 2) for (-hr, -prt) and the "
                      "pairs below it, and for (-hr, -prvt)")
    data.add_argument("-o", "--out-dir", required=True,
                      help="output folder: checkpoints, logs, evaluation folder")
    data.add_argument("-hr", "--healpix-res", type=int, default=10,
                      help="HEALPix resolution of the maps")
    data.add_argument("-prt", "--patch-res-train", type=int, default=8,
                      help="patch resolution for training (2**prt x 2**prt patches); -1: whole "
                      "sphere")
    data.add_argument("-prvt", "--patch-res-valtest", type=int, default=None,
                      help="patch resolution for validation and evaluation; -1: whole sphere "
                      "(default: -prt, or -1 with --patch-border sphere)")
    data.add_argument("--tile-res", type=int, default=DEFAULT_TILE_RES, metavar="T",
                      help="evaluation on the whole sphere (-prvt -1): run the analysis and the "
                      "synthesis by tiles of 4**T pixels (HEALPix patches of resolution T), "
                      "exactly (same strings), in the memory of one tile and its halo instead "
                      "of the whole sphere's (more than 12 GB at -hr 10); larger T: more "
                      "memory, less halo overhead; T >= -hr or -1: the whole sphere at once; "
                      "at least 4")
    data.add_argument("--patch-border", choices=PATCH_BORDERS, default="cut",
                      help="what a training patch meets at its border. cut: nothing, its "
                      "neighbours outside the patch are dropped (the paper; a zero-padded "
                      "image); sphere: its true neighbours on the sphere, across face edges "
                      "too, so that the model never learns a border it will not meet when it "
                      "codes the whole sphere: the model trains on whole maps (the 12 faces "
                      "padded with their neighbours at every layer), -np and -bst counting "
                      "patches of -prt (ceil(maps * np / P) maps an epoch, max(1, bst // P) a "
                      "batch, P = 12 * 4**(hr - prt) patches a map); recorded in the checkpoint")
    data.add_argument("--sphere-start", type=float, default=0.0, metavar="F",
                      help="with --patch-border sphere: train the first floor(F * e) epochs on "
                      "cut patches (many small steps), then on whole maps; 0: whole maps from "
                      "the first epoch; recorded in the checkpoint")
    data.add_argument("-np", "--n-patch-per-sample", type=int, default=12,
                      help="random patches per training map and epoch, balanced over the north "
                      "cap, equatorial belt and south cap")
    data.add_argument("--dataloader-num-workers", type=int, default=2,
                      help="data loading worker processes (0: load in the main process)")

    model = parser.add_argument_group("model")
    model.add_argument("-m", "--model", type=model_type, default="SphereScaleHyperprior",
                       help="SphereFactorizedPrior, SphereScaleHyperprior or "
                       "SphereMeanScaleHyperprior (case-insensitive; 'Sphere' optional; "
                       "CompressAI zoo names bmshj2018-factorized, bmshj2018-hyperprior, "
                       "mbt2018-mean accepted)")
    model.add_argument("-q", "--quality", type=int, default=1, choices=sorted(QUALITY_CHANNELS),
                       help="quality level: (N, M) = (128, 192) for 1-5, (142, 270) for 6-8")
    model.add_argument("--channels", type=int, nargs=2, metavar=("N", "M"), default=None,
                       help="override the (N, M) channels of -q (small models for tests and the "
                       "demo); recorded in checkpoints (default: those of -q)")
    model.add_argument("--lambda", dest="lmbda", type=float, default=0.0018, metavar="LAMBDA",
                       help="rate-distortion trade-off in bpp + lambda * 255^2 * MSE")
    model.add_argument("-c", "--conv-name", choices=CONV_TYPES, default="SDPAConv",
                       help="OSLO convolution, or DeepSphere's ChebConv")
    model.add_argument("--conv-init", choices=INIT_RULES, default="conv2d",
                       help="initialisation of the SDPA convolutions. conv2d: uniform in "
                       "+-1/sqrt((1 + K) C_in), nn.Conv2d's rule; oslo: the original code's "
                       "kaiming_uniform_(a=sqrt(5)) on the [1 + K, C_in, C_out] weight, bound "
                       "1/sqrt(C_in C_out); only for a fresh model (not with --init-from or a "
                       "checkpoint)")
    model.add_argument("-w", "--weight-type", choices=WEIGHT_TYPES, default=None,
                       help="neighbour weights of the structures (default: identity for "
                       "SDPAConv, gaussian for ChebConv)")
    model.add_argument("--use-euclidean", action="store_true",
                       help="structures with gaussian weights of chord distances")
    model.add_argument("-sc", "--skip-conn-aggr", choices=SKIP_AGGREGATIONS, default="sum",
                       help="aggregation of the two 1-hop convolutions of a block")
    model.add_argument("--single-conv", action="store_true",
                       help="one 2-hop (5x5-like) convolution per block instead of two 1-hop "
                       "ones")
    model.add_argument("-pf", "--pool-func", choices=POOL_MODES, default="stride",
                       help="down-sampling by the 4 NESTED children")
    model.add_argument("-upf", "--unpool-func", type=unpool_name, default="pixel_shuffle",
                       metavar="{" + ",".join(UNPOOL_TYPES) + "}",
                       help="up-sampling by the 4 NESTED children")
    model.add_argument("--icnr", action="store_true",
                       help="ICNR start of the pixel-shuffle up blocks (Aitken et al. 2017): "
                       "each child's output weights start as copies of child 0's, so that pixel "
                       "shuffle starts as nearest up-sampling (it shortens the early plateau of "
                       "the default layout, docs/RESULTS.md); only for a fresh model, with "
                       "-upf pixel_shuffle and SDPAConv")
    model.add_argument("-nl", "--non-linearity", choices=NONLINEARITIES, default="GDN",
                       help="GDN, or 3 residual blocks (RB)")
    model.add_argument("-at", "--attention", action="store_true",
                       help="attention modules (Cheng et al. 2020) in the transforms")
    model.add_argument("-cm", "--context-model", choices=CONTEXT_CHOICES, default="none",
                       help="context model of SphereMeanScaleHyperprior: autoregressive only, "
                       "or full (with the hyperprior)")
    model.add_argument("-arhops", "--ar-hops", type=int, choices=(1, 2), default=1,
                       help="reach of the masked context convolution (hops)")

    train = parser.add_argument_group("training")
    train.add_argument("-e", "--max-epochs", type=int, default=1000,
                       help="last epoch (epochs are numbered from 1)")
    train.add_argument("-lr", "--learning-rate", type=float, default=1e-4,
                       help="Adam learning rate of the model")
    train.add_argument("-lraux", "--aux-learning-rate", type=float, default=1e-3,
                       help="Adam learning rate of the entropy bottleneck's quantiles")
    train.add_argument("--clip_max_norm", "--clip-max-norm", dest="clip_max_norm", type=float,
                       default=1.0, help="gradient clipping norm (0: no clipping)")
    train.add_argument("-bst", "--batch-size-train", type=int, default=10,
                       help="patches per training batch (per process)")
    train.add_argument("-bsvt", "--batch-size-valtest", type=int, default=10,
                       help="patches per validation / evaluation batch")
    train.add_argument("--checkpoint-interval", type=int, default=10,
                       help="save checkpoint_<epoch>.pth.tar every this many epochs")
    train.add_argument("--no-scheduler", action="store_true",
                       help="keep the learning rate fixed (no ReduceLROnPlateau; only with "
                       "--lr-schedule plateau)")
    add_lr_schedule_arguments(train)
    add_clamp_reconstruction_argument(train)
    train.add_argument("--scheduler-patience", type=int, default=20,
                       help="with --lr-schedule plateau: epochs without improvement before "
                       "ReduceLROnPlateau divides the learning rate by sqrt(10) (see "
                       "--patience-unit)")
    train.add_argument("--patience-unit", choices=PATIENCE_UNITS, default="epochs",
                       help="what --scheduler-patience counts: epochs, or optimisation steps "
                       "(batches of a process), turned into ceil(patience / steps per epoch) "
                       "epochs so that it means the same whatever the epoch length")
    train.add_argument("--plateau-patches", type=int, default=0, metavar="N",
                       help="without -v: ReduceLROnPlateau (and checkpoint_best_loss) watches "
                       "the loss, in evaluation mode, on N training patches chosen once from "
                       "--seed (the same every epoch, balanced over caps and belt) instead of "
                       "the training loss; 0: the training loss. Ignored with -v")
    train.add_argument("--validation-start", type=int, default=1,
                       help="first epoch with validation and, with --lr-schedule plateau, "
                       "scheduler steps")
    train.add_argument("--checkpoint-file",
                       help="checkpoint to resume training from, or to evaluate")
    train.add_argument("--init-from", metavar="CKPT", default=None,
                       help="start training from the weights of a checkpoint of this script "
                       "(the same model and channels, any --lambda, training flags and -hr), "
                       "with a new optimiser and schedule from epoch 1: fine-tuning, e.g. the "
                       "lower lambdas of an RD curve from its highest, or at -hr 7 a model "
                       "trained at -hr 6")
    train.add_argument("--weight-transfer", metavar="FILE",
                       help="initialise from a planar CompressAI checkpoint (FactorizedPrior, "
                       "ScaleHyperprior, MeanScaleHyperprior of the same N, M); exact with "
                       "--single-conv")
    train.add_argument("--seed", type=int, default=None,
                       help="seed of torch, numpy and random (default: the checkpoint's when "
                       "resuming, else drawn at random; recorded in config.txt)")
    train.add_argument("--print-freq", type=int, default=100,
                       help="log the losses every this many batches (0: never)")

    test = parser.add_argument_group("evaluation")
    test.add_argument("--foldername-valtest", default="reconstruction",
                      help="folder, inside -o, of the reconstructions, rates.txt and "
                      "test_results.csv")
    test.add_argument("--only-npy-valtest", action="store_true",
                      help="write the reconstructions without their Mollweide PNGs")
    test.add_argument("--skip-tested", action="store_true",
                      help="keep the maps already evaluated in the evaluation folder")
    test.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                      help="deterministic entropy parameters, as oslo_codec.py: the "
                      "hyper-synthesis and the CDF tables in float64 on one CPU thread, so that "
                      "the strings are those of oslo_codec.py on any machine; "
                      "--no-deterministic: CompressAI's float32 ones. Default: on, except for "
                      "the context models (not covered)")
    test.add_argument("--scale-table-levels", type=int, default=None,
                      help="entries L of the scale table of y, exp(linspace(log 0.11, log 256, "
                      "L)), recorded in the checkpoints (default: 256 for a new training; "
                      "otherwise the checkpoint's, 64 for checkpoints that do not record it)")

    device = parser.add_argument_group("device")
    device.add_argument("-g", "--gpu", action="store_true", help="run on CUDA")
    device.add_argument("-gid", "--gpu_id", "--gpu-id", dest="gpu_id", type=int, default=-1,
                        help="CUDA device index with -g (-1: the current device; under torchrun "
                        "each process takes its LOCAL_RANK)")
    device.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    run(args)


if __name__ == "__main__":
    run_main(main)
