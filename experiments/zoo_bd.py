"""The pretrained zoo against JPEG, WebP and its planar ERP twin: RD points and BD values.

On the four test images of ``samples/`` (never trained on) at HEALPix resolutions 7 and 8:

* the zoo: the figures of its committed files, as ``zoo/registry.json`` records them
  (``experiments/train_zoo.py`` measured them with the codec of ``oslo_codec.py``);
* JPEG and WebP (Pillow) coding the ERP image resampled to ``4 * 2**r x 2 * 2**r``, at the
  qualities ``--qualities``;
* with ``--erp-results``, the planar twin (``train_zoo.py --erp``: CompressAI's hyperprior on
  ERP, the same recipe, coded by 64 x 64 patches).

bpp is over the HEALPix pixels at ``r``; S-PSNR and WS-PSNR Y against the original ERP image at
the 10,242 sphere points, mean over the images. The BD values (pchip, ``utils.rd.bd_values``)
are those of the zoo's curve against each anchor on the PSNR range both cover, which the table
gives. Written in ``-O``: ``points.csv`` (method, res, quality, bpp, s_psnr_y, ws_psnr_y),
``bd.csv`` (res, anchor, metric, bd_rate, bd_psnr, overlap_low, overlap_high) and ``rd.png``.

Example:
    python experiments/zoo_bd.py -O runs/zoo_bd --erp-results runs/zoo/erp/results.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from experiments.train_zoo import SPHERE_POINTS, TEST_IMAGES, TEST_RESOLUTIONS  # noqa: E402
from spherical_models import zoo  # noqa: E402
from spherical_models.cli import HelpFormatter  # noqa: E402
from utils.classic_codecs import CODECS, RD_QUALITIES, erp_rd_points  # noqa: E402
from utils.cli import run_main, setup_logging  # noqa: E402
from utils.io import load_image, rows_csv, write_text  # noqa: E402
from utils.rd import bd_values  # noqa: E402
from utils.sphere_points import load_or_create  # noqa: E402

METRICS = ("s_psnr_y", "ws_psnr_y")
POINT_COLUMNS = ("method", "res", "quality", "bpp", *METRICS)


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
    """BD values of the zoo against every other method, per resolution and metric."""
    out = []
    anchors = sorted({r["method"] for r in rows} - {"zoo"})
    for res in TEST_RESOLUTIONS:
        ours = curve(rows, "zoo", res)
        for anchor in anchors:
            theirs = curve(rows, anchor, res)
            for metric in METRICS:
                rate, psnr = bd_values(theirs, ours, metric, "pchip")
                out.append({"res": res, "anchor": anchor, "metric": metric,
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
        for method in ("zoo", "erp", "jpeg", "webp"):
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    qualities = CODECS["jpeg"].parse_qualities(args.qualities)
    rows = zoo_points(Path(args.zoo_dir)) + classic_points(qualities)
    if args.erp_results:
        rows += erp_points(Path(args.erp_results))
    write_text(out / "points.csv", rows_csv(rows, POINT_COLUMNS))
    table = bd_rows(rows)
    write_text(out / "bd.csv", rows_csv(table))
    plot(rows, out / "rd.png")
    for row in table:
        print(f"r{row['res']} zoo vs {row['anchor']:4s} {row['metric']:9s}: BD-rate "
              f"{row['bd_rate']:>7s} %, BD-PSNR {row['bd_psnr']:>6s} dB (overlap "
              f"{row['overlap_low']} to {row['overlap_high']} dB)")


if __name__ == "__main__":
    run_main(main)
