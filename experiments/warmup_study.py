"""Does a training start blow up? Short trainings at lr 1e-3 with and without the warm-up.

Each training runs ``--steps`` Adam steps (lr 1e-3, clipping 1, the auxiliary optimiser at
1e-3, batches of 8) through :func:`spherical_models.training.epoch.train_step`, the step of both
training scripts, and records the loss of every step. The models:

* ``oslo-zoo``: the zoo's layout, ``SphereScaleHyperprior(64, 96)`` with ``--single-conv
  -upf SDPAConvTransposed``, on random 64 x 64 patches of 24 maps (``samples/planets`` and
  ``samples/photos``, :data:`IMAGE_DIRS`) at HEALPix resolution 7;
* ``oslo-default``: the default layout (two summed 1-hop convolutions a block, pixel shuffle),
  same data;
* ``erp``: CompressAI's ``ScaleHyperprior(64, 96)`` on random 64 x 64 crops of the same
  images in ERP at 512 x 256 (the planar baseline, ``baselines/train_erp_compressai.py``).

A training *diverges* when some step's loss exceeds 10 times the first step's. Results:
``runs.csv`` (one row a training: model, lambda, seed, warm-up, first loss, largest loss and
its step, their ratio, the mean loss of the last 50 steps, seconds) and ``losses.csv`` (every
step's loss). Resumable: a training whose row exists is not run again.

Example:
    python experiments/warmup_study.py -O runs/warmup_study
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from compressai.losses import RateDistortionLoss as PlanarLoss  # noqa: E402
from compressai.models import ScaleHyperprior  # noqa: E402

from experiments.zoo_recipe import ZOO, images_in  # noqa: E402
from spherical_models.cli import HelpFormatter  # noqa: E402
from spherical_models.geometry import SphereGeometry  # noqa: E402
from spherical_models.models.base import LayerOptions  # noqa: E402
from spherical_models.models.google import SphereScaleHyperprior  # noqa: E402
from spherical_models.planar.erp import codec_image, random_crops  # noqa: E402
from spherical_models.training.epoch import EpochContext, train_step  # noqa: E402
from spherical_models.training.loss import RateDistortionLoss  # noqa: E402
from spherical_models.training.optim import configure_optimizers  # noqa: E402
from utils.cli import get_logger, run_main, setup_logging  # noqa: E402
from utils.io import load_image, rows_csv, write_text  # noqa: E402
from utils.sampling import erp_to_healpix  # noqa: E402

MODELS = ("oslo-zoo", "oslo-default", "erp")
HEALPIX_RES, PATCH_RES = ZOO.healpix_res, ZOO.patch_res
IMAGE_DIRS = ("samples/planets", "samples/photos")
"""The training images of the study's documented runs (``docs/warmup_runs.csv``): the planets
and the photographs the zoo trained on before ``samples/zoo_train``."""
RUN_COLUMNS = ("model", "lambda", "seed", "warmup", "first_loss", "max_loss", "max_step",
               "max_ratio", "last50_loss", "seconds")
TRACE_COLUMNS = ("model", "lambda", "seed", "warmup", "step", "loss")
BATCH, LR, DIVERGENCE = 8, 1e-3, 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-O", "--out", default="runs/warmup_study", help="output folder")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="models to train")
    parser.add_argument("--lambdas", nargs="+", type=float, default=[0.0035, 0.013, 0.05],
                        help="rate-distortion trade-offs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds (weights and batches)")
    parser.add_argument("--warmups", nargs="+", type=int, default=[50, 0],
                        help="warm-up lengths in steps (0: none)")
    parser.add_argument("--no-warmup-seeds", type=int, default=1,
                        help="trainings without warm-up use only the first this many seeds")
    parser.add_argument("--steps", type=int, default=300, help="steps a training")
    parser.add_argument("--images", type=int, default=0,
                        help="train on the first this many training images (0: all)")
    return parser


def training_images(count: int) -> list[np.ndarray]:
    """The study's training images, every JPEG of :data:`IMAGE_DIRS`."""
    paths = images_in(IMAGE_DIRS)
    return [load_image(p) for p in (paths[:count] if count else paths)]


class SphereData:
    """Random 64 x 64 patches of the training maps: ``[B, 4096, 3]`` and their patch ids."""

    def __init__(self, images: list[np.ndarray]) -> None:
        maps = [erp_to_healpix(image, HEALPIX_RES) for image in images]
        self.patches = torch.from_numpy(
            np.concatenate([m.reshape(-1, 4**PATCH_RES, 3) for m in maps])).float() / 255
        self.per_map = 12 * 4 ** (HEALPIX_RES - PATCH_RES)

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(self.patches), (BATCH,), generator=generator)
        return self.patches[rows], rows % self.per_map


