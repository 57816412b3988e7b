"""Training throughput of SphereScaleHyperprior against CompressAI's ScaleHyperprior.

One step = forward, rate-distortion loss, backward, model optimiser step, auxiliary loss,
backward, auxiliary optimiser step, on CPU. Two settings:

* ``zoo``: ``(N, M) = (64, 96)``, batch 8 of 64 x 64 patches (patch resolution 6);
* ``q1``: ``(128, 192)``, batch 8 of 128 x 128 patches (patch resolution 7).

For each, with 1 and 2 threads: the OSLO model on the face path (the face layout through
every transform) and on the gather path, and CompressAI's ``ScaleHyperprior(N, M)`` on crops
of the same size (equal pixels), all timed in the same run, taking turns. Each time is the
median of ``--repeats`` steps after one warm-up, with its spread (min to max); forward MACs per
patch come from ``torch.utils.flop_counter``. With ``--options``, the cost table of the
up-sampling choices (``-upf``) and ``--single-conv`` at the q1 setting (parameters, MACs per
128 x 128 patch, step seconds) is printed too.

Last line: ``step_ratio=<face/compressai> mac_ratio=<face per MAC / compressai per MAC>``
for the last setting and thread count measured.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from compressai.models import ScaleHyperprior
from torch.utils.flop_counter import FlopCounterMode

from spherical_models.cli import HelpFormatter
from spherical_models.geometry import SphereGeometry
from spherical_models.models import SphereScaleHyperprior
from spherical_models.models.base import LayerOptions

SETTINGS = {"zoo": (64, 96, 6), "q1": (128, 192, 7)}
OPTIONS = {
    "pixel_shuffle (default)": LayerOptions(),
    "SDPAConvTransposed": LayerOptions(unpool="SDPAConvTransposed"),
    "nearest": LayerOptions(unpool="nearest"),
    "--single-conv": LayerOptions(single_conv=True),
    "--single-conv SDPAConvTransposed": LayerOptions(single_conv=True,
                                                     unpool="SDPAConvTransposed"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["zoo", "q1"],
                        help="model and patch settings to time")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    parser.add_argument("--batch", type=int, default=8, help="patches per step")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (after a warm-up)")
    parser.add_argument("--no-gather", action="store_true", help="skip the gather path")
    parser.add_argument("--options", action="store_true",
                        help="also the cost table of -upf and --single-conv (q1 setting)")
    parser.add_argument("--quick", action="store_true",
                        help="channels (8, 12), 64 x 64 patches, batch 2, 2 repeats: a smoke test")
    return parser


def optimisers(model: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam on the model's parameters (lr 1e-4) and on the entropy bottleneck's quantiles."""
    aux = {n for n, _ in model.named_parameters() if n.endswith(".quantiles")}
    params = dict(model.named_parameters())
    main = torch.optim.Adam([params[n] for n in params if n not in aux], lr=1e-4)
    return main, torch.optim.Adam([params[n] for n in aux], lr=1e-3)


