"""Step 1: sample a folder of ERP images on HEALPix and split the maps into train/val/test.

Outputs in the output folder: ``healpix_sampling_res_{r}_{stem}.npy`` per image (``uint8``,
``[12 * 4**r, 3]``, RGB, NESTED), and the lists ``train.txt``, ``validation.txt``, ``test.txt``
(one ``.npy`` per line, relative to the list's folder). Everything is written under a temporary
name and renamed only when the whole run has succeeded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.cli import get_logger
from utils.errors import OsloError
from utils.healpix import MAX_RESOLUTION
from utils.io import IMAGE_EXTENSIONS, load_image, write_list
from utils.sampling import erp_to_healpix

LIST_NAMES = ("train.txt", "validation.txt", "test.txt")


def sampled_name(res: int, stem: str) -> str:
    """File name of the HEALPix map of image ``stem`` at resolution ``res``."""
    return f"healpix_sampling_res_{res}_{stem}.npy"


def find_images(image_dir: str | os.PathLike, ext: str) -> list[Path]:
    """Images of extension ``ext`` (case-insensitive) in ``image_dir``, sorted by name."""
    ext = ext.lower().lstrip(".")
    if ext not in IMAGE_EXTENSIONS:
        raise OsloError(f"image extension '{ext}' is not one of {', '.join(IMAGE_EXTENSIONS)}")
    folder = Path(image_dir)
    if not folder.is_dir():
        raise OsloError(f"image folder '{folder}' does not exist")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == f".{ext}")
    if not images:
        raise OsloError(f"image folder '{folder}' has no .{ext} image")
    return images


def find_sampled(out_dir: str | os.PathLike, res: int) -> list[Path]:
    """The maps ``healpix_sampling_res_{res}_*.npy`` already in ``out_dir``, sorted."""
    pattern = re.compile(rf"healpix_sampling_res_{res}_.+\.npy")
    return sorted(p for p in Path(out_dir).glob("*.npy") if pattern.fullmatch(p.name))


@dataclass(frozen=True)
class Split:
    """File lists of the three sets."""

    train: list[Path]
    validation: list[Path]
    test: list[Path]


def check_ratios(ratio_train: float, ratio_validation: float) -> None:
    """Raise :class:`OsloError` unless both ratios are in [0, 1] and sum to at most 1."""
    for name, ratio in (("train", ratio_train), ("validation", ratio_validation)):
        if not 0 <= ratio <= 1:
            raise OsloError(f"the {name} ratio {ratio} is outside [0, 1]")
    if ratio_train + ratio_validation > 1 + 1e-9:
        raise OsloError(
            f"the train and validation ratios sum to {ratio_train + ratio_validation} > 1"
        )


def split_files(
    files: Sequence[Path], ratio_train: float, ratio_validation: float, seed: int = 0
) -> Split:
    """Seeded shuffle of ``files`` (sorted first, so the input order does not matter), cut into
    ``round(t * n)`` training files, ``round(v * n)`` validation files and the rest for test."""
    check_ratios(ratio_train, ratio_validation)
    files = sorted(files)
    order = np.random.default_rng(seed).permutation(len(files))
    shuffled = [files[i] for i in order]
    n_train = round(ratio_train * len(files))
    n_val = min(round(ratio_validation * len(files)), len(files) - n_train)
    return Split(
        shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :]
    )


def write_split(out_dir: str | os.PathLike, split: Split) -> list[Path]:
    """Write ``train.txt``, ``validation.txt`` and ``test.txt`` into ``out_dir``."""
    paths = [Path(out_dir) / name for name in LIST_NAMES]
    for path, files in zip(paths, (split.train, split.validation, split.test), strict=True):
        write_list(path, files)
    return paths


def _staging_path(destination: Path) -> Path:
    """Hidden name under which a map waits until every image of the run has been sampled."""
    return destination.with_name(f".{destination.name}.partial.npy")


def _sample_one(image_path: Path, res: int, destination: Path, threads: int) -> None:
    """Sample one image into the staging file of ``destination``."""
    image = load_image(image_path)
    height, width = image.shape[:2]
    if width != 2 * height:
        get_logger().warning(
            "image '%s' is %dx%d, not 2:1 equirectangular; sampling it as ERP anyway",
            image_path, width, height,
        )
    np.save(_staging_path(destination), erp_to_healpix(image, res, threads=threads))


def sample_images(
    images: Sequence[Path],
    res: int,
    out_dir: Path,
    workers: int = 1,
    keep_existing: bool = False,
) -> list[Path]:
    """Sample ``images`` at resolution ``res`` into ``out_dir``, all or nothing.

    Every map is first written under a hidden staging name; only when all images succeeded are
    they renamed to their final names, so a bad image leaves no output at all.

    Args:
        images: ERP image files.
        res: HEALPix resolution.
        out_dir: existing output folder.
        workers: images sampled in parallel processes (each uses ``cpu_count // workers``
            threads).
        keep_existing: skip images whose map already exists.

    Returns:
        The final paths of all maps, sampled now or kept.
    """
    if not 0 <= res <= MAX_RESOLUTION:
        raise OsloError(f"HEALPix resolution {res} is outside 0..{MAX_RESOLUTION}")
    destinations = [out_dir / sampled_name(res, image.stem) for image in images]
    todo = [
        (image, dest)
        for image, dest in zip(images, destinations, strict=True)
        if not (keep_existing and dest.is_file())
    ]
    kept = len(images) - len(todo)
    get_logger().info(
        "sampling %d image(s) at resolution %d (%d pixels each) into '%s'%s",
        len(todo), res, 12 * 4**res, out_dir, f", keeping {kept} existing" if kept else "",
    )
    workers = max(1, min(workers, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    progress = tqdm(total=len(todo), desc="sampling", unit="image")
    try:
        if workers == 1:
            for image, dest in todo:
                _sample_one(image, res, dest, threads)
                progress.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                futures = [pool.submit(_sample_one, img, res, dest, threads) for img, dest in todo]
                try:
                    for future in as_completed(futures):
                        future.result()
                        progress.update()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    except BaseException:
        for _, dest in todo:
            _staging_path(dest).unlink(missing_ok=True)
        raise
    finally:
        progress.close()
    for _, dest in todo:
        os.replace(_staging_path(dest), dest)
    return destinations
