"""OSLO against ERP with training length: the BD-rate of the zoo's OSLO hyperprior against its
planar ERP twin at base lengths spanning 16x, for several seeds, resumably.

Both sides follow the zoo's recipe (:mod:`experiments.zoo_recipe`): the same 35 training maps
(the planar twin trains on crops of the same images in ERP at ``4 * 2**7`` x ``2 * 2**7``),
lambdas, steps, learning rates, warm-up and seeds. A base trains from scratch at lambda 0.013
with a constant learning rate and keeps a checkpoint every 10 epochs (210 steps each): the
lengths are those checkpoints (``--lengths``, in epochs). Every point ``(side, seed, length,
lambda)`` is fine-tuned from the base's checkpoint at that length in the same way
(``--finetune-epochs`` with the zoo's cosine decay from 1e-3 to 1e-5), then codes the four test
images of ``samples/`` at resolution 7 by 64 x 64 patches (the OSLO side with the codec of
``oslo_codec.py``, the planar side with the baseline's evaluation: actual bits on both).

Seed 0 reuses the zoo's own base runs (``--zoo runs/zoo``: ``base_lambda0.013`` and
``erp/base_lambda0.013``, trained by ``train_zoo.py`` and ``train_zoo.py --erp``); other seeds
train their bases in ``<-O>/seed<s>/``. Outputs in ``-O``:

* ``points.csv``: ``method,seed,steps,lambda,bpp,s_psnr_y,ws_psnr_y,s_psnr_rgb,ws_psnr_rgb``
  (test-image means; ``steps``: the base's, each point adds the same fine-tuning steps);
* ``bd.csv``: per length, seed and metric (S-PSNR Y, WS-PSNR Y) the BD-rate and BD-PSNR of
  OSLO against ERP (pchip), whether both curves are monotone, and per length a row ``all``:
  the mean over the seeds and the spread (half the range);
* ``trend.png``: BD-rate against base steps.

Example:
    python experiments/trend_study.py -O runs/trend --zoo runs/zoo --seeds 0 1
    python experiments/trend_study.py -O runs/trend_tiny --tiny       # seconds, for the tests
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from experiments.zoo_recipe import (  # noqa: E402
    TINY,
    ZOO,
    Recipe,
    erp_command,
    erp_evaluation_command,
    prepare_data,
    run_command,
    sphere_command,
    train,
)
from spherical_models.cli import HelpFormatter  # noqa: E402
from utils.cli import get_logger, run_main, setup_logging  # noqa: E402
from utils.errors import OsloError  # noqa: E402
from utils.io import load_image, rows_csv, write_text  # noqa: E402
from utils.rd import bd_values  # noqa: E402
from utils.sphere_points import load_or_create  # noqa: E402

METHODS = ("oslo", "erp")
METRICS = ("s_psnr_y", "ws_psnr_y", "s_psnr_rgb", "ws_psnr_rgb")
BD_METRICS = ("s_psnr_y", "ws_psnr_y")
POINT_COLUMNS = ("method", "seed", "steps", "lambda", "bpp", *METRICS)
BD_COLUMNS = ("steps", "seed", "metric", "bd_rate", "bd_psnr", "spread_bd_rate",
              "spread_bd_psnr", "monotone")
TEST_IMAGES = ("earth_day.jpg", "mars_spirit_husband_hill.jpg", "milky_way.jpg",
               "moon_surface_4096.jpg")


@dataclass(frozen=True)
class Setting:
    """What the study trains and measures.

    Attributes:
        recipe: the training recipe.
        train_dirs: folders of training images (every JPEG).
        base_lambda: lambda of the bases.
        lengths: base lengths in epochs, each a multiple of the recipe's checkpoint interval.
        lambdas: the lambdas of a curve, each fine-tuned from the base.
        finetune_epochs: epochs of a fine-tuning.
        test_res: HEALPix resolution of the test maps (ERP width ``4 * 2**test_res``).
        test_images: images of ``samples/`` coded for the points.
        sphere_points: S-PSNR's points.
    """

    recipe: Recipe
    train_dirs: tuple[str, ...]
    base_lambda: float
    lengths: tuple[int, ...]
    lambdas: tuple[float, ...]
    finetune_epochs: int
    test_res: int
    test_images: tuple[str, ...]
    sphere_points: str = "misc/sphere_10242.txt"

    def images(self) -> list[Path]:
        return [image for folder in self.train_dirs
                for image in sorted((REPO / folder).glob("*.jpg"))]

    def steps(self, epochs: int) -> int:
        return epochs * self.recipe.steps_per_epoch(len(self.images()))


FULL = Setting(ZOO, ("samples/planets", "samples/zoo_train"), 0.013, (10, 20, 40, 160),
               (0.0035, 0.013, 0.05), 5, 7, TEST_IMAGES)
TINY_SETTING = Setting(TINY, ("samples/planets",), 0.013, (1, 2), (0.002, 0.05), 1, 6,
                       ("earth_day.jpg", "milky_way.jpg"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-O", "--out", default="runs/trend", help="working and output folder")
    parser.add_argument("--zoo", default=None,
                        help="working folder of train_zoo.py (-O) whose base runs are seed 0's "
                        "(default: seed 0 trains its own bases in -O)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds")
    parser.add_argument("--lengths", type=int, nargs="+", default=None,
                        help=f"base lengths in epochs (default: {' '.join(map(str, FULL.lengths))}"
                        f", --tiny: {' '.join(map(str, TINY_SETTING.lengths))})")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help=f"epochs of a point's fine-tuning (default: {FULL.finetune_epochs}, "
                        f"--tiny: {TINY_SETTING.finetune_epochs})")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at a time")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the tables and the plot of the points measured")
    parser.add_argument("--tiny", action="store_true",
                        help="a setting of seconds (8 channels, resolution 6, 2 maps) for tests")
    return parser


def setting_of(args: argparse.Namespace) -> Setting:
    """The setting of the flags, checked: every length a multiple of the checkpoint
    interval."""
    setting = TINY_SETTING if args.tiny else FULL
    if args.lengths:
        setting = replace(setting, lengths=tuple(sorted(set(args.lengths))))
    if args.finetune_epochs:
        setting = replace(setting, finetune_epochs=args.finetune_epochs)
    interval = setting.recipe.checkpoint_interval
    bad = [e for e in setting.lengths if e <= 0 or e % interval]
    if bad:
        raise OsloError(f"--lengths {' '.join(map(str, bad))}: not a positive multiple of the "
                        f"checkpoint interval ({interval} epochs)")
    return setting


@dataclass(frozen=True)
class Layout:
    """Where the study's runs are."""

    out: Path
    zoo: Path | None

    def data(self) -> Path:
        """Steps 1 and 2 (the zoo's when seed 0 reuses it, so that both read the same maps)."""
        return self.zoo if self.zoo is not None else self.out

    def base(self, method: str, seed: int, lmbda: float) -> Path:
        name = f"base_lambda{lmbda:g}"
        if seed == 0 and self.zoo is not None:
            return self.zoo / name if method == "oslo" else self.zoo / "erp" / name
        return self.out / f"seed{seed}" / method / name

    def point(self, method: str, seed: int, epochs: int, lmbda: float) -> Path:
        return self.out / f"seed{seed}" / method / f"e{epochs}_lambda{lmbda:g}"


