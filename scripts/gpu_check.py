"""A quick check of the toolkit on a CUDA machine (``make gpu-check``, a few minutes).

It measures, on the first CUDA device:

* training speed: ``--steps`` optimisation steps (rate-distortion loss with lambda 0.0018,
  Adam, auxiliary loss of the entropy bottleneck) of the paper's q1 scale hyperprior
  (``SphereScaleHyperprior``, (N, M) = ``QUALITY_CHANNELS[1]``) on batches of ``--batch``
  random patches of resolution ``--patch-res`` of the earth sample sampled at HEALPix
  resolution ``--healpix-res``, once per convolution path (``face`` and ``gather``); steps per
  second after one warm-up step, and the peak GPU memory of the whole check;
* evaluation: :func:`~spherical_models.evaluation.maps.code_map` of the whole map with the trained
  model (forward pass, encoding and decoding): seconds and bpp of the strings;
* the codec across devices: a ``.oslo`` file of the map sampled at ``--codec-res`` (lower
  than the map's by default: the CPU codes it) by a random-weight q1 model, encoded on the CPU
  (:func:`~spherical_models.coding.codec.encode_map`), decoded on the CPU and on CUDA with the same
  weights: whether both maps are equal, else the largest level difference and the fraction of
  differing pixels, or the text of the decoder's refusal (a latent checksum mismatch);
* NCCL: a one-process ``torch.distributed.run --standalone`` job that joins an NCCL process
  group and does an ``all_reduce``.

Last line: ``gpu_check: steps_per_s_face=.. steps_per_s_gather=.. peak_gpu_mem_gib=..
eval_s=.. eval_bpp=.. decode_equal=true|false|refused nccl=ok|fail``. Without a GPU it says
so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "earth_day.jpg"
LAMBDA = 0.0018
NO_GPU = "gpu_check: no GPU available (torch.cuda.is_available() is false), nothing checked"

NCCL_WORKER = """
import os, torch, torch.distributed as dist
dist.init_process_group("nccl")
torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
value = torch.ones(4, device="cuda")
dist.all_reduce(value)
assert torch.equal(value.cpu(), torch.full((4,), float(dist.get_world_size())))
dist.destroy_process_group()
print("nccl all_reduce ok")
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=20,
                        help="training steps per convolution path (after one warm-up step)")
    parser.add_argument("--healpix-res", type=int, default=10,
                        help="HEALPix resolution of the map (training, evaluation)")
    parser.add_argument("--patch-res", type=int, default=8, help="patch resolution")
    parser.add_argument("--batch", type=int, default=4, help="patches per training batch")
    parser.add_argument("--codec-res", type=int, default=8,
                        help="HEALPix resolution of the CPU-encoded, CUDA-decoded file")
    return parser


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def q1_model():
    from spherical_models.models import QUALITY_CHANNELS, SphereScaleHyperprior

    return SphereScaleHyperprior(*QUALITY_CHANNELS[1])


