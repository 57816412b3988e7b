"""Speed of one training step of SphereScaleHyperprior q1 (N=128, M=192), default options.

One step = forward, rate-distortion loss, backward, model optimiser step, auxiliary loss,
backward, auxiliary optimiser step; batch 8 of 128x128 patches (patch resolution 7), CPU.
Timed in the same run: the same model forced onto the gather path, and CompressAI's
``ScaleHyperprior(128, 192)`` on 8 crops of 128x128.
Target: face path at most 0.35x the gather path.
Last line: ``model_ratio=<face/gather> compressai_ratio=<face/compressai>``.
"""

from __future__ import annotations

import argparse

import torch
from compressai.models import ScaleHyperprior

from benchmarks.common import best_time
from spherical_models.geometry import SphereGeometry
from spherical_models.models import SphereScaleHyperprior


def training_step(model, x, call, optimizer, aux_optimizer, lmbda=0.0018) -> None:
    out = call(model, x)
    pixels = x.numel() // 3
    bpp = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values()) / pixels
    loss = bpp + lmbda * 255**2 * torch.mean((out["x_hat"] - x) ** 2)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    aux_optimizer.zero_grad()
    model.aux_loss().backward()
    aux_optimizer.step()


def optimisers(model):
    aux = {n for n, _ in model.named_parameters() if n.endswith(".quantiles")}
    params = dict(model.named_parameters())
    main = torch.optim.Adam([params[n] for n in params if n not in aux], lr=1e-4)
    return main, torch.optim.Adam([params[n] for n in aux], lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch-res", type=int, default=7, help="patch resolution (7: 128x128)")
    parser.add_argument("--batch", type=int, default=8, help="patches per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (after a warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pr = args.patch_res
    side = 1 << pr
    geometry = SphereGeometry.build(pr + 2, pr, SphereScaleHyperprior.num_levels)
    sphere = SphereScaleHyperprior(128, 192)
    x = torch.rand(args.batch, 4**pr, 3)

    def sphere_call(model, x):
        return model(x, geometry)

    times = {}
    for path in ("face", "gather"):
        sphere.set_conv_path(path)
        opt, aux = optimisers(sphere)
        times[path] = best_time(
            lambda opt=opt, aux=aux: training_step(sphere, x, sphere_call, opt, aux),
            args.repeats,
        )
    planar = ScaleHyperprior(128, 192)
    crops = torch.rand(args.batch, 3, side, side)
    opt, aux = optimisers(planar)
    times["compressai"] = best_time(
        lambda: training_step(planar, crops, lambda m, c: m(c), opt, aux), args.repeats
    )
    print(f"batch {args.batch} of {side}x{side} patches, {torch.get_num_threads()} thread(s)")
    for name, seconds in times.items():
        print(f"{name:>10}: {seconds:.3f} s per training step")
    print(f"model_ratio={times['face'] / times['gather']:.3f} "
          f"compressai_ratio={times['face'] / times['compressai']:.3f}")


if __name__ == "__main__":
    main()
