"""Train the small checkpoints of tests/data/checkpoints/ (seeded; a few minutes on 2 cores).

The rate tests of the bitstream (tests/test_rates.py) and benchmarks/fuzz_codec.py need models
trained long enough to reach the low rates where fixed costs show. They are trained here with
the toolkit's own scripts, as a user would: the 12 planet maps of samples/planets sampled at
resolution 7, the structures (7, 6) .. (1, 0), then ``main_sphere_compression.py`` with
patches of resolution 6, (N, M) = (16, 24), lambda 0.005, Adam lr 1e-3, seed 0. The
checkpoints keep only what loading needs (weights, configuration, arguments, epoch), without
the optimiser states.

    python tests/data/make_checkpoints.py            # all of them, about 6 minutes
    python tests/data/make_checkpoints.py --epochs 5 --out /tmp/ckpt   # a quick trial
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "data" / "checkpoints"
HEALPIX_RES = 7
PATCH_RES = 6

CHECKPOINTS = {
    "factorized_prior": ["-m", "SphereFactorizedPrior"],
    "scale_hyperprior": ["-m", "SphereScaleHyperprior"],
    "mean_scale_hyperprior": ["-m", "SphereMeanScaleHyperprior"],
    "joint_context": ["-m", "SphereMeanScaleHyperprior", "-cm", "full"],
}
"""File stem -> model flags."""

KEPT = ("format", "version", "state_dict", "config", "args", "epoch", "seed", "history",
        "best_loss")


def run(*command: str) -> None:
    subprocess.run([sys.executable, *command], cwd=REPO, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per model")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    parser.add_argument("--only", nargs="*", default=list(CHECKPOINTS), choices=CHECKPOINTS,
                        help="checkpoints to train")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "maps"
        run("generate_healpix_samples_and_split_to_train_and_test.py", "-i", "samples/planets",
            "-e", "jpg", "-r", str(HEALPIX_RES), "-s", "-o", str(data), "-t", "1", "-v", "0",
            "--workers", "2")
        for level in range(PATCH_RES + 1):
            run("generate_and_save_healpix_oslo_struct.py", "-o", str(work / "structures"),
                "-hr", str(HEALPIX_RES - level), "-pr", str(PATCH_RES - level))
        for stem, flags in CHECKPOINTS.items():
            if stem not in args.only:
                continue
            start = time.perf_counter()
            run("main_sphere_compression.py", *flags, "-nd", str(work / "structures"),
                "-o", str(work / stem), "-hr", str(HEALPIX_RES), "-prt", str(PATCH_RES),
                "--channels", "16", "24", "--lambda", "0.005", "-lr", "1e-3", "-i",
                str(data / "train.txt"), "-e", str(args.epochs), "-np", "6", "-bst", "8",
                "--seed", "0", "--dataloader-num-workers", "0", "--no-progress",
                "--print-freq", "0", "--checkpoint-interval", str(args.epochs))
            checkpoint = torch.load(work / stem / "final.pth.tar", map_location="cpu",
                                    weights_only=True)
            kept = {key: checkpoint[key] for key in KEPT if key in checkpoint}
            torch.save(kept, args.out / f"{stem}.pth.tar")
            print(f"{stem}: {args.epochs} epochs in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
