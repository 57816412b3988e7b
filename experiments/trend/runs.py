"""The runs of the trend study: where they are, their training (bases, then every point's
fine-tuning) and their measurement (each point's test-image means, cached)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.trend.setting import REPO, VARIANTS, Setting, Variant
from experiments.zoo_recipe import (
    erp_command,
    erp_evaluation_command,
    faces_command,
    faces_evaluation_command,
    planar_mean,
    prepare_data,
    sphere_command,
    test_list,
    train,
)
from utils.errors import OsloError
from utils.io import load_image, write_text
from utils.sphere_points import load_or_create

METRICS = ("s_psnr_y", "ws_psnr_y", "s_psnr_rgb", "ws_psnr_rgb")


@dataclass(frozen=True)
class Layout:
    """Where the study's runs are: ``<out>/seed<s>/<variant>/``, except that seed 0 of the
    zoo's own variants (``oslo``, ``erp``) reuses the base runs of ``train_zoo.py``'s folder
    ``zoo``, which holds their data too."""

    out: Path
    zoo: Path | None

    def data(self) -> Path:
        """Steps 1 and 2 (the zoo's when seed 0 reuses it, so that both read the same maps)."""
        return self.zoo if self.zoo is not None else self.out

    def base(self, variant: Variant, seed: int, lmbda: float) -> Path:
        name = f"base_lambda{lmbda:g}"
        if seed == 0 and self.zoo is not None and variant.key in ("oslo", "erp"):
            return self.zoo / name if variant.side == "oslo" else self.zoo / "erp" / name
        return self.out / f"seed{seed}" / variant.key / name

    def point(self, variant: Variant, seed: int, epochs: int, lmbda: float) -> Path:
        return self.out / f"seed{seed}" / variant.run_key / f"e{epochs}_lambda{lmbda:g}"


def training_command(setting: Setting, layout: Layout, variant: Variant, run_dir: Path,
                     lmbda: float, epochs: int, init_from: Path | None, seed: int,
                     interval: int | None = None) -> list[str]:
    """The command of a variant's base (``init_from`` None) or fine-tuning."""
    recipe = variant.recipe_of(setting.recipe)
    if variant.side in ("oslo", "faces"):
        command = sphere_command if variant.side == "oslo" else faces_command
        return command(recipe, layout.data(), run_dir, lmbda, epochs, init_from, seed,
                       checkpoint_interval=interval)
    argv = erp_command(recipe, layout.data(), run_dir, lmbda, epochs, init_from, seed,
                       checkpoint_interval=interval)
    if variant.erp_width:
        argv += ["--erp-width", str(setting.erp_width(variant, recipe.healpix_res))]
    return argv


def train_all(setting: Setting, layout: Layout, seeds: Sequence[int], jobs: int) -> None:
    """Steps 1 and 2 for every recipe, the bases (``jobs`` at a time), then every point's
    fine-tuning from the base's checkpoint at its length (a base reused from a longer study,
    the zoo's or the trend's for the ablation, is taken at the length asked, not at its
    end)."""
    trained = [VARIANTS[key] for key in setting.variants if not VARIANTS[key].trained_by]
    for recipe in {v.recipe_of(setting.recipe) for v in trained}:
        if layout.zoo is None or recipe != setting.recipe:
            prepare_data(recipe, layout.data(), setting.images())
    top = max(setting.lengths)

    def base(key: tuple[Variant, int]) -> None:
        variant, seed = key
        run_dir = layout.base(variant, seed, setting.base_lambda)
        train(run_dir, training_command(setting, layout, variant, run_dir, setting.base_lambda,
                                        top, None, seed))
        missing = [e for e in setting.lengths
                   if not (run_dir / f"checkpoint_{e}.pth.tar").exists()]
        if missing:
            raise OsloError(f"{run_dir}: no checkpoint at epoch(s) {missing} (a base trained "
                            f"shorter than {top} epochs?)")

    def point(key: tuple[Variant, int, int, float]) -> None:
        variant, seed, epochs, lmbda = key
        base_dir = layout.base(variant, seed, setting.base_lambda)
        start = base_dir / f"checkpoint_{epochs}.pth.tar"
        run_dir = layout.point(variant, seed, epochs, lmbda)
        train(run_dir, training_command(setting, layout, variant, run_dir, lmbda,
                                        setting.finetune_epochs, start, seed,
                                        interval=setting.finetune_epochs))

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(base, [(v, s) for s in seeds for v in trained]))
        list(pool.map(point, [(v, s, e, lmbda) for s in seeds for e in setting.lengths
                              for lmbda in setting.lambdas for v in trained]))