def train_all(setting: Setting, layout: Layout, seeds: Sequence[int], jobs: int) -> None:
    """The bases (a seed's two sides at a time), then every point's fine-tuning."""
    recipe, top = setting.recipe, max(setting.lengths)
    commands = {"oslo": sphere_command, "erp": erp_command}
    data = layout.data()

    def base(key: tuple[str, int]) -> None:
        method, seed = key
        run_dir = layout.base(method, seed, setting.base_lambda)
        train(run_dir, commands[method](recipe, data, run_dir, setting.base_lambda, top,
                                        seed=seed))
        missing = [e for e in setting.lengths if e != top and
                   not (run_dir / f"checkpoint_{e}.pth.tar").exists()]
        if missing:
            raise OsloError(f"{run_dir}: no checkpoint at epoch(s) {missing}")

    def point(key: tuple[str, int, int, float]) -> None:
        method, seed, epochs, lmbda = key
        base_dir = layout.base(method, seed, setting.base_lambda)
        start = base_dir / ("final.pth.tar" if epochs == top else f"checkpoint_{epochs}.pth.tar")
        run_dir = layout.point(method, seed, epochs, lmbda)
        train(run_dir, commands[method](recipe, data, run_dir, lmbda, setting.finetune_epochs,
                                        init_from=start, seed=seed,
                                        checkpoint_interval=setting.finetune_epochs))

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(base, [(m, s) for s in seeds for m in METHODS]))
        list(pool.map(point, [(m, s, e, lmbda) for s in seeds for e in setting.lengths
                              for lmbda in setting.lambdas for m in METHODS]))


