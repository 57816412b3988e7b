"""Classic-codec baselines: compress the original ERP images with JPEG, WebP and JPEG 2000
(Pillow) over a range of qualities, decode them, and write one RD CSV per (codec, quality).

Each RD CSV has the columns and rows of misc/compute_spherical_psnr.py --csv
(name,bpp,s_psnr_y,ws_psnr_y,s_psnr_rgb,ws_psnr_rgb; one row per image, then 'mean'), so
misc/compute_bd_rate.py and misc/plot_rd_curves.py take them as they are (-c jpeg <out>/jpeg/*.csv).
The metrics compare the ERP original with the decoded ERP image (utils/metrics.py: S-PSNR over
the sphere points, bilinear; WS-PSNR with cos(latitude) row weights).

bpp = bits of the compressed file / 12 * 4**r, the number of HEALPix pixels at -r/--healpix-res
(not the ERP pixel count), so that the classic codecs and the sphere models share one bpp axis.
With --erp-width W, the codecs code the original resampled bilinearly on a W x W/2 ERP grid
(utils.sampling.resample_erp, the rule of step 1's HEALPix sampling), the input of the planar
CompressAI baseline (baselines/train_erp_compressai.py); the metrics still compare with the
original (WS-PSNR on the decoded image's grid).

Outputs in -O/--output-dir:
    <codec>/q<quality>.csv    one RD CSV per quality (JPEG 2000: per compression ratio)
    <codec>_summary.csv       codec,quality,bpp,<metrics>: the mean row of each quality
    <codec>/q<quality>/<name>.<ext>   the compressed files, only with --keep-files
The files are encoded and decoded in memory; every written file is written atomically. A codec
that this Pillow lacks (PIL.features.check) is skipped with a warning.

Example:
    python misc/compress_erp_baseline.py -o ../oslo_data/images_equirectangular -oe jpg \\
        -t ../oslo_data/Healpix_res_10/test.txt --test-files-prefix healpix_sampling_res_10_ \\
        -r 10 -O runs/baselines
    python misc/plot_rd_curves.py -c jpeg runs/baselines/jpeg/*.csv -c oslo runs/oslo_*/rd.csv
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import features

from spherical_models.cli import HelpFormatter, add_sphere_points_argument
from utils.classic_codecs import CODECS, Codec, compress, quality_label, summary_csv
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.healpix import npix_of
from utils.io import atomic_path, load_rgb, original_names, write_text
from utils.metrics import spherical_psnr
from utils.rd import Row, mean_row, results_csv, results_table
from utils.sampling import resample_erp
from utils.sphere_points import load_or_create


def available_codecs(names: Sequence[str]) -> list[Codec]:
    """The codecs of ``names`` that Pillow supports; a warning for each one it lacks."""
    codecs = []
    for name in names:
        codec = CODECS[name]
        if features.check(codec.feature):
            codecs.append(codec)
        else:
            get_logger().warning("Pillow lacks %s (feature '%s'): %s skipped", codec.pil_format,
                                 codec.feature, name)
    return codecs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog="bpp = bits of the compressed file / (12 * 4**r), r = -r/--healpix-res: bits per "
               "HEALPix pixel, not per ERP pixel, so that the curves share one axis with the "
               "sphere models of that resolution.")
    add = parser.add_argument
    add("-o", "--original-dir", required=True, help="folder of the original ERP images")
    add("-oe", "--original-ext", default="jpg", help="extension of the originals")
    add("-t", "--test-data", default=None,
        help="list file of the test maps (step 1's test.txt; only the names are used); "
             "default: every <-o>/*.<-oe>")
    add("--test-files-prefix", default="",
        help="prefix of the test file names that the original names lack")
    add("--test-files-suffix", default="",
        help="suffix of the test file names that the original names lack")
    add("-r", "--healpix-res", type=int, default=10,
        help="HEALPix resolution r whose pixel count 12 * 4**r divides the bits (bpp)")
    add("-O", "--output-dir", required=True,
        help="folder of the RD CSVs (<codec>/q<quality>.csv), the summaries "
             "(<codec>_summary.csv) and, with --keep-files, the compressed files")
    add("-c", "--codecs", nargs="+", default=list(CODECS), choices=list(CODECS),
        help="codecs to run")
    for codec in CODECS.values():
        add(f"--{codec.name}-qualities", default=codec.default_qualities,
            help=f"{codec.pil_format}: {codec.quality_help}")
    add("--erp-width", type=int, default=None,
        help="code the original resampled on a W x W/2 ERP grid (even W; e.g. 4 * 2**r, the "
             "planar baseline's size); default: the original's size")
    add("--keep-files", action="store_true",
        help="keep the compressed files in <-O>/<codec>/q<quality>/")
    add_sphere_points_argument(parser)
    return parser


def image_names(args: argparse.Namespace) -> list[str]:
    """Names (stems) of the originals: from the test list, or every ``<-o>/*.<-oe>``."""
    folder = Path(args.original_dir)
    if not folder.is_dir():
        raise OsloError(f"original folder '{folder}' does not exist")
    if args.test_data is not None:
        return original_names(args.test_data, args.test_files_prefix, args.test_files_suffix)
    names = sorted(p.stem for p in folder.glob(f"*.{args.original_ext}") if p.is_file())
    if not names:
        raise OsloError(f"no '*.{args.original_ext}' image in '{folder}'")
    return names


def main(argv: Sequence[str] | None = None) -> dict[str, list[tuple[float, Row]]]:
    """Run every (codec, quality); return ``{codec: [(quality, mean row), ...]}``."""
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.healpix_res < 0:
        raise OsloError(f"-r/--healpix-res must be >= 0, got {args.healpix_res}")
    if args.erp_width is not None and (args.erp_width < 2 or args.erp_width % 2):
        raise OsloError(f"--erp-width must be even and >= 2, got {args.erp_width}")
    qualities = {name: CODECS[name].parse_qualities(getattr(args, f"{name}_qualities"))
                 for name in args.codecs}
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        raise OsloError(f"--output-dir '{output}' is not a folder")
    names = image_names(args)
    codecs = available_codecs(args.codecs)
    if not codecs:
        raise OsloError(f"Pillow supports none of the codecs {', '.join(args.codecs)}")
    lat, lon = load_or_create(args.sphere_points)
    npix = npix_of(args.healpix_res)
    log = get_logger()
    rows: dict[tuple[str, float], list[Row]] = {
        (codec.name, q): [] for codec in codecs for q in qualities[codec.name]}
    for name in names:  # one original in memory at a time
        start = time.perf_counter()
        original = load_rgb(Path(args.original_dir) / f"{name}.{args.original_ext}", "erp",
                            "original").astype(np.uint8)
        coded = original if args.erp_width is None else \
            resample_erp(original, args.erp_width, args.erp_width // 2)
        for codec in codecs:
            for quality in qualities[codec.name]:
                data, decoded = compress(coded, codec, quality)
                if args.keep_files:
                    folder = output / codec.name / quality_label(quality)
                    folder.mkdir(parents=True, exist_ok=True)
                    with atomic_path(folder / f"{name}.{codec.extension}") as tmp:
                        tmp.write_bytes(data)
                metrics = spherical_psnr(original, "erp", decoded, "erp", lat, lon,
                                         resample=args.erp_width is not None)
                rows[codec.name, quality].append(Row(name, 8 * len(data) / npix, metrics))
        log.info("%s: %.2f s", name, time.perf_counter() - start)
    results: dict[str, list[tuple[float, Row]]] = {}
    for codec in codecs:
        (output / codec.name).mkdir(parents=True, exist_ok=True)
        points = []
        for quality in qualities[codec.name]:
            table = [*rows[codec.name, quality]]
            table.append(mean_row(table))
            write_text(output / codec.name / f"{quality_label(quality)}.csv", results_csv(table))
            points.append((quality, table[-1]))
        write_text(output / f"{codec.name}_summary.csv", summary_csv(codec.name, points))
        results[codec.name] = points
        print(f"{codec.name} (bpp per HEALPix pixel at r = {args.healpix_res})")
        print(results_table([Row(quality_label(q), row.bpp, row.metrics) for q, row in points]))
    return results


if __name__ == "__main__":
    run_main(main)
