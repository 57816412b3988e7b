"""Training speed of the zoo's recipe against CompressAI's ``examples/train.py`` recipe.

Both train the zoo's model (``experiments/train_zoo.py``: the OSLO scale hyperprior (64, 96),
``--single-conv -upf SDPAConvTransposed``) at one lambda on the zoo's training maps, from the
same seed, one thread each, side by side:

* zoo: Adam at lr 1e-3 after a 50-step linear warm-up (``--lr-warmup 50``);
* anchor: Adam at lr 1e-4, constant, no warm-up (CompressAI's recipe).

Every ``--every`` epochs a checkpoint is kept, and measured afterwards on the four test images
of ``samples/`` at HEALPix resolution 7: the test loss (``bpp + lambda 255^2 MSE``, the
likelihood bits, on every 64 x 64 patch) and, coded for real by ``oslo_codec.py``'s codec, the
mean bpp and S-PSNR Y against the original ERP images. Printed: steps per second of both, the
anchor's final test loss, the seconds the zoo's recipe takes to reach it (linear between its
checkpoints) and their ratio to the anchor's seconds (the target: at most 0.5). Written:
``curves.csv`` (a row a checkpoint) and ``curves.png`` (S-PSNR Y and bpp against steps, and the
test loss against seconds).

Example:
    python -m benchmarks.bench_training --epochs 40
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
from experiments.zoo_recipe import ZOO, prepare_data, sphere_command, train
from spherical_models import zoo
from spherical_models.coding import codec
from spherical_models.geometry import SphereGeometry
from spherical_models.training.loss import RateDistortionLoss
from utils.io import load_image, rows_csv, write_text
from utils.sampling import erp_to_healpix
from utils.sphere_points import load_or_create

RECIPES = {"zoo": ["-lr", "1e-3", "--lr-warmup", "50"],
           "anchor": ["-lr", "1e-4", "--lr-warmup", "0"]}


def replace_flags(argv: list[str], flags: list[str]) -> list[str]:
    """``argv`` with the values of ``flags`` (pairs) replaced."""
    argv = list(argv)
    for name, value in zip(flags[::2], flags[1::2], strict=True):
        argv[argv.index(name) + 1] = value
    return argv


@torch.no_grad()
def test_loss(model: torch.nn.Module, geometry: SphereGeometry, patches: torch.Tensor,
              lmbda: float) -> float:
    """Rate-distortion loss of a model (evaluation mode) on the test patches ``[P, 4096, 3]``
    of resolution 7."""
    criterion = RateDistortionLoss(lmbda)
    npatch = 12 * 4 ** (train_zoo.HEALPIX_RES - train_zoo.PATCH_RES)
    losses = []
    for start in range(0, len(patches), 48):
        x = patches[start:start + 48]
        ids = torch.arange(start, start + len(x)) % npatch
        losses.append(criterion(model(x, geometry, ids), x)["loss"].item() * len(x))
    return sum(losses) / len(patches)


def coded(model: codec.Codec, images: dict[str, np.ndarray], points) -> tuple[float, float]:
    """Mean bpp and S-PSNR Y of a codec coding the test images at resolution 7."""
    results = [zoo.code_erp_image(model, image, train_zoo.HEALPIX_RES, points)[0]
               for image in images.values()]
    return (float(np.mean([r["bpp"] for r in results])),
            float(np.mean([r["s_psnr_y"] for r in results])))


def plot(rows: list[dict], path: Path) -> None:
    """S-PSNR Y and bpp against steps, and the test loss against seconds, per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, label in (("zoo", "zoo: lr 1e-3, warm-up 50"), ("anchor", "anchor: lr 1e-4")):
        mine = [r for r in rows if r["recipe"] == name]
        steps = [r["steps"] for r in mine]
        axes[0].plot(steps, [r["s_psnr_y"] for r in mine], "o-", label=label)
        axes[1].plot(steps, [r["bpp"] for r in mine], "o-", label=label)
        axes[2].plot([r["seconds"] for r in mine], [r["test_loss"] for r in mine], "o-",
                     label=label)
    for ax, ylabel, xlabel in zip(axes, ("S-PSNR Y (dB)", "bpp", "test loss"),
                                  ("steps", "steps", "training seconds (one thread)"),
                                  strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("zoo model, lambda {:g}: the test images of samples/ at resolution 7".format(
        rows[0]["lambda"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40,
                        help=f"epochs of {train_zoo.STEPS_PER_EPOCH} steps a recipe (default: 40)")
    parser.add_argument("--every", type=int, default=4,
                        help="epochs between checkpoints (default: 4)")
    parser.add_argument("--lambda", dest="lmbda", type=float, default=0.013,
                        help="rate-distortion trade-off (default: 0.013)")
    parser.add_argument("-O", "--out", default="runs/bench_training",
                        help="working folder (default: runs/bench_training)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = Path("runs/zoo")
    prepare_data(ZOO, data, train_zoo.training_images())

    def run(name: str) -> None:
        run_dir = out / name
        base = sphere_command(ZOO, data, run_dir, args.lmbda, args.epochs)
        argv = replace_flags(base, [*RECIPES[name], "--checkpoint-interval", str(args.every),
                                    "--print-freq", "0"])
        train(run_dir, argv)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, RECIPES))
    torch.set_num_threads(2)
    images = {name: load_image(train_zoo.REPO / "samples" / name)
              for name in train_zoo.TEST_IMAGES}
    patches = torch.cat([
        torch.from_numpy(erp_to_healpix(image, train_zoo.HEALPIX_RES)).float()
        .reshape(-1, 4096, 3) for image in images.values()]) / 255
    points = load_or_create(train_zoo.SPHERE_POINTS)
    rows, geometry = [], None
    for name in RECIPES:
        with open(out / name / "log.csv") as stream:
            seconds = np.cumsum([float(r["seconds"]) for r in csv.DictReader(stream)])
        for epoch in range(args.every, args.epochs + 1, args.every):
            path = out / name / f"checkpoint_{epoch}.pth.tar"
            loaded = codec.load_codec(path)
            if geometry is None:  # every checkpoint is the same model
                geometry = SphereGeometry.build(
                    train_zoo.HEALPIX_RES, train_zoo.PATCH_RES, loaded.model.num_levels,
                    num_hops=loaded.model.graph_hops)
            loss = test_loss(loaded.model, geometry, patches, args.lmbda)  # before coding sets
            bpp, s_psnr_y = coded(loaded, images, points)  # the deterministic mode
            rows.append({"recipe": name, "lambda": args.lmbda, "epoch": epoch,
                         "steps": epoch * train_zoo.STEPS_PER_EPOCH,
                         "seconds": round(float(seconds[epoch - 1]), 1),
                         "test_loss": loss, "bpp": bpp, "s_psnr_y": s_psnr_y})
        mine = [r for r in rows if r["recipe"] == name]
        print(f"{name}: {mine[-1]['steps'] / mine[-1]['seconds']:.2f} steps/s; by checkpoint "
              "(steps: test loss, bpp, S-PSNR Y): " + "; ".join(
                  f"{r['steps']}: {r['test_loss']:.4f}, {r['bpp']:.4f}, {r['s_psnr_y']:.2f}"
                  for r in mine))
    write_text(out / "curves.csv", rows_csv(rows))
    plot(rows, out / "curves.png")
    anchor = [r for r in rows if r["recipe"] == "anchor"][-1]
    target, anchor_seconds = anchor["test_loss"], anchor["seconds"]
    zoo_points = [(0.0, float("inf"))] + [(r["seconds"], r["test_loss"]) for r in rows
                                          if r["recipe"] == "zoo"]
    reached = next((i for i, p in enumerate(zoo_points) if p[1] <= target), None)
    if reached is None:
        print(f"the zoo recipe does not reach the anchor's final test loss {target:.4f}")
        sys.exit(0)
    (t0, l0), (t1, l1) = zoo_points[reached - 1], zoo_points[reached]
    seconds = t1 if not np.isfinite(l0) else t0 + (t1 - t0) * (l0 - target) / (l0 - l1)
    print(f"anchor's final test loss {target:.4f} after {anchor_seconds:.0f} s; the zoo recipe "
          f"reaches it after {seconds:.0f} s: ratio {seconds / anchor_seconds:.2f} "
          "(target <= 0.5)")


if __name__ == "__main__":
    main()
