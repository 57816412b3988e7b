"""What ``main_sphere_compression.py`` runs: from its parsed arguments to a trained and/or
evaluated codec (the glue between the command line and :mod:`spherical_models.training`,
:mod:`spherical_models.evaluation` and :mod:`utils.datasets`).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from spherical_models.checkpoint import (
    check_checkpoint,
    checkpoint_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from spherical_models.distributed import (
    Distributed,
    any_process,
    barrier,
    broadcast_parameters,
    gather_objects,
    init_distributed,
    select_device,
    shutdown,
)
from spherical_models.evaluation import evaluate_maps
from spherical_models.geometry import SphereGeometry
from spherical_models.models import (
    DEFAULT_SCALE_TABLE_LEVELS,
    QUALITY_CHANNELS,
    SCALE_TABLE_LEVELS,
    LayerOptions,
    SphereCompressionModel,
    model_from_config,
)
from spherical_models.training import (
    EpochContext,
    Meters,
    RateDistortionLoss,
    StopRequest,
    TrainingInterrupted,
    configure_optimizers,
    epoch_seed,
    ignore_interrupts,
    make_scheduler,
    seed_everything,
    split_parameters,
    train_one_epoch,
    validate,
    write_config,
    write_logs,
)
from spherical_models.weight_transfer import apply_weight_transfer
from utils.cli import get_logger
from utils.datasets import AllPatchesSampler, BalancedPatchSampler, MapPatches, read_map_list
from utils.errors import OsloError

INTERRUPTED_CHECKPOINT = "interrupted.pth.tar"


# ---------------------------------------------------------------------------------------------
# Arguments -> model, structures, configuration


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, with one clear line, flag combinations that cannot run."""
    if not args.train_data and not args.test_data:
        raise OsloError("nothing to do: give -i/--train-data to train and/or -t/--test-data to "
                        "evaluate")
    if args.test_data and not args.train_data and not (args.checkpoint_file
                                                       or args.weight_transfer):
        raise OsloError("evaluation (-t) without training needs --checkpoint-file (or "
                        "--weight-transfer)")
    if args.checkpoint_file and args.weight_transfer:
        raise OsloError("--checkpoint-file and --weight-transfer exclude each other")
    if args.validation_data and not args.train_data:
        raise OsloError("-v/--validation-data needs -i/--train-data")
    if args.context_model != "none" and args.model != "SphereMeanScaleHyperprior":
        raise OsloError(f"-cm/--context-model needs -m SphereMeanScaleHyperprior, not "
                        f"{args.model}")
    positive = {
        "-bst/--batch-size-train": args.batch_size_train,
        "-bsvt/--batch-size-valtest": args.batch_size_valtest,
        "--checkpoint-interval": args.checkpoint_interval,
        "-np/--n-patch-per-sample": args.n_patch_per_sample,
    }
    for flag, value in positive.items():
        if value < 1:
            raise OsloError(f"{flag} must be at least 1, got {value}")
    if args.max_epochs < 0 or args.dataloader_num_workers < 0 or args.scheduler_patience < 0:
        raise OsloError("-e/--max-epochs, --dataloader-num-workers and --scheduler-patience "
                        "must not be negative")
    if args.scale_table_levels is not None and not 2 <= args.scale_table_levels <= 65536:
        raise OsloError(f"--scale-table-levels must be in 2..65536, got "
                        f"{args.scale_table_levels}")
    if args.channels is not None and min(args.channels) < 1:
        raise OsloError(f"--channels must be positive, got {args.channels}")
    if args.patch_res_train > args.healpix_res:
        raise OsloError(f"-prt/--patch-res-train {args.patch_res_train} is above "
                        f"-hr/--healpix-res {args.healpix_res}")
    if valtest_patch_res(args) > args.healpix_res:
        raise OsloError(f"-prvt/--patch-res-valtest {args.patch_res_valtest} is above "
                        f"-hr/--healpix-res {args.healpix_res}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OsloError(f"output path '{out_dir}' exists and is not a folder")


def valtest_patch_res(args: argparse.Namespace) -> int:
    """``-prvt``, defaulting to ``-prt``; -1 for the whole sphere."""
    value = args.patch_res_train if args.patch_res_valtest is None else args.patch_res_valtest
    return max(value, -1)


def weight_type(args: argparse.Namespace) -> str:
    """``-w``, defaulting to ``identity`` for SDPAConv and ``gaussian`` for ChebConv."""
    if args.weight_type is not None:
        return args.weight_type
    return "gaussian" if args.conv_name == "ChebConv" else "identity"


def channels(args: argparse.Namespace) -> tuple[int, int]:
    """``(N, M)``: ``--channels`` if given, else those of ``-q``."""
    return tuple(args.channels) if args.channels else QUALITY_CHANNELS[args.quality]


def build_model(args: argparse.Namespace) -> SphereCompressionModel:
    """The codec that the flags describe (random initialisation)."""
    n, m = channels(args)
    options = LayerOptions(
        conv=args.conv_name, hop=2, skip_aggregation=args.skip_conn_aggr,
        single_conv=args.single_conv, pool=args.pool_func, unpool=args.unpool_func,
        nonlinearity=args.non_linearity, attention=args.attention,
    )
    context = None if args.context_model == "none" else args.context_model
    return model_from_config({"model": args.model, "N": n, "M": m, **options.to_dict(),
                              "context_model": context, "ar_hops": args.ar_hops})


def graph_hops(model: SphereCompressionModel) -> int:
    """Hops the structures must have: 2 for single 2-hop convolutions or a 2-hop context."""
    hops = getattr(model, "graph_hops", None)
    if hops is not None:
        return hops
    options = model.options
    return options.hop if options.single_conv else 1


def run_config(args: argparse.Namespace, model: SphereCompressionModel) -> dict[str, Any]:
    """What a checkpoint records and must match: the model's configuration (name, N, M, layer
    options, context model), ``-q``, ``--lambda``, ``-hr``, ``-prt`` and the structures'
    weights."""
    return {
        **model.config,
        "quality": args.quality,
        "lambda": args.lmbda,
        "healpix_res": args.healpix_res,
        "patch_res_train": args.patch_res_train,
        "weight_type": weight_type(args),
        "use_euclidean": args.use_euclidean,
    }


def scale_table_levels(args: argparse.Namespace, checkpoint: dict | None) -> int:
    """``--scale-table-levels``; else the checkpoint's (64 for checkpoints that do not record
    it); else :data:`~spherical_models.models.base.SCALE_TABLE_LEVELS` for a new model."""
    if args.scale_table_levels is not None:
        return args.scale_table_levels
    if checkpoint is not None:
        return int(checkpoint.get("config", {}).get("scale_table_levels",
                                                     DEFAULT_SCALE_TABLE_LEVELS))
    return SCALE_TABLE_LEVELS


def load_geometry(
    args: argparse.Namespace, model: SphereCompressionModel, patch_res: int
) -> SphereGeometry:
    """The structures of every level of ``model`` at ``(-hr, patch_res)`` from ``-nd``."""
    folder = Path(args.neighbor_struct_dir)
    if not folder.is_dir():
        raise OsloError(
            f"neighbour structure folder '{folder}' does not exist: create the structures with "
            f"python generate_and_save_healpix_oslo_struct.py -o {folder} -hr {args.healpix_res} "
            f"-pr {patch_res} (and the pairs below it)"
        )
    return SphereGeometry.from_folder(
        folder, args.healpix_res, patch_res, model.num_levels, conv=args.conv_name,
        num_hops=graph_hops(model), weight_type=weight_type(args),
        use_euclidean=args.use_euclidean,
    )


def resolve_seed(args: argparse.Namespace, checkpoint: dict | None, info: Distributed) -> int:
    """``--seed``; else the checkpoint's; else a random one (the same on every process)."""
    if args.seed is not None:
        return args.seed
    if checkpoint is not None and checkpoint.get("seed") is not None:
        return int(checkpoint["seed"])
    return int(gather_objects(random.SystemRandom().randrange(2**31), info)[0])


def arguments_record(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments as plain values (for config.txt and checkpoints)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}


# ---------------------------------------------------------------------------------------------
# Entry point


def run(args: argparse.Namespace) -> SphereCompressionModel:
    """Train (``-i``) and/or evaluate (``-t``) as the arguments say; returns the model."""
    check_arguments(args)
    info = init_distributed(args.gpu)
    try:
        return _run(args, info)
    finally:
        shutdown(info)


def _run(args: argparse.Namespace, info: Distributed) -> SphereCompressionModel:
    log = get_logger()
    device = select_device(args.gpu, args.gpu_id, info)
    checkpoint = load_checkpoint(args.checkpoint_file) if args.checkpoint_file else None
    seed = resolve_seed(args, checkpoint, info)
    seed_everything(seed)
    model = build_model(args)
    config = run_config(args, model)
    if checkpoint is not None:
        expected = config if args.train_data else {
            k: v for k, v in config.items() if k != "patch_res_train"
        }
        check_checkpoint(checkpoint, expected, args.checkpoint_file)
    config["scale_table_levels"] = model.scale_table_levels = scale_table_levels(args, checkpoint)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        log.info("loaded '%s' (epoch %d)", args.checkpoint_file, checkpoint["epoch"])
    elif args.weight_transfer:
        apply_weight_transfer(model, args.weight_transfer)
    model.to(device)
    out_dir = Path(args.out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    if info.is_main:
        log.info("%s (N=%d, M=%d), %d parameters, on %s%s, seed %d", type(model).__name__,
                 model.N, model.M, sum(p.numel() for p in model.parameters()), device,
                 f" x {info.world_size} processes" if info.enabled else "", seed)
    if args.test_data:  # checked before training, not after it
        test_files = read_map_list(args.test_data, args.healpix_res)
        test_geometry = load_geometry(args, model, valtest_patch_res(args))
    if args.train_data:
        Trainer(args, model, config, seed, info, device, out_dir, checkpoint).fit()
    if args.test_data:
        evaluate(args, model, test_files, test_geometry.to(device), info, device, out_dir)
    return model


def evaluate(
    args: argparse.Namespace,
    model: SphereCompressionModel,
    files: list[Path],
    geometry: SphereGeometry,
    info: Distributed,
    device: torch.device,
    out_dir: Path,
) -> None:
    """Step 4 on the maps ``files`` of ``-t``, ``geometry`` at ``-prvt``
    (:func:`spherical_models.evaluation.evaluate_maps`)."""
    patch_res = valtest_patch_res(args)
    deterministic = args.deterministic
    if deterministic is None:
        deterministic = model.supports_deterministic
    elif deterministic and not model.supports_deterministic:
        raise OsloError(f"--deterministic is not available for {args.model} with a context "
                        f"model (-cm {args.context_model}): use --no-deterministic")
    model.set_deterministic(deterministic)
    model.update(force=True)
    model.eval()
    folder = out_dir / args.foldername_valtest
    results = evaluate_maps(
        model, geometry, files, folder, patch_res, args.batch_size_valtest, device, info,
        png=not args.only_npy_valtest, skip_tested=args.skip_tested,
        progress=info.is_main and not args.no_progress,
    )
    if info.is_main and results:
        mean_bpp = sum(r.bpp_actual for r in results) / len(results)
        mean_psnr = sum(r.psnr for r in results) / len(results)
        get_logger().info("evaluated %d map(s): mean %.4f bpp, mean PSNR %.2f dB; outputs in "
                          "'%s'", len(results), mean_bpp, mean_psnr, folder)


# ---------------------------------------------------------------------------------------------
# Training


def make_loader(
    dataset: Dataset, sampler: Sampler, batch_size: int, workers: int, device: torch.device
) -> DataLoader:
    """A loader of ``(x, patch_ids)`` batches in the sampler's order.

    Its own random generator keeps the global torch state (the quantisation noise) untouched,
    so that an epoch resumed in the middle draws the same noise. Workers ignore Ctrl-C.
    """
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", generator=torch.Generator(),
        worker_init_fn=ignore_interrupts if workers else None,
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
    )


def wrap_distributed(
    model: SphereCompressionModel, info: Distributed, device: torch.device
) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (several processes), ``model`` otherwise.

    DDP averages the gradients of the rate-distortion loss; the entropy bottlenecks'
    ``quantiles`` only get gradients from the auxiliary loss, outside DDP's forward, so DDP
    ignores them and :func:`spherical_models.training.train_step` averages theirs.
    """
    if not info.enabled:
        return model
    _, aux = split_parameters(model)
    aux_ids = {id(p) for p in aux}
    names = [n for n, p in model.named_parameters() if id(p) in aux_ids]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    broadcast_parameters(aux, info)
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False,
    )


@dataclass
class TrainState:
    """Where training stands: last completed epoch, per-epoch losses, best loss, and the
    position inside an interrupted epoch."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    position: dict[str, Any] | None = None


class Trainer:
    """Step 3: the epochs of training, validation, scheduler, logs and checkpoints.

    Args:
        args: the parsed command line.
        model: the codec (on ``device``; loaded from the checkpoint if resuming).
        config: :func:`run_config`, stored in every checkpoint.
        seed: the run's seed.
        info: the processes.
        device: where the model runs.
        out_dir: the output folder.
        checkpoint: the checkpoint to resume from, if any.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        model: SphereCompressionModel,
        config: dict[str, Any],
        seed: int,
        info: Distributed,
        device: torch.device,
        out_dir: Path,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self.args = args
        self.module = model
        self.config = config
        self.seed = seed
        self.info = info
        self.device = device
        self.out_dir = out_dir
        hr, prt = args.healpix_res, max(args.patch_res_train, -1)
        train_files = read_map_list(args.train_data, hr)
        val_files = read_map_list(args.validation_data, hr) if args.validation_data else []
        self.geometry = load_geometry(args, model, prt).to(device)
        prvt = valtest_patch_res(args)
        self.val_geometry = (
            self.geometry if prvt == prt or not val_files
            else load_geometry(args, model, prvt).to(device)
        )
        self.optimizer, self.aux_optimizer = configure_optimizers(
            model, args.learning_rate, args.aux_learning_rate
        )
        self.scheduler = (
            None if args.no_scheduler else make_scheduler(self.optimizer, args.scheduler_patience)
        )
        self.state = TrainState()
        self._rng: list = []
        if checkpoint is not None:
            self._restore(checkpoint)
        self.sampler = BalancedPatchSampler(
            len(train_files), hr, prt, args.n_patch_per_sample, seed, info.rank, info.world_size
        )
        workers = args.dataloader_num_workers
        self.loader = make_loader(MapPatches(train_files, hr, prt), self.sampler,
                                  args.batch_size_train, workers, device)
        self.val_loader = None
        if val_files:
            val_data = MapPatches(val_files, hr, prvt)
            val_sampler = AllPatchesSampler(len(val_files), val_data.patches_per_map,
                                            info.rank, info.world_size)
            self.val_loader = make_loader(val_data, val_sampler, args.batch_size_valtest,
                                          workers, device)
        self.model = wrap_distributed(model, info, device)
        progress = info.is_main and not args.no_progress
        self.ctx = EpochContext(
            RateDistortionLoss(args.lmbda), self.optimizer, self.aux_optimizer, self.geometry,
            device, info, args.clip_max_norm, args.print_freq if info.is_main else 0, progress,
        )

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.aux_optimizer is not None and checkpoint.get("aux_optimizer") is not None:
            self.aux_optimizer.load_state_dict(checkpoint["aux_optimizer"])
        if self.scheduler is not None and checkpoint.get("lr_scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["lr_scheduler"])
        position = checkpoint.get("position")
        if position is not None and len(position["meters"]) != self.info.world_size:
            raise OsloError(
                f"checkpoint '{self.args.checkpoint_file}' was interrupted in the middle of an "
                f"epoch with {len(position['meters'])} process(es): resume it with as many, "
                f"not {self.info.world_size}"
            )
        self.state = TrainState(
            checkpoint["epoch"], list(checkpoint["history"]), checkpoint["best_loss"], position
        )
        self._rng = checkpoint["rng"]

    # -- checkpoints ----------------------------------------------------------------------

    def _state(self, rng: list, position: dict | None = None) -> dict[str, Any]:
        return checkpoint_state(
            self.module, self.optimizer, self.aux_optimizer, self.scheduler,
            epoch=self.state.epoch, history=self.state.history, best_loss=self.state.best_loss,
            config=self.config, args=arguments_record(self.args), seed=self.seed, rng=rng,
            position=position,
        )

    def _save(self, names: list[str], position: dict | None = None,
              rng: list | None = None) -> list[Path]:
        """Write the checkpoint under each of ``names`` in the output folder (rank 0)."""
        rng = rng if rng is not None else gather_objects(rng_state(self.device), self.info)
        paths = []
        if self.info.is_main and names:
            state = self._state(rng, position)
            paths = [save_checkpoint(self.out_dir / name, state) for name in names]
        barrier(self.info)
        return paths

    def _save_interrupted(self, epoch: int, meters: Meters | None) -> None:
        rng = gather_objects(rng_state(self.device), self.info)
        position = None
        if meters is not None:
            position = {
                "epoch": epoch,
                "batch": meters.batches,
                "meters": gather_objects(meters.to_dict(), self.info),
            }
        paths = self._save([INTERRUPTED_CHECKPOINT], position, rng)
        if paths:
            where = f"epoch {epoch}, batch {meters.batches}" if meters else f"end of epoch {epoch}"
            get_logger().warning(
                "interrupted at %s: saved '%s'; resume with --checkpoint-file %s", where,
                paths[0], paths[0],
            )

    # -- epochs ---------------------------------------------------------------------------

    def _start_epoch(self, epoch: int) -> Meters | None:
        """Seed (or restore the random state of an interrupted epoch) and position the
        sampler; returns the sums of the batches already done."""
        position = self.state.position
        self.state.position = None
        self.sampler.set_epoch(epoch)
        if position is not None and position["epoch"] == epoch:
            rank = self.info.rank
            set_rng_state(self._rng[rank], self.device)
            meters = Meters(**position["meters"][rank])
            self.sampler.set_start(meters.batches * self.args.batch_size_train)
            return meters
        torch.manual_seed(epoch_seed(self.seed, epoch, self.info.rank))
        self.sampler.set_start(0)
        return None

    def _epoch_row(self, epoch: int, meters: Meters, lr: float, start: float) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch": epoch, **meters.reduced(self.info, self.device).summary()}
        row.update(lr=lr, data_seconds=meters.data_seconds)
        validated = self.val_loader is not None and epoch >= self.args.validation_start
        if validated:
            val = validate(self.module, self.val_loader, self.ctx.criterion, self.val_geometry,
                           self.device, self.info, self.ctx.progress)
            row.update({f"val_{k}": v for k, v in val.items() if k != "aux_loss"})
        row["seconds"] = time.perf_counter() - start
        return row

    def _log_epoch(self, row: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        text = (f"epoch {row['epoch']}/{self.args.max_epochs}: loss {row['loss']:.4f}, bpp "
                f"{row['bpp']:.4f}, PSNR {row['psnr']:.2f} dB, aux {row['aux_loss']:.2f}")
        if "val_loss" in row:
            text += (f" | validation loss {row['val_loss']:.4f}, bpp {row['val_bpp']:.4f}, "
                     f"PSNR {row['val_psnr']:.2f} dB")
        text += f" | lr {row['lr']:.3g}, {row['seconds']:.1f} s"
        get_logger().info(text)

    def fit(self) -> None:
        """Run the epochs ``last completed + 1 .. -e``, then write ``final.pth.tar``."""
        args, info = self.args, self.info
        if info.is_main:
            write_config(self.out_dir, arguments_record(args), {
                "seed": self.seed, "world_size": info.world_size, "device": str(self.device),
                "torch": torch.__version__, "resumed_from": args.checkpoint_file,
                "start_epoch": self.state.epoch + 1,
            })
        per_epoch = len(self.sampler.images) * self.sampler.patches_per_image
        total_batches = math.ceil(per_epoch / args.batch_size_train)
        with StopRequest() as stop:
            for epoch in range(self.state.epoch + 1, args.max_epochs + 1):
                start = time.perf_counter()
                meters = self._start_epoch(epoch) or Meters()
                try:
                    meters = train_one_epoch(self.model, self.module, self.loader, self.ctx,
                                             epoch, meters, stop, total_batches)
                except TrainingInterrupted:
                    self._save_interrupted(epoch, meters)
                    raise KeyboardInterrupt from None
                row = self._epoch_row(epoch, meters, self.optimizer.param_groups[0]["lr"], start)
                self._end_epoch(epoch, row)
                if any_process(stop.requested, info, self.device):
                    self._save_interrupted(epoch, None)
                    raise KeyboardInterrupt
        self._save(["final.pth.tar"])
        if info.is_main:
            get_logger().info("training done: checkpoints and logs in '%s'", self.out_dir)

    def _end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Scheduler step, best loss, logs and checkpoints of a finished epoch."""
        args = self.args
        validated = "val_loss" in row
        monitored = row["val_loss"] if validated else row["loss"]
        can_be_best = validated or self.val_loader is None
        if self.scheduler is not None and epoch >= args.validation_start:
            self.scheduler.step(monitored)
        is_best = can_be_best and monitored < self.state.best_loss
        if is_best:
            self.state.best_loss = monitored
        self.state.epoch = epoch
        self.state.history.append(row)
        self._log_epoch(row)
        if self.info.is_main:
            write_logs(self.out_dir, self.state.history)
        names = []
        if epoch % args.checkpoint_interval == 0:
            names.append(f"checkpoint_{epoch}.pth.tar")
        if is_best:
            names.append("checkpoint_best_loss.pth.tar")
        if names:
            self._save(names)