def measure_oslo(setting: Setting, run_dir: Path) -> dict[str, float]:
    """Test-image means of an OSLO run's final weights, coded with the codec."""
    from spherical_models import zoo
    from spherical_models.coding import codec

    model = codec.load_codec(run_dir / "final.pth.tar")
    points = load_or_create(REPO / setting.sphere_points)
    rows = [zoo.code_erp_image(model, load_image(REPO / "samples" / name), setting.test_res,
                               points)[0] for name in setting.test_images]
    return {key: float(np.mean([r[key] for r in rows])) for key in ("bpp", *METRICS)}


def measure_erp(setting: Setting, layout: Layout, run_dir: Path) -> dict[str, float]:
    """Test-image means of a planar run's final weights (the baseline's ``rd.csv``)."""
    recipe = setting.recipe
    test_list = layout.out / "test.txt"
    write_text(test_list, "".join(f"{recipe.map_prefix()}{Path(name).stem}.npy\n"
                                  for name in setting.test_images))
    folder = f"test_r{setting.test_res}"
    if not (run_dir / folder / "rd.csv").exists():
        run_command(erp_evaluation_command(recipe, run_dir, test_list, setting.test_res,
                                           REPO / setting.sphere_points, folder),
                    run_dir / "evaluation.log", threads=2)
    with open(run_dir / folder / "rd.csv") as stream:
        mean = list(csv.DictReader(stream))[-1]
    return {key: float(mean[key]) for key in ("bpp", *METRICS)}


def measure_all(setting: Setting, layout: Layout, seeds: Sequence[int]) -> list[dict]:
    """Every trained point's row of ``points.csv`` (each cached in its run's
    ``result.json``)."""
    rows = []
    for seed in seeds:
        for epochs in setting.lengths:
            for lmbda in setting.lambdas:
                for method in METHODS:
                    run_dir = layout.point(method, seed, epochs, lmbda)
                    if not (run_dir / "final.pth.tar").exists():
                        continue
                    cache = run_dir / "result.json"
                    if not cache.exists():
                        result = measure_oslo(setting, run_dir) if method == "oslo" else \
                            measure_erp(setting, layout, run_dir)
                        write_text(cache, json.dumps(result, indent=1) + "\n")
                    result = json.loads(cache.read_text())
                    rows.append({"method": method, "seed": seed,
                                 "steps": setting.steps(epochs), "lambda": f"{lmbda:g}",
                                 **{k: round(v, 6) for k, v in result.items()}})
    return rows


def curve_of(rows: Sequence[dict], method: str, seed: int, steps: int) -> dict[str, np.ndarray]:
    mine = sorted((r for r in rows if (r["method"], r["seed"], r["steps"]) ==
                   (method, seed, steps)), key=lambda r: float(r["lambda"]))
    return {key: np.array([float(r[key]) for r in mine]) for key in ("bpp", *METRICS)}


def monotone(curve: dict[str, np.ndarray], metric: str) -> bool:
    """Rate and quality both increase with lambda."""
    return bool(np.all(np.diff(curve["bpp"]) > 0) and np.all(np.diff(curve[metric]) > 0))


