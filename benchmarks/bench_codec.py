"""Speed of the .oslo codec (``spherical_models.coding.codec``) against the model's forward pass.

``SphereScaleHyperprior`` q1 (N=128, M=192; random weights, entropy models updated) on the
earth sample at HEALPix resolution 9 (3,145,728 pixels), by patches of resolution 8 (48
patches of 256x256; ``--patch-res``), 10 patches per call, on the CPU, all in one run:

* forward: ``model(x)`` over every batch (no grad), the baseline;
* encode: :func:`~spherical_models.coding.codec.encode_map` (compress + file bytes), deterministic
  (the codec's default) and not;
* decode: :func:`~spherical_models.coding.codec.unpack` +
  :func:`~spherical_models.coding.codec.decode`, both modes;
* per-patch strings: the model's CompressAI-style ``compress`` / ``decompress`` (one string
  per patch and latent, the format before version 2), deterministic, for the cost of one
  stream per latent.

Printed: seconds per megapixel of HEALPix, the coding overhead ratios encode / forward and
decode / forward, the cost of the deterministic mode (deterministic / CompressAI's float32
path) and of one stream (one stream / per-patch strings). Then, for the trained checkpoints of
``tests/data/checkpoints`` (``--checkpoints``) on the four bundled samples at resolution 7 by
patches of resolution 6: file bytes, theoretical bytes and their difference per map, in both
modes. Last line: ``encode_s_per_mpix=.. decode_s_per_mpix=.. forward_s_per_mpix=..
encode_ratio=.. decode_ratio=.. det_encode_ratio=.. det_decode_ratio=..
stream_encode_ratio=.. stream_decode_ratio=.. overhead_bytes_per_map=..`` (the mean over the
checkpoints and maps, deterministic mode where the model has it).
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


REPO = Path(__file__).resolve().parent.parent


def overheads(paths: list[Path]) -> list[dict]:
    """Per checkpoint and bundled sample (resolution 7, patches of resolution 6, batches of
    12), in both modes: file bytes, theoretical bytes (the forward pass's likelihoods) and
    header bytes."""
    from spherical_models.coding import codec
    from spherical_models.evaluation.maps import code_map

    rows = []
    maps = [codec.read_input(path, 7) for path in sorted((REPO / "samples").glob("*.jpg"))]
    for path in paths:
        loaded = codec.load_codec(path)
        modes = (True, False) if loaded.model.supports_deterministic else (False,)
        for deterministic in modes:
            for hp_map, shape in maps:
                data = codec.encode_map(loaded, hp_map, 6, 12, deterministic, shape)
                _, stats = code_map(loaded.model, loaded.geometry(7, 6), hp_map, 6, 12,
                                    torch.device("cpu"))
                rows.append({"checkpoint": path.stem.removesuffix(".pth"),
                             "deterministic": deterministic, "file": len(data),
                             "theoretical": stats["theoretical_bits"] / 8,
                             "header": codec.unpack(data).header_bytes})
    return rows


def main() -> None:
    from spherical_models.coding import codec
    from spherical_models.coding.maps import map_batches, to_input
    from spherical_models.models import (
        DEFAULT_SCALE_TABLE_LEVELS,
        QUALITY_CHANNELS,
        SphereScaleHyperprior,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--healpix-res", type=int, default=9, help="resolution of the map")
    parser.add_argument("--patch-res", type=int, default=8, help="patch resolution")
    parser.add_argument("--batch", type=int, default=10, help="patches per compress call")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each (best kept)")
    parser.add_argument("--checkpoints", type=Path, nargs="*",
                        default=sorted((REPO / "tests" / "data" / "checkpoints").glob("*.tar")),
                        help="trained checkpoints for the overhead bytes (default: those of "
                        "tests/data/checkpoints)")
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

    batches = [(to_input(values, torch.device("cpu")),
                None if ids is None else torch.from_numpy(ids))
               for _, values, ids in map_batches(hp_map, args.patch_res, args.batch)]

    @torch.no_grad()
    def per_patch_encode() -> list:
        return [model.compress(x, geometry, ids) for x, ids in batches]

    @torch.no_grad()
    def per_patch_decode(encoded: list) -> None:
        for (_, ids), coded in zip(batches, encoded, strict=True):
            model.decompress(coded["strings"], coded["shape"], geometry, ids)

    loaded.set_mode(True, DEFAULT_SCALE_TABLE_LEVELS)
    seconds["encode_patch"], encoded = timed(per_patch_encode, args.repeats)
    seconds["decode_patch"], _ = timed(lambda: per_patch_decode(encoded), args.repeats)
    sizes["patch"] = sum(len(s) for coded in encoded for latent in coded["strings"]
                         for s in latent)

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
                       ("decode_fp32", "decode, float32 (--no-det.)"),
                       ("encode_patch", "encode, per-patch strings"),
                       ("decode_patch", "decode, per-patch strings")):
        print(f"{label:28s}{per[key]:10.3f}{seconds[key] / seconds['forward']:12.2f}")
    det_encode = seconds["encode_det"] / seconds["encode_fp32"]
    det_decode = seconds["decode_det"] / seconds["decode_fp32"]
    stream_encode = seconds["encode_det"] / seconds["encode_patch"]
    stream_decode = seconds["decode_det"] / seconds["decode_patch"]
    print(f"deterministic mode cost: encode x{det_encode:.3f}, decode x{det_decode:.3f}")
    print(f"one stream per latent / per-patch strings: encode x{stream_encode:.3f}, decode "
          f"x{stream_decode:.3f}; strings {sizes['det']} against {sizes['patch']} bytes")

    rows = overheads(args.checkpoints)
    print("\ntrained checkpoints, 4 samples at resolution 7, patches of resolution 6 "
          "(bytes per map: mean; overhead = file - theoretical)")
    print(f"{'checkpoint':24s}{'mode':>8s}{'file':>9s}{'theor.':>9s}{'header':>8s}"
          f"{'overhead':>10s}{'(f-80)/t-1':>12s}")
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row["checkpoint"], row["deterministic"]), []).append(row)
    for (name, deterministic), group in groups.items():
        mean = {k: float(np.mean([r[k] for r in group])) for k in ("file", "theoretical",
                                                                    "header")}
        worst = max((r["file"] - r["theoretical"] - 80) / r["theoretical"] for r in group)
        print(f"{name:24s}{'det' if deterministic else 'fp32':>8s}{mean['file']:9.0f}"
              f"{mean['theoretical']:9.0f}{mean['header']:8.0f}"
              f"{mean['file'] - mean['theoretical']:10.1f}{100 * worst:11.2f}%")
    for name in sorted({key[0] for key in groups}):
        if (name, True) in groups and (name, False) in groups:
            det = sum(r["file"] for r in groups[name, True])
            fp32 = sum(r["file"] for r in groups[name, False])
            print(f"{name}: deterministic / float32 file bytes = {det / fp32:.5f}")
    kept = [r for r in rows if r["deterministic"] or (r["checkpoint"], True) not in groups]
    overhead = float(np.mean([r["file"] - r["theoretical"] for r in kept])) if kept else 0.0
    print(f"encode_s_per_mpix={per['encode_det']:.3f} decode_s_per_mpix={per['decode_det']:.3f} "
          f"forward_s_per_mpix={per['forward']:.3f} "
          f"encode_ratio={seconds['encode_det'] / seconds['forward']:.3f} "
          f"decode_ratio={seconds['decode_det'] / seconds['forward']:.3f} "
          f"det_encode_ratio={det_encode:.3f} det_decode_ratio={det_decode:.3f} "
          f"stream_encode_ratio={stream_encode:.3f} stream_decode_ratio={stream_decode:.3f} "
          f"overhead_bytes_per_map={overhead:.1f}")


if __name__ == "__main__":
    main()