def measure_oslo(setting: Setting, layout: Layout, variant: Variant,
                 run_dir: Path) -> dict[str, float]:
    """Test-image means of an OSLO run's final weights, coded with the codec (by patch of the
    training size, or whole)."""
    from spherical_models import zoo
    from spherical_models.coding import codec

    model = codec.load_codec(run_dir / "final.pth.tar")
    points = load_or_create(REPO / setting.sphere_points)
    rows = [zoo.code_erp_image(model, load_image(REPO / "samples" / name), setting.test_res,
                               points, patch_res=-1 if variant.whole else None)[0]
            for name in setting.test_images]
    return {key: float(np.mean([r[key] for r in rows])) for key in ("bpp", *METRICS)}


def measure_erp(setting: Setting, layout: Layout, variant: Variant,
                run_dir: Path) -> dict[str, float]:
    """Test-image means of an ERP run's final weights (the baseline's ``rd.csv``)."""
    recipe = variant.recipe_of(setting.recipe)
    tests = test_list(layout.out / "test.txt", recipe.map_prefix(), setting.test_images)
    folder = f"test_{variant.key}_r{setting.test_res}"
    argv = erp_evaluation_command(recipe, run_dir, tests, setting.test_res,
                                  REPO / setting.sphere_points, folder)
    if variant.whole:
        argv[argv.index("--patch-size-valtest") + 1] = "0"
    if variant.erp_width:
        argv += ["--erp-width", str(setting.erp_width(variant, setting.test_res))]
    return planar_mean(argv, run_dir, folder)


def test_maps(setting: Setting, layout: Layout) -> Path:
    """The test images sampled at the test resolution (step 1's names) and their list, for
    the ``faces`` side, which codes maps."""
    from utils.sampling import erp_to_healpix

    folder = layout.out / f"test_maps_r{setting.test_res}"
    prefix = f"healpix_sampling_res_{setting.test_res}_"
    names = [f"{prefix}{Path(name).stem}.npy" for name in setting.test_images]
    for image, name in zip(setting.test_images, names, strict=True):
        if not (folder / name).exists():
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / name, erp_to_healpix(load_image(REPO / "samples" / image),
                                                  setting.test_res))
    return test_list(folder / "test.txt", prefix, setting.test_images)


def measure_faces(setting: Setting, layout: Layout, variant: Variant,
                  run_dir: Path) -> dict[str, float]:
    """Test-image means of a ``faces`` run's final weights (the baseline's ``rd.csv``)."""
    recipe = variant.recipe_of(setting.recipe)
    folder = f"test_{variant.key}_r{setting.test_res}"
    argv = faces_evaluation_command(recipe, run_dir, test_maps(setting, layout),
                                    setting.test_res, REPO / setting.sphere_points, folder,
                                    whole=variant.whole)
    return planar_mean(argv, run_dir, folder)


MEASURES = {"oslo": measure_oslo, "erp": measure_erp, "faces": measure_faces}


def measure_all(setting: Setting, layout: Layout, seeds: Sequence[int]) -> list[dict]:
    """Every trained point's row of ``points.csv`` (each cached in its run's
    ``result_<variant>.json``)."""
    rows = []
    for seed in seeds:
        for epochs in setting.lengths:
            for lmbda in setting.lambdas:
                for variant in (VARIANTS[key] for key in setting.variants):
                    run_dir = layout.point(variant, seed, epochs, lmbda)
                    if not (run_dir / "final.pth.tar").exists():
                        continue
                    cache = run_dir / f"result_{variant.key}.json"
                    if not cache.exists():
                        result = MEASURES[variant.side](setting, layout, variant, run_dir)
                        write_text(cache, json.dumps(result, indent=1) + "\n")
                    result = json.loads(cache.read_text())
                    rows.append({"method": variant.key, "seed": seed,
                                 "steps": setting.steps(epochs), "lambda": f"{lmbda:g}",
                                 **{k: round(v, 6) for k, v in result.items()}})
    return rows
