"""S-PSNR and WS-PSNR (on Y and RGB) and bpp of reconstructed 360-degree images, per image and
on average, from the original images, the step-4 reconstructions and their rates.txt.

For each entry of the test list (-t), the name is the file stem without --test-files-prefix and
--test-files-suffix; then
    original        = <-o>/<name>.<-oe>
    reconstruction  = <-r>/<-rf>/<-rp><name><-rs>.<-re>
    rate            = the line <-ratef><name><-rates> of <-r>/<-rf>/rates.txt (actual bits)
bpp = actual bits / pixels of the reconstruction (12 * 4**r for HEALPix). Metrics: see
utils/metrics.py (bilinear interpolation in both projections; WS-PSNR on the reconstruction's
grid; identical inputs give inf). With --metrics cpp viewport, the CSV and the table also have
cpp_psnr_y,cpp_psnr_rgb (CPP-PSNR) and vp_psnr_y,vp_psnr_rgb (viewport PSNR: mean over 14
rectilinear viewports of 90 degrees), after the default columns (utils/metrics.py). With
--metrics seams (HEALPix reconstructions only), the column seam_ratio: the mean absolute error
of the pixels within --seam-width pixels of their patch's border over that of the other pixels,
for the patches of resolution --seam-patch-res (default: read from the run's config.txt in the
reconstruction folder or its parents; utils/seams.py). About 1.0 without seams; nan for
identical maps.

Example:
    python misc/compute_spherical_psnr.py -o ../oslo_data/images_equirectangular -oe jpg \\
        -po erp -t ../oslo_data/Healpix_res_10/test.txt \\
        --test-files-prefix healpix_sampling_res_10_ -r runs/factorizedPrior_lambda0.0009 \\
        -rf reconstruction -re npy -rp healpix_sampling_res_10_ -rs _reconstructed -p healpix \\
        -ratef healpix_sampling_res_10_ -s ./misc/sphere_655362.txt --csv rd.csv
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from spherical_models.cli import HelpFormatter, add_sphere_points_argument
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.io import load_rgb, original_names, write_text
from utils.metrics import EXTRA_METRICS, PROJECTIONS, extra_metrics, spherical_psnr
from utils.rd import Row, mean_row, read_rates, results_csv, results_table
from utils.seams import run_patch_res
from utils.sphere_points import load_or_create


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    add = parser.add_argument
    add("-o", "--original-dir", required=True, help="folder of the original images")
    add("-oe", "--original-ext", default="jpg",
        help="extension of the originals (npy for HEALPix originals)")
    add("-po", "--projection-original", default="erp", choices=PROJECTIONS,
        help="projection of the originals")
    add("-t", "--test-data", required=True,
        help="list file of the test maps (step 1's test.txt); only the names are used")
    add("--test-files-prefix", default="",
        help="prefix of the test file names that the original names lack")
    add("--test-files-suffix", default="",
        help="suffix of the test file names that the original names lack")
    add("-r", "--reconstruction-dir", required=True, help="main folder of the reconstructions")
    add("-rf", "--reconstruction-subfolder", "-reconstruction-subfolder", default="reconstruction",
        help="subfolder of -r with the reconstructions and rates.txt (step 4's "
             "--foldername-valtest)")
    add("-re", "--reconstruction-ext", default="npy",
        help="extension of the reconstructions (npy for HEALPix)")
    add("-rp", "--reconstruction-prefix", default="", help="prefix of the reconstruction names")
    add("-rs", "--reconstruction-suffix", default="_reconstructed",
        help="suffix of the reconstruction names")
    add("-p", "--projection", default="healpix", choices=PROJECTIONS,
        help="projection of the reconstructions")
    add("-ratef", "--rate-prefix", default="", help="prefix of the names in rates.txt")
    add("-rates", "--rate-suffix", default="", help="suffix of the names in rates.txt")
    add_sphere_points_argument(parser)
    add("--csv", default=None,
        help="write the results as CSV (name,bpp,s_psnr_y,ws_psnr_y,s_psnr_rgb,ws_psnr_rgb; "
             "one row per image, then 'mean')")
    add("--metrics", nargs="+", default=[], choices=list(EXTRA_METRICS),
        help="optional metrics, added as columns after the default ones: cpp (CPP-PSNR: "
             "cpp_psnr_y, cpp_psnr_rgb), viewport (mean PSNR of 14 rectilinear viewports of 90 "
             "degrees, 256x256: vp_psnr_y, vp_psnr_rgb), seams (HEALPix reconstructions only: "
             "seam_ratio, the mean absolute error at the patch borders over that inside the "
             "patches; about 1.0 without seams)")
    add("--seam-patch-res", type=int, default=None, metavar="PR",
        help="patch resolution of --metrics seams (patches of 2**PR x 2**PR pixels, 0..the "
             "map's resolution); default: the run's patch_res_valtest, else patch_res_train, "
             "from the config.txt nearest to -r/-rf (an error if there is none)")
    add("--seam-width", type=int, default=1, metavar="W",
        help="border width of --metrics seams, in pixels")
    add("--threads", type=int, default=2, help="threads for sampling an ERP original on HEALPix")
    return parser


def seam_patch_res(args: argparse.Namespace, folder: Path) -> int | None:
    """The patch resolution of --metrics seams (None without it): --seam-patch-res, else the
    run's (:func:`utils.seams.run_patch_res`); :class:`OsloError` for ERP reconstructions."""
    if "seams" not in args.metrics:
        return None
    if args.projection != "healpix":
        raise OsloError("--metrics seams needs HEALPix reconstructions (-p/--projection "
                        f"healpix), got -p {args.projection}")
    if args.seam_width < 1:
        raise OsloError(f"--seam-width must be at least 1, got {args.seam_width}")
    if args.seam_patch_res is not None:
        return args.seam_patch_res
    patch_res, config = run_patch_res(folder)
    get_logger().info("seams: patch resolution %d from %s", patch_res, config)
    return patch_res