class ErpData:
    """Random 64 x 64 crops of the ERP images at 512 x 256: ``[B, 3, 64, 64]``."""

    def __init__(self, images: list[np.ndarray]) -> None:
        width = 4 * 2**HEALPIX_RES
        self.images = torch.stack([torch.from_numpy(codec_image(image, width))
                                   for image in images]).permute(0, 3, 1, 2)

    def batch(self, generator: torch.Generator) -> torch.Tensor:
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
        crops, _ = random_crops(self.images, 2**PATCH_RES, 1)
        return crops[:BATCH].float() / 255


def losses_of(model_name: str, lmbda: float, seed: int, warmup: int, steps: int,
              data: dict) -> list[float]:
    """The loss of every step of one training."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if model_name == "erp":
        model = ScaleHyperprior(64, 96)
        criterion, geometry = PlanarLoss(lmbda=lmbda), None
    else:
        options = (LayerOptions(single_conv=True, unpool="SDPAConvTransposed")
                   if model_name == "oslo-zoo" else LayerOptions())
        model = SphereScaleHyperprior(64, 96, options)
        criterion = RateDistortionLoss(lmbda)
        geometry = SphereGeometry.build(HEALPIX_RES, PATCH_RES, model.num_levels,
                                        num_hops=model.graph_hops)
    optimizer, aux_optimizer = configure_optimizers(model, LR, LR)
    ctx = EpochContext(criterion, optimizer, aux_optimizer, geometry, torch.device("cpu"),
                       warmup_steps=warmup)
    model.train()
    losses = []
    for _ in range(steps):
        if model_name == "erp":
            x = data["erp"].batch(generator)
            out, _ = train_step(model, model, x, ctx)
        else:
            x, ids = data["sphere"].batch(generator)
            out, _ = train_step(lambda inputs, ids=ids: model(inputs, geometry, ids), model, x,
                                ctx)
        losses.append(out["loss"].item())
    return losses


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path) as stream:
        return list(csv.DictReader(stream))


def summary(rows: list[dict[str, str]]) -> str:
    """Per model and warm-up: the trainings, how many diverge, the largest ratio."""
    lines = ["model         warmup  trainings  diverged  max ratio (largest / first loss)"]
    keys = sorted({(r["model"], int(r["warmup"])) for r in rows}, key=lambda k: (k[0], -k[1]))
    for model, warmup in keys:
        ratios = [float(r["max_ratio"]) for r in rows
                  if (r["model"], int(r["warmup"])) == (model, warmup)]
        diverged = sum(ratio > DIVERGENCE for ratio in ratios)
        lines.append(f"{model:13s} {warmup:6d} {len(ratios):10d} {diverged:9d}  "
                     f"{max(ratios):.3g}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    log = get_logger()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, traces = read_rows(out / "runs.csv"), read_rows(out / "losses.csv")
    key = lambda r: (r["model"], float(r["lambda"]), int(r["seed"]), int(r["warmup"]))  # noqa: E731
    done = {key(r) for r in runs}
    traces = [t for t in traces if key(t) in done]  # an interrupted write leaves no orphans
    images = training_images(args.images)
    data: dict = {}
    for model_name in args.models:
        for warmup in args.warmups:
            seeds = args.seeds if warmup else args.seeds[:args.no_warmup_seeds]
            for lmbda in args.lambdas:
                for seed in seeds:
                    if (model_name, lmbda, seed, warmup) in done:
                        continue
                    kind = "erp" if model_name == "erp" else "sphere"
                    if kind not in data:
                        data[kind] = ErpData(images) if kind == "erp" else SphereData(images)
                    start = time.perf_counter()
                    losses = np.array(losses_of(model_name, lmbda, seed, warmup, args.steps,
                                                data))
                    peak = int(np.argmax(losses))
                    row = {"model": model_name, "lambda": f"{lmbda:g}", "seed": seed,
                           "warmup": warmup, "first_loss": f"{losses[0]:.6g}",
                           "max_loss": f"{losses[peak]:.6g}", "max_step": peak + 1,
                           "max_ratio": f"{losses[peak] / losses[0]:.4g}",
                           "last50_loss": f"{losses[-50:].mean():.6g}",
                           "seconds": f"{time.perf_counter() - start:.1f}"}
                    log.info("%s lambda %g seed %d warm-up %d: largest loss %.3g x the first "
                             "(step %d)", model_name, lmbda, seed, warmup,
                             losses[peak] / losses[0], peak + 1)
                    runs.append(row)
                    traces += [{"model": model_name, "lambda": row["lambda"], "seed": seed,
                                "warmup": warmup, "step": step + 1, "loss": f"{loss:.6g}"}
                               for step, loss in enumerate(losses)]
                    write_text(out / "losses.csv", rows_csv(traces, TRACE_COLUMNS))
                    write_text(out / "runs.csv", rows_csv(runs, RUN_COLUMNS))
    report = summary(runs)
    write_text(out / "summary.txt", report)
    sys.stdout.write(report)


if __name__ == "__main__":
    run_main(main)
