"""The planar baseline's steps 3 and 4 from an :class:`~spherical_models.config.ErpRunConfig`:
a planar model of the registry (:data:`~spherical_models.models.PLANAR_MODELS`, CompressAI's
own FactorizedPrior and ScaleHyperprior) trained on random crops of ERP images by the
:class:`~spherical_models.training.trainer.Trainer` of the spherical codecs (the same epochs,
schedules, warm-up, checkpoints, resumption and processes), then evaluated on the ERP test
images with real bitstreams.

Training outputs in ``-O``: ``log.csv`` (:data:`LOG_COLUMNS`), ``config.txt``,
``checkpoint_<epoch>.pth.tar`` every ``--checkpoint-interval`` epochs and ``final.pth.tar``
(format :data:`CHECKPOINT_FORMAT`).

Evaluation outputs in ``<-O>/<--foldername-valtest>/``:

* ``<listname>_reconstructed.png``: the decoded ERP image (``uint8`` RGB, ``W x W/2``), where
  listname is the test entry's stem (``healpix_sampling_res_8_earth_day``), as in step 4;
* ``rates.txt``: step 4's format (:func:`spherical_models.evaluation.results.rates_text`): total
  bits per image, theoretical = sum over the latents of ``ceil(sum -log2 likelihoods)``, actual =
  8 x the bytes of all strings;
* ``rd.csv``: the CSV of ``misc/compute_spherical_psnr.py --csv``: bpp = actual bits /
  ``12 * 4**r``, the HEALPix pixels at -r (**not** the ERP pixels), so that all RD curves share
  one axis; S-PSNR and WS-PSNR of the full-size original against the decoded image
  (:func:`utils.metrics.spherical_psnr`, WS-PSNR on the decoded image's grid, where the
  original is resampled as the codec's input was).

With ``--layout healpix`` (:mod:`spherical_models.planar.faces`), training draws random HEALPix
patches of the training maps laid out as images (:class:`~spherical_models.planar.faces.
RandomPatches`), and each test map is coded by its patches (:func:`~spherical_models.planar.
faces.code_map`): ``<listname>_reconstructed.npy`` (``uint8`` ``[npix, 3]`` NESTED) and its
gray Mollweide view ``.png`` replace the PNG, as step 4 saves them, and ``rd.csv`` measures the
decoded map against the original ERP image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from compressai.losses import RateDistortionLoss
from compressai.models import CompressionModel
from PIL import Image
from tqdm import tqdm

from spherical_models.config import ErpRunConfig
from spherical_models.evaluation.results import (
    RECONSTRUCTION_SUFFIX,
    ImageResult,
    mollweide_width,
    rates_text,
)
from spherical_models.models import planar_channels, planar_model_from_config
from spherical_models.planar.draws import EpochDraws
from spherical_models.planar.erp import (
    CropStep,
    Entry,
    RandomCrops,
    area_row_weights,
    code_image,
    codec_image,
    list_entries,
)
from spherical_models.planar.faces import RandomPatches, code_map
from spherical_models.training.checkpoint import (
    CHECKPOINT_VERSION,
    check_checkpoint,
    read_torch_file,
)
from spherical_models.training.distributed import (
    Distributed,
    barrier,
    init_distributed,
    select_device,
    shutdown,
)
from spherical_models.training.epoch import seed_everything
from spherical_models.training.logs import write_config
from spherical_models.training.trainer import Trainer, TrainingData, TrainingOutputs, TrainingPhase
from utils.cli import get_logger
from utils.datasets import read_map_list
from utils.errors import OsloError
from utils.healpix import npix_of, nside_of
from utils.io import atomic_path, load_map, load_rgb, save_npy, write_text
from utils.metrics import spherical_psnr
from utils.rd import Row, mean_row, results_csv
from utils.sphere_points import load_or_create
from utils.visualization import save_mollweide

SCRIPT = "baselines/train_erp_compressai.py"
CHECKPOINT_FORMAT = "oslo-erp-compressai-checkpoint"
LOG_COLUMNS = ("epoch", "loss", "bpp", "mse", "lr", "seconds")
OUTPUTS = TrainingOutputs(CHECKPOINT_FORMAT, LOG_COLUMNS, loss_txt=False, best_checkpoint=False)
"""What the planar trainings write: their checkpoint format, ``log.csv`` of
:data:`LOG_COLUMNS`, neither ``loss.txt`` nor ``checkpoint_best_loss.pth.tar``."""

RESUME_KEYS = ("model", "N", "M", "lambda", "erp_width", "lr_schedule", "distortion_weight",
               "layout", "patch_res_train")
"""Entries of :func:`model_config` that a checkpoint must match to resume training from it."""

INIT_KEYS = ("model", "N", "M", "layout", "patch_res_train")
"""Entries of :func:`model_config` that a checkpoint must match to start a training from it
(``--init-from``): the model, not the data; ``--erp-width`` (``-r``) may differ, as ``-hr``
may for the OSLO models."""

LAYOUT_DEFAULTS = {"layout": "erp", "patch_res_train": None}
"""The entries of :func:`model_config` that only ``--layout healpix`` records, and their values
for the ERP layout, whose checkpoints do not record them (as before ``--layout``)."""

OLD_CHECKPOINT_DEFAULTS = {"lr_schedule": "plateau", "distortion_weight": "none"}
"""What checkpoints written before ``--lr-schedule`` and ``--distortion-weight`` were trained
with."""

# ---------------------------------------------------------------------------------------------
# Model and checkpoints


def model_config(config: ErpRunConfig) -> dict[str, Any]:
    """What shapes the model and the run, stored in the checkpoints: the model, its ``(N,
    M)`` (``--channels``, else CompressAI's of ``-q``), ``--lambda``, ``--erp-width``, ``-r``,
    ``--crop-size``, ``--seed``, ``--lr-schedule``, ``--distortion-weight``; with ``--layout
    healpix``, the layout and ``-prt`` too (:data:`LAYOUT_DEFAULTS`)."""
    n, m = config.channels or planar_channels(config.model, config.quality)
    recorded = {"model": config.model, "N": n, "M": m, "lambda": config.lmbda,
                "erp_width": config.erp_width, "healpix_res": config.healpix_res,
                "crop_size": config.crop_size, "seed": config.seed,
                "lr_schedule": config.training.lr_schedule,
                "distortion_weight": config.distortion_weight}
    if config.layout != "erp":
        recorded |= {"layout": config.layout, "patch_res_train": config.patch_res_train}
    return recorded


def expected_config(config: ErpRunConfig, keys: Sequence[str]) -> dict[str, Any]:
    """The entries ``keys`` of :func:`model_config` that a checkpoint must match, with
    :data:`LAYOUT_DEFAULTS` for those it does not record."""
    recorded = {**LAYOUT_DEFAULTS, **model_config(config)}
    return {key: recorded[key] for key in keys}


def load_checkpoint(path: str, expected: Mapping[str, Any]) -> dict[str, Any]:
    """Read a checkpoint of the planar models and check its configuration against
    ``expected`` (:func:`spherical_models.training.checkpoint.check_checkpoint`); :class:`OsloError`
    otherwise."""
    checkpoint = read_torch_file(path, "checkpoint file")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise OsloError(f"'{path}' is not a checkpoint of {SCRIPT}")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise OsloError(f"checkpoint '{path}' has format version {checkpoint.get('version')}, "
                        f"this script reads version {CHECKPOINT_VERSION}")
    checkpoint = {**checkpoint, "config": {**OLD_CHECKPOINT_DEFAULTS, **LAYOUT_DEFAULTS,
                                           **checkpoint["config"]}}
    check_checkpoint(checkpoint, expected, path)
    return checkpoint


def model_of(checkpoint: Mapping[str, Any], path: str) -> CompressionModel:
    """The model of a checkpoint's configuration, with its weights."""
    model = planar_model_from_config(checkpoint["config"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise OsloError(f"cannot load the weights of checkpoint '{path}': {first_line}") from None
    return model


# ---------------------------------------------------------------------------------------------
# Entry point


def run(config: ErpRunConfig) -> list[Row]:
    """Train (``-i``) and/or evaluate (``-t``) as ``config`` says; returns the evaluation's
    rows (one per test image, then the mean; empty without ``-t``, and on the processes
    other than the first, which alone evaluates)."""
    info = init_distributed(config.gpu)
    try:
        return _run(config, info)
    finally:
        shutdown(info)


def _run(config: ErpRunConfig, info: Distributed) -> list[Row]:
    device = select_device(config.gpu, -1, info)
    prefix, extension = config.files_prefix, config.original_ext
    faces = config.layout != "erp"
    train_entries: Sequence[Entry] | Sequence[Path] = []
    if config.train_data and faces:
        train_entries = read_map_list(config.train_data, config.healpix_res)
    elif config.train_data:
        train_entries = list_entries(config.train_data, config.train_original_dir, prefix,
                                     extension)
    test_entries = list_entries(config.test_data, config.original_dir, prefix,
                                extension) if config.test_data else []
    if test_entries and faces:
        read_map_list(config.test_data, config.healpix_res)  # the maps, checked
    if train_entries:
        model = train(config, train_entries, info, device)
    else:
        path = config.training.checkpoint_file
        checkpoint = load_checkpoint(path, expected_config(config, ("model", "N", "M")))
        model = model_of(checkpoint, path)
    if not test_entries or not info.is_main:
        return []
    return evaluate(config, model, test_entries, device)


def train(
    config: ErpRunConfig, entries: Sequence[Entry] | Sequence[Path], info: Distributed,
    device: torch.device,
) -> CompressionModel:
    """Train (or resume training) on the ERP images of ``entries`` (or, with ``--layout
    healpix``, on the patches of the maps ``entries``) with the
    :class:`~spherical_models.training.trainer.Trainer`; return the trained model (on
    ``device``)."""
    log = get_logger()
    training = config.training
    recorded = model_config(config)
    seed_everything(config.seed)
    model = planar_model_from_config(recorded)
    checkpoint, start = None, 1
    if training.checkpoint_file is not None:
        checkpoint = load_checkpoint(training.checkpoint_file,
                                     expected_config(config, RESUME_KEYS))
        model = model_of(checkpoint, training.checkpoint_file)
        start = checkpoint["epoch"] + 1
        log.info("resuming from '%s' at epoch %d", training.checkpoint_file, start)
    elif config.init_from is not None:
        initial = load_checkpoint(config.init_from, expected_config(config, INIT_KEYS))
        model = model_of(initial, config.init_from)
        log.info("initialised from '%s' (lambda %g, epoch %d)", config.init_from,
                 initial["config"]["lambda"], initial["epoch"])
    model.to(device)
    draws, name, what, row_weights = (face_draws if config.layout != "erp" else erp_draws)(
        config, entries, info)
    if info.is_main:
        config.out_dir.mkdir(parents=True, exist_ok=True)
        write_config(config.out_dir, training.arguments, recorded, script=SCRIPT,
                     section="model")
        log.info("training %s (N=%d, M=%d) on %s, epochs %d..%d", config.model,
                 recorded["N"], recorded["M"], what, start, training.max_epochs)
    barrier(info)
    data = TrainingData((TrainingPhase(1, name, draws, draws, config.batch_size_train),),
                        step=CropStep(config.lmbda, row_weights))
    Trainer(training, model, recorded, data, RateDistortionLoss(lmbda=config.lmbda),
            config.seed, info, device, config.out_dir, checkpoint, OUTPUTS).fit()
    return model


def erp_draws(
    config: ErpRunConfig, entries: Sequence[Entry], info: Distributed
) -> tuple[EpochDraws, str, str, torch.Tensor | None]:
    """The training data of ``--layout erp``: the random crops of the codec's ERP images of
    ``entries`` (:class:`~spherical_models.planar.erp.RandomCrops`), the phase's name, what the
    log calls the data, and the crops' row weights (``--distortion-weight latitude``, else
    :obj:`None`)."""
    images = torch.stack([
        torch.from_numpy(codec_image(load_rgb(e.original, "erp", "original"), config.erp_width))
        for e in entries]).permute(0, 3, 1, 2)  # uint8 [n, 3, H, W]
    crops = RandomCrops(images, config.crop_size, config.crops_per_image,
                        config.batch_size_train, info.rank, info.world_size)
    row_weights = area_row_weights(images.shape[-2]) \
        if config.distortion_weight == "latitude" else None
    what = f"{len(entries)} ERP images of {config.erp_width} x {config.erp_width // 2}"
    return crops, "ERP crops", what, row_weights


def face_draws(
    config: ErpRunConfig, files: Sequence[Path], info: Distributed
) -> tuple[EpochDraws, str, str, None]:
    """The training data of ``--layout healpix``: the random ``-prt`` patches, as images, of
    the maps ``files`` (:class:`~spherical_models.planar.faces.RandomPatches`: those that step 3
    draws with the same ``-np`` and ``--seed``), held in memory
    as ``uint8`` ``[n, npix, 3]``, with the values of :func:`erp_draws` (no row weights: the
    HEALPix pixels have equal areas)."""
    maps = torch.from_numpy(np.stack([np.asarray(load_map(f)) for f in files]))
    patches = RandomPatches(maps, config.patch_res_train, config.crops_per_image,
                            config.batch_size_train, config.seed, info.rank, info.world_size)
    side = nside_of(config.patch_res_train)
    what = (f"{len(files)} HEALPix maps of resolution {config.healpix_res}, patches of "
            f"resolution {config.patch_res_train} ({side} x {side} images)")
    return patches, "HEALPix patches", what, None


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    config: ErpRunConfig, model: CompressionModel, entries: Sequence[Entry],
    device: torch.device,
) -> list[Row]:
    """Code every test image with real bitstreams (:func:`code_erp_entry`; with ``--layout
    healpix``, its map: :func:`code_face_entry`) and write the decoded images, ``rates.txt`` and
    ``rd.csv`` (module docstring) in ``<-O>/<--foldername-valtest>``.

    The :class:`~spherical_models.evaluation.results.ImageResult` of an image (for ``rates.txt``)
    has ``num_pixels`` = the HEALPix pixels at -r and ``psnr`` = its WS-PSNR on RGB.

    Returns:
        One :class:`~utils.rd.Row` per image (named by the original), then
        their mean.
    """
    log = get_logger()
    folder = config.out_dir / config.foldername_valtest
    lat, lon = load_or_create(config.sphere_points)
    npix = npix_of(config.healpix_res)
    model.to(device).eval()
    model.update(force=True)
    folder.mkdir(parents=True, exist_ok=True)
    results, rows = [], []
    for entry in tqdm(entries, desc="evaluation", unit="image",
                      disable=True if config.training.no_progress else None):
        original = load_rgb(entry.original, "erp", "original")
        stem = folder / f"{entry.listname}{RECONSTRUCTION_SUFFIX}"
        if config.layout == "erp":
            decoded, stats = code_erp_entry(config, model, original, stem, device)
        else:
            decoded, stats = code_face_entry(config, model, entry, stem, device)
        # the layouts are named by the decoded image's projection, "erp" or "healpix"
        metrics = spherical_psnr(original, "erp", decoded, config.layout, lat, lon,
                                 resample=True)
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
          f"(bpp per HEALPix pixel at r = {config.healpix_res})")
    write_text(folder / "rates.txt", rates_text(results, config.healpix_res))
    write_text(folder / "rd.csv", results_csv(rows))
    return rows


def code_erp_entry(
    config: ErpRunConfig, model: CompressionModel, original: np.ndarray, stem: Path,
    device: torch.device,
) -> tuple[np.ndarray, dict[str, float]]:
    """Code the codec's ERP image of an original ``[H0, W0, 3]`` (whole, or by
    ``--patch-size-valtest`` patches: :func:`spherical_models.planar.erp.code_image`) and save
    the decoded image as ``<stem>.png``; return it (``uint8`` ``[W/2, W, 3]``) and its stats."""
    decoded, stats = code_image(model, codec_image(original, config.erp_width), device,
                                config.patch_size_valtest)
    with atomic_path(f"{stem}.png", ".png") as tmp:
        Image.fromarray(decoded).save(tmp)
    return decoded, stats


def code_face_entry(
    config: ErpRunConfig, model: CompressionModel, entry: Entry, stem: Path,
    device: torch.device,
) -> tuple[np.ndarray, dict[str, float]]:
    """Code the map of ``entry`` by its ``-prvt`` patches as images
    (:func:`spherical_models.planar.faces.code_map`) and save the decoded map as step 4 does,
    ``<stem>.npy`` and its gray Mollweide view ``<stem>.png``; return it (``uint8``
    ``[npix, 3]``) and its stats."""
    hp_map = np.asarray(load_map(entry.path))
    decoded, stats = code_map(model, hp_map, config.patch_res_valtest, device)
    save_npy(f"{stem}.npy", decoded)
    save_mollweide(decoded, f"{stem}.png", mollweide_width(config.healpix_res), gray=True)
    return decoded, stats
