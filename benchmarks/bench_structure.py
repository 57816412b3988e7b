"""Speed and memory of step 2: the OSLO structure of (hr=10, pr=8), 2 hops.

Targets: under 15 s and under 3 GB. For scale it also builds the whole-sphere 2-hop table of
resolution 8 (786,432 pixels x 24) and times ``healpy.get_all_neighbours`` (one hop) over the
same pixels as a baseline measured in the same run.
Last line: ``structure_seconds=<x> structure_peak_gb=<y> sphere_ratio=<z>``.
"""

from __future__ import annotations

import argparse

import healpy
import numpy as np

from benchmarks.common import best_time, run_isolated
from utils.structures import build_oslo_structure


def build(hr: int, pr: int, hops: int) -> None:
    build_oslo_structure(hr, pr, hops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-hr", type=int, default=10, help="HEALPix resolution")
    parser.add_argument("-pr", type=int, default=8, help="patch resolution")
    parser.add_argument("--sphere-res", type=int, default=8,
                        help="resolution of the whole-sphere comparison")
    args = parser.parse_args()
    seconds, peak = run_isolated(build, args.hr, args.pr, 2)
    print(f"OSLO structure (hr={args.hr}, pr={args.pr}), 2 hops: {seconds:.3f} s, "
          f"peak {peak / 2**30:.2f} GB (whole process)")
    res = args.sphere_res
    pixels = np.arange(12 * 4**res)
    baseline = best_time(lambda: healpy.get_all_neighbours(2**res, pixels, nest=True), 1)
    sphere = best_time(lambda: build_oslo_structure(res, -1, 2), 1)
    print(f"whole sphere, resolution {res}: healpy.get_all_neighbours (8 columns) "
          f"{baseline:.3f} s, OSLO structure (24 columns) {sphere:.3f} s")
    print(f"structure_seconds={seconds:.3f} structure_peak_gb={peak / 2**30:.2f} "
          f"sphere_ratio={sphere / baseline:.2f}")


if __name__ == "__main__":
    main()