def evaluate(args: argparse.Namespace) -> list[Row]:
    """One :class:`Row` per test image (module docstring)."""
    names = original_names(args.test_data, args.test_files_prefix, args.test_files_suffix)
    folder = Path(args.reconstruction_dir) / args.reconstruction_subfolder
    patch_res = seam_patch_res(args, folder)
    rates = {name: actual for name, (_, actual) in read_rates(folder / "rates.txt").items()}
    lat, lon = load_or_create(args.sphere_points)
    log = get_logger()
    rows = []
    for name in names:
        rate_name = f"{args.rate_prefix}{name}{args.rate_suffix}"
        if rate_name not in rates:
            raise OsloError(f"'{rate_name}' is not in '{folder / 'rates.txt'}' (check -ratef and "
                            "-rates)")
        start = time.perf_counter()
        original = load_rgb(Path(args.original_dir) / f"{name}.{args.original_ext}",
                            args.projection_original, "original")
        recon_path = folder / (f"{args.reconstruction_prefix}{name}"
                               f"{args.reconstruction_suffix}.{args.reconstruction_ext}")
        reconstruction = load_rgb(recon_path, args.projection, "reconstruction")
        try:
            metrics = spherical_psnr(original, args.projection_original, reconstruction,
                                     args.projection, lat, lon, threads=args.threads)
            metrics.update(extra_metrics(args.metrics, original, args.projection_original,
                                         reconstruction, args.projection, patch_res,
                                         args.seam_width))
        except ValueError as error:
            raise OsloError(f"resolution mismatch for '{name}': {error}") from None
        except OsloError as error:
            raise OsloError(f"'{name}': {error}") from None
        pixels = len(reconstruction) if args.projection == "healpix" else \
            reconstruction.shape[0] * reconstruction.shape[1]
        rows.append(Row(name, rates[rate_name] / pixels, metrics))
        log.info("%s: %.2f s", name, time.perf_counter() - start)
    return rows


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.csv and Path(args.csv).is_dir():
        raise OsloError(f"--csv '{args.csv}' is a folder")
    if args.csv and not Path(args.csv).resolve().parent.is_dir():
        raise OsloError(f"folder of --csv '{args.csv}' does not exist")
    rows = evaluate(args)
    rows.append(mean_row(rows))
    print(results_table(rows))
    if args.csv:
        write_text(args.csv, results_csv(rows))
        get_logger().info("wrote %s", args.csv)
    return rows


if __name__ == "__main__":
    run_main(main)
