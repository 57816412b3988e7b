"""Train the pretrained zoo (``zoo/``) with the toolkit's own commands, resumably.

The recipe (docs/RESULTS.md, "The zoo"): the OSLO scale hyperprior with one 2-hop convolution
per block and transposed-convolution up-sampling (``--single-conv -upf SDPAConvTransposed``,
the fastest layout per step, about 4x the default's steps per CPU-second), channels (64, 96),
batches of 8 patches of 64 x 64 pixels (``-hr 7 -prt 6``), 48 a map and epoch, from the 35
training maps of ``samples/planets`` and ``samples/zoo_train`` (sharp 1024 x 512 photographs; no
test image): 210 steps an epoch. Two base models train from scratch
at lambdas 0.0035 and 0.013 (Adam, lr 1e-3 with a 50-step warm-up, constant); each quality is
then fine-tuned from the nearer base at its own lambda (lr 1e-3 with a cosine decay to 1e-5).

Steps, each skipped when its output exists (an interrupted training resumes from its last
checkpoint with ``--checkpoint-file``):

1. step 1 on the training images, step 2 for the levels of the model;
2. the base trainings, then the fine-tunings (``main_sphere_compression.py``), two at a time
   (``--jobs``), one thread each;
3. export: the final weights in half precision into ``zoo/oslo-hyperprior-q<Q>.pth.tar``;
4. measurement of every file with the codec of ``oslo_codec.py`` (deterministic mode): bpp and
   S-PSNR Y of the four test images of ``samples/`` at resolutions 7 and 8, and the bytes and
   S-PSNR Y of the check map the tests code again (``samples/earth_day.jpg`` at resolution 6);
5. ``zoo/registry.json``: per entry its file, SHA-256, checkpoint hash, record (commands,
   steps, training images, seconds, machine) and results.

With ``--erp``, instead: the planar twin of the zoo for the studies, CompressAI's
``ScaleHyperprior(64, 96)`` on 64 x 64 crops of the same images in ERP at 512 x 256
(``baselines/train_erp_compressai.py``), with the same bases, lambdas, steps and schedules, in
``<-O>/erp/``; each quality is evaluated on the four test images at resolutions 7 and 8 (ERP
width ``4 * 2**r``, coded by 64 x 64 patches as the zoo is), into ``<-O>/erp/results.csv``.
Its checkpoints are not exported into the zoo.

Example:
    python experiments/train_zoo.py -O runs/zoo            # train, export and measure
    python experiments/train_zoo.py -O runs/zoo --measure-only
    python experiments/train_zoo.py -O runs/zoo --erp       # the planar twin of the studies
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from experiments.zoo_recipe import (  # noqa: E402
    TEST_IMAGES,
    ZOO,
    erp_command,
    erp_evaluation_command,
    images_in,
    planar_mean,
    prepare_data,
    sphere_command,
    test_list,
    train,
)
from spherical_models import zoo  # noqa: E402
from spherical_models.cli import HelpFormatter  # noqa: E402
from spherical_models.coding import codec  # noqa: E402
from spherical_models.models import model_from_config  # noqa: E402
from spherical_models.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from utils.cli import get_logger, run_main, setup_logging  # noqa: E402
from utils.io import load_image  # noqa: E402
from utils.sphere_points import load_or_create  # noqa: E402

TRAIN_IMAGE_DIRS = ("samples/planets", "samples/zoo_train")
TEST_RESOLUTIONS = (7, 8)
CHECK_IMAGE, CHECK_RES = "earth_day.jpg", 6
SPHERE_POINTS = REPO / "misc" / "sphere_10242.txt"
HEALPIX_RES, PATCH_RES = ZOO.healpix_res, ZOO.patch_res


def training_images() -> list[Path]:
    """The training images: every JPEG of :data:`TRAIN_IMAGE_DIRS`."""
    return images_in(TRAIN_IMAGE_DIRS)


STEPS_PER_EPOCH = ZOO.steps_per_epoch(len(training_images()))


@dataclass(frozen=True)
class Point:
    """A zoo quality: its lambda and the base lambda it is fine-tuned from."""

    quality: int
    lmbda: float
    base: float


BASES = (0.0035, 0.013)
POINTS = (Point(1, 0.0005, 0.0035), Point(2, 0.0018, 0.0035), Point(3, 0.0035, 0.0035),
          Point(4, 0.0067, 0.013), Point(5, 0.013, 0.013), Point(6, 0.025, 0.013),
          Point(7, 0.05, 0.013))
"""The qualities: lambdas 0.0005 to 0.05 (the paper's, 0.0009 left out and 0.05 for its
0.0483), about 0.05 to 0.5 bpp on the test images at resolutions 7 and 8."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-O", "--out", default="runs/zoo", help="working folder")
    parser.add_argument("--zoo-dir", default=str(zoo.ZOO_DIR),
                        help="folder of the exported files and registry.json (default: zoo/ of the "
                        "repository)")
    parser.add_argument("--base-epochs", type=int, default=160,
                        help="epochs of a base training (210 steps each)")
    parser.add_argument("--finetune-epochs", type=int, default=30,
                        help="epochs of a fine-tuning (210 steps each)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at a time")
    parser.add_argument("-q", "--qualities", type=int, nargs="+", default=None,
                        choices=[p.quality for p in POINTS],
                        help="train only these qualities and their bases (default: all)")
    parser.add_argument("--measure-only", action="store_true",
                        help="export and measure the trained models, train nothing")
    parser.add_argument("--erp", action="store_true",
                        help="train and evaluate the planar ERP twin instead (module docstring)")
    parser.add_argument("-g", "--gpu", action="store_true", help="train on CUDA")
    return parser


