"""Evaluation speed and memory, and data loading during training.

1. Evaluation of one map (the earth sample) at resolution 8 (786,432 pixels) by
   ``SphereScaleHyperprior`` q1 (N=128, M=192; random weights, entropy models updated), on the
   CPU, patch by patch (patch resolution 6, 16 patches per batch) as
   ``main_sphere_compression.py -t`` runs it: ``compress`` and ``decompress`` seconds, and the
   peak resident memory of the fresh process that does it (interpreter and libraries included).
2. One training epoch on the bundled samples at resolution 8 (2 training maps, 48 patches of
   resolution 6 each, batches of 10) with ``--dataloader-num-workers 2``: the fraction of the
   epoch spent waiting for data (``log.csv``'s ``data_seconds`` over ``seconds``), for q1 and
   for the demo's small model (N=64, M=96). Target: at most 10%.

Last line: ``encode_s=<s> decode_s=<s> peak_gb=<GB> data_wait_q1=<f> data_wait_small=<f>``.
``--healpix-res 10 --patch-res 8`` measures the evaluation at resolution 10 instead (target:
peak memory under 12 GB).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def sampled_maps(res: int, folder: Path) -> list[Path]:
    """The bundled samples at resolution ``res`` (the demo's maps if present), earth first."""
    from utils.dataset_split import sampled_name
    from utils.io import load_image
    from utils.sampling import erp_to_healpix

    demo = REPO / "demo_output" / f"healpix_res_{res}"
    paths = []
    for image in sorted(SAMPLES.glob("*.jpg"), key=lambda p: p.stem != "earth_day"):
        path = demo / sampled_name(res, image.stem)
        if not path.is_file():
            path = folder / sampled_name(res, image.stem)
            if not path.is_file():
                np.save(path, erp_to_healpix(load_image(image), res))
        paths.append(path)
    return paths


def _evaluate(queue, map_path: str, res: int, patch_res: int, batch: int) -> None:
    from spherical_models.evaluation.maps import code_map
    from spherical_models.geometry import SphereGeometry
    from spherical_models.models import SphereScaleHyperprior

    torch.manual_seed(0)
    model = SphereScaleHyperprior(128, 192).eval()
    model.update(force=True)
    geometry = SphereGeometry.build(res, patch_res, model.num_levels)
    hp_map = np.load(map_path)
    start = time.perf_counter()
    _, stats = code_map(model, geometry, hp_map, patch_res, batch, torch.device("cpu"))
    stats["total_seconds"] = time.perf_counter() - start
    stats["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put(stats)


def evaluation(map_path: Path, res: int, patch_res: int, batch: int) -> dict:
    """Run :func:`_evaluate` in a fresh process (for its peak memory)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_evaluate, args=(queue, str(map_path), res, patch_res,
                                                      batch))
    process.start()
    stats = queue.get()
    process.join()
    return stats


def data_wait(maps: list[Path], res: int, patch_res: int, channels: tuple[int, int],
              workers: int) -> tuple[float, float]:
    """One training epoch as ``main_sphere_compression.py`` runs it; returns (fraction of the
    epoch waiting for data, epoch seconds)."""
    from spherical_models.geometry import SphereGeometry
    from spherical_models.models import SphereScaleHyperprior
    from spherical_models.training.data import make_loader
    from spherical_models.training.epoch import EpochContext, train_one_epoch
    from spherical_models.training.loss import RateDistortionLoss
    from spherical_models.training.optim import configure_optimizers
    from utils.datasets import BalancedPatchSampler, MapPatches

    torch.manual_seed(0)
    model = SphereScaleHyperprior(*channels)
    geometry = SphereGeometry.build(res, patch_res, model.num_levels)
    optimizer, aux = configure_optimizers(model, 1e-4, 1e-3)
    ctx = EpochContext(RateDistortionLoss(0.0018), optimizer, aux, geometry,
                       torch.device("cpu"), progress=False)
    sampler = BalancedPatchSampler(len(maps), res, patch_res, 12 * 4 ** (res - patch_res), 0)
    loader = make_loader(MapPatches(maps, res, patch_res), sampler, 10, workers,
                         torch.device("cpu"))
    sampler.set_epoch(1)
    meters = train_one_epoch(model, model, loader, ctx, 1)
    return meters.data_seconds / meters.seconds, meters.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--healpix-res", type=int, default=8, help="resolution of the map")
    parser.add_argument("--patch-res", type=int, default=6, help="patch resolution (-prvt)")
    parser.add_argument("--batch", type=int, default=16, help="patches per compress call")
    parser.add_argument("--workers", type=int, default=2, help="data loader workers")
    parser.add_argument("--skip-training", action="store_true", help="only the evaluation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        maps = sampled_maps(args.healpix_res, Path(tmp))
        stats = evaluation(maps[0], args.healpix_res, args.patch_res, args.batch)
        print(f"evaluation of {maps[0].name}, q1, patch resolution {args.patch_res}, batches of "
              f"{args.batch}, {torch.get_num_threads()} threads: encode "
              f"{stats['encode_seconds']:.2f} s, decode {stats['decode_seconds']:.2f} s "
              f"(with the likelihood pass: {stats['total_seconds']:.2f} s), "
              f"{stats['actual_bits'] / len(np.load(maps[0], mmap_mode='r')):.4f} bpp, peak "
              f"memory {stats['peak_bytes'] / 1e9:.2f} GB")
        waits = {}
        if not args.skip_training:
            train_maps = [m for m in maps if "earth_day" in m.name or "milky_way" in m.name]
            for label, channels in (("q1", (128, 192)), ("small", (64, 96))):
                fraction, seconds = data_wait(train_maps, args.healpix_res, args.patch_res,
                                              channels, args.workers)
                waits[label] = fraction
                print(f"training epoch, {label} (N, M = {channels}), {args.workers} workers: "
                      f"{seconds:.1f} s, {100 * fraction:.2f}% waiting for data")
    nan = float("nan")
    print(f"encode_s={stats['encode_seconds']:.2f} decode_s={stats['decode_seconds']:.2f} "
          f"peak_gb={stats['peak_bytes'] / 1e9:.2f} data_wait_q1={waits.get('q1', nan):.4f} "
          f"data_wait_small={waits.get('small', nan):.4f}")


if __name__ == "__main__":
    main()
