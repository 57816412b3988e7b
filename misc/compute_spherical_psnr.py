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
rectilinear viewports of 90 degrees), after the default columns (utils/metrics.py).

Example:
    python misc/compute_spherical_psnr.py -o ../oslo_data/images_equirectangular -oe jpg \\
        -po erp -t ../oslo_data/Healpix_res_10/test.txt \\
        --test-files-prefix healpix_sampling_res_10_ -r runs/factorizedPrior_lambda0.0009 \\
        -rf reconstruction -re npy -rp healpix_sampling_res_10_ -rs _reconstructed -p healpix \\
        -ratef healpix_sampling_res_10_ -s ./misc/sphere_655362.txt --csv rd.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.cli import HelpFormatter, get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.healpix import res_of_npix
from utils.io import load_image, load_map, read_list, write_text
from utils.metrics import EXTRA_METRICS, METRIC_NAMES, PROJECTIONS, extra_metrics, spherical_psnr
from utils.sphere_points import load_or_create

DEFAULT_SPHERE_POINTS = Path(__file__).resolve().parent / "sphere_655362.txt"
CSV_COLUMNS = ("name", "bpp", *METRIC_NAMES)


@dataclass
class Row:
    """One line of the results: an image (or the mean) and its bpp and metrics."""

    name: str
    bpp: float
    metrics: dict[str, float]

    def values(self) -> list[float]:
        """The bpp, then the metrics in their order (:data:`METRIC_NAMES` first)."""
        return [self.bpp, *self.metrics.values()]


def add_sphere_points_argument(parser: argparse.ArgumentParser) -> None:
    """``-s/--sphere-points``, the S-PSNR points file of every script that measures S-PSNR."""
    parser.add_argument(
        "-s", "--sphere-points", default=str(DEFAULT_SPHERE_POINTS),
        help="sphere points of S-PSNR (count, then 'lat lon' per line); a missing "
             "sphere_<10*4**k+2>.txt is generated")


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
             "degrees, 256x256: vp_psnr_y, vp_psnr_rgb)")
    add("--threads", type=int, default=2, help="threads for sampling an ERP original on HEALPix")
    return parser


def original_names(list_file: str, prefix: str, suffix: str) -> list[str]:
    """Names of the originals from the test list: stems without ``prefix`` and ``suffix``."""
    entries = read_list(list_file)
    if not entries:
        raise OsloError(f"test list '{list_file}' names no file")
    names = []
    for entry in entries:
        stem = entry.stem
        if not (stem.startswith(prefix) and stem.endswith(suffix)
                and len(stem) > len(prefix) + len(suffix)):
            raise OsloError(f"test file '{entry}' does not have the prefix '{prefix}' and the "
                            f"suffix '{suffix}' (--test-files-prefix/--test-files-suffix)")
        names.append(stem[len(prefix) : len(stem) - len(suffix)])
    return names


def read_rates(path: Path) -> dict[str, int]:
    """Actual bits by name from a step-4 ``rates.txt`` (``name<TAB>theoretical<TAB>actual``)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise OsloError(f"cannot read rates file '{path}': {error}") from None
    rates = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        try:
            if len(fields) != 3:
                raise ValueError
            rates[fields[0]] = int(float(fields[2]))
        except ValueError:
            raise OsloError(f"rates file '{path}' line {number} is not "
                            "'name<TAB>theoretical<TAB>actual'") from None
    return rates


def load_rgb(path: Path, projection: str, what: str) -> np.ndarray:
    """An RGB image ``[H, W, 3]`` (ERP) or map ``[npix, 3]`` (HEALPix) from ``path``."""
    if not path.is_file():
        raise OsloError(f"{what} '{path}' does not exist")
    if path.suffix.lower() == ".npy":
        data = load_map(path)
    else:
        data = load_image(path)
    if projection == "healpix":
        if data.ndim != 2 or data.shape[1] != 3:
            raise OsloError(f"{what} '{path}' has shape {data.shape}, expected a HEALPix map "
                            "[12 * 4**r, 3]")
        try:
            res_of_npix(len(data))
        except ValueError as error:
            raise OsloError(f"{what} '{path}': {error}") from None
    elif data.ndim != 3 or data.shape[2] != 3:
        raise OsloError(f"{what} '{path}' has shape {data.shape}, expected an ERP image [H, W, 3]")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise OsloError(f"{what} '{path}' has dtype {data.dtype}, expected numbers in [0, 255]")
    return data


def evaluate(args: argparse.Namespace) -> list[Row]:
    """One :class:`Row` per test image (module docstring)."""
    names = original_names(args.test_data, args.test_files_prefix, args.test_files_suffix)
    folder = Path(args.reconstruction_dir) / args.reconstruction_subfolder
    rates = read_rates(folder / "rates.txt")
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
                                         reconstruction, args.projection))
        except ValueError as error:
            raise OsloError(f"resolution mismatch for '{name}': {error}") from None
        pixels = len(reconstruction) if args.projection == "healpix" else \
            reconstruction.shape[0] * reconstruction.shape[1]
        rows.append(Row(name, rates[rate_name] / pixels, metrics))
        log.info("%s: %.2f s", name, time.perf_counter() - start)
    return rows


def mean_row(rows: Sequence[Row]) -> Row:
    """The arithmetic mean of the bpp and of each PSNR (in dB) over the images."""
    return Row("mean", float(np.mean([r.bpp for r in rows])),
               {m: float(np.mean([r.metrics[m] for r in rows])) for m in rows[0].metrics})


def results_csv(rows: Sequence[Row]) -> str:
    """CSV with :data:`CSV_COLUMNS` (then the optional metrics of the rows, if any); bpp with 6
    decimals, PSNRs with 4 (``inf`` if infinite)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("name", "bpp", *rows[0].metrics))
    for row in rows:
        writer.writerow([row.name, f"{row.bpp:.6f}",
                         *(f"{v:.4f}" if math.isfinite(v) else "inf" for v in row.values()[1:])])
    return buffer.getvalue()


def results_table(rows: Sequence[Row]) -> str:
    """A fixed-width table of the rows for the terminal."""
    width = max(len("name"), *(len(r.name) for r in rows))
    columns = [max(11, len(m)) for m in rows[0].metrics]
    header = f"{'name':<{width}}  {'bpp':>8}  " + "  ".join(
        f"{m:>{c}}" for m, c in zip(rows[0].metrics, columns, strict=True))
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row.name:<{width}}  {row.bpp:8.4f}  "
                     + "  ".join(f"{v:{c}.4f}" for v, c in zip(row.values()[1:], columns,
                                                                 strict=True)))
    return "\n".join(lines)


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
