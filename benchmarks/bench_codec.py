"""Speed of the .oslo codec (``spherical_models.codec``) against the model's forward pass.

``SphereScaleHyperprior`` q1 (N=128, M=192; random weights, entropy models updated) on the
earth sample at HEALPix resolution 9 (3,145,728 pixels), by patches of resolution 8 (48
patches of 256x256; ``--patch-res``), 10 patches per call, on the CPU, all in one run:

* forward: ``model(x)`` over every batch (no grad), the baseline;
* encode: :func:`~spherical_models.codec.encode_map` (compress + file bytes), deterministic
  (the codec's default) and not;
* decode: :func:`~spherical_models.codec.unpack` + :func:`~spherical_models.codec.decode`,
  both modes.

Printed: seconds per megapixel of HEALPix, the coding overhead ratios encode / forward and
decode / forward, and the cost of the deterministic mode (deterministic / CompressAI's float32
path). Last line: ``encode_s_per_mpix=.. decode_s_per_mpix=.. forward_s_per_mpix=..
encode_ratio=.. decode_ratio=.. det_encode_ratio=.. det_decode_ratio=..``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_eval import sampled_maps


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn`` (no warm-up: each call is long), and the
    result of the last call."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    from spherical_models import codec
    from spherical_models.evaluation import map_batches
    from spherical_models.models import QUALITY_CHANNELS, SphereScaleHyperprior

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--healpix-res", type=int, default=9, help="resolution of the map")
    parser.add_argument("--patch-res", type=int, default=8, help="patch resolution")
    parser.add_argument("--batch", type=int, default=10, help="patches per compress call")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each (best kept)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = SphereScaleHyperprior(*QUALITY_CHANNELS[1]).eval()
    config = {**model.config, "quality": 1, "lambda": 0.0018}
    loaded = codec.Codec(path=Path("random"), model=model, config=config,
                         digest=codec.checkpoint_hash(model.state_dict(), config),
                         default_patch_res=args.patch_res, device=torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        hp_map = np.load(sampled_maps(args.healpix_res, Path(tmp))[0])
    mpix = len(hp_map) / 1e6
    geometry = loaded.geometry(args.healpix_res, args.patch_res)

    @torch.no_grad()
    def forward() -> None:
        for _, values, ids in map_batches(hp_map, args.patch_res, args.batch):
            x = torch.from_numpy(np.asarray(values, dtype=np.float32)).div_(255)
            model(x, geometry, None if ids is None else torch.from_numpy(ids))

    seconds = {"forward": timed(forward, args.repeats)[0]}
    sizes = {}
    for deterministic in (True, False):
        mode = "det" if deterministic else "fp32"
        seconds[f"encode_{mode}"], data = timed(
            lambda d=deterministic: codec.encode_map(loaded, hp_map, args.patch_res,
                                                     args.batch, d), args.repeats)
        seconds[f"decode_{mode}"], _ = timed(
            lambda data=data: codec.decode(loaded, codec.unpack(data)), args.repeats)
        sizes[mode] = len(data)

    per = {k: v / mpix for k, v in seconds.items()}
    print(f"SphereScaleHyperprior q1, resolution {args.healpix_res} ({len(hp_map)} pixels), "
          f"patch resolution {args.patch_res}, batches of {args.batch}, "
          f"{torch.get_num_threads()} threads; file {sizes['det']} bytes "
          f"({8 * sizes['det'] / len(hp_map):.4f} bpp; float32 path {sizes['fp32']} bytes)")
    print(f"{'':28s}{'s/Mpix':>10s}{'x forward':>12s}")
    for key, label in (("forward", "forward (baseline)"),
                       ("encode_det", "encode, deterministic"),
                       ("decode_det", "decode, deterministic"),
                       ("encode_fp32", "encode, float32 (--no-det.)"),
                       ("decode_fp32", "decode, float32 (--no-det.)")):
        print(f"{label:28s}{per[key]:10.3f}{seconds[key] / seconds['forward']:12.2f}")
    det_encode = seconds["encode_det"] / seconds["encode_fp32"]
    det_decode = seconds["decode_det"] / seconds["decode_fp32"]
    print(f"deterministic mode cost: encode x{det_encode:.3f}, decode x{det_decode:.3f}")
    print(f"encode_s_per_mpix={per['encode_det']:.3f} decode_s_per_mpix={per['decode_det']:.3f} "
          f"forward_s_per_mpix={per['forward']:.3f} "
          f"encode_ratio={seconds['encode_det'] / seconds['forward']:.3f} "
          f"decode_ratio={seconds['decode_det'] / seconds['forward']:.3f} "
          f"det_encode_ratio={det_encode:.3f} det_decode_ratio={det_decode:.3f}")


if __name__ == "__main__":
    main()
