"""Training speed of the zoo's recipe against CompressAI's ``examples/train.py`` recipe.

Both train the zoo's model (``experiments/train_zoo.py``: the OSLO scale hyperprior (64, 96),
``--single-conv -upf SDPAConvTransposed``) at one lambda on the zoo's training maps, from the
same seed, one thread each, side by side:

* zoo: Adam at lr 1e-3 after a 50-step linear warm-up (``--lr-warmup 50``);
* anchor: Adam at lr 1e-4, constant, no warm-up (CompressAI's recipe).

Every ``--every`` epochs a checkpoint is kept; the test loss (``bpp + lambda 255^2 MSE``, the
likelihood bits, on every 64 x 64 patch of the four test images of ``samples/`` at resolution
7) of each is measured afterwards. Printed: steps per second of both, the anchor's final test
loss, the seconds the zoo's recipe takes to reach it (linear between its checkpoints) and their
ratio to the anchor's seconds (the target: at most 0.5).

Example:
    python -m benchmarks.bench_training --epochs 20
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from experiments import train_zoo
from spherical_models.checkpoint import load_checkpoint
from spherical_models.geometry import SphereGeometry
from spherical_models.models import model_from_config
from spherical_models.training import RateDistortionLoss
from utils.io import load_image
from utils.sampling import erp_to_healpix

RECIPES = {"zoo": ["-lr", "1e-3", "--lr-warmup", "50"],
           "anchor": ["-lr", "1e-4", "--lr-warmup", "0"]}


def replace_flags(argv: list[str], flags: list[str]) -> list[str]:
    """``argv`` with the values of ``flags`` (pairs) replaced."""
    argv = list(argv)
    for name, value in zip(flags[::2], flags[1::2], strict=True):
        argv[argv.index(name) + 1] = value
    return argv


@torch.no_grad()
def test_loss(path: Path, patches: torch.Tensor, lmbda: float) -> float:
    """Rate-distortion loss of a checkpoint on the test patches ``[P, 4096, 3]``."""
    checkpoint = load_checkpoint(path)
    model = model_from_config(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    res, pr = train_zoo.HEALPIX_RES, train_zoo.PATCH_RES
    geometry = SphereGeometry.build(res, pr, model.num_levels, num_hops=model.graph_hops)
    criterion = RateDistortionLoss(lmbda)
    npatch = 12 * 4 ** (res - pr)
    losses = []
    for start in range(0, len(patches), 48):
        x = patches[start:start + 48]
        ids = torch.arange(start, start + len(x)) % npatch
        losses.append(criterion(model(x, geometry, ids), x)["loss"].item() * len(x))
    return sum(losses) / len(patches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs of 144 steps a recipe")
    parser.add_argument("--every", type=int, default=4, help="epochs between checkpoints")
    parser.add_argument("--lambda", dest="lmbda", type=float, default=0.013)
    parser.add_argument("-O", "--out", default="runs/bench_training", help="working folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = Path("runs/zoo")
    train_zoo.prepare_data(data)

    def run(name: str) -> None:
        run_dir = out / name
        base = train_zoo.training_command(data, run_dir, args.lmbda, args.epochs, None, False)
        argv = replace_flags(base, [*RECIPES[name], "--checkpoint-interval", str(args.every),
                                    "--print-freq", "0"])
        train_zoo.train(out, run_dir, argv)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, RECIPES))
    torch.set_num_threads(2)
    patches = torch.cat([
        torch.from_numpy(erp_to_healpix(load_image(train_zoo.REPO / "samples" / name),
                                        train_zoo.HEALPIX_RES)).float().reshape(-1, 4096, 3)
        for name in train_zoo.TEST_IMAGES]) / 255
    curves = {}
    for name in RECIPES:
        with open(out / name / "log.csv") as stream:
            seconds = np.cumsum([float(r["seconds"]) for r in csv.DictReader(stream)])
        points = [(seconds[e - 1], e * 144, test_loss(out / name / f"checkpoint_{e}.pth.tar",
                                                      patches, args.lmbda))
                  for e in range(args.every, args.epochs + 1, args.every)]
        curves[name] = points
        rate = points[-1][1] / points[-1][0]
        print(f"{name}: {rate:.2f} steps/s; test loss by checkpoint: "
              + ", ".join(f"{s} steps {loss:.4f}" for _, s, loss in points))
    target, anchor_seconds = curves["anchor"][-1][2], curves["anchor"][-1][0]
    zoo_points = [(0.0, 0, float("inf")), *curves["zoo"]]
    reached = next((i for i, p in enumerate(zoo_points) if p[2] <= target), None)
    if reached is None:
        print(f"the zoo recipe does not reach the anchor's final test loss {target:.4f}")
        sys.exit(0)
    (t0, _, l0), (t1, _, l1) = zoo_points[reached - 1], zoo_points[reached]
    seconds = t1 if not np.isfinite(l0) else t0 + (t1 - t0) * (l0 - target) / (l0 - l1)
    print(f"anchor's final test loss {target:.4f} after {anchor_seconds:.0f} s; the zoo recipe "
          f"reaches it after {seconds:.0f} s: ratio {seconds / anchor_seconds:.2f} "
          "(target <= 0.5)")


if __name__ == "__main__":
    main()
