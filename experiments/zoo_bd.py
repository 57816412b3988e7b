"""The pretrained zoo against JPEG, WebP and its planar ERP twin: RD points and BD values.

On the four test images of ``samples/`` (never trained on) at HEALPix resolutions 7 and 8:

* the zoo: the figures of its committed files, as ``zoo/registry.json`` records them
  (``experiments/train_zoo.py`` measured them with the codec of ``oslo_codec.py``);
* JPEG and WebP (Pillow) coding the ERP image resampled to ``4 * 2**r x 2 * 2**r``, at the
  qualities ``--qualities``;
* with ``--erp-results``, the planar twin (``train_zoo.py --erp``: CompressAI's hyperprior on
  ERP, the same recipe, coded by 64 x 64 patches);
* with ``--refine STEPS``, the zoo's files coded again with the encoder's latent refinement
  (``oslo_codec.py encode --refine``; method ``zoo+refine``), one image, quality and resolution
  a task on ``--jobs`` processes of one thread each, each result kept in
  ``<out>/refined/`` under the file's checkpoint hash (a rerun codes only what is missing).

bpp is over the HEALPix pixels at ``r``; S-PSNR and WS-PSNR Y against the original ERP image at
the 10,242 sphere points, mean over the images. The BD values (pchip, ``utils.rd.bd_values``)
are those of the zoo's curves (``zoo``, and ``zoo+refine`` against ``zoo`` too) against each
anchor on the PSNR range both cover, which the table gives. Written in ``-O``: ``points.csv``
(method, res, quality, bpp, s_psnr_y, ws_psnr_y), ``bd.csv`` (method, res, anchor, metric,
bd_rate, bd_psnr, overlap_low, overlap_high) and ``rd.png``.

Example:
    python experiments/zoo_bd.py -O runs/zoo_bd --erp-results runs/zoo/erp/results.csv \
        --refine 100 --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from experiments.train_zoo import SPHERE_POINTS, TEST_IMAGES, TEST_RESOLUTIONS  # noqa: E402
from spherical_models import zoo  # noqa: E402
from spherical_models.cli import HelpFormatter  # noqa: E402
from spherical_models.coding.refine import DEFAULT_REFINE_LR, Refinement  # noqa: E402
from utils.classic_codecs import CODECS, RD_QUALITIES, erp_rd_points  # noqa: E402
from utils.cli import run_main, setup_logging  # noqa: E402
from utils.errors import OsloError  # noqa: E402
from utils.io import load_image, rows_csv, write_text  # noqa: E402
from utils.rd import bd_values  # noqa: E402
from utils.sphere_points import load_or_create  # noqa: E402

METRICS = ("s_psnr_y", "ws_psnr_y")
POINT_COLUMNS = ("method", "res", "quality", "bpp", *METRICS)
OURS = ("zoo", "zoo+refine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("-O", "--out", default="runs/zoo_bd", help="output folder")
    parser.add_argument("--zoo-dir", default=str(zoo.ZOO_DIR),
                        help="folder of the zoo's registry.json (default: zoo/ of the "
                        "repository)")
    parser.add_argument("--erp-results", default=None,
                        help="results.csv of train_zoo.py --erp (the planar twin), if any")
    parser.add_argument("--qualities", default=",".join(map(str, RD_QUALITIES)),
                        help="JPEG and WebP qualities")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="also code the test images with the zoo and STEPS steps of latent "
                        "refinement a batch (0: not)")
    parser.add_argument("--refine-lr", type=float, default=DEFAULT_REFINE_LR,
                        help="initial learning rate of --refine")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes (one thread each) coding with --refine")
    return parser


def zoo_points(folder: Path) -> list[dict]:
    """The zoo's mean points per resolution, from its registry."""
    rows = []
    for entry in zoo.read_registry(folder):
        for res in TEST_RESOLUTIONS:
            images = entry.results["samples"][str(res)]["images"].values()
            rows.append({"method": "zoo", "res": res, "quality": entry.quality,
                         "bpp": float(np.mean([i["bpp"] for i in images])),
                         **{m: float(np.mean([i[m] for i in images])) for m in METRICS}})
    return rows


@dataclass(frozen=True)
class RefineTask:
    """One test image coded with one zoo entry at one resolution, refined."""

    folder: str
    quality: int
    digest: str
    res: int
    image: str
    refinement: Refinement

    def path(self, cache: Path) -> Path:
        """Its result in ``cache``, named by the file's checkpoint hash: a retrained entry
        of the same quality is coded again."""
        return cache / f"{self.digest[:16]}_r{self.res}_{Path(self.image).stem}.json"

    def kept(self, cache: Path) -> dict | None:
        """Its result if ``cache`` holds one of the same file and settings."""
        if not self.path(cache).is_file():
            return None
        kept = json.loads(self.path(cache).read_text())
        settings = (self.digest, self.refinement.steps, self.refinement.lr)
        return kept if (kept["digest"], kept["steps"], kept["lr"]) == settings else None


def _refined_task(task: RefineTask) -> dict:
    """Code one test image with one zoo entry at one resolution, refined (a worker)."""
    import torch

    from spherical_models.coding.codec import load_codec

    torch.set_num_threads(1)
    entry = zoo.zoo_entry(quality=task.quality, folder=Path(task.folder))
    codec = load_codec(zoo.checked_path(entry, Path(task.folder)))
    image = load_image(REPO / "samples" / task.image)
    metrics, _ = zoo.code_erp_image(codec, image, task.res, load_or_create(SPHERE_POINTS),
                                    refinement=task.refinement)
    return {"quality": task.quality, "digest": entry.digest, "res": task.res,
            "image": task.image, "steps": task.refinement.steps, "lr": task.refinement.lr,
            **metrics}


