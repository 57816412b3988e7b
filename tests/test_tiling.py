"""Whole-sphere coding tile by tile: region graphs against healpy, tiled g_a / g_s equal to
the untiled ones, strings of a trained checkpoint, refusals."""

from pathlib import Path

import healpy
import numpy as np
import pytest
import torch

from spherical_models.cli import check_arguments
from spherical_models.coding import codec
from spherical_models.coding.maps import (
    analyse_tiled,
    compress_map,
    decompress_map,
    synthesise_tiled,
    to_input,
    to_uint8,
)
from spherical_models.entropy.streams import LatentDecoder
from spherical_models.geometry import SphereGeometry
from spherical_models.models.base import Y_LEVEL
from spherical_models.models.registry import model_from_config
from spherical_models.models.tiling import (
    TilePlan,
    check_tile_res,
    coarse_geometry,
    dilate,
    halo_rings,
    region_graph,
)
from utils.errors import OsloError
from utils.healpix import all_neighbours

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHECKPOINTS = Path(__file__).parent / "data" / "checkpoints"


def _corner_pixels(res: int) -> np.ndarray:
    """The 24 pixels with a missing neighbour (the 8 three-face corners)."""
    return np.flatnonzero((all_neighbours(res) < 0).any(axis=1))


@pytest.mark.parametrize("num_hops", [1, 2])
def test_region_graph_maps_back_to_the_sphere(num_hops):
    res, nside = 4, 16
    rng = np.random.default_rng(num_hops)
    corners = _corner_pixels(res)
    assert len(corners) == 24
    for trial in range(4):
        seeds = rng.choice(12 * 4**res, 6, replace=False)
        pixels = dilate(res, np.concatenate([seeds, corners[trial::4]]), 1 + trial % 2)
        graph = region_graph(res, pixels, num_hops)
        assert not graph.supports_face_path
        index, weight = graph.index.numpy(), graph.weight[0].numpy()
        inside = weight > 0
        local = np.where(inside, index, -1)
        # one-hop columns against healpy (SW, W, NW, N, NE, E, SE, S)
        expected = healpy.get_all_neighbours(nside, pixels, nest=True).T
        if num_hops == 2:
            expected = np.concatenate([expected, all_neighbours(res, pixels, 2)[:, 8:]], axis=1)
        in_region = np.isin(expected, pixels) & (expected >= 0)
        np.testing.assert_array_equal(inside, in_region)
        np.testing.assert_array_equal(pixels[local[inside]], expected[inside])
        rows = np.broadcast_to(np.arange(len(pixels))[:, None], index.shape)
        np.testing.assert_array_equal(index[~inside], rows[~inside])
        assert (expected[np.isin(pixels, corners)] < 0).any()


def test_dilate_and_tiles():
    res = 3
    ring = dilate(res, np.array([100]), 1)
    assert set(ring) == {100, *healpy.get_all_neighbours(8, 100, nest=True)}
    plan = TilePlan(7, 6, 2, 1)
    assert plan.num_tiles == 48 and plan.coarse_per_tile == 16
    coarse, first = plan.region(5)
    np.testing.assert_array_equal(coarse[first : first + 16], np.arange(80, 96))
    assert check_tile_res(None, 8) is None and check_tile_res(8, 8) is None
    assert check_tile_res(-1, 8) is None and check_tile_res(5, 8) == 5
    with pytest.raises(OsloError, match="below 4"):
        check_tile_res(3, 8)


MODELS = {
    "factorized": dict(model="SphereFactorizedPrior"),
    "scale": dict(model="SphereScaleHyperprior"),
    "scale_single_conv": dict(model="SphereScaleHyperprior", single_conv=True),
    "scale_attention": dict(model="SphereScaleHyperprior", attention=True),
    "mean_scale": dict(model="SphereMeanScaleHyperprior"),
    "joint": dict(model="SphereMeanScaleHyperprior", context_model="full"),
}


