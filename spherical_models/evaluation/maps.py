"""Evaluating a trained codec on HEALPix maps with real bitstreams (step 4).

For each map: :func:`~spherical_models.coding.maps.compress_map` then
:func:`~spherical_models.coding.maps.decompress_map` (its patches, or the whole sphere, into one
rANS string per latent, exactly the payload of an ``.oslo`` file), the reconstruction
``round(x_hat * 255)`` saved as ``uint8`` ``[npix, 3]``, its grayscale Mollweide view, and the
rates, written in the evaluation folder as :mod:`spherical_models.evaluation.results` describes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spherical_models.coding.maps import (
    analyse_tiled,
    compress_map,
    decompress_map,
    map_batches,
    to_input,
)
from spherical_models.evaluation.results import (
    ImageResult,
    mollweide_width,
    rates_text,
    read_previous_results,
    reconstruction_stem,
    results_csv,
    tensor_bits,
)
from spherical_models.models.tiling import check_tile_res
from spherical_models.training.distributed import Distributed, gather_objects, synchronize
from utils.cli import get_logger
from utils.datasets import shard
from utils.healpix import res_of_npix
from utils.io import load_map, save_npy, write_text
from utils.metrics import pixel_psnr
from utils.visualization import save_mollweide


@torch.no_grad()
def code_map(
    model: nn.Module,
    geometry: nn.Module,
    hp_map: np.ndarray,
    patch_res: int,
    batch_size: int,
    device: torch.device,
    tile_res: int | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Code a map into one string per latent and decode it
    (:func:`~spherical_models.coding.maps.compress_map`, then
    :func:`~spherical_models.coding.maps.decompress_map`, which checks every latent's CRC-32
    against the encoder's: the decoded latents are the encoder's, or
    :class:`~spherical_models.entropy.streams.LatentMismatchError` is raised).

    The model must be in evaluation mode with its entropy models updated (``model.update()``).

    Args:
        model: a :class:`~spherical_models.models.SphereCompressionModel`.
        geometry: its :class:`~spherical_models.geometry.SphereGeometry` at ``patch_res``.
        hp_map: ``uint8`` ``[npix, 3]`` NESTED.
        patch_res: patch resolution, negative for the whole sphere.
        batch_size: patches per batch.
        device: where the model runs.
        tile_res: on the whole sphere, run ``g_a`` and ``g_s`` by tiles of this resolution
            (:mod:`spherical_models.models.tiling`; the theoretical bits then come from the tiled
            ``y``); :obj:`None`: at once.

    Returns:
        ``(reconstruction, stats)``: ``uint8`` ``[npix, 3]``, and ``theoretical_bits`` (of the
        forward pass's likelihoods), ``actual_bits`` (8 x the bytes of the strings),
        ``encode_seconds``, ``decode_seconds``.
    """
    latent_bits: dict[str, float] = {}
    tile_res = None if patch_res >= 0 else check_tile_res(tile_res, res_of_npix(len(hp_map)))
    if tile_res is not None:
        y = analyse_tiled(model, geometry, hp_map, tile_res, device)
        latent_bits = {name: tensor_bits(likelihoods)
                       for name, likelihoods in model.latent_forward(y, geometry)[1].items()}
    batches = map_batches(hp_map, patch_res, batch_size) if tile_res is None else ()
    for _, values, patch_ids in batches:
        ids = None if patch_ids is None else torch.from_numpy(patch_ids).to(device)
        for name, likelihoods in model(to_input(values, device), geometry, ids)[
            "likelihoods"
        ].items():
            latent_bits[name] = latent_bits.get(name, 0.0) + tensor_bits(likelihoods)
    synchronize(device)
    start = time.perf_counter()
    coded = compress_map(model, geometry, hp_map, patch_res, batch_size, device, tile_res)
    synchronize(device)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reconstruction = decompress_map(model, geometry, coded, device, tile_res)
    synchronize(device)
    decode_seconds = time.perf_counter() - start
    stats = {
        "theoretical_bits": int(sum(math.ceil(bits) for bits in latent_bits.values())),
        "actual_bits": 8 * coded.num_bytes,
        "encode_seconds": encode_seconds,
        "decode_seconds": decode_seconds,
    }
    return reconstruction, stats


def evaluate_maps(
    model: nn.Module,
    geometry: nn.Module,
    files: Sequence[Path],
    out_folder: Path,
    patch_res: int,
    batch_size: int,
    device: torch.device,
    info: Distributed | None = None,
    png: bool = True,
    skip_tested: bool = False,
    progress: bool = True,
    tile_res: int | None = None,
) -> list[ImageResult]:
    """Code every map of ``files`` and write the outputs
    (:mod:`spherical_models.evaluation.results`) in ``out_folder``.

    With several processes, each codes its share of the maps and rank 0 writes ``rates.txt``
    and ``test_results.csv`` for all of them. With ``skip_tested``, a map whose reconstruction
    and rows already exist in ``out_folder`` is not coded again, and its rows are kept.
    ``tile_res``: whole-sphere coding tile by tile (:func:`code_map`).

    Returns:
        The results of every map, in the order of ``files``.
    """
    info = info or Distributed()
    log = get_logger()
    out_folder.mkdir(parents=True, exist_ok=True)
    previous = read_previous_results(out_folder) if skip_tested else {}
    mine = shard(len(files), info.rank, info.world_size, pad=False) if files else []
    results: dict[int, ImageResult] = {}
    bar = tqdm(list(mine), desc="evaluation", unit="map", disable=None if progress else True)
    for index in bar:
        path = files[index]
        name = Path(path).stem
        recon_path = out_folder / f"{reconstruction_stem(path)}.npy"
        hp_map = load_map(path, mmap=True)
        if name in previous and recon_path.is_file():
            log.info("%s: already tested, kept", name)
            results[index] = ImageResult(name=name, num_pixels=len(hp_map), **previous[name])
            continue
        hp_map = np.asarray(hp_map)
        reconstruction, stats = code_map(model, geometry, hp_map, patch_res, batch_size, device,
                                         tile_res)
        save_npy(recon_path, reconstruction)
        if png:
            save_mollweide(reconstruction, recon_path.with_suffix(".png"),
                           mollweide_width(res_of_npix(len(hp_map))), gray=True)
        result = ImageResult(name=name, num_pixels=len(hp_map),
                             psnr=pixel_psnr(hp_map, reconstruction), **stats)
        log.info(
            "%s: %.4f bpp (theoretical %.4f), PSNR %.2f dB, encode %.2f s, decode %.2f s",
            name, result.bpp_actual, result.bpp_theoretical, result.psnr,
            result.encode_seconds, result.decode_seconds,
        )
        results[index] = result
    gathered: dict[int, ImageResult] = {}
    for part in gather_objects({i: asdict(r) for i, r in results.items()}, info):
        gathered.update({i: ImageResult(**r) for i, r in part.items()})
    ordered = [gathered[i] for i in sorted(gathered)]
    if info.is_main and ordered:
        healpix_res = res_of_npix(ordered[0].num_pixels)
        write_text(out_folder / "rates.txt", rates_text(ordered, healpix_res))
        write_text(out_folder / "test_results.csv", results_csv(ordered))
    return ordered