def train_speed(model, geometry, hp_map: np.ndarray, patch_res: int, batch: int, steps: int,
                path: str, device: torch.device, rng: np.random.Generator) -> float:
    """Steps per second of ``steps`` training steps on ``path`` (one warm-up step first)."""
    from spherical_models.coding.maps import to_input
    from spherical_models.training.loss import RateDistortionLoss
    from spherical_models.training.optim import configure_optimizers

    model.train().set_conv_path(path)
    criterion = RateDistortionLoss(LAMBDA)
    optimizer, aux_optimizer = configure_optimizers(model, 1e-4, 1e-3)
    size = 4**patch_res
    patches = hp_map.reshape(len(hp_map) // size, size, -1)

    def step() -> None:
        ids = np.sort(rng.choice(len(patches), batch, replace=False))
        x = to_input(patches[ids], device)
        optimizer.zero_grad(set_to_none=True)
        losses = criterion(model(x, geometry, torch.from_numpy(ids).to(device)), x)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if aux_optimizer is not None:
            aux_optimizer.zero_grad(set_to_none=True)
            model.aux_loss().backward()
            aux_optimizer.step()

    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps / (time.perf_counter() - start)


def evaluate(model, geometry, hp_map: np.ndarray, patch_res: int, batch: int,
             device: torch.device) -> tuple[float, float]:
    """``(seconds, bpp)`` of :func:`~spherical_models.evaluation.maps.code_map` of the map."""
    from spherical_models.evaluation.maps import code_map

    model.eval().set_conv_path("auto")
    model.update(force=True)
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        _, stats = code_map(model, geometry, hp_map, patch_res, batch, device)
    synchronize(device)
    return time.perf_counter() - start, stats["actual_bits"] / len(hp_map)


def cross_device_decode(hp_map: np.ndarray, patch_res: int, batch: int,
                        device: torch.device) -> tuple[str, str]:
    """Encode with a random-weight q1 codec on the CPU, decode on the CPU and on ``device``:
    ``("true" | "false" | "refused", details)``."""
    from spherical_models.coding import codec
    from utils.errors import OsloError

    torch.manual_seed(0)
    state = q1_model().state_dict()
    codecs = {}
    for where in (torch.device("cpu"), device):
        model = q1_model()
        model.load_state_dict(state)
        config = {**model.config, "quality": 1, "lambda": LAMBDA}
        codecs[where.type] = codec.Codec(
            path=Path("random"), model=model.to(where).eval(), config=config,
            digest=codec.checkpoint_hash(state, config), default_patch_res=patch_res,
            device=where)
    data = codec.encode_map(codecs["cpu"], hp_map, patch_res, batch)
    reference = codec.decode(codecs["cpu"], codec.unpack(data))
    try:
        decoded = codec.decode(codecs[device.type], codec.unpack(data))
    except OsloError as error:
        return "refused", f"{device.type} decoding refused: {error}"
    if np.array_equal(decoded, reference):
        return "true", f"{len(data)} bytes, {device.type} decoding equals the CPU's"
    diff = np.abs(decoded.astype(np.int16) - reference.astype(np.int16))
    return "false", (f"{len(data)} bytes, {device.type} decoding differs: max level "
                     f"difference {int(diff.max())}, {np.mean(diff.any(axis=1)):.6f} of the "
                     "pixels differ")


def nccl_check(timeout: float = 180.0) -> tuple[bool, str]:
    """Run :data:`NCCL_WORKER` under ``torch.distributed.run --standalone --nproc_per_node 1``."""
    with tempfile.TemporaryDirectory() as tmp:
        worker = Path(tmp) / "nccl_worker.py"
        worker.write_text(NCCL_WORKER)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", "1", str(worker)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        except subprocess.TimeoutExpired:
            return False, f"torchrun did not finish in {timeout:.0f} s"
    output = (done.stdout + done.stderr).strip()
    ok = done.returncode == 0 and "nccl all_reduce ok" in done.stdout
    if ok or not output:
        return ok, "all_reduce ok" if ok else f"exit status {done.returncode}"
    errors = [line for line in output.splitlines() if "Error" in line]
    return ok, (errors or output.splitlines())[-1].strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    from spherical_models.coding import codec
    from spherical_models.geometry import SphereGeometry

    device = torch.device("cuda")
    print(f"gpu_check: {torch.cuda.get_device_name(device)}, torch {torch.__version__}",
          flush=True)
    torch.cuda.reset_peak_memory_stats(device)
    hp_map, _ = codec.read_input(SAMPLE, args.healpix_res)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = q1_model().to(device)
    geometry = SphereGeometry.build(args.healpix_res, args.patch_res,
                                    model.num_levels).to(device)
    speed = {}
    for path in ("face", "gather"):
        speed[path] = train_speed(model, geometry, hp_map, args.patch_res, args.batch,
                                  args.steps, path, device, rng)
        print(f"train {path}: {speed[path]:.3f} steps/s", flush=True)
    eval_s, eval_bpp = evaluate(model, geometry, hp_map, args.patch_res, args.batch, device)
    print(f"evaluation: {eval_s:.2f} s, {eval_bpp:.4f} bpp", flush=True)
    codec_map, _ = codec.read_input(SAMPLE, args.codec_res)
    equal, details = cross_device_decode(codec_map, min(args.patch_res, args.codec_res),
                                         args.batch, device)
    print(f"codec: {details}", flush=True)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    nccl_ok, nccl_text = nccl_check()
    print(f"nccl: {nccl_text}", flush=True)
    print(f"gpu_check: steps_per_s_face={speed['face']:.3f} "
          f"steps_per_s_gather={speed['gather']:.3f} peak_gpu_mem_gib={peak:.2f} "
          f"eval_s={eval_s:.2f} eval_bpp={eval_bpp:.4f} decode_equal={equal} "
          f"nccl={'ok' if nccl_ok else 'fail'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
