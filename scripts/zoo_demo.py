"""The demo's codec part: code a held-out ERP image with every zoo quality, beside JPEG and WebP
at the nearest rate, and save the map of the quality nearest a target rate for its view.

For each zoo quality: bpp (per HEALPix pixel at -r), S-PSNR Y against the original ERP image,
the mean error of each channel (decoded minus original HEALPix map, grey levels: a colour cast
shows as a non-zero mean) and the seam ratio of the patch coding (mean absolute error at the
64 x 64 patch borders over that inside). JPEG and WebP code the ERP image at width 4 * 2**r.

Example:
    python scripts/zoo_demo.py -i samples/moon_surface_4096.jpg -r 8 -O demo_output/zoo
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spherical_models import zoo
from spherical_models.cli import HelpFormatter
from spherical_models.coding import codec
from utils.classic_codecs import CODECS, RD_QUALITIES, erp_rd_points
from utils.cli import run_main, setup_logging
from utils.io import load_image, save_npy
from utils.sampling import erp_to_healpix
from utils.seams import seam_ratio
from utils.sphere_points import load_or_create


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-i", "--image", required=True, help="ERP test image (not trained on)")
    parser.add_argument("-r", "--healpix-res", type=int, default=8, help="HEALPix resolution")
    parser.add_argument("-O", "--out", required=True,
                        help="folder of results.csv, and of original.npy and zoo_view.npy "
                        "(the map of the quality nearest --view-bpp)")
    parser.add_argument("--view-bpp", type=float, default=0.25,
                        help="rate whose nearest zoo quality is saved for the view")
    parser.add_argument("-s", "--sphere-points", default="misc/sphere_10242.txt",
                        help="sphere points of S-PSNR")
    return parser


def classic_points(image: np.ndarray, res: int, points) -> dict[str, list[tuple]]:
    """``{codec: [(quality, bpp, S-PSNR Y)]}`` of JPEG and WebP on the image at 4 * 2**r."""
    return {name: [(q, bpp, m["s_psnr_y"]) for q, bpp, m in
                   erp_rd_points(image, res, points, CODECS[name], RD_QUALITIES)]
            for name in ("jpeg", "webp")}


def nearest(rows: list[tuple], bpp: float) -> tuple:
    return min(rows, key=lambda row: abs(row[1] - bpp))


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = load_image(args.image)
    points = load_or_create(args.sphere_points)
    original = erp_to_healpix(image, args.healpix_res)
    classic = classic_points(image, args.healpix_res, points)
    header = ("quality", "bpp", "s_psnr_y", "mean_error_r", "mean_error_g", "mean_error_b",
              "seam_ratio", "jpeg_q", "jpeg_bpp", "jpeg_s_psnr_y", "webp_q", "webp_bpp",
              "webp_s_psnr_y")
    lines, maps = [",".join(header)], {}
    print(f"{Path(args.image).name} at resolution {args.healpix_res}: the zoo beside JPEG and "
          "WebP at the nearest rate (S-PSNR Y, dB)")
    for entry in zoo.read_registry():
        model = codec.load_codec(zoo.checked_path(entry))
        result, decoded = zoo.code_erp_image(model, image, args.healpix_res, points)
        maps[entry.quality] = (result["bpp"], decoded)
        cast = (decoded.astype(np.float64) - original).mean(axis=0)
        seams = seam_ratio(original, decoded, model.default_patch_res)
        jpeg = nearest(classic["jpeg"], result["bpp"])
        webp = nearest(classic["webp"], result["bpp"])
        lines.append(",".join(f"{v:.6g}" for v in (entry.quality, result["bpp"],
                                                  result["s_psnr_y"], *cast, seams, *jpeg, *webp)))
        print(f"  q{entry.quality}: {result['bpp']:.4f} bpp, {result['s_psnr_y']:.2f} dB "
              f"(mean error R G B {cast[0]:+.2f} {cast[1]:+.2f} {cast[2]:+.2f}, seam ratio "
              f"{seams:.2f}) | JPEG q{jpeg[0]} {jpeg[1]:.4f} bpp {jpeg[2]:.2f} dB | "
              f"WebP q{webp[0]} {webp[1]:.4f} bpp {webp[2]:.2f} dB")
    (out / "results.csv").write_text("\n".join(lines) + "\n")
    quality = min(maps, key=lambda q: abs(maps[q][0] - args.view_bpp))
    save_npy(out / "original.npy", original)
    save_npy(out / "zoo_view.npy", maps[quality][1])
    print(f"  view: q{quality} ({maps[quality][0]:.4f} bpp), {out / 'zoo_view.npy'}")


if __name__ == "__main__":
    run_main(main)
