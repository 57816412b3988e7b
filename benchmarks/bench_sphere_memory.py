"""Peak memory of a whole-sphere forward pass of SphereScaleHyperprior q1 (N=128, M=192).

Resolution 8 (786,432 pixels), no patching, inference (no autograd), CPU, face path. The
peak is the resident memory of a fresh process that builds the graphs and the model and runs
the forward pass (so it includes the interpreter and torch, about 0.4 GB).
Target: under 8 GB. Last line: ``sphere_forward_seconds=<x> sphere_peak_gb=<y>``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import run_isolated
from spherical_models.geometry import SphereGeometry
from spherical_models.models import SphereScaleHyperprior


def forward(res: int) -> None:
    torch.manual_seed(0)
    geometry = SphereGeometry.build(res, -1, SphereScaleHyperprior.num_levels)
    model = SphereScaleHyperprior(128, 192).eval()
    x = torch.rand(1, 12 * 4**res, 3)
    with torch.no_grad():
        model(x, geometry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--res", type=int, default=8, help="HEALPix resolution")
    args = parser.parse_args()
    seconds, peak = run_isolated(forward, args.res)
    print(f"whole sphere at resolution {args.res} ({12 * 4**args.res:,} pixels): "
          f"{seconds:.2f} s (graphs, model and forward), peak {peak / 2**30:.2f} GB")
    print(f"sphere_forward_seconds={seconds:.2f} sphere_peak_gb={peak / 2**30:.2f}")


if __name__ == "__main__":
    main()
