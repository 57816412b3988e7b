"""Steps 3 and 4 from a :class:`~spherical_models.config.RunConfig`: the model, the structures
and the checkpoint a run needs, then training (:class:`~spherical_models.training.trainer.Trainer`)
and/or evaluation (:func:`~spherical_models.evaluation.maps.evaluate_maps`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from spherical_models.config import RunConfig
from spherical_models.evaluation.maps import evaluate_maps
from spherical_models.geometry import SphereGeometry
from spherical_models.layers.blocks import icnr_
from spherical_models.layers.sdpa_conv import reset_sdpa_parameters
from spherical_models.models import (
    QUALITY_CHANNELS,
    SCALE_TABLE_LEVELS,
    LayerOptions,
    SphereCompressionModel,
    canonical_config,
    model_from_config,
)
from spherical_models.models.tiling import check_tile_res, coarse_geometry
from spherical_models.training.checkpoint import (
    check_checkpoint,
    load_checkpoint,
    recorded_scale_table_levels,
)
from spherical_models.training.data import training_data
from spherical_models.training.distributed import (
    Distributed,
    barrier,
    gather_objects,
    init_distributed,
    select_device,
    shutdown,
)
from spherical_models.training.epoch import seed_everything
from spherical_models.training.logs import write_config
from spherical_models.training.loss import RateDistortionLoss
from spherical_models.training.trainer import Trainer
from spherical_models.training.weight_transfer import apply_weight_transfer
from utils.cli import get_logger
from utils.datasets import read_map_list
from utils.errors import OsloError

# ---------------------------------------------------------------------------------------------
# The run's model, structures and recorded configuration


def channels(config: RunConfig) -> tuple[int, int]:
    """``(N, M)``: ``--channels`` if given, else those of ``-q``."""
    return config.channels or QUALITY_CHANNELS[config.quality]


def build_model(config: RunConfig) -> SphereCompressionModel:
    """The codec that the flags describe (random initialisation, ``--conv-init``'s rule for
    the SDPA convolutions, ``--icnr``'s start of the pixel-shuffle blocks)."""
    n, m = channels(config)
    options = LayerOptions(
        conv=config.conv_name, hop=2, skip_aggregation=config.skip_conn_aggr,
        single_conv=config.single_conv, pool=config.pool_func, unpool=config.unpool_func,
        nonlinearity=config.non_linearity, attention=config.attention,
    )
    model = model_from_config({"model": config.model, "N": n, "M": m, **options.to_dict(),
                               "context_model": config.context_model, "ar_hops": config.ar_hops})
    if config.conv_init != "conv2d":  # the layers' own rule: no second draw of the weights
        reset_sdpa_parameters(model, config.conv_init)
    if config.icnr:
        icnr_(model)
    return model


def run_config(config: RunConfig, model: SphereCompressionModel) -> dict[str, Any]:
    """What a checkpoint records and must match: the model's configuration (name, N, M, layer
    options, context model), ``-q``, ``--lambda``, ``-hr``, ``-prt``, ``--patch-border`` and
    ``--sphere-start``, the structures' weights, ``--lr-schedule``, ``--patience-unit`` and
    ``--plateau-patches`` (:data:`TRAINING_ONLY_KEYS`, ``-hr`` among them, checked only when
    resuming training)."""
    return {
        **model.config,
        "quality": config.quality,
        "lambda": config.lmbda,
        "healpix_res": config.healpix_res,
        "patch_res_train": config.patch_res_train,
        "patch_border": config.patch_border,
        "sphere_start": config.sphere_start,
        "weight_type": config.weight_type,
        "use_euclidean": config.use_euclidean,
        "lr_schedule": config.lr_schedule,
        "patience_unit": config.patience_unit,
        "plateau_patches": config.plateau_patches,
    }


TRAINING_ONLY_KEYS = ("healpix_res", "patch_res_train", "patch_border", "sphere_start",
                      "lr_schedule", "patience_unit", "plateau_patches")
"""Entries of :func:`run_config` that a checkpoint must match only to resume training. A
convolution's weights (one kernel tap per direction, or Chebyshev coefficients) do not depend
on the resolution, so a model trained at ``-hr 6`` can be evaluated or fine-tuned at ``-hr 7``
(``oslo_codec.py`` codes any resolution too)."""

OLD_CHECKPOINT_DEFAULTS = {"lr_schedule": "plateau", "patience_unit": "epochs",
                           "plateau_patches": 0, "patch_border": "cut", "sphere_start": 0.0}
"""What checkpoints written before ``--lr-schedule``, ``--patience-unit``,
``--plateau-patches``, ``--patch-border`` and ``--sphere-start`` were trained with."""


def scale_table_levels(config: RunConfig, checkpoint: dict | None) -> int:
    """``--scale-table-levels``; else the checkpoint's (64 for checkpoints that do not record
    it); else :data:`~spherical_models.models.base.SCALE_TABLE_LEVELS` for a new model."""
    if config.scale_table_levels is not None:
        return config.scale_table_levels
    if checkpoint is not None:
        return recorded_scale_table_levels(checkpoint.get("config", {}))
    return SCALE_TABLE_LEVELS


def load_geometry(
    config: RunConfig, model: SphereCompressionModel, patch_res: int
) -> SphereGeometry:
    """The structures of every level of ``model`` at ``(-hr, patch_res)`` from ``-nd``."""
    folder = Path(config.neighbor_struct_dir)
    if not folder.is_dir():
        raise OsloError(
            f"neighbour structure folder '{folder}' does not exist: create the structures with "
            f"python generate_and_save_healpix_oslo_struct.py -o {folder} -hr {config.healpix_res} "
            f"-pr {patch_res} (and the pairs below it)"
        )
    return SphereGeometry.from_folder(
        folder, config.healpix_res, patch_res, model.num_levels, conv=config.conv_name,
        num_hops=model.graph_hops, weight_type=config.weight_type,
        use_euclidean=config.use_euclidean,
    )


def evaluation_geometry(config: RunConfig, model: SphereCompressionModel) -> SphereGeometry:
    """The structures of step 4 at ``-prvt``; on the whole sphere by tiles (``--tile-res``),
    only those of the ``y`` and ``z`` levels, built in memory
    (:func:`spherical_models.models.tiling.coarse_geometry`): the tiles build their own."""
    if config.patch_res_valtest < 0 and \
            check_tile_res(config.tile_res, config.healpix_res) is not None:
        return coarse_geometry(model, config.healpix_res, config.weight_type,
                               config.use_euclidean)
    return load_geometry(config, model, config.patch_res_valtest)


def checked_checkpoint(checkpoint: dict[str, Any], expected: dict[str, Any],
                       path: str) -> dict[str, Any]:
    """``checkpoint`` (read from ``path``) with its configuration canonical (checkpoints
    written before the newer flags count as trained with their defaults), refused unless it
    matches ``expected`` (:func:`~spherical_models.training.checkpoint.check_checkpoint`)."""
    checkpoint = {**checkpoint, "config": {**OLD_CHECKPOINT_DEFAULTS,
                                           **canonical_config(checkpoint.get("config", {}))}}
    check_checkpoint(checkpoint, expected, path)
    return checkpoint


def init_checkpoint(config: RunConfig, recorded: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of ``--init-from``, refused unless it holds the same model (name,
    channels, layers and structures' weights): its ``--lambda``, ``-q`` and training flags
    (:data:`TRAINING_ONLY_KEYS`, ``-hr`` among them) may differ, since only its weights are
    used."""
    free = {*TRAINING_ONLY_KEYS, "lambda", "quality"}
    return checked_checkpoint(load_checkpoint(config.init_from),
                              {k: v for k, v in recorded.items() if k not in free},
                              config.init_from)


def resolve_seed(config: RunConfig, checkpoint: dict | None, info: Distributed) -> int:
    """``--seed``; else the checkpoint's; else a random one (the same on every process)."""
    if config.seed is not None:
        return config.seed
    if checkpoint is not None and checkpoint.get("seed") is not None:
        return int(checkpoint["seed"])
    return int(gather_objects(random.SystemRandom().randrange(2**31), info)[0])


# ---------------------------------------------------------------------------------------------
# Entry point


def run(config: RunConfig) -> SphereCompressionModel:
    """Train (``-i``) and/or evaluate (``-t``) as ``config`` says; returns the model."""
    info = init_distributed(config.gpu)
    try:
        return _run(config, info)
    finally:
        shutdown(info)


def _run(config: RunConfig, info: Distributed) -> SphereCompressionModel:
    log = get_logger()
    device = select_device(config.gpu, config.gpu_id, info)
    checkpoint = load_checkpoint(config.checkpoint_file) if config.checkpoint_file else None
    seed = resolve_seed(config, checkpoint, info)
    seed_everything(seed)
    model = build_model(config)
    recorded = run_config(config, model)
    if checkpoint is not None:
        expected = recorded if config.train_data else {
            k: v for k, v in recorded.items() if k not in TRAINING_ONLY_KEYS
        }
        checkpoint = checked_checkpoint(checkpoint, expected, config.checkpoint_file)
    start = init_checkpoint(config, recorded) if config.init_from else None
    levels = scale_table_levels(config, checkpoint or start)
    recorded["scale_table_levels"] = model.scale_table_levels = levels
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        log.info("loaded '%s' (epoch %d)", config.checkpoint_file, checkpoint["epoch"])
        if checkpoint["config"]["healpix_res"] != config.healpix_res:
            log.info("trained at -hr %d, evaluated at -hr %d",
                     checkpoint["config"]["healpix_res"], config.healpix_res)
    elif start is not None:
        model.load_state_dict(start["state_dict"])
        log.info("initialised from '%s' (lambda %g, epoch %d)", config.init_from,
                 start["config"]["lambda"], start["epoch"])
    elif config.weight_transfer:
        apply_weight_transfer(model, config.weight_transfer)
    model.to(device)
    out_dir = Path(config.out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    if info.is_main:
        log.info("%s (N=%d, M=%d), %d parameters, on %s%s, seed %d", type(model).__name__,
                 model.N, model.M, sum(p.numel() for p in model.parameters()), device,
                 f" x {info.world_size} processes" if info.enabled else "", seed)
    if config.test_data:  # checked before training, not after it
        test_files = read_map_list(config.test_data, config.healpix_res)
        test_geometry = evaluation_geometry(config, model)
    if config.train_data:
        hr = config.healpix_res
        train_files = read_map_list(config.train_data, hr)
        val_files = read_map_list(config.validation_data, hr) if config.validation_data else []
        geometries: dict[int, SphereGeometry] = {}

        def geometry(patch_res: int) -> SphereGeometry:
            if patch_res not in geometries:
                geometries[patch_res] = load_geometry(config, model, patch_res).to(device)
            return geometries[patch_res]

        data = training_data(config, train_files, val_files, seed, info, device, geometry)
        if info.is_main:
            write_config(out_dir, config.arguments, {
                "seed": seed, "world_size": info.world_size, "device": str(device),
                "torch": torch.__version__, "resumed_from": config.checkpoint_file,
                "start_epoch": checkpoint["epoch"] + 1 if checkpoint is not None else 1,
            })
        Trainer(config.training, model, recorded, data, RateDistortionLoss(config.lmbda), seed,
                info, device, out_dir, checkpoint).fit()
    if config.test_data:
        evaluate(config, model, test_files, test_geometry.to(device), info, device, out_dir)
    return model


def evaluate(
    config: RunConfig,
    model: SphereCompressionModel,
    files: list[Path],
    geometry: SphereGeometry,
    info: Distributed,
    device: torch.device,
    out_dir: Path,
) -> None:
    """Step 4 on the maps ``files`` of ``-t``, ``geometry`` at ``-prvt``
    (:func:`spherical_models.evaluation.maps.evaluate_maps`)."""
    patch_res = config.patch_res_valtest
    try:
        model.set_deterministic(model.resolve_deterministic(config.deterministic))
    except ValueError:
        raise OsloError(f"--deterministic is not available for {config.model} with a context "
                        f"model (-cm {config.context_model}): use --no-deterministic") from None
    model.update(force=True)
    model.eval()
    folder = out_dir / config.foldername_valtest
    results = evaluate_maps(
        model, geometry, files, folder, patch_res, config.batch_size_valtest, device, info,
        png=not config.only_npy_valtest, skip_tested=config.skip_tested,
        progress=info.is_main and not config.no_progress, tile_res=config.tile_res,
    )
    if info.is_main and results:
        mean_bpp = sum(r.bpp_actual for r in results) / len(results)
        mean_psnr = sum(r.psnr for r in results) / len(results)
        get_logger().info("evaluated %d map(s): mean %.4f bpp, mean PSNR %.2f dB; outputs in "
                          "'%s'", len(results), mean_bpp, mean_psnr, folder)