def _tiles_to_check(res: int, tile_res: int) -> list[int]:
    """Tile 0, a tile holding a three-face corner, and a tile in the middle of a face."""
    corner = int(_corner_pixels(res)[5]) // 4**tile_res
    return sorted({0, corner, 12 * 4 ** (res - tile_res) // 2 + 1})


@pytest.mark.parametrize("name", list(MODELS))
def test_tiles_equal_the_whole_sphere(name):
    """Per tile, g_a and g_s of the region (gather path) equal the whole sphere's (face and
    gather paths) at the tile's pixels."""
    res, tile_res = 7, 5
    torch.manual_seed(0)
    model = model_from_config({**MODELS[name], "N": 8, "M": 12}).eval()
    geometry = SphereGeometry.build(res, -1, model.num_levels, num_hops=model.graph_hops)
    hp_map = np.random.default_rng(0).integers(0, 256, (12 * 4**res, 3), dtype=np.uint8)
    with torch.no_grad():
        references = {}
        for path in ("face", "gather"):
            model.set_conv_path(path)
            y = model.g_a(to_input(hp_map[None], torch.device("cpu")), geometry)
            references[path] = (y, model.g_s(y, geometry))
        model.set_conv_path("auto")
        y = references["face"][0]
        for tile in _tiles_to_check(res, tile_res):
            for transform, check in ((model.g_a, "g_a"), (model.g_s, "g_s")):
                plan = TilePlan(res, tile_res, halo_rings(transform), model.graph_hops)
                coarse, first = plan.region(tile)
                region = plan.geometry(coarse)
                if check == "g_a":
                    pixels = (coarse[:, None] * 4**Y_LEVEL + np.arange(4**Y_LEVEL)).ravel()
                    out = model.g_a(to_input(hp_map[pixels][None], torch.device("cpu")), region)
                    got = out[0, first : first + plan.coarse_per_tile]
                    rows = slice(tile * plan.coarse_per_tile, (tile + 1) * plan.coarse_per_tile)
                    for ref_y, _ in references.values():
                        assert (got - ref_y[0, rows]).abs().max() < 1e-4, (name, tile)
                else:
                    out = model.g_s(y[:, torch.from_numpy(coarse)], region)
                    start = first * 4**Y_LEVEL
                    got = out[0, start : start + 4**tile_res]
                    rows = slice(tile * 4**tile_res, (tile + 1) * 4**tile_res)
                    for _, ref_x in references.values():
                        assert (got - ref_x[0, rows]).abs().max() < 1e-4, (name, tile)


def test_tiled_functions_cover_the_sphere():
    """analyse_tiled / synthesise_tiled over every tile, against the whole sphere."""
    res, tile_res = 6, 5
    torch.manual_seed(1)
    model = model_from_config({"model": "SphereScaleHyperprior", "N": 8, "M": 12}).eval()
    geometry = SphereGeometry.build(res, -1, model.num_levels)
    hp_map = np.random.default_rng(1).integers(0, 256, (12 * 4**res, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    with torch.no_grad():
        y = model.g_a(to_input(hp_map[None], cpu), geometry)
        expected = to_uint8(model.reconstruct(y, geometry))[0]
    coarse = coarse_geometry(model, res)
    y_tiled = analyse_tiled(model, coarse, hp_map, tile_res, cpu)
    assert (y_tiled - y).abs().max() < 1e-4
    decoded = synthesise_tiled(model, coarse, y, res, tile_res)
    assert np.abs(decoded.astype(int) - expected).max() <= 1


def _sample_map(res: int) -> np.ndarray:
    from utils.io import load_image
    from utils.sampling import erp_to_healpix
    samples = Path(__file__).parent.parent / "samples"
    return erp_to_healpix(load_image(sorted(samples.glob("*.jpg"))[0]), res)


@pytest.mark.parametrize("checkpoint, res", [("scale_hyperprior", 8), ("joint_context", 7)])
def test_strings_equal_the_untiled_ones(checkpoint, res):
    tile_res = res - 1
    loaded = codec.load_codec(CHECKPOINTS / f"{checkpoint}.pth.tar")
    model = loaded.model
    loaded.set_mode(None, 256)
    hp_map = _sample_map(res)
    cpu = torch.device("cpu")
    whole = loaded.geometry(res, -1)
    coarse = loaded.geometry(res, -1, tiled=True)
    untiled = compress_map(model, whole, hp_map, -1, 1, cpu)
    tiled = compress_map(model, coarse, hp_map, -1, 1, cpu, tile_res)
    if tiled.strings != untiled.strings:
        # only symbols of y within 1e-4 of a rounding boundary may differ
        with torch.no_grad():
            y = model.g_a(to_input(hp_map[None], cpu), whole)
        y_hats = [model.code_latents(LatentDecoder(c.strings, c.checksums,
                                                   model.latent_symbols(whole)),
                                     None, whole, None, 1) for c in (untiled, tiled)]
        differ = (y_hats[0] != y_hats[1])
        assert checkpoint == "scale_hyperprior", "context models: a change propagates"
        near = ((y - y.floor() - 0.5).abs() < 1e-4)
        assert bool(near[differ].all())
    decoded = decompress_map(model, whole, untiled, cpu)
    decoded_tiled = decompress_map(model, coarse, untiled, cpu, tile_res)
    diff = np.abs(decoded.astype(int) - decoded_tiled)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_refusals(tmp_path):
    loaded = codec.load_codec(CHECKPOINTS / "scale_hyperprior.pth.tar")
    hp_map = np.zeros((12 * 4**6, 3), dtype=np.uint8)
    with pytest.raises(OsloError, match="below 4"):
        codec.encode_map(loaded, hp_map, -1, tile_res=3)
    cheb = model_from_config({"model": "SphereScaleHyperprior", "N": 4, "M": 4,
                              "conv": "ChebConv"})
    with pytest.raises(OsloError, match="ChebConv"):
        analyse_tiled(cheb, coarse_geometry(cheb, 6), hp_map, 5, torch.device("cpu"))
    gaussian = coarse_geometry(loaded.model, 6, "gaussian")
    with pytest.raises(OsloError, match="identity"):
        compress_map(loaded.model, gaussian, hp_map, -1, 1, torch.device("cpu"), 5)
    from main_sphere_compression import build_parser
    args = build_parser().parse_args(["-t", "x.txt", "--checkpoint-file", "c", "-nd", "d",
                                      "-o", str(tmp_path), "--tile-res", "2"])
    with pytest.raises(OsloError, match="--tile-res"):
        check_arguments(args)
