"""Speed and memory of step 1: sampling the 4096x2048 sample image at HEALPix resolution 10.

Baseline, timed in the same run: ``healpy.pix2ang`` over the same 12,582,912 pixels alone.
Targets: sampling at most 6x the baseline; peak memory of the sampling process under 1.5 GB.
Last line: ``sampling_ratio=<x> peak_gb=<y>``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import healpy
import numpy as np

from benchmarks.common import best_time, run_isolated
from utils.io import load_image
from utils.sampling import erp_to_healpix

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "moon_surface_4096.jpg"


def sample_once(path: str, res: int, threads: int) -> None:
    erp_to_healpix(load_image(path), res, threads=threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--res", type=int, default=10, help="HEALPix resolution")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="sampling threads")
    args = parser.parse_args()
    nside, npix = 2**args.res, 12 * 4**args.res
    image = load_image(SAMPLE)
    pixels = np.arange(npix)
    baseline = best_time(lambda: healpy.pix2ang(nside, pixels, nest=True))
    sampling = best_time(lambda: erp_to_healpix(image, args.res, threads=args.threads))
    _, peak = run_isolated(sample_once, str(SAMPLE), args.res, args.threads)
    print(f"image {image.shape[1]}x{image.shape[0]}, resolution {args.res} ({npix:,} pixels), "
          f"{args.threads} thread(s)")
    print(f"healpy.pix2ang alone: {baseline:.3f} s")
    print(f"erp_to_healpix:       {sampling:.3f} s")
    print(f"peak memory of a process that loads the image and samples it: {peak / 2**30:.2f} GB")
    print(f"sampling_ratio={sampling / baseline:.2f} peak_gb={peak / 2**30:.2f}")


if __name__ == "__main__":
    main()