def refined_points(folder: Path, out: Path, refinement: Refinement, jobs: int) -> list[dict]:
    """The mean points of the zoo coded with ``refinement``, per resolution and quality;
    each image's result is kept in ``out/refined/`` and reused when its file and settings
    match."""
    cache = out / "refined"
    cache.mkdir(parents=True, exist_ok=True)
    entries = zoo.read_registry(folder)
    tasks = {(e.quality, res): [RefineTask(str(folder), e.quality, e.digest, res, name,
                                           refinement) for name in TEST_IMAGES]
             for e in entries for res in TEST_RESOLUTIONS}
    results = {t: t.kept(cache) for group in tasks.values() for t in group}
    missing = [t for t, result in results.items() if result is None]
    with ProcessPoolExecutor(jobs) as pool:
        for task, result in zip(missing, pool.map(_refined_task, missing), strict=True):
            write_text(task.path(cache), json.dumps(result, indent=1) + "\n")
            results[task] = result
            print(f"refined q{task.quality} r{task.res} {task.image}: {result['bpp']:.4f} "
                  f"bpp, {result['s_psnr_y']:.3f} dB", flush=True)
    rows = []
    for (quality, res), group in tasks.items():
        images = [results[t] for t in group]
        rows.append({"method": "zoo+refine", "res": res, "quality": quality,
                     "bpp": float(np.mean([i["bpp"] for i in images])),
                     **{m: float(np.mean([i[m] for i in images])) for m in METRICS}})
    return rows


def classic_points(qualities: list[float]) -> list[dict]:
    """JPEG and WebP mean points per resolution and quality."""
    points = load_or_create(SPHERE_POINTS)
    images = [load_image(REPO / "samples" / name) for name in TEST_IMAGES]
    rows = []
    for res in TEST_RESOLUTIONS:
        for name in ("jpeg", "webp"):
            per_image = [erp_rd_points(image, res, points, CODECS[name], qualities)
                         for image in images]
            for k, quality in enumerate(qualities):
                rows.append({"method": name, "res": res, "quality": quality,
                             "bpp": float(np.mean([p[k][1] for p in per_image])),
                             **{m: float(np.mean([p[k][2][m] for p in per_image]))
                                for m in METRICS}})
    return rows


def erp_points(path: Path) -> list[dict]:
    with open(path) as stream:
        return [{"method": "erp", "res": int(r["res"]), "quality": int(r["quality"]),
                 "bpp": float(r["bpp"]), **{m: float(r[m]) for m in METRICS}}
                for r in csv.DictReader(stream)]


def curve(rows: list[dict], method: str, res: int) -> dict[str, np.ndarray]:
    mine = sorted((r for r in rows if (r["method"], r["res"]) == (method, res)),
                  key=lambda r: r["bpp"])
    return {key: np.array([r[key] for r in mine]) for key in ("bpp", *METRICS)}


def bd_rows(rows: list[dict]) -> list[dict]:
    """BD values of the zoo's curves (``zoo``, ``zoo+refine``) against every other method
    (``zoo`` not against ``zoo+refine``), per resolution and metric."""
    out = []
    methods = {r["method"] for r in rows}
    for method, res in ((m, res) for m in OURS if m in methods for res in TEST_RESOLUTIONS):
        ours = curve(rows, method, res)
        for anchor in sorted(methods - set(OURS[OURS.index(method):])):
            theirs = curve(rows, anchor, res)
            for metric in METRICS:
                rate, psnr = bd_values(theirs, ours, metric, "pchip")
                out.append({"method": method, "res": res, "anchor": anchor, "metric": metric,
                            "bd_rate": f"{rate:.2f}", "bd_psnr": f"{psnr:.3f}",
                            "overlap_low": f"{max(ours[metric].min(), theirs[metric].min()):.2f}",
                            "overlap_high":
                                f"{min(ours[metric].max(), theirs[metric].max()):.2f}"})
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TEST_RESOLUTIONS), figsize=(11, 4))
    for ax, res in zip(axes, TEST_RESOLUTIONS, strict=True):
        for method in (*OURS, "erp", "jpeg", "webp"):
            points = curve(rows, method, res)
            if len(points["bpp"]):
                ax.plot(points["bpp"], points["s_psnr_y"], "o-", label=method)
        ax.set_title(f"HEALPix resolution {res} (ERP {4 * 2**res} x {2 * 2**res})")
        ax.set_xlabel("bpp (per HEALPix pixel)")
        ax.set_ylabel("S-PSNR Y (dB)")
        ax.set_xlim(0, 0.6)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.jobs < 1:
        raise OsloError(f"--jobs must be at least 1, got {args.jobs}")
    refinement = None
    if args.refine:
        try:
            refinement = Refinement(args.refine, args.refine_lr)
        except ValueError as error:
            raise OsloError(f"--refine: {error}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    qualities = CODECS["jpeg"].parse_qualities(args.qualities)
    rows = zoo_points(Path(args.zoo_dir)) + classic_points(qualities)
    if args.erp_results:
        rows += erp_points(Path(args.erp_results))
    if refinement is not None:
        rows += refined_points(Path(args.zoo_dir), out, refinement, args.jobs)
    write_text(out / "points.csv", rows_csv(rows, POINT_COLUMNS))
    table = bd_rows(rows)
    write_text(out / "bd.csv", rows_csv(table))
    plot(rows, out / "rd.png")
    for row in table:
        print(f"r{row['res']} {row['method']} vs {row['anchor']:4s} {row['metric']:9s}: BD-rate "
              f"{row['bd_rate']:>7s} %, BD-PSNR {row['bd_psnr']:>6s} dB (overlap "
              f"{row['overlap_low']} to {row['overlap_high']} dB)")


if __name__ == "__main__":
    run_main(main)