def run_record(run_dir: Path) -> dict:
    """Command, steps and seconds of a finished training (``record.json``, ``log.csv``)."""
    record = json.loads((run_dir / "record.json").read_text())
    with open(run_dir / "log.csv") as stream:
        rows = list(csv.DictReader(stream))
    record["epochs"] = len(rows)
    record["steps"] = STEPS_PER_EPOCH * len(rows)
    return record


def base_dir(out: Path, lmbda: float) -> Path:
    return out / f"base_lambda{lmbda:g}"


def point_dir(out: Path, point: Point) -> Path:
    return out / f"q{point.quality}_lambda{point.lmbda:g}"


def train_all(out: Path, args: argparse.Namespace) -> None:
    """The bases, then the fine-tunings, ``--jobs`` at a time (of the ERP twin in
    ``<out>/erp`` with ``--erp``)."""
    command = erp_command if args.erp else sphere_command
    runs = out / "erp" if args.erp else out

    def base(lmbda: float) -> None:
        run_dir = base_dir(runs, lmbda)
        train(run_dir, command(ZOO, out, run_dir, lmbda, args.base_epochs, gpu=args.gpu))

    def finetune(point: Point) -> None:
        run_dir = point_dir(runs, point)
        train(run_dir, command(ZOO, out, run_dir, point.lmbda, args.finetune_epochs,
                               init_from=base_dir(runs, point.base) / "final.pth.tar",
                               gpu=args.gpu))

    points = [p for p in POINTS if not args.qualities or p.quality in args.qualities]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(base, sorted({p.base for p in points})))
        list(pool.map(finetune, points))


