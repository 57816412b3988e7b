"""The zoo's training recipe as command lines of the toolkit's scripts, shared by
``train_zoo.py`` (the pretrained zoo and its planar ERP twin) and ``trend_study.py`` (OSLO
against ERP with training length).

A :class:`Recipe` fixes the data (HEALPix resolution, patch size, patches per map and epoch,
batch), the model and the schedules: a base trains from scratch at a constant learning rate
after a short warm-up and keeps a checkpoint every ``checkpoint_interval`` epochs; a
fine-tuning starts from a checkpoint (``--init-from``) with a cosine decay to ``lr_min``. The
OSLO side runs ``main_sphere_compression.py``; the planar twin runs
``baselines/train_erp_compressai.py`` on crops of the same images in ERP (width
``4 * 2**healpix_res``) with the same steps, learning rates and seeds.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from utils.cli import get_logger
from utils.errors import OsloError

REPO = Path(__file__).resolve().parent.parent
TEST_IMAGES = ("earth_day.jpg", "mars_spirit_husband_hill.jpg", "milky_way.jpg",
               "moon_surface_4096.jpg")
"""The test images of ``samples/`` (never trained on)."""


@dataclass(frozen=True)
class Recipe:
    """Data, model and schedules of a training (module docstring).

    Attributes:
        healpix_res: resolution of the training maps (step 1's ``-r``; ``-hr``).
        patch_res: training patches of ``2**patch_res`` x ``2**patch_res`` pixels (``-prt``);
            the planar twin's crops have that size.
        levels: resolution levels of the model (the structures step 2 writes).
        channels: ``(N, M)``.
        sphere_flags: layer flags of the OSLO model.
        patches_per_map: random patches (crops) per map and epoch (``-np``).
        batch: patches per step (``-bst``).
        lr, warmup, lr_min: Adam's learning rate, its linear warm-up in steps, and the end of
            a fine-tuning's cosine decay.
        checkpoint_interval: epochs between the kept checkpoints (``checkpoint_<e>.pth.tar``).
    """

    healpix_res: int = 7
    patch_res: int = 6
    levels: int = 7
    channels: tuple[int, int] = (64, 96)
    sphere_flags: tuple[str, ...] = ("--single-conv", "-upf", "SDPAConvTransposed")
    patches_per_map: int = 48
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 50
    lr_min: float = 1e-5
    checkpoint_interval: int = 10

    def steps_per_epoch(self, num_maps: int) -> int:
        """``ceil(num_maps * patches_per_map / batch)``."""
        return -(-num_maps * self.patches_per_map // self.batch)

    def map_prefix(self) -> str:
        """Prefix of step 1's map names."""
        return f"healpix_sampling_res_{self.healpix_res}_"


ZOO = Recipe()
"""The zoo's recipe (docs/RESULTS.md, "The zoo")."""

TINY = Recipe(healpix_res=6, patch_res=6, channels=(8, 8), patches_per_map=2, batch=2,
              checkpoint_interval=1)
"""A recipe of seconds, for the tests: 64 x 64 maps of whole faces, 8 channels."""


def images_in(folders: Sequence[str]) -> list[Path]:
    """Every JPEG of the ``folders`` (relative to the repository), sorted by folder and name."""
    return [image for folder in folders for image in sorted((REPO / folder).glob("*.jpg"))]


def test_list(path: Path, prefix: str, images: Sequence[str]) -> Path:
    """A list of step-1 map names (``<prefix><stem>.npy``) of ``images``, as the planar
    baseline reads lists (names only), written at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{prefix}{Path(name).stem}.npy\n" for name in images))
    return path


def planar_mean(argv: list[str], run_dir: Path, folder: str) -> dict[str, float]:
    """Run a planar evaluation ``argv`` unless ``<run_dir>/<folder>/rd.csv`` exists; its mean
    row (the last), floats by column."""
    if not (run_dir / folder / "rd.csv").exists():
        run_command(argv, run_dir / "evaluation.log", threads=2)
    with open(run_dir / folder / "rd.csv") as stream:
        mean = list(csv.DictReader(stream))[-1]
    return {key: float(value) for key, value in mean.items() if key != "name"}


def run_command(argv: Sequence[str], log_path: Path, threads: int = 1) -> float:
    """Run a toolkit script (one torch thread unless ``threads``), its output into
    ``log_path`` (appended); the seconds it took. :class:`OsloError` if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write("$ " + shlex.join(argv) + "\n")
        log.flush()
        done = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise OsloError(f"'{shlex.join(argv[:1])}' failed: see {log_path}")
    return time.perf_counter() - start


def prepare_data(recipe: Recipe, out: Path, images: Sequence[Path]) -> Path:
    """Steps 1 and 2 in ``out``: the ``images`` linked into ``<out>/images``, sampled into
    ``<out>/data`` (all for training), and the structures of the model's levels; the training
    list. Each part is skipped when its output exists."""
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        link = folder / image.name
        if not link.exists():
            link.symlink_to(image.resolve())
    train_list = out / "data" / "train.txt"
    if not train_list.exists():
        run_command(["generate_healpix_samples_and_split_to_train_and_test.py", "-i",
                     str(folder), "-e", "jpg", "-r", str(recipe.healpix_res), "-s", "-o",
                     str(out / "data"), "-t", "1", "-v", "0", "--seed", "0", "--workers", "2"],
                    out / "data.log")
    for level in range(recipe.levels):
        hr, pr = recipe.healpix_res - level, recipe.patch_res - level
        if not (out / "structures" / f"oslo_struct_hr{hr}_pr{pr}_hops2.npz").exists():
            run_command(["generate_and_save_healpix_oslo_struct.py", "-o",
                         str(out / "structures"), "-hr", str(hr), "-pr", str(pr)],
                        out / "data.log")
    return train_list


def _schedule(recipe: Recipe, init_from: Path | None) -> list[str]:
    """A base's constant learning rate, or a fine-tuning's cosine decay from ``init_from``."""
    if init_from is None:
        return ["--no-scheduler"]
    return ["--init-from", str(init_from), "--lr-schedule", "cosine", "--lr-min",
            f"{recipe.lr_min:g}"]


def sphere_command(recipe: Recipe, data: Path, run_dir: Path, lmbda: float, epochs: int,
                   init_from: Path | None = None, seed: int = 0, gpu: bool = False,
                   checkpoint_interval: int | None = None) -> list[str]:
    """The ``main_sphere_compression.py`` command of a base (``init_from`` None) or a
    fine-tuning, on the maps and structures that :func:`prepare_data` wrote in ``data``."""
    n, m = recipe.channels
    interval = checkpoint_interval or recipe.checkpoint_interval
    return ["main_sphere_compression.py", "-i", str(data / "data" / "train.txt"), "-nd",
            str(data / "structures"), "-o", str(run_dir), "-hr", str(recipe.healpix_res),
            "-prt", str(recipe.patch_res), "-np", str(recipe.patches_per_map),
            "--dataloader-num-workers", "0", "-m", "SphereScaleHyperprior", "--channels",
            str(n), str(m), *recipe.sphere_flags, "--lambda", f"{lmbda:g}", "-e", str(epochs),
            "-lr", f"{recipe.lr:g}", "--lr-warmup", str(recipe.warmup), "-bst",
            str(recipe.batch), "--seed", str(seed), "--checkpoint-interval", str(interval),
            "--no-progress", "--print-freq", "1", *_schedule(recipe, init_from),
            *(["-g"] if gpu else [])]


def erp_command(recipe: Recipe, data: Path, run_dir: Path, lmbda: float, epochs: int,
                init_from: Path | None = None, seed: int = 0, gpu: bool = False,
                checkpoint_interval: int | None = None) -> list[str]:
    """The ``baselines/train_erp_compressai.py`` command of the planar twin of a base or a
    fine-tuning: CompressAI's ``ScaleHyperprior`` on crops of the same images in ERP, with the
    same steps (crops per map and epoch, batch), learning rates, warm-up, schedules and
    seed."""
    n, m = recipe.channels
    interval = checkpoint_interval or recipe.checkpoint_interval
    return ["baselines/train_erp_compressai.py", "-o", str(REPO / "samples"),
            "--train-original-dir", str(data / "images"), "-i",
            str(data / "data" / "train.txt"), "-r", str(recipe.healpix_res), "-O",
            str(run_dir), "-m", "ScaleHyperprior", "--channels", str(n), str(m), "--lambda",
            f"{lmbda:g}", "-e", str(epochs), "-np", str(recipe.patches_per_map),
            "--crop-size", str(2**recipe.patch_res), "-bst", str(recipe.batch), "-lr",
            f"{recipe.lr:g}", "--lr-warmup", str(recipe.warmup), "--seed", str(seed),
            "--checkpoint-interval", str(interval), "--no-progress",
            *_schedule(recipe, init_from), *(["-g"] if gpu else [])]


def faces_command(recipe: Recipe, data: Path, run_dir: Path, lmbda: float, epochs: int,
                  init_from: Path | None = None, seed: int = 0, gpu: bool = False,
                  checkpoint_interval: int | None = None) -> list[str]:
    """The command of CompressAI's ``ScaleHyperprior`` trained on the OSLO side's own HEALPix
    patches laid out as images (``baselines/train_erp_compressai.py --layout healpix``): the
    same maps, patches, steps, learning rates, warm-up, schedules and seed."""
    n, m = recipe.channels
    interval = checkpoint_interval or recipe.checkpoint_interval
    return ["baselines/train_erp_compressai.py", "-o", str(REPO / "samples"), "-i",
            str(data / "data" / "train.txt"), "-r", str(recipe.healpix_res), "--layout",
            "healpix", "-prt", str(recipe.patch_res), "-O", str(run_dir), "-m",
            "ScaleHyperprior", "--channels", str(n), str(m), "--lambda", f"{lmbda:g}", "-e",
            str(epochs), "-np", str(recipe.patches_per_map), "-bst", str(recipe.batch), "-lr",
            f"{recipe.lr:g}", "--lr-warmup", str(recipe.warmup), "--seed", str(seed),
            "--checkpoint-interval", str(interval), "--no-progress",
            *_schedule(recipe, init_from), *(["-g"] if gpu else [])]


def faces_evaluation_command(recipe: Recipe, run_dir: Path, test_list: Path, res: int,
                             sphere_points: Path, folder: str, whole: bool = False) -> list[str]:
    """Evaluation of a :func:`faces_command` run's ``final.pth.tar`` on the maps of
    ``test_list`` (step 1's ``.npy`` at ``res``, originals in ``samples/``), coded by patches
    of the training size (``whole``: by whole faces), into ``<run_dir>/<folder>/rd.csv``."""
    n, m = recipe.channels
    return ["baselines/train_erp_compressai.py", "-o", str(REPO / "samples"), "-t",
            str(test_list), "--files-prefix", f"healpix_sampling_res_{res}_", "-r", str(res),
            "--layout", "healpix", "-prt", str(recipe.patch_res), "-prvt",
            str(res if whole else recipe.patch_res), "-O", str(run_dir), "--checkpoint-file",
            str(run_dir / "final.pth.tar"), "-m", "ScaleHyperprior", "--channels", str(n),
            str(m), "-s", str(sphere_points), "--foldername-valtest", folder, "--no-progress"]


def erp_evaluation_command(recipe: Recipe, run_dir: Path, test_list: Path, res: int,
                           sphere_points: Path, folder: str) -> list[str]:
    """Evaluation of a planar run's ``final.pth.tar`` on the test images of ``test_list``
    (map names of step 1, originals in ``samples/``) in ERP at width ``4 * 2**res``, coded
    by crops of the training size as the OSLO models code patches, into
    ``<run_dir>/<folder>/rd.csv``."""
    n, m = recipe.channels
    return ["baselines/train_erp_compressai.py", "-o", str(REPO / "samples"), "-t",
            str(test_list), "--files-prefix", recipe.map_prefix(), "-r", str(res), "-O",
            str(run_dir), "--checkpoint-file", str(run_dir / "final.pth.tar"), "-m",
            "ScaleHyperprior", "--channels", str(n), str(m), "--patch-size-valtest",
            str(2**recipe.patch_res), "-s", str(sphere_points), "--foldername-valtest",
            folder, "--no-progress"]


def without_init(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--init-from FILE``: a resumed fine-tuning takes its weights from
    its own checkpoint (the training scripts refuse both flags together)."""
    if "--init-from" not in argv:
        return list(argv)
    at = argv.index("--init-from")
    return [*argv[:at], *argv[at + 2:]]


def resume_from(run_dir: Path) -> list[str]:
    """``--checkpoint-file`` of an interrupted training: its interrupted or newest periodic
    checkpoint."""
    interrupted = run_dir / "interrupted.pth.tar"
    if interrupted.exists():
        return ["--checkpoint-file", str(interrupted)]
    periodic = sorted(run_dir.glob("checkpoint_[0-9]*.pth.tar"),
                      key=lambda p: int(p.name.split("_")[1].split(".")[0]))
    return ["--checkpoint-file", str(periodic[-1])] if periodic else []


def train(run_dir: Path, argv: list[str]) -> None:
    """Run one training unless its ``final.pth.tar`` exists, resuming an interrupted one;
    record its command and seconds in ``record.json``."""
    if (run_dir / "final.pth.tar").exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    record_path = run_dir / "record.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"seconds": 0.0}
    record["command"] = shlex.join(["python", *argv])
    get_logger().info("training %s", run_dir)
    resume = resume_from(run_dir)
    seconds = run_command([*(without_init(argv) if resume else argv), *resume],
                          run_dir / "train.log")
    record["seconds"] += seconds
    record_path.write_text(json.dumps(record, indent=1) + "\n")