def bd_table(rows: Sequence[dict]) -> list[dict]:
    """BD of OSLO against ERP per length, seed and metric, then per length and metric the
    mean over the seeds and the spread (half the range)."""
    table = []
    for steps in sorted({r["steps"] for r in rows}):
        for metric in BD_METRICS:
            values = []
            for seed in sorted({r["seed"] for r in rows if r["steps"] == steps}):
                oslo, erp = (curve_of(rows, m, seed, steps) for m in METHODS)
                if min(len(oslo["bpp"]), len(erp["bpp"])) < 2:
                    continue
                try:
                    rate, psnr = bd_values(erp, oslo, metric, "pchip")
                except ValueError:  # a curve whose quality repeats: no interpolation
                    rate = psnr = math.nan
                values.append((rate, psnr))
                table.append({"steps": steps, "seed": seed, "metric": metric,
                              "bd_rate": f"{rate:.2f}", "bd_psnr": f"{psnr:.3f}",
                              "spread_bd_rate": "", "spread_bd_psnr": "",
                              "monotone": monotone(oslo, metric) and monotone(erp, metric)})
            if values:
                rates, psnrs = np.array(values).T
                table.append({"steps": steps, "seed": "all", "metric": metric,
                              "bd_rate": f"{np.mean(rates):.2f}",
                              "bd_psnr": f"{np.mean(psnrs):.3f}",
                              "spread_bd_rate": f"{np.ptp(rates) / 2:.2f}",
                              "spread_bd_psnr": f"{np.ptp(psnrs) / 2:.3f}",
                              "monotone": ""})
    return table


def plot(table: Sequence[dict], path: Path) -> None:
    """BD-rate of OSLO against ERP against base steps: each seed, and the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for metric, colour in zip(BD_METRICS, ("C0", "C1"), strict=True):
        mine = [r for r in table if r["metric"] == metric and np.isfinite(float(r["bd_rate"]))]
        seeds = [r for r in mine if r["seed"] != "all"]
        means = [r for r in mine if r["seed"] == "all"]
        ax.plot([r["steps"] for r in seeds], [float(r["bd_rate"]) for r in seeds], "o",
                color=colour, alpha=0.5)
        ax.errorbar([r["steps"] for r in means], [float(r["bd_rate"]) for r in means],
                    yerr=[float(r["spread_bd_rate"]) for r in means], color=colour,
                    marker="s", capsize=3, label=f"{metric.replace('_', ' ')}: mean, spread")
    ax.axhline(0, color="grey", lw=0.8)
    if any(np.isfinite(float(r["bd_rate"])) for r in table):
        ax.set_xscale("log", base=2)
    ax.set_xlabel("base training steps")
    ax.set_ylabel("BD-rate of OSLO against ERP (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    setting = setting_of(args)
    out = Path(args.out)
    layout = Layout(out, Path(args.zoo) if args.zoo else None)
    if layout.zoo is not None and not (layout.zoo / "data" / "train.txt").exists():
        raise OsloError(f"--zoo {layout.zoo}: no data/train.txt (not a train_zoo.py folder)")
    seeds = sorted(set(args.seeds))
    if not args.report_only:
        if layout.zoo is None:
            prepare_data(setting.recipe, out, setting.images())
        load_or_create(REPO / setting.sphere_points)
        train_all(setting, layout, seeds, args.jobs)
    rows = measure_all(setting, layout, seeds)
    write_text(out / "points.csv", rows_csv(rows, POINT_COLUMNS))
    table = bd_table(rows)
    write_text(out / "bd.csv", rows_csv(table, BD_COLUMNS))
    plot(table, out / "trend.png")
    log = get_logger()
    for row in table:
        spread = f" +- {row['spread_bd_rate']}" if row["seed"] == "all" else ""
        log.info("%6d steps, seed %s, %s: BD-rate %s %%%s, BD-PSNR %s dB", row["steps"],
                 row["seed"], row["metric"], row["bd_rate"], spread, row["bd_psnr"])


if __name__ == "__main__":
    run_main(main)
