"""The paper's comparison in one command: rate-distortion curves of OSLO (SDPAConv), DeepSphere
(ChebConv), CompressAI on the ERP plane and the classic codecs, with BD-rates and a plot.

The study is a list of steps, each one run of a toolkit script with its own command line:

1. step 1 (sampling on HEALPix and the train / validation / test split);
2. step 2 (OSLO structures and DeepSphere graphs for every (hr, pr) pair a model needs);
3. per learned method and (lambda, quality) point: training (``main_sphere_compression.py`` or
   ``baselines/train_erp_compressai.py``), evaluation with real bitstreams, then S-PSNR and
   WS-PSNR (``misc/compute_spherical_psnr.py``), written as ``rd.csv``;
4. per classic codec: ``misc/compress_erp_baseline.py`` (JPEG, WebP, JPEG 2000 on the ERP image
   at the size of the planar baseline);
5. the report: ``rd_points.csv``, ``bd_rates.csv`` (``bjontegaard``, against ``--anchor``),
   ``rd_curves.png`` and ``report.md`` in ``<out>/results``.

Every step is written to ``<out>/commands.sh`` as a shell command, so the study can be rerun by
hand. A step whose output exists is skipped, so an interrupted study resumes where it stopped
(an interrupted training starts again from its first epoch). ``steps.csv`` keeps the seconds of
every step run. The methods share one bpp axis: bits per HEALPix pixel at the study's
resolution, also for the ERP methods. The learned models train on patches (ERP: crops of the
same size) and code a test image by patch, each patch its own strings (``oslo_sh_whole``,
``erp_fp_whole`` and ``erp_sh_whole`` code the same models on the whole sphere or image).

With ``--seeds s1 s2 ...``, every learned point is trained once per seed (run folders
``lambda<l>_seed<s>``); the report gives the BD values per seed, their mean and range, and those
of the mean curves, and marks a ranking the seeds' range does not support.

With ``--finetune-epochs E`` (the medium preset: 25), a base model of each method and seed is
trained from scratch at the highest lambda (``runs/<method>/base``), and every point of the
curve, that lambda included, is fine-tuned from its weights for E epochs (``--init-from``):
the points share their start and their steps, so that a higher lambda gives more bits and a
higher PSNR instead of the noise of independent short trainings.

Presets:

* ``--tiny``: resolution 6, tiny models and one epoch; for the tests (about a minute).
* ``--small``: resolution 7, patches of resolution 6 (64 x 64), small models, four lambdas; on
  the bundled samples in well under an hour on a 2-core CPU (docs/RESULTS.md).
* ``--medium``: the small setting with 24 training maps (``samples/planets`` and
  ``samples/photos``), a cosine schedule, two seeds (one for DeepSphere and the sphere-border
  OSLO), two trainings at a time, and every point fine-tuned for 25 epochs from a base model
  per method and seed; about 80 minutes on a 2-core CPU (docs/RESULTS.md).
* ``--paper``: resolution 10, patches of resolution 8, the ten (lambda, quality) pairs of the
  paper and 1000 epochs. It only writes ``commands.sh`` (training under ``torchrun`` on GPUs);
  run that script, then this command again with ``--report-only``.

Example:
    python experiments/rd_study.py --small -O runs/rd_small
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from experiments.rd.methods import METHODS
from experiments.rd.study import run_study
from spherical_models.cli import HelpFormatter
from utils.cli import run_main, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The options of the study (:func:`experiments.rd.study.run_study` takes them by name)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    add = parser.add_argument
    preset = parser.add_mutually_exclusive_group(required=True)
    for name, text in (("tiny", "resolution 6, 1 epoch of (8, 8) models (tests)"),
                       ("small", "resolution 7, (32, 48) models, 4 lambdas, trained on "
                                 "samples/planets (2-core CPU, < 1 h)"),
                       ("medium", "resolution 7, (64, 96) models, 4 lambdas, 2 seeds, cosine, "
                                  "trained on samples/planets and samples/photos (2-core CPU, "
                                  "about 80 min)"),
                       ("paper", "resolution 10 / patch 8, the 10 (lambda, q) pairs, 1000 "
                                 "epochs on GPUs: writes commands.sh only")):
        preset.add_argument(f"--{name}", dest="preset", action="store_const", const=name,
                            help=text)
    add("-O", "--output-dir", required=True,
        help="folder of the study: data/, structures/, runs/, classic/, results/, "
             "commands.sh, steps.csv")
    add("-i", "--image-dir", default="samples",
        help="folder of the ERP images: the test images if there is a training folder, else "
             "split by step 1")
    add("--train-image-dir", nargs="+", default=None,
        help="folders of the training images (default: the preset's: samples/planets for "
             "--tiny and --small, samples/planets and samples/photos for --medium, none for "
             "--paper); several are linked into <out>/train_images; 'none': split -i instead")
    add("-e", "--image-ext", default="jpg", help="extension of the ERP images")
    add("--methods", nargs="+", choices=list(METHODS), default=None, metavar="METHOD",
        help=f"the curves of the study, among {' '.join(METHODS)} (default: the preset's: "
             "all of them; --medium: oslo_fp oslo_sh oslo_sh_sphere deepsphere_sh erp_fp "
             "erp_sh and the classic codecs (the other codings of issue 13 are "
             "experiments/seam_study.py's); --paper: all but the sphere-border ones, whose "
             "training on whole resolution-10 maps does not fit a GPU)")
    add("--anchor", default="erp_sh", choices=list(METHODS), metavar="METHOD",
        help="the curve the BD-rates are measured against, one of those of --methods")
    add("--epochs", type=int, default=None,
        help="training epochs of every learned model (default: the preset's)")
    add("--finetune-epochs", type=int, default=None, metavar="E",
        help="train a base model per method and seed at the highest lambda for --epochs, then "
             "fine-tune every point from it for E epochs (--init-from of the training scripts, "
             "learning rate 5e-4, the same schedule); 0: every point from scratch (default: the "
             "preset's: 25 for --medium, 0 for the others)")
    add("--lr-schedule", choices=("plateau", "step", "cosine"), default=None,
        help="learning-rate schedule (--lr-schedule) of every learned model (default: the "
             "preset's: cosine for --medium, plateau for the others)")
    add("--seeds", type=int, nargs="+", default=None,
        help="train every learned point once per seed (--seed of its training); with several, "
             "the run folders get a _seed<s> suffix and the report gives the BD values per "
             "seed, their mean and range, and those of the mean curves (default: the preset's: "
             "0 1 for --medium, where DeepSphere and the sphere-border OSLO take the first "
             "only; 0 for the others)")
    add("-s", "--sphere-points", default=None,
        help="S-PSNR's sphere points (default: the preset's, generated if missing)")
    add("--results", default="results", metavar="NAME",
        help="folder of the report inside -O (another name keeps the report of another "
             "selection of --methods, e.g. experiments/seam_study.py's)")
    add("--report-only", action="store_true",
        help="only write the report from the RD files already there (after commands.sh)")
    add("-j", "--jobs", type=int, default=None,
        help="run this many trainings (with their evaluations) at a time, each in its own "
             "process with 1/jobs of this process's torch threads; 1: every step in this process "
             "(default: the preset's: 2 for --medium, 1 for the others)")
    add("--dry-run", action="store_true", help="only write commands.sh")
    return parser


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parse ``argv`` and run the study (:func:`experiments.rd.study.run_study`); returns its
    BD rows."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_study(**vars(args))


if __name__ == "__main__":
    run_main(main)
