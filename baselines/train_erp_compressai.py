"""Planar baseline of the RD study: CompressAI's own FactorizedPrior / ScaleHyperprior trained
on ERP crops of the training images of the sphere pipeline, and evaluated on the ERP test
images with real bitstreams.

Names: the lists -i / -t are step 1's train.txt / test.txt; only their names are used. The
name of an entry is its stem without --files-prefix (default ``healpix_sampling_res_{r}_``), and
its original is ``<-o>/<name>.<-oe>``.

ERP images of the codec: ``W x W/2`` with ``W`` = --erp-width (default ``4 * nside =
4 * 2**r``), made by sampling the original bilinearly at the ERP pixel centres
(:func:`utils.sampling.resample_erp`: the bilinear rule of step 1's HEALPix sampling, rounded to
``uint8``). For the codec, an image is padded (replicate) on the right and at the bottom to a
multiple of 64, and the decoded image is cropped back.

Training (-i): ``-np`` random ``--crop-size`` crops per image and epoch (they wrap around in
longitude), drawn from the seed and the epoch, in batches of -bst; loss
``bpp + lambda * 255**2 * MSE`` (``compressai.losses.RateDistortionLoss``, bpp per pixel of the
crop; with ``--distortion-weight latitude`` the MSE weights each row by ``cos(latitude)``, see
:func:`latitude_criterion`); Adam (-lr) on the model, Adam (-lraux) on the ``quantiles``,
gradient clipping, the entropy bottleneck's auxiliary loss; the learning-rate schedule of step 3
(--lr-schedule, :func:`spherical_models.training.make_scheduler`): ``ReduceLROnPlateau`` on the
training loss (factor ``sqrt(0.1)``, --scheduler-patience epochs; --no-scheduler), as step 3
without validation, or step / cosine decay over -e epochs.
Outputs in -O: ``log.csv`` (epoch,loss,bpp,mse,lr,seconds), ``config.txt``,
``checkpoint_<epoch>.pth.tar`` every --checkpoint-interval epochs and ``final.pth.tar``.
--checkpoint-file resumes at the epoch after the checkpoint's; --init-from starts from another
checkpoint's weights (fine-tuning to a new lambda).

Evaluation (-t, after training, or of --checkpoint-file), in ``<-O>/<--foldername-valtest>/``:

* ``<listname>_reconstructed.png``: the decoded ERP image (``uint8`` RGB, ``W x W/2``), where
  listname is the test entry's stem (``healpix_sampling_res_8_earth_day``), as in step 4;
* ``rates.txt``: step 4's format (:func:`spherical_models.evaluation.rates_text`): total bits
  per image, theoretical = sum over the latents of ``ceil(sum -log2 likelihoods)``, actual =
  8 x the bytes of all strings;
* ``rd.csv``: the CSV of ``misc/compute_spherical_psnr.py --csv``: bpp = actual bits /
  ``12 * 4**r``, the HEALPix pixels at -r (**not** the ERP pixels), so that all RD curves share
  one axis; S-PSNR and WS-PSNR of the full-size original against the decoded image
  (:func:`utils.metrics.spherical_psnr`, WS-PSNR on the decoded image's grid, where the
  original is resampled as the codec's input was).

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
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from compressai.losses import RateDistortionLoss
from compressai.models import CompressionModel, FactorizedPrior, ScaleHyperprior
from compressai.zoo.image import cfgs as ZOO_CHANNELS
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from spherical_models.checkpoint import check_checkpoint, read_torch_file, save_checkpoint
from spherical_models.cli import (
    HelpFormatter,
    add_lr_schedule_arguments,
    add_sphere_points_argument,
    check_lr_schedule,
)
from spherical_models.distributed import synchronize
from spherical_models.evaluation import (
    RECONSTRUCTION_SUFFIX,
    ImageResult,
    rates_text,
    string_bytes,
    tensor_bits,
)
from spherical_models.training import (
    EpochContext,
    Meters,
    configure_optimizers,
    epoch_seed,
    make_scheduler,
    seed_everything,
    step_scheduler,
    train_step,
    write_config,
    write_log_csv,
)
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.healpix import npix_of, nside_of
from utils.io import atomic_path, load_rgb, original_names, read_list, write_text
from utils.metrics import erp_row_weights, spherical_psnr
from utils.rd import Row, mean_row, results_csv
from utils.sampling import resample_erp
from utils.sphere_points import load_or_create

MODELS: dict[str, type[CompressionModel]] = {
    "FactorizedPrior": FactorizedPrior,
    "ScaleHyperprior": ScaleHyperprior,
}
"""The CompressAI models of -m, by name."""

ZOO_NAMES = {"FactorizedPrior": "bmshj2018-factorized", "ScaleHyperprior": "bmshj2018-hyperprior"}
"""CompressAI zoo name of each model, whose ``cfgs`` give the (N, M) of a quality."""

PAD_MULTIPLE = 64
"""The codec's images are padded to a multiple of this (the hyperprior's down-sampling)."""

DISTORTION_WEIGHTS = ("none", "latitude")
"""The choices of --distortion-weight."""

CHECKPOINT_FORMAT = "oslo-erp-compressai-checkpoint"
CHECKPOINT_VERSION = 1
LOG_COLUMNS = ("epoch", "loss", "bpp", "mse", "lr", "seconds")


@dataclass(frozen=True)
class Entry:
    """One entry of a list: its stem (``listname``), the original's name, and its path."""

    listname: str
    name: str
    original: Path


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
    add("-O", "--out-dir", required=True,
        help="output folder: checkpoints, log.csv, config.txt, evaluation folder")
    add("-m", "--model", choices=list(MODELS), default="ScaleHyperprior",
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
        help="random crops per training image and epoch")
    add("--crop-size", type=int, default=256,
        help="side of the square training crops (a multiple of 64, at most W/2)")
    add("-bst", "--batch-size-train", type=int, default=8, help="crops per training batch")
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
    add("--scheduler-patience", type=int, default=20,
        help="with --lr-schedule plateau: epochs without improvement of the training loss "
             "before ReduceLROnPlateau divides the learning rate by sqrt(10)")
    add("--seed", type=int, default=0,
        help="seed of the weights' initialisation and of each epoch's crops and noise")
    add("--checkpoint-file", default=None, metavar="CKPT",
        help="checkpoint to resume training from (with -i), or to evaluate (with -t only)")
    add("--init-from", default=None, metavar="CKPT",
        help="start training (-i) from the weights of a checkpoint of this script (the same "
             "-m, channels and --erp-width, any --lambda), with a new optimiser and schedule "
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


# ---------------------------------------------------------------------------------------------
# Arguments, names and images


def check_args(args: argparse.Namespace) -> None:
    """:class:`OsloError` on flags out of range; fills the defaults that depend on -r."""
    if args.train_data is None and args.test_data is None:
        raise OsloError("nothing to do: give -i/--train-data (training) and/or -t/--test-data")
    if args.init_from is not None and (args.train_data is None or args.checkpoint_file):
        raise OsloError("--init-from needs -i/--train-data and excludes --checkpoint-file")
    if args.train_data is None and args.checkpoint_file is None:
        raise OsloError("evaluation without training needs --checkpoint-file")
    if not 0 <= args.healpix_res <= 13:
        raise OsloError(f"-r/--healpix-res must be in 0..13, got {args.healpix_res}")
    if args.erp_width is None:
        args.erp_width = 4 * nside_of(args.healpix_res)
    if args.erp_width < 2 or args.erp_width % 2:
        raise OsloError(f"--erp-width must be even and positive, got {args.erp_width}")
    if args.files_prefix is None:
        args.files_prefix = f"healpix_sampling_res_{args.healpix_res}_"
    if args.channels is not None and min(args.channels) < 1:
        raise OsloError(f"--channels must be positive, got {args.channels}")
    for flag, value in (("-e/--epochs", args.epochs), ("-np/--crops-per-image",
                        args.crops_per_image), ("-bst/--batch-size-train",
                        args.batch_size_train)):
        if value < 1:
            raise OsloError(f"{flag} must be >= 1, got {value}")
    if args.seed < 0:
        raise OsloError(f"--seed must be >= 0, got {args.seed}")
    if args.scheduler_patience < 0:
        raise OsloError(f"--scheduler-patience must be >= 0, got {args.scheduler_patience}")
    check_lr_schedule(args)
    if args.checkpoint_interval < 0:
        raise OsloError(f"--checkpoint-interval must be >= 0, got {args.checkpoint_interval}")
    if args.patch_size_valtest < 0 or args.patch_size_valtest % PAD_MULTIPLE:
        raise OsloError(f"--patch-size-valtest must be 0 or a positive multiple of "
                        f"{PAD_MULTIPLE}, got {args.patch_size_valtest}")
    if args.train_data is not None:
        height = args.erp_width // 2
        if args.crop_size < PAD_MULTIPLE or args.crop_size % PAD_MULTIPLE:
            raise OsloError(f"--crop-size must be a positive multiple of {PAD_MULTIPLE}, got "
                            f"{args.crop_size}")
        if args.crop_size > height:
            raise OsloError(f"--crop-size {args.crop_size} is larger than the ERP images "
                            f"({args.erp_width} x {height}; see --erp-width)")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise OsloError(f"-O/--out-dir '{out}' is not a folder")


def model_channels(args: argparse.Namespace) -> tuple[int, int]:
    """``(N, M)``: --channels, or CompressAI's zoo configuration of -q for -m."""
    if args.channels is not None:
        return args.channels[0], args.channels[1]
    return ZOO_CHANNELS[ZOO_NAMES[args.model]][args.quality]


def list_entries(list_file: str, folder: str, args: argparse.Namespace) -> list[Entry]:
    """The entries of a list file, their original names (:func:`utils.io.original_names`) and
    paths in ``folder``; :class:`OsloError` if an original is missing."""
    names = original_names(list_file, args.files_prefix, "")
    entries = [Entry(path.stem, name, Path(folder) / f"{name}.{args.original_ext}")
               for path, name in zip(read_list(list_file), names, strict=True)]
    for entry in entries:
        if not entry.original.is_file():
            raise OsloError(f"original '{entry.original}' of '{entry.listname}' (list "
                            f"'{list_file}') does not exist")
    return entries


def codec_image(original: np.ndarray, width: int) -> np.ndarray:
    """The codec's ERP image ``[W/2, W, 3]`` (``uint8``) of an original ``[H0, W0, 3]``."""
    return resample_erp(original, width, width // 2)


def to_tensor(image: np.ndarray) -> Tensor:
    """``uint8`` ``[H, W, 3]`` -> ``float32`` ``[1, 3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255)


def pad(x: Tensor, multiple: int = PAD_MULTIPLE) -> Tensor:
    """``[B, C, H, W]`` padded on the right and at the bottom (replicate) to multiples of
    ``multiple``: ``[B, C, H', W']``."""
    height, width = x.shape[-2:]
    return F.pad(x, (0, -width % multiple, 0, -height % multiple), mode="replicate")


def random_crops(images: Tensor, size: int, per_image: int) -> tuple[Tensor, Tensor]:
    """``per_image`` random ``size x size`` crops of each image ``[n, 3, H, W]``, shuffled.

    Rows lie inside the image; columns wrap around (the longitude is periodic). Draws from
    torch's global generator.

    Returns:
        ``(crops, top_rows)``: ``[n * per_image, 3, size, size]``, and the image row of each
        crop's first row ``[n * per_image]``.
    """
    count, (height, width) = len(images) * per_image, images.shape[-2:]
    owner = torch.arange(len(images)).repeat_interleave(per_image)
    top = torch.randint(0, height - size + 1, (count,))
    rows = top[:, None] + torch.arange(size)
    cols = (torch.randint(0, width, (count, 1)) + torch.arange(size)) % width
    crops = images[owner[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [n, s, s, 3]
    order = torch.randperm(count)
    return crops.permute(0, 3, 1, 2)[order], top[order]


def area_row_weights(height: int) -> Tensor:
    """WS-PSNR's row weights ``cos(latitude)`` of an ERP image of ``height`` rows
    (:func:`utils.metrics.erp_row_weights`) divided by their mean: ``float32`` ``[height]``."""
    weights = torch.from_numpy(erp_row_weights(height)).float()
    return weights / weights.mean()


def latitude_criterion(
    lmbda: float, row_weights: Tensor, top_rows: Tensor, size: int
) -> RateDistortionLoss:
    """The loss of a batch of crops ``[B, 3, S, S]`` (``top_rows`` ``[B]``, from
    :func:`random_crops`) with the sphere's area-weighted MSE::

        MSE_w = mean over b, c, i, j of  w[t_b + i] / mean(w) * (x_hat[b,c,i,j] - x[b,c,i,j])**2

    where ``w[v] / mean(w)`` are ``row_weights`` (:func:`area_row_weights` of the image's
    height): ``w[v] = cos(latitude of row v)`` are WS-PSNR's row weights and ``mean(w)`` their
    mean over the image's rows, so that an error equal on every row weighs as in the plain MSE
    (lambda keeps its meaning). Each pixel's error then counts by the area it covers on the
    sphere, as in WS-PSNR: a crop at a pole costs little distortion, while its rate counts in
    full. The rate term is ``RateDistortionLoss``'s."""
    crop_weights = row_weights[top_rows[:, None] + torch.arange(size)][:, None, :, None]
    criterion = RateDistortionLoss(lmbda=lmbda)
    criterion.metric = WeightedMSE(crop_weights)
    return criterion


class WeightedMSE(torch.nn.Module):
    """``mean(weights * (x_hat - x)**2)``, ``weights`` broadcast to the inputs' shape."""

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return torch.mean(self.weights.to(x.device) * (x_hat - x) ** 2)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def model_config(args: argparse.Namespace) -> dict[str, Any]:
    """What shapes the model and the run, stored in the checkpoints."""
    n, m = model_channels(args)
    return {"model": args.model, "N": n, "M": m, "lambda": args.lmbda,
            "erp_width": args.erp_width, "healpix_res": args.healpix_res,
            "crop_size": args.crop_size, "seed": args.seed, "lr_schedule": args.lr_schedule,
            "distortion_weight": args.distortion_weight}


def load_checkpoint(path: str, expected: Mapping[str, Any]) -> dict[str, Any]:
    """Read a checkpoint of this script and check its configuration against ``expected``
    (:func:`spherical_models.training.check_checkpoint`); :class:`OsloError` otherwise."""
    checkpoint = read_torch_file(path, "checkpoint file")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise OsloError(f"'{path}' is not a checkpoint of baselines/train_erp_compressai.py")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise OsloError(f"checkpoint '{path}' has format version {checkpoint.get('version')}, "
                        f"this script reads version {CHECKPOINT_VERSION}")
    # checkpoints written before --lr-schedule and --distortion-weight: plateau, plain MSE
    checkpoint = {**checkpoint, "config": {"lr_schedule": "plateau", "distortion_weight": "none",
                                           **checkpoint["config"]}}
    check_checkpoint(checkpoint, expected, path)
    return checkpoint


def model_of(checkpoint: Mapping[str, Any], path: str) -> CompressionModel:
    """The model of a checkpoint's configuration, with its weights."""
    config = checkpoint["config"]
    model = MODELS[config["model"]](config["N"], config["M"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise OsloError(f"cannot load the weights of checkpoint '{path}': {first_line}") from None
    return model


# ---------------------------------------------------------------------------------------------
# Training


def train(
    args: argparse.Namespace, entries: Sequence[Entry], device: torch.device
) -> CompressionModel:
    """Train (or resume training) on the ERP images of ``entries``; write the checkpoints, logs
    and ``config.txt`` in -O; return the trained model (training mode, on ``device``)."""
    log = get_logger()
    out = Path(args.out_dir)
    config = model_config(args)
    seed_everything(args.seed)
    model = MODELS[args.model](config["N"], config["M"])
    start, history, checkpoint = 1, [], None
    if args.checkpoint_file is not None:
        expected = {k: config[k] for k in ("model", "N", "M", "lambda", "erp_width",
                                           "lr_schedule", "distortion_weight")}
        checkpoint = load_checkpoint(args.checkpoint_file, expected)
        model = model_of(checkpoint, args.checkpoint_file)
        start, history = checkpoint["epoch"] + 1, list(checkpoint["history"])
        log.info("resuming from '%s' at epoch %d", args.checkpoint_file, start)
    elif args.init_from is not None:
        initial = load_checkpoint(args.init_from,
                                  {k: config[k] for k in ("model", "N", "M", "erp_width")})
        model = model_of(initial, args.init_from)
        log.info("initialised from '%s' (lambda %g, epoch %d)", args.init_from,
                 initial["config"]["lambda"], initial["epoch"])
    model.to(device)
    optimizer, aux_optimizer = configure_optimizers(model, args.learning_rate,
                                                    args.aux_learning_rate)
    scheduler = None if args.no_scheduler else make_scheduler(
        optimizer, args.scheduler_patience, schedule=args.lr_schedule, epochs=args.epochs,
        step_at=args.lr_step_at, step_factor=args.lr_step_factor, lr_min=args.lr_min,
    )
    if checkpoint is not None:  # torch moves the optimiser states to the parameters' device
        optimizer.load_state_dict(checkpoint["optimizer"])
        if aux_optimizer is not None:
            aux_optimizer.load_state_dict(checkpoint["aux_optimizer"])
        if scheduler is not None and checkpoint.get("lr_scheduler") is not None:
            scheduler.load_state_dict(checkpoint["lr_scheduler"])
    images = torch.stack([
        torch.from_numpy(codec_image(load_rgb(e.original, "erp", "original"), args.erp_width))
        for e in entries]).permute(0, 3, 1, 2)  # uint8 [n, 3, H, W]
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, vars(args), config, script="baselines/train_erp_compressai.py",
                 section="model")
    criterion = RateDistortionLoss(lmbda=args.lmbda)
    row_weights = area_row_weights(images.shape[-2])
    context = EpochContext(criterion, optimizer, aux_optimizer, geometry=None, device=device,
                           clip_max_norm=args.clip_max_norm, warmup_steps=args.lr_warmup)
    log.info("training %s (N=%d, M=%d) on %d ERP images of %d x %d, epochs %d..%d",
             args.model, config["N"], config["M"], len(entries), args.erp_width,
             args.erp_width // 2, start, args.epochs)

    def state(epoch: int) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
                "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "aux_optimizer": (aux_optimizer.state_dict() if aux_optimizer is not None
                                  else None),
                "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": history, "config": config, "args": vars(args)}

    model.train()
    for epoch in range(start, args.epochs + 1):
        began = time.perf_counter()
        seed_everything(epoch_seed(args.seed, epoch, 0))  # crops and noise of this epoch
        crops, top_rows = random_crops(images, args.crop_size, args.crops_per_image)
        meters = Meters()
        batches = range(0, len(crops), args.batch_size_train)
        for first in tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False,
                          disable=True if args.no_progress else None, dynamic_ncols=True):
            x = crops[first : first + args.batch_size_train].to(device).float().div_(255)
            if args.distortion_weight == "latitude":
                context = replace(context, criterion=latitude_criterion(
                    args.lmbda, row_weights, top_rows[first : first + args.batch_size_train],
                    args.crop_size))
            losses, aux = train_step(model, model, x, context)
            meters.add(losses, len(x), aux)
        synchronize(device)
        summary = meters.summary()
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            step_scheduler(scheduler, summary["loss"])
        history.append({"epoch": epoch, "loss": summary["loss"], "bpp": summary["bpp"],
                        "mse": summary["mse"], "lr": lr,
                        "seconds": time.perf_counter() - began})
        log.info("epoch %d: loss %.4f, bpp %.4f, mse %.6f, aux %.2f | lr %g, %.1f s", epoch,
                 summary["loss"], summary["bpp"], summary["mse"], summary["aux_loss"], lr,
                 history[-1]["seconds"])
        write_log_csv(out / "log.csv", history, LOG_COLUMNS)
        if args.checkpoint_interval and epoch % args.checkpoint_interval == 0:
            save_checkpoint(out / f"checkpoint_{epoch}.pth.tar", state(epoch))
    save_checkpoint(out / "final.pth.tar", state(max(args.epochs, start - 1)))
    return model


# ---------------------------------------------------------------------------------------------
# Evaluation


def to_patches(x: Tensor, size: int) -> Tensor:
    """``[1, C, H, W]`` (``H`` and ``W`` multiples of ``size``) -> its ``size x size`` patches
    in row-major order, ``[(H / size) * (W / size), C, size, size]``."""
    _, channels, height, width = x.shape
    patches = x.reshape(channels, height // size, size, width // size, size)
    return patches.permute(1, 3, 0, 2, 4).reshape(-1, channels, size, size)


def from_patches(patches: Tensor, height: int, width: int) -> Tensor:
    """Inverse of :func:`to_patches`: ``[n, C, s, s]`` -> ``[1, C, height, width]``."""
    _, channels, size, _ = patches.shape
    x = patches.reshape(height // size, width // size, channels, size, size)
    return x.permute(2, 0, 3, 1, 4).reshape(1, channels, height, width)


@torch.no_grad()
def code_image(
    model: CompressionModel, image: np.ndarray, device: torch.device, patch_size: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Compress and decompress an ERP image ``uint8`` ``[H, W, 3]`` (padded to multiples of
    :data:`PAD_MULTIPLE`, or of ``patch_size``, and cropped back): whole (``patch_size`` 0),
    or as a batch of independent ``patch_size x patch_size`` patches, each with its own
    strings.

    The model must be in evaluation mode with its entropy models updated (``update()``).

    Returns:
        ``(decoded, stats)``: ``uint8`` ``[H, W, 3]`` (``round(x_hat * 255)``), and
        ``theoretical_bits``, ``actual_bits``, ``encode_seconds``, ``decode_seconds``.
    """
    height, width = image.shape[:2]
    x = pad(to_tensor(image), patch_size or PAD_MULTIPLE).to(device)
    padded_shape = x.shape[-2:]
    if patch_size:
        x = to_patches(x, patch_size)
    likelihoods = model(x)["likelihoods"]
    theoretical = sum(math.ceil(tensor_bits(v)) for v in likelihoods.values())
    synchronize(device)
    start = time.perf_counter()
    encoded = model.compress(x)
    synchronize(device)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    x_hat = model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
    synchronize(device)
    decode_seconds = time.perf_counter() - start
    if patch_size:
        x_hat = from_patches(x_hat, *padded_shape)
    decoded = x_hat[0, :, :height, :width].mul(255).round_().clamp_(0, 255).to(torch.uint8)
    stats = {"theoretical_bits": theoretical, "actual_bits": 8 * string_bytes(encoded["strings"]),
             "encode_seconds": encode_seconds, "decode_seconds": decode_seconds}
    return decoded.permute(1, 2, 0).cpu().numpy(), stats


def evaluate(
    args: argparse.Namespace, model: CompressionModel, entries: Sequence[Entry],
    device: torch.device,
) -> list[Row]:
    """Code every test image with real bitstreams and write the decoded PNGs, ``rates.txt``
    and ``rd.csv`` (module docstring) in ``<-O>/<--foldername-valtest>``.

    The :class:`~spherical_models.evaluation.ImageResult` of an image (for ``rates.txt``) has
    ``num_pixels`` = the HEALPix pixels at -r and ``psnr`` = its WS-PSNR on RGB.

    Returns:
        One :class:`~utils.rd.Row` per image (named by the original), then
        their mean.
    """
    log = get_logger()
    folder = Path(args.out_dir) / args.foldername_valtest
    lat, lon = load_or_create(args.sphere_points)
    npix = npix_of(args.healpix_res)
    model.to(device).eval()
    model.update(force=True)
    folder.mkdir(parents=True, exist_ok=True)
    results, rows = [], []
    for entry in tqdm(entries, desc="evaluation", unit="image",
                      disable=True if args.no_progress else None):
        original = load_rgb(entry.original, "erp", "original")
        decoded, stats = code_image(model, codec_image(original, args.erp_width), device,
                                    args.patch_size_valtest)
        png = folder / f"{entry.listname}{RECONSTRUCTION_SUFFIX}.png"
        with atomic_path(png, ".png") as tmp:
            Image.fromarray(decoded).save(tmp)
        metrics = spherical_psnr(original, "erp", decoded, "erp", lat, lon, resample=True)
        results.append(ImageResult(name=entry.listname, num_pixels=npix,
                                   psnr=metrics["ws_psnr_rgb"], **stats))
        rows.append(Row(entry.name, stats["actual_bits"] / npix, metrics))
        log.info("%s: %.4f bpp (theoretical %.4f), encode %.2f s, decode %.2f s",
                 entry.listname, results[-1].bpp_actual, results[-1].bpp_theoretical,
                 stats["encode_seconds"], stats["decode_seconds"])
        print(f"{entry.name}: {rows[-1].bpp:.4f} bpp, S-PSNR Y {metrics['s_psnr_y']:.2f} dB, "
              f"WS-PSNR Y {metrics['ws_psnr_y']:.2f} dB")
    rows.append(mean_row(rows))
    print(f"mean: {rows[-1].bpp:.4f} bpp, S-PSNR Y {rows[-1].metrics['s_psnr_y']:.2f} dB, "
          f"WS-PSNR Y {rows[-1].metrics['ws_psnr_y']:.2f} dB "
          f"(bpp per HEALPix pixel at r = {args.healpix_res})")
    write_text(folder / "rates.txt", rates_text(results, args.healpix_res))
    write_text(folder / "rd.csv", results_csv(rows))
    return rows


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Train and/or evaluate (module docstring); return the evaluation's rows (one per test
    image, then the mean; empty without -t)."""
    args = build_parser().parse_args(argv)
    setup_logging()
    check_args(args)
    if args.gpu and not torch.cuda.is_available():
        raise OsloError("-g/--gpu: CUDA is not available")
    device = torch.device("cuda" if args.gpu else "cpu")
    train_folder = args.train_original_dir or args.original_dir
    train_entries = list_entries(args.train_data, train_folder, args) if args.train_data else []
    test_entries = list_entries(args.test_data, args.original_dir, args) \
        if args.test_data else []
    if train_entries:
        model = train(args, train_entries, device)
    else:
        n, m = model_channels(args)
        checkpoint = load_checkpoint(args.checkpoint_file, {"model": args.model, "N": n, "M": m})
        model = model_of(checkpoint, args.checkpoint_file)
    return evaluate(args, model, test_entries, device) if test_entries else []


if __name__ == "__main__":
    run_main(main)
