"""OSLO against ERP, explained: the BD-rate of the zoo's OSLO hyperprior against its planar
ERP twin at base lengths spanning 16x (``--preset trend``), and the ablations that tell which
factor makes the gap (``--preset ablation``), for several seeds, resumably.

Every variant follows the zoo's recipe (:mod:`experiments.zoo_recipe`): the same 35 training
maps (the planar side trains on crops of the same images in ERP at ``4 * 2**7`` x ``2 * 2**7``),
lambdas, steps, learning rates, warm-up and seeds. A base trains from scratch at lambda 0.013
with a constant learning rate and keeps a checkpoint every 10 epochs (210 steps each): the
lengths are those checkpoints (``--lengths``, in epochs). Every point ``(variant, seed, length,
lambda)`` is fine-tuned from the base's checkpoint at that length in the same way
(``--finetune-epochs`` with the zoo's cosine decay from 1e-3 to 1e-5), then codes the four test
images of ``samples/`` at resolution 7 by patches of the training size (the OSLO side with the
codec of ``oslo_codec.py``, the planar side with the baseline's evaluation: actual bits on
both).

Variants (:data:`experiments.trend.setting.VARIANTS`): ``oslo`` (the zoo's layer: one 2-hop
convolution a block) and ``erp`` (CompressAI's ScaleHyperprior on 512 x 256 ERP, the anchor)
for the trend; for the ablations also ``oslo_paper`` (two summed 1-hop convolutions),
``erp_640`` (640 x 320, the pixels of the HEALPix map), ``oslo_p128`` and ``erp_p128`` (128 x
128 patches), ``oslo_whole`` and ``erp_whole`` (the same models coded whole).

Seed 0 of ``oslo`` and ``erp`` reuses the zoo's own base runs (``--zoo runs/zoo``:
``base_lambda0.013`` and ``erp/base_lambda0.013``, trained by ``train_zoo.py`` and
``train_zoo.py --erp``); everything else trains in ``<-O>/seed<s>/<variant>/``. Both presets
share that layout, so the ablation run in the trend's folder reuses the trend's ``oslo`` and
``erp`` runs at its length (bases are taken at their checkpoint of the length, whatever their
own length). Outputs in ``-O``, named after the preset (``trend_*`` or ``ablation_*``):

* ``<preset>_points.csv``: ``method,seed,steps,lambda,bpp,s_psnr_y,ws_psnr_y,s_psnr_rgb,
  ws_psnr_rgb`` (test-image means; ``steps``: the base's, each point adds the same fine-tuning
  steps);
* ``<preset>_bd.csv``: per variant, length, seed and metric (S-PSNR Y, WS-PSNR Y) the BD-rate
  and BD-PSNR against ``erp`` (pchip), whether both curves are monotone, and per variant,
  length and metric a row ``all``: the mean over the seeds and the spread (half the range);
* ``<preset>.png``: BD-rate against base steps (one length: a bar a variant).

Example:
    python experiments/trend_study.py -O runs/trend --zoo runs/zoo --seeds 0 1
    python experiments/trend_study.py --preset ablation -O runs/trend --zoo runs/zoo --seeds 0 1
    python experiments/trend_study.py -O runs/trend_tiny --tiny       # seconds, for the tests
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from experiments.trend.runs import Layout, measure_all, train_all  # noqa: E402
from experiments.trend.setting import PRESETS, TINY_PRESETS, VARIANTS, Setting  # noqa: E402
from experiments.trend.table import BD_COLUMNS, POINT_COLUMNS, bd_table, plot  # noqa: E402
from spherical_models.cli import HelpFormatter  # noqa: E402
from utils.cli import get_logger, run_main, setup_logging  # noqa: E402
from utils.errors import OsloError  # noqa: E402
from utils.io import rows_csv, write_text  # noqa: E402
from utils.sphere_points import load_or_create  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="trend",
                        help="trend: oslo and erp at lengths 10 20 40 160; ablation: every "
                        "variant at length 40")
    parser.add_argument("-O", "--out", default="runs/trend", help="working and output folder")
    parser.add_argument("--zoo", default=None,
                        help="working folder of train_zoo.py (-O) whose base runs are seed 0's "
                        "of oslo and erp (default: none, every base trains in -O)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                        help="the curves (default: the preset's; erp, the anchor, is added): "
                        + "; ".join(f"{key}: {v.label}" for key, v in VARIANTS.items()))
    parser.add_argument("--lengths", type=int, nargs="+", default=None,
                        help="base lengths in epochs, multiples of the checkpoint interval "
                        "(default: the preset's)")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="epochs of a point's fine-tuning (default: the preset's, 5; "
                        "--tiny: 1)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at a time")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the tables and the plot of the points measured")
    parser.add_argument("--tiny", action="store_true",
                        help="the preset in seconds (8 channels, resolution 6, the 12 planet "
                        "maps) for the tests")
    return parser


def setting_of(args: argparse.Namespace) -> Setting:
    """The setting of the flags, checked: every length a multiple of the checkpoint interval,
    every variant one of the tiny recipe's with ``--tiny``."""
    setting = (TINY_PRESETS if args.tiny else PRESETS)[args.preset]
    if args.variants:
        setting = replace(setting, variants=tuple(dict.fromkeys(["erp", *args.variants])))
    if args.lengths:
        setting = replace(setting, lengths=tuple(sorted(set(args.lengths))))
    if args.finetune_epochs:
        setting = replace(setting, finetune_epochs=args.finetune_epochs)
    interval = setting.recipe.checkpoint_interval
    bad = [e for e in setting.lengths if e <= 0 or e % interval]
    if bad:
        raise OsloError(f"--lengths {' '.join(map(str, bad))}: not a positive multiple of the "
                        f"checkpoint interval ({interval} epochs)")
    too_big = [k for k in setting.variants
               if VARIANTS[k].recipe.get("patch_res", 0) > setting.recipe.healpix_res]
    if too_big:
        raise OsloError(f"--variants {' '.join(too_big)}: patches larger than the maps of "
                        f"this setting (resolution {setting.recipe.healpix_res})")
    return setting


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
        load_or_create(REPO / setting.sphere_points)
        train_all(setting, layout, seeds, args.jobs)
    rows = measure_all(setting, layout, seeds)
    write_text(out / f"{args.preset}_points.csv", rows_csv(rows, POINT_COLUMNS))
    table = bd_table(rows)
    write_text(out / f"{args.preset}_bd.csv", rows_csv(table, BD_COLUMNS))
    plot(table, out / f"{args.preset}.png")
    log = get_logger()
    for row in table:
        spread = f" +- {row['spread_bd_rate']}" if row["seed"] == "all" else ""
        log.info("%s, %6d steps, seed %s, %s: BD-rate %s %%%s, BD-PSNR %s dB", row["method"],
                 row["steps"], row["seed"], row["metric"], row["bd_rate"], spread,
                 row["bd_psnr"])


if __name__ == "__main__":
    run_main(main)
