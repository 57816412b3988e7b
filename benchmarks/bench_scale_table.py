"""Cost of the scale table of ``y`` against its size L: bits beyond the likelihoods, CDF memory
and ``update()`` time, to choose the default L of new models.

The Gaussian conditional codes each element of ``y`` with the CDF of the first scale-table
entry at or above its predicted scale (``exp(linspace(log 0.11, log 256, L))``, CompressAI's
L = 64): a wider distribution than the model's, which costs bits that the likelihoods do not
count. For each checkpoint with a Gaussian conditional (default: tests/data/checkpoints/*,
the factorized prior left out) and each L (``--levels``), on the 4 bundled images
samples/*.jpg sampled at resolution ``-r`` 7, patches of resolution ``-p`` 6, batches of 12:

* theoretical bits of ``y`` and ``z``: ``ceil(sum -log2 likelihoods)`` of the model's forward
  pass in evaluation mode, batch after batch over the patches;
* table-rounded bits of ``y``: ``sum -log2`` of the likelihood of each coded symbol under the
  table scale that codes it (``GaussianConditional._likelihood`` on ``scale_table[indexes]``,
  lower-bounded like the forward pass), recorded while coding;
* actual bits of ``y`` and ``z``: 8 x the bytes of
  :func:`~spherical_models.coding.maps.compress_map`'s strings (one rANS string per latent and
  image), deterministic mode on (off for a context model, which does not support it).

Printed per checkpoint and L, summed over the images: ``y`` bits per pixel, the overhead of
``y`` actual over theoretical (``y ovh%``) and its three factors: the table rounding
(``table%``: table-rounded / theoretical), the 16-bit quantisation of the CDFs (``cdf%``: the
cost under the quantised tables, escapes included, / table-rounded; negative where the model
gives symbols less than 2**-16, which the tables floor at 2**-16) and the rANS flush (``flush%``:
actual / that cost, ~8-11 bytes a string); the overhead of ``z``; the CDF memory of the
Gaussian conditional (KiB of ``_quantized_cdf``, and the total of the cut tables,
``sum(_cdf_length)`` entries) and the median of 3 ``model.update(force=True)``, deterministic
and float32. Then the worst overheads per L over the checkpoints, and last line
``recommended_levels=<L>``: the smallest L whose ``y`` overhead is under ``--target`` percent
on every checkpoint (``table_only=<L>``: the same for the table rounding alone, which the CDF
floor cannot offset).

``--train-lambdas 0.002 0.03`` first trains scale-hyperprior checkpoints at these lambdas with
tests/data/make_checkpoints.py's settings (about 2 minutes each on 2 cores; kept in
``--train-out`` and reused) and adds them to the checkpoints, for a spread of rates.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import Tensor

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "tests" / "data" / "checkpoints"
SAMPLES = REPO / "samples"


def make_checkpoints_module():
    """tests/data/make_checkpoints.py as a module (its settings)."""
    spec = importlib.util.spec_from_file_location(
        "make_checkpoints", REPO / "tests" / "data" / "make_checkpoints.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_lambdas(lambdas: list[float], out: Path, epochs: int) -> list[Path]:
    """Scale-hyperprior checkpoints at ``lambdas`` with make_checkpoints.py's data, structures
    and flags but ``--lambda``; those already in ``out`` are reused."""
    mc = make_checkpoints_module()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"scale_hyperprior_lambda{lmbda:g}.pth.tar" for lmbda in lambdas]
    todo = [(lmbda, path) for lmbda, path in zip(lambdas, paths, strict=True)
            if not path.is_file()]
    if not todo:
        return paths

    def run(*command: str) -> None:
        subprocess.run([sys.executable, *command], cwd=REPO, check=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "maps"
        run("generate_healpix_samples_and_split_to_train_and_test.py", "-i", "samples/planets",
            "-e", "jpg", "-r", str(mc.HEALPIX_RES), "-s", "-o", str(data), "-t", "1", "-v", "0",
            "--workers", "2")
        for level in range(mc.PATCH_RES + 1):
            run("generate_and_save_healpix_oslo_struct.py", "-o", str(work / "structures"),
                "-hr", str(mc.HEALPIX_RES - level), "-pr", str(mc.PATCH_RES - level))
        for lmbda, path in todo:
            start = time.perf_counter()
            folder = work / path.name.removesuffix(".pth.tar")
            run("main_sphere_compression.py", *mc.CHECKPOINTS["scale_hyperprior"], "-nd",
                str(work / "structures"), "-o", str(folder), "-hr", str(mc.HEALPIX_RES),
                "-prt", str(mc.PATCH_RES), "--channels", "16", "24", "--lambda", str(lmbda),
                "-lr", "1e-3", "-i", str(data / "train.txt"), "-e", str(epochs), "-np", "6",
                "-bst", "8", "--seed", "0", "--dataloader-num-workers", "0", "--no-progress",
                "--print-freq", "0", "--checkpoint-interval", str(epochs))
            checkpoint = torch.load(folder / "final.pth.tar", map_location="cpu",
                                    weights_only=True)
            torch.save({key: checkpoint[key] for key in mc.KEPT if key in checkpoint}, path)
            print(f"trained lambda {lmbda:g}: {epochs} epochs in "
                  f"{time.perf_counter() - start:.0f} s -> {path}", flush=True)
    return paths


def default_checkpoints() -> list[Path]:
    return sorted(CHECKPOINTS.glob("*.pth.tar"))


def escape_bits(raw: Tensor) -> Tensor:
    """Bypass bits of CompressAI's rANS for escaped values ``raw`` (``-2v - 1`` below the
    table, ``2(v - max)`` above): 4-bit chunks of the value, and their count in 4-bit chunks
    of at most 15."""
    chunks = torch.zeros_like(raw)
    rest = raw.clone()
    while bool((rest > 0).any()):
        chunks += (rest > 0).long()
        rest >>= 4
    return 4 * (chunks + chunks // 15 + 1)


def recording_encoder(log: dict[str, float]):
    """A :class:`~spherical_models.entropy.streams.LatentEncoder` class that also adds up, for
    the ``y`` symbols it codes, ``-log2`` of their likelihood under the table scale that codes
    them (``log["table"]``) and their cost under the 16-bit quantised CDFs, escapes included
    (``log["cdf"]``: what rANS writes, less its flush)."""
    from spherical_models.entropy.streams import LatentEncoder

    class RecordingEncoder(LatentEncoder):
        def code(self, name, entropy_model, values, indexes, means=None):
            if name == "y":
                gc = entropy_model
                symbols = gc.quantize(values, "symbols", means).cpu().reshape(-1).long()
                index = indexes.cpu().reshape(-1).long()
                scales = gc.scale_table.cpu().to(torch.float64)[index]
                likelihood = gc._likelihood(symbols.to(torch.float64), scales)
                if gc.use_likelihood_bound:
                    likelihood = likelihood.clamp_min(float(gc.likelihood_lower_bound.bound))
                log["table"] = log.get("table", 0.0) - float(torch.log2(likelihood).sum())
                cdf = gc._quantized_cdf.cpu().long()
                value = symbols - gc._offset.cpu().long()[index]
                top = gc._cdf_length.cpu().long()[index] - 2
                escaped = (value < 0) | (value >= top)
                coded = torch.where(escaped, top, value)
                counts = cdf[index, coded + 1] - cdf[index, coded]
                bits = -torch.log2(counts.to(torch.float64) / 65536).sum()
                raw = torch.where(value < 0, -2 * value - 1, 2 * (value - top))[escaped]
                log["cdf"] = (log.get("cdf", 0.0) + float(bits)
                              + float(escape_bits(raw).sum()))
            return super().code(name, entropy_model, values, indexes, means)

    return RecordingEncoder


@torch.no_grad()
def theoretical_bits(model, geometry, hp_map, patch_res, batch, device) -> dict[str, int]:
    """``ceil(sum -log2 likelihoods)`` of each latent, forward pass in evaluation mode."""
    from spherical_models.coding.maps import map_batches, to_input

    totals: dict[str, float] = {}
    for _, values, patch_ids in map_batches(hp_map, patch_res, batch):
        ids = None if patch_ids is None else torch.from_numpy(patch_ids).to(device)
        out = model(to_input(values, device), geometry, ids)
        for name, likelihoods in out["likelihoods"].items():
            bits = -torch.log2(likelihoods.to(torch.float64)).sum()
            totals[name] = totals.get(name, 0.0) + float(bits)
    return {name: math.ceil(bits) for name, bits in totals.items()}


def update_seconds(codec, deterministic: bool, levels: int, repeats: int = 3) -> float:
    """Median of ``repeats`` ``model.update(force=True)`` with ``levels`` table entries."""
    codec.set_mode(deterministic, levels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        codec.model.update(force=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(path: Path, maps: list[np.ndarray], args) -> list[dict] | None:
    """The rows of one checkpoint (one per L), or :obj:`None` without a Gaussian conditional."""
    from spherical_models.coding import maps as map_coding
    from spherical_models.coding.codec import load_codec

    codec = load_codec(path)
    model = codec.model
    if not hasattr(model, "gaussian_conditional"):
        return None
    device = codec.device
    deterministic = model.supports_deterministic
    geometry = codec.geometry(args.healpix_res, args.patch_res)
    theory = {"y": 0, "z": 0}
    for hp_map in maps:
        for name, bits in theoretical_bits(model, geometry, hp_map, args.patch_res,
                                           args.batch, device).items():
            theory[name] += bits
    rows = []
    for levels in args.levels:
        codec.set_mode(deterministic, levels)
        actual = {"y": 0, "z": 0}
        log: dict[str, float] = {}
        with mock.patch.object(map_coding, "LatentEncoder", recording_encoder(log)):
            for hp_map in maps:
                coded = map_coding.compress_map(model, geometry, hp_map, args.patch_res,
                                                args.batch, device)
                for name, string in coded.strings.items():
                    actual[name] += 8 * len(string)
        gc = model.gaussian_conditional
        rows.append({
            "checkpoint": path.name.removesuffix(".pth.tar"),
            "lambda": float(codec.config.get("lambda", 0.0)),
            "levels": levels,
            "deterministic": deterministic,
            "theory_y": theory["y"], "table_y": math.ceil(log["table"]),
            "cdf_y": math.ceil(log["cdf"]), "actual_y": actual["y"],
            "theory_z": theory["z"], "actual_z": actual["z"],
            "cdf_bytes": gc._quantized_cdf.numel() * gc._quantized_cdf.element_size(),
            "cdf_entries": int(gc._cdf_length.sum()),
            "update_det": update_seconds(codec, True, levels) if deterministic else math.nan,
            "update_fp32": update_seconds(codec, False, levels),
        })
    return rows


def percent(numerator: float, denominator: float) -> float:
    return 100 * (numerator / denominator - 1) if denominator else math.nan


def main() -> None:
    from spherical_models.coding.codec import read_input

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", type=Path, default=[],
                        help="checkpoints; none: every tests/data/checkpoints/*.pth.tar with a "
                             "Gaussian conditional")
    parser.add_argument("--levels", type=int, nargs="+", default=[64, 128, 256, 1024],
                        help="scale table sizes L")
    parser.add_argument("-r", "--healpix-res", type=int, default=7, help="map resolution")
    parser.add_argument("-p", "--patch-res", type=int, default=6, help="patch resolution")
    parser.add_argument("--batch", type=int, default=12, help="patches per batch")
    parser.add_argument("--target", type=float, default=1.0,
                        help="largest y overhead (%%) of the recommended L")
    parser.add_argument("--train-lambdas", type=float, nargs="*", default=[],
                        help="also train scale-hyperprior checkpoints at these lambdas")
    parser.add_argument("--train-out", type=Path, default=Path("/tmp/bench_scale_table"),
                        help="folder of the trained checkpoints (reused when present)")
    parser.add_argument("--train-epochs", type=int, default=30,
                        help="epochs of the trained checkpoints (make_checkpoints.py's)")
    args = parser.parse_args()

    checkpoints = list(args.checkpoints) or default_checkpoints()
    if args.train_lambdas:
        checkpoints += train_lambdas(args.train_lambdas, args.train_out, args.train_epochs)
    if not checkpoints:
        parser.error(f"no checkpoint given and none in {CHECKPOINTS}")
    images = sorted(SAMPLES.glob("*.jpg"))
    maps = [read_input(image, args.healpix_res)[0] for image in images]
    pixels = sum(len(m) for m in maps)

    rows = []
    for path in checkpoints:
        start = time.perf_counter()
        measured = measure(path, maps, args)
        if measured is None:
            print(f"{path.name}: no Gaussian conditional, skipped", flush=True)
            continue
        rows += measured
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)

    print(f"\n{len(images)} images at resolution {args.healpix_res} ({pixels} pixels), patch "
          f"resolution {args.patch_res}, batches of {args.batch}, "
          f"{torch.get_num_threads()} threads; y and z bits summed over the images; "
          f"overheads in % of the theoretical bits")
    header = (f"{'checkpoint':30s}{'lambda':>7s}{'L':>6s}{'y bpp':>8s}{'y theory':>9s}"
              f"{'y table':>9s}{'y cdf':>9s}{'y actual':>9s}{'y ovh%':>8s}{'table%':>8s}"
              f"{'cdf%':>8s}{'flush%':>7s}{'z ovh%':>7s}{'cdf KiB':>8s}{'entries':>8s}"
              f"{'upd det':>9s}{'upd fp32':>9s}")
    print(header)
    print("-" * len(header))
    for row in rows:
        name = row["checkpoint"] + ("" if row["deterministic"] else " (fp32)")
        print(f"{name:30s}{row['lambda']:7.3f}{row['levels']:6d}"
              f"{row['actual_y'] / pixels:8.4f}{row['theory_y']:9d}{row['table_y']:9d}"
              f"{row['cdf_y']:9d}{row['actual_y']:9d}"
              f"{percent(row['actual_y'], row['theory_y']):8.3f}"
              f"{percent(row['table_y'], row['theory_y']):8.3f}"
              f"{percent(row['cdf_y'], row['table_y']):8.3f}"
              f"{percent(row['actual_y'], row['cdf_y']):7.3f}"
              f"{percent(row['actual_z'], row['theory_z']):7.3f}"
              f"{row['cdf_bytes'] / 1024:8.0f}{row['cdf_entries']:8d}"
              f"{row['update_det'] * 1e3:7.0f}ms{row['update_fp32'] * 1e3:7.0f}ms")

    worst: dict[int, list[float]] = {}
    for row in rows:
        overheads = (percent(row["actual_y"], row["theory_y"]),
                     percent(row["table_y"], row["theory_y"]))
        previous = worst.get(row["levels"], [-math.inf, -math.inf])
        worst[row["levels"]] = [max(a, b) for a, b in zip(previous, overheads, strict=True)]
    print("worst over the checkpoints (y ovh% / table%): "
          + ", ".join(f"L={levels}: {worst[levels][0]:.3f} / {worst[levels][1]:.3f}"
                      for levels in sorted(worst)))
    chosen = [next((str(levels) for levels in sorted(worst) if worst[levels][k] < args.target),
                   "none") for k in (0, 1)]
    print(f"recommended_levels={chosen[0]} table_only={chosen[1]}")

if __name__ == "__main__":
    main()