def measure_erp(out: Path) -> None:
    """Evaluate every trained quality of the ERP twin at the test resolutions (by 64 x 64
    patches) into ``<out>/erp/results.csv``: quality, lambda, resolution, mean bpp, S-PSNR Y
    and WS-PSNR Y over the test images."""
    lines = ["quality,lambda,res,bpp,s_psnr_y,ws_psnr_y"]
    tests = test_list(out / "erp" / "test.txt", ZOO.map_prefix(), TEST_IMAGES)
    for point in POINTS:
        run_dir = point_dir(out / "erp", point)
        if not (run_dir / "final.pth.tar").exists():
            continue
        for res in TEST_RESOLUTIONS:
            folder = f"test_r{res}"
            mean = planar_mean(erp_evaluation_command(ZOO, run_dir, tests, res, SPHERE_POINTS,
                                                      folder), run_dir, folder)
            lines.append(f"{point.quality},{point.lmbda:g},{res},{float(mean['bpp']):.6f},"
                         f"{float(mean['s_psnr_y']):.4f},{float(mean['ws_psnr_y']):.4f}")
    (out / "erp" / "results.csv").write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


def export(source: Path, target: Path) -> None:
    """The final checkpoint with half-precision learned weights, without optimiser state;
    buffers (the entropy models' bounds and scale table) stay as they are: the likelihood
    bound 1e-9 is 0 in half precision."""
    checkpoint = load_checkpoint(source)
    model = model_from_config(dict(checkpoint.get("config") or {}))
    learned = {name for name, _ in model.named_parameters()}
    state = {k: v.half() if k in learned and v.is_floating_point() else v
             for k, v in checkpoint["state_dict"].items()}
    keep = ("format", "version", "epoch", "config", "args")
    save_checkpoint(target, {**{k: checkpoint[k] for k in keep if k in checkpoint},
                             "state_dict": state})


def measure(path: Path) -> dict:
    """Results of a zoo file: per test resolution the mean bpp and S-PSNR Y of the test
    images (and per image), and the check map's."""
    model = codec.load_codec(path)
    points = load_or_create(SPHERE_POINTS)
    images = {name: load_image(REPO / "samples" / name) for name in TEST_IMAGES}
    samples = {}
    for res in TEST_RESOLUTIONS:
        per_image = {name: zoo.code_erp_image(model, image, res, points)[0]
                     for name, image in images.items()}
        samples[str(res)] = {
            "bpp": float(np.mean([r["bpp"] for r in per_image.values()])),
            "s_psnr_y": float(np.mean([r["s_psnr_y"] for r in per_image.values()])),
            "images": per_image,
        }
    check = zoo.code_erp_image(model, images[CHECK_IMAGE], CHECK_RES, points)[0]
    return {"samples": samples, "check": {"image": CHECK_IMAGE, "res": CHECK_RES, **check},
            "sphere_points": SPHERE_POINTS.name}


def machine() -> str:
    return (f"{platform.machine()} {platform.processor() or platform.platform()}, "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    log = get_logger()
    out, zoo_dir = Path(args.out), Path(args.zoo_dir)
    if not args.measure_only:
        prepare_data(ZOO, out, training_images())
        train_all(out, args)
    if args.erp:
        load_or_create(SPHERE_POINTS)
        measure_erp(out)
        return
    zoo_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for point in POINTS:
        final = point_dir(out, point) / "final.pth.tar"
        if not final.exists():
            log.info("q%d not trained yet: skipped", point.quality)
            continue
        target = zoo_dir / f"{zoo.DEFAULT_MODEL}-q{point.quality}.pth.tar"
        export(final, target)
        loaded = codec.load_codec(target)
        base = run_record(base_dir(out, point.base))
        tune = run_record(point_dir(out, point))
        record = {"base": base, "finetune": tune, "steps": base["steps"] + tune["steps"],
                  "seconds": round(base["seconds"] + tune["seconds"], 1),
                  "data": [f"{d}/*.jpg" for d in TRAIN_IMAGE_DIRS],
                  "machine": machine()}
        log.info("measuring %s", target)
        entries.append(zoo.ZooEntry(
            model=zoo.DEFAULT_MODEL, quality=point.quality, lmbda=point.lmbda,
            file=target.name, sha256=zoo.file_sha256(target), digest=loaded.digest.hex(),
            record=record, results=measure(target)))
    zoo.write_registry(entries, zoo_dir)
    sys.stdout.write(zoo.listing(entries))


if __name__ == "__main__":
    run_main(main)
