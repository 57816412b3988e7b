"""Time SDPAConv (face and gather paths) against ``torch.nn.Conv2d``, forward + backward.

One-hop SDPAConv, 128 -> 128 channels, batch 8 of one 256 x 256 patch (``pr = 8``), against
``nn.Conv2d(128, 128, 3, padding=1)`` on ``8 x 128 x 256 x 256``, NCHW (the baseline) and
``channels_last``, timed in the same run. SDPAConv runs on the face layout (the patch as a
``channels_last`` image, as inside the models' transforms), on a NESTED input through the face
path (one pixel permutation each way) and on the gather path. Each time is the median of
``--repeats`` runs after one warm-up; the peak memory is the rise of the peak RSS (CPU) or of
the allocated memory (CUDA) during the runs. The last line is
``face_ratio=<x> gather_ratio=<y>``: the face layout's and the gather path's times over the
channels_last Conv2d's.

    python benchmarks/bench_sdpaconv.py [--quick] [--threads N] [--repeats R] [--device D]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from spherical_models.cli import HelpFormatter
from spherical_models.graph import OsloGraph
from spherical_models.layers import SDPAConv
from spherical_models.layers.face_layout import to_faces
from utils.structures import build_oslo_structure

FULL = dict(batch=8, channels=128, patch_res=8)
QUICK = dict(batch=2, channels=32, patch_res=6)
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--quick", action="store_true",
                        help="batch 2, 32 channels, 64 x 64 patch: a fast smoke test")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--device", default="cpu", help="torch device")
    return parser


def _rss_peak() -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak(device: torch.device) -> int:
    """Reset the peak-memory counter; returns the memory in use now (bytes)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:
        CLEAR_REFS.write_text("5")  # Linux: resets VmHWM to the current RSS
    except OSError:
        return 0
    return _rss_peak()


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _rss_peak() if CLEAR_REFS.exists() else 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    steps: dict[str, Callable[[], None]], repeats: int, device: torch.device
) -> dict[str, tuple[float, int]]:
    """Median seconds of each step and its peak memory rise (bytes), after one warm-up each.

    The steps take turns (one run of each per round), so that a slow drift of the machine's
    load affects them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks = dict.fromkeys(steps, 0)
    for step in steps.values():
        step()
    for _ in range(repeats):
        for name, step in steps.items():
            _sync(device)
            base = _reset_peak(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks[name], _peak(device) - base)
    return {name: (statistics.median(times[name]), peaks[name]) for name in steps}


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, *args) -> Callable:
    """A step running ``module(x, *args)`` forward and backward, gradients reset first."""

    def step() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x, *args).backward(grad)

    return step


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    size = QUICK if args.quick else FULL
    batch, channels, patch_res = size["batch"], size["channels"], size["patch_res"]
    device = torch.device(args.device)
    side = 1 << patch_res
    torch.manual_seed(0)

    conv2d = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device)
    image = torch.randn(batch, channels, side, side, device=device, requires_grad=True)
    image_grad = torch.randn_like(image)
    image_cl = image.detach().to(memory_format=torch.channels_last).requires_grad_()
    image_grad_cl = image_grad.to(memory_format=torch.channels_last)

    graph = OsloGraph(build_oslo_structure(patch_res, patch_res, 1)).to(device)
    face = SDPAConv(channels, channels, path="face").to(device)
    gather = SDPAConv(channels, channels, path="gather").to(device)
    gather.load_state_dict(face.state_dict())
    x = torch.randn(batch, side * side, channels, device=device, requires_grad=True)
    x_grad = torch.randn_like(x)

    print(f"device={device} threads={torch.get_num_threads()} batch={batch} "
          f"channels={channels}->{channels} patch={side}x{side} (pr={patch_res}), one hop, "
          f"forward+backward, median of {args.repeats}")
    faces = to_faces(x.detach(), graph).detach().requires_grad_()
    faces_grad = to_faces(x_grad, graph)
    labels = {
        "conv2d": "nn.Conv2d 3x3 NCHW",
        "conv2d_cl": "nn.Conv2d 3x3 channels_last",
        "faces": "SDPAConv face layout",
        "face": "SDPAConv face path, NESTED input",
        "gather": "SDPAConv gather path",
    }
    steps = {
        "conv2d": fwd_bwd(conv2d, image, image_grad),
        "conv2d_cl": fwd_bwd(conv2d, image_cl, image_grad_cl),
        "faces": fwd_bwd(face, faces, faces_grad, graph),
        "face": fwd_bwd(face, x, x_grad, graph),
        "gather": fwd_bwd(gather, x, x_grad, graph),
    }
    results = measure(steps, args.repeats, device)
    times = {name: seconds for name, (seconds, _) in results.items()}
    for name, (seconds, peak) in results.items():
        print(f"{labels[name]:<34} {seconds:8.3f} s   peak memory +{peak / 2**20:6.0f} MiB")
    print("vs NCHW Conv2d: " + ", ".join(
        f"{name} {times[name] / times['conv2d']:.2f}x" for name in ("faces", "face", "gather")))
    print("vs channels_last Conv2d: " + ", ".join(
        f"{name} {times[name] / times['conv2d_cl']:.2f}x" for name in ("faces", "face", "gather")))
    ratios = {"face": times["faces"] / times["conv2d_cl"],
              "gather": times["gather"] / times["conv2d_cl"]}
    print(f"face_ratio={ratios['face']:.3f} gather_ratio={ratios['gather']:.3f}")
    return ratios


if __name__ == "__main__":
    main()
