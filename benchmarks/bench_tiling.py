"""Whole-sphere coding tile by tile (``--tile-res``) against coding by patches: time and peak
memory of encoding and decoding one map.

A random-weight q1 scale hyperprior (N, M) = (128, 192), entropy models updated, on the CPU,
codes one map (``samples/earth_day.jpg`` sampled at ``-r``) twice, each in a fresh process
whose peak resident memory (``ru_maxrss``, interpreter and torch included) is read:

* ``tiled``: the whole sphere (``patch_res = -1``) with ``g_a`` and ``g_s`` by tiles of
  ``--tile-res`` (:func:`spherical_models.coding.maps.compress_map` / ``decompress_map``, the
  coarse whole-sphere geometry of :func:`spherical_models.models.tiling.coarse_geometry`);
* ``patches``: patches of resolution ``--patch-res``, ``--batch-size`` a batch.

The full run is at resolution 10 (12.6 M pixels; several minutes on 2 cores); ``--quick`` at
8. Target: the tiled peak at most 8 GB at resolution 10. Last line:
``tiling: tiled_s=.. tiled_peak_gb=.. patch_s=.. patch_peak_gb=.. time_ratio=..
peak_ratio=..``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import run_isolated
from spherical_models.coding.maps import compress_map, decompress_map
from spherical_models.geometry import SphereGeometry
from spherical_models.models import SphereScaleHyperprior
from spherical_models.models.tiling import DEFAULT_TILE_RES, coarse_geometry
from utils.io import load_image
from utils.sampling import erp_to_healpix

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "earth_day.jpg"


def code(res: int, patch_res: int, tile_res: int | None, batch_size: int) -> None:
    """Encode and decode the sample map at ``res`` (in the benchmark's child process)."""
    torch.manual_seed(0)
    model = SphereScaleHyperprior(128, 192).eval()
    model.update(force=True)
    hp_map = erp_to_healpix(load_image(SAMPLE), res)
    if patch_res < 0:
        geometry = coarse_geometry(model, res)
    else:
        geometry = SphereGeometry.build(res, patch_res, model.num_levels)
    device = torch.device("cpu")
    coded = compress_map(model, geometry, hp_map, patch_res, batch_size, device, tile_res)
    decoded = decompress_map(model, geometry, coded, device, tile_res)
    error = np.abs(decoded.astype(np.int16) - hp_map).mean()
    print(f"  {'tiled' if patch_res < 0 else 'patches'}: {coded.num_bytes} bytes, mean "
          f"absolute error {error:.1f} levels (random weights)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--res", type=int, default=10, help="HEALPix resolution")
    parser.add_argument("--quick", action="store_true", help="resolution 8 (about a minute)")
    parser.add_argument("-t", "--tile-res", type=int, default=DEFAULT_TILE_RES,
                        help="tile resolution of the tiled case")
    parser.add_argument("-p", "--patch-res", type=int, default=8,
                        help="patch resolution of the patch case")
    parser.add_argument("-b", "--batch-size", type=int, default=4,
                        help="patches per batch of the patch case")
    args = parser.parse_args()
    res = 8 if args.quick else args.res
    tile_res = min(args.tile_res, res - 1)
    patch_res = min(args.patch_res, res - 2)
    print(f"resolution {res} ({12 * 4**res:,} pixels), q1 scale hyperprior, "
          f"{torch.get_num_threads()} threads", flush=True)
    tiled_s, tiled_peak = run_isolated(code, res, -1, tile_res, 1)
    print(f"tiled (T={tile_res}): {tiled_s:.1f} s, peak {tiled_peak / 2**30:.2f} GB", flush=True)
    patch_s, patch_peak = run_isolated(code, res, patch_res, None, args.batch_size)
    print(f"patches (pr={patch_res}, batch {args.batch_size}): {patch_s:.1f} s, peak "
          f"{patch_peak / 2**30:.2f} GB", flush=True)
    print(f"tiling: tiled_s={tiled_s:.1f} tiled_peak_gb={tiled_peak / 2**30:.2f} "
          f"patch_s={patch_s:.1f} patch_peak_gb={patch_peak / 2**30:.2f} "
          f"time_ratio={tiled_s / patch_s:.2f} peak_ratio={tiled_peak / patch_peak:.2f}")


if __name__ == "__main__":
    main()