def step_function(model: torch.nn.Module, x: torch.Tensor, call: Callable,
                  lmbda: float = 0.0018) -> Callable[[], None]:
    """One training step of ``model`` on ``x`` (``call(model, x)`` is its forward)."""
    optimizer, aux_optimizer = optimisers(model)
    pixels = x.numel() // 3

    def step() -> None:
        out = call(model, x)
        bpp = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values()) / pixels
        loss = bpp + lmbda * 255**2 * torch.mean((out["x_hat"] - x) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        aux_optimizer.zero_grad()
        model.aux_loss().backward()
        aux_optimizer.step()

    return step


def forward_macs(call: Callable, model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass per input element of the batch."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        call(model, x)
    return counter.get_total_flops() / 2 / len(x)


def time_steps(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds of ``repeats`` runs of each step after one warm-up, taking turns."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


class Setting:
    """The OSLO model, its geometry and inputs, and the planar model on crops of equal pixels."""

    def __init__(self, N: int, M: int, patch_res: int, batch: int,
                 options: LayerOptions | None = None) -> None:
        torch.manual_seed(0)
        options = options or LayerOptions()
        hops = 2 if options.single_conv else 1
        self.geometry = SphereGeometry.build(patch_res + 2, patch_res, 7, num_hops=hops)
        self.sphere = SphereScaleHyperprior(N, M, options)
        self.planar = ScaleHyperprior(N, M)
        side = 1 << patch_res
        self.x = torch.rand(batch, side * side, 3)
        self.crops = torch.rand(batch, 3, side, side)

    def sphere_call(self, model: torch.nn.Module, x: torch.Tensor) -> dict:
        return model(x, self.geometry)

    @staticmethod
    def planar_call(model: torch.nn.Module, x: torch.Tensor) -> dict:
        return model(x)

    def macs(self) -> tuple[float, float]:
        return (forward_macs(self.sphere_call, self.sphere, self.x[:1]),
                forward_macs(self.planar_call, self.planar, self.crops[:1]))

    def steps(self, gather: bool) -> dict[str, Callable[[], None]]:
        steps = {"face": step_function(self.sphere, self.x, self.sphere_call)}
        if gather:
            gather_model = SphereScaleHyperprior(self.sphere.N, self.sphere.M,
                                                 self.sphere.options)
            gather_model.load_state_dict(self.sphere.state_dict())
            gather_model.set_conv_path("gather")
            steps["gather"] = step_function(gather_model, self.x, self.sphere_call)
        steps["compressai"] = step_function(self.planar, self.crops, self.planar_call)
        return steps


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):7.3f} s ({min(times):.3f} to {max(times):.3f})"


def throughput(setting: Setting, name: str, threads: int, repeats: int,
               gather: bool) -> tuple[float, float]:
    """Print one setting's table; return (step ratio, per-MAC ratio) of face vs CompressAI."""
    torch.set_num_threads(threads)
    sphere_macs, planar_macs = setting.macs()
    times = time_steps(setting.steps(gather), repeats)
    median = {key: statistics.median(values) for key, values in times.items()}
    side = 1 << setting.geometry.patch_res
    print(f"\n{name}: (N, M) = ({setting.sphere.N}, {setting.sphere.M}), batch "
          f"{len(setting.x)} of {side} x {side}, {threads} thread(s), median of {repeats} steps")
    macs = {"face": sphere_macs, "gather": sphere_macs, "compressai": planar_macs}
    for key, values in times.items():
        per_mac = median[key] / (macs[key] * len(setting.x)) * 1e9
        print(f"  {key:>10}: {spread(values)} per step, {macs[key] / 1e9:.3f} GMAC per patch, "
              f"{per_mac:.3f} s per batch-GMAC, {1 / median[key]:.2f} steps/s")
    step_ratio = median["face"] / median["compressai"]
    mac_ratio = step_ratio * planar_macs / sphere_macs
    line = f"  face / compressai: step {step_ratio:.2f}x, per MAC {mac_ratio:.2f}x"
    if gather:
        line += f"; gather / face {median['gather'] / median['face']:.2f}x"
    print(line)
    return step_ratio, mac_ratio


def options_table(batch: int, repeats: int, quick: bool) -> None:
    """Parameters, MACs per patch and step seconds of each up-sampling choice (q1 setting)."""
    N, M, pr = (8, 12, 6) if quick else SETTINGS["q1"]
    side = 1 << pr
    print(f"\nCost of the layer options: (N, M) = ({N}, {M}), batch {batch} of {side} x {side}, "
          f"{torch.get_num_threads()} thread(s), median of {repeats} steps")
    print(f"  {'option':<34} {'params':>8} {'GMAC/patch':>10} {'step (s)':>28}")
    steps, rows = {}, {}
    for label, options in OPTIONS.items():
        setting = Setting(N, M, pr, batch, options)
        params = sum(p.numel() for p in setting.sphere.parameters())
        rows[label] = (params, setting.macs()[0])
        steps[label] = step_function(setting.sphere, setting.x, setting.sphere_call)
    planar, crops = setting.planar, setting.crops  # the same for every option
    rows["CompressAI ScaleHyperprior"] = (sum(p.numel() for p in planar.parameters()),
                                          forward_macs(Setting.planar_call, planar, crops[:1]))
    steps["CompressAI ScaleHyperprior"] = step_function(planar, crops, Setting.planar_call)
    times = time_steps(steps, repeats)
    base = statistics.median(times["CompressAI ScaleHyperprior"])
    for label, (params, macs) in rows.items():
        ratio = statistics.median(times[label]) / base
        print(f"  {label:<34} {params / 1e6:7.2f}M {macs / 1e9:10.3f} {spread(times[label])}"
              f"  {ratio:.2f}x")


def main(argv: Sequence[str] | None = None) -> tuple[float, float]:
    args = build_parser().parse_args(argv)
    settings = {"quick": (8, 12, 6)} if args.quick else {n: SETTINGS[n] for n in args.settings}
    batch = 2 if args.quick else args.batch
    repeats = 2 if args.quick else args.repeats
    ratios = (float("nan"), float("nan"))
    for name, (N, M, pr) in settings.items():
        setting = Setting(N, M, pr, batch)
        for threads in args.threads:
            ratios = throughput(setting, name, threads, repeats, not args.no_gather)
    if args.options:
        options_table(batch, repeats, args.quick)
    print(f"step_ratio={ratios[0]:.3f} mac_ratio={ratios[1]:.3f}")
    return ratios


if __name__ == "__main__":
    main()
