"""Step 1: sample equirectangular images on HEALPix (NESTED) and split them into train /
validation / test lists.

Example:
    python generate_healpix_samples_and_split_to_train_and_test.py -i samples -e jpg -r 6 -s \\
        -o data/healpix_res_6 -t 0.5 -v 0.25
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from spherical_models.cli import HelpFormatter
from utils.cli import get_logger, run_main, setup_logging
from utils.dataset_split import (
    check_ratios,
    find_images,
    find_sampled,
    sample_images,
    split_files,
    write_split,
)
from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION
from utils.io import IMAGE_EXTENSIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-i", "--image-dir", help="folder of equirectangular (2:1) images; "
                        "needed with -s")
    parser.add_argument("-e", "--image-ext", default="jpg", type=str.lower,
                        help=f"extension of the images, one of {', '.join(IMAGE_EXTENSIONS)}")
    parser.add_argument("-r", "--healpix-res", type=int, required=True,
                        help=f"HEALPix resolution r (nside = 2**r, 12*4**r pixels), "
                        f"0..{MAX_RESOLUTION}")
    parser.add_argument("-s", "--run-healpix-sampling", action="store_true",
                        help="sample the images; without it, only (re)split the maps already "
                        "sampled in the output folder")
    parser.add_argument("-o", "--out-dir", required=True,
                        help="output folder of the .npy maps and the list files")
    parser.add_argument("-t", "--ratio-train-data", type=float, default=0.8,
                        help="fraction of the maps in train.txt")
    parser.add_argument("-v", "--ratio-validation-data", type=float, default=0.1,
                        help="fraction of the maps in validation.txt (the rest goes to test.txt)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the shuffle; the same seed gives the same split")
    parser.add_argument("--workers", type=int, default=1,
                        help="images sampled in parallel processes")
    parser.add_argument("--keep-existing", action="store_true",
                        help="do not sample again images whose .npy map already exists")
    parser.add_argument("--verbose", action="store_true", help="log every file")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    log = get_logger()
    if not 0 <= args.healpix_res <= MAX_RESOLUTION:
        raise OsloError(f"HEALPix resolution {args.healpix_res} is outside 0..{MAX_RESOLUTION}")
    check_ratios(args.ratio_train_data, args.ratio_validation_data)
    if args.workers < 1:
        raise OsloError(f"--workers must be at least 1, got {args.workers}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OsloError(f"output path '{out_dir}' exists and is not a folder")

    if args.run_healpix_sampling:
        if args.image_dir is None:
            raise OsloError("-s/--run-healpix-sampling needs -i/--image-dir")
        images = find_images(args.image_dir, args.image_ext)
        out_dir.mkdir(parents=True, exist_ok=True)
        maps = sample_images(
            images, args.healpix_res, out_dir, args.workers, args.keep_existing
        )
    else:
        maps = find_sampled(out_dir, args.healpix_res) if out_dir.is_dir() else []
        if not maps:
            raise OsloError(
                f"no healpix_sampling_res_{args.healpix_res}_*.npy map in '{out_dir}': "
                "add -s to sample the images first"
            )
        log.info("splitting the %d map(s) already in '%s'", len(maps), out_dir)

    split = split_files(maps, args.ratio_train_data, args.ratio_validation_data, args.seed)
    for path, files in zip(write_split(out_dir, split), (split.train, split.validation,
                                                         split.test), strict=True):
        log.info("%s: %d map(s)", path, len(files))


if __name__ == "__main__":
    run_main(main)
