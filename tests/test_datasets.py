"""Data sets of HEALPix maps: list checks, memory-mapped patches, balanced and sharded samplers."""

import healpy
import numpy as np
import pytest
import torch

from utils.datasets import (
    AllPatchesSampler,
    BalancedPatchSampler,
    MapPatches,
    patch_regions,
    read_map_list,
    shard,
)
from utils.errors import OsloError
from utils.io import write_list


def write_maps(folder, res, count, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    files = []
    for i in range(count):
        path = folder / f"healpix_sampling_res_{res}_m{i}.npy"
        np.save(path, rng.integers(0, 256, (12 * 4**res, 3), dtype=np.uint8))
        files.append(path)
    return files


def test_read_map_list_accepts_good_maps(tmp_path):
    files = write_maps(tmp_path, 3, 2)
    write_list(tmp_path / "l.txt", files)
    assert [p.resolve() for p in read_map_list(tmp_path / "l.txt", 3)] == files


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((12 * 4**2, 3), np.uint8), "HEALPix resolution 2, not the -hr/--healpix-res 3"),
        (np.zeros((100, 3), np.uint8), "not a HEALPix map"),
        (np.zeros(12 * 4**3, np.uint8), "expected \\[npix, 3\\]"),
        (np.zeros((12 * 4**3, 3), np.float32), "expected uint8"),
    ],
)
def test_read_map_list_refuses_bad_maps(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    (tmp_path / "l.txt").write_text("bad.npy\n")
    with pytest.raises(OsloError, match=message):
        read_map_list(tmp_path / "l.txt", 3)


def test_read_map_list_names_the_missing_map_and_refuses_an_empty_list(tmp_path):
    (tmp_path / "l.txt").write_text("gone.npy\n")
    with pytest.raises(OsloError, match=r"names a missing map '.*gone\.npy'"):
        read_map_list(tmp_path / "l.txt", 3)
    (tmp_path / "e.txt").write_text("# nothing\n")
    with pytest.raises(OsloError, match="names no map"):
        read_map_list(tmp_path / "e.txt", 3)


@pytest.mark.parametrize("hr,pr", [(3, 1), (4, 4), (5, 2)])
def test_patch_regions_follow_the_base_faces_of_healpy(hr, pr):
    regions = patch_regions(hr, pr)
    first_pixels = np.arange(len(regions)) * 4**pr
    _, _, face = healpy.pix2xyf(2**hr, first_pixels, nest=True)
    np.testing.assert_array_equal(regions, face // 4)
    z = np.cos(healpy.pix2ang(2**hr, first_pixels + 4**pr // 2, nest=True)[0])
    assert np.all(z[regions == 0] > 0) and np.all(z[regions == 2] < 0)


def test_map_patches_reads_the_patch_slice(tmp_path):
    files = write_maps(tmp_path, 3, 2)
    data = MapPatches(files, 3, 1)
    assert len(data) == 2 * 12 * 4**2 and data.patch_pixels == 4
    x, patch = data[(1, 37)]
    expected = np.load(files[1])[37 * 4 : 38 * 4].astype(np.float32) / 255
    assert patch == 37 and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), expected)
    whole, patch = MapPatches(files, 3, -1)[(0, 5)]
    assert patch == -1 and whole.shape == (12 * 64, 3)


@pytest.mark.parametrize("count", [1, 3, 7, 12])
def test_balanced_sampler_draws_each_region_equally(count):
    sampler = BalancedPatchSampler(5, 6, 3, count, seed=3)
    sampler.set_epoch(2)
    pairs = sampler.samples()
    assert len(pairs) == len(sampler) == 5 * count
    regions = patch_regions(6, 3)
    for image in range(5):
        patches = pairs[pairs[:, 0] == image, 1]
        assert len(np.unique(patches)) == count  # distinct patches
        per_region = np.bincount(regions[patches], minlength=3)
        assert per_region.max() - per_region.min() <= 1
        assert per_region.sum() == count
    over_images = np.bincount(regions[pairs[:, 1]], minlength=3)
    if count % 3 == 0:
        assert np.all(over_images == 5 * count // 3)


def test_balanced_sampler_is_seeded_by_seed_and_epoch_and_resumes():
    a = BalancedPatchSampler(4, 5, 3, 6, seed=1)
    b = BalancedPatchSampler(4, 5, 3, 6, seed=1)
    a.set_epoch(1)
    b.set_epoch(1)
    np.testing.assert_array_equal(a.samples(), b.samples())
    b.set_epoch(2)
    assert not np.array_equal(a.samples(), b.samples())
    a.set_start(5)
    assert list(a) == [tuple(p) for p in _epoch_samples(1)[5:]]
    assert len(a) == 24 - 5


def _epoch_samples(epoch):
    s = BalancedPatchSampler(4, 5, 3, 6, seed=1)
    s.set_epoch(epoch)
    return s.samples().tolist()


def test_shards_give_every_process_the_same_count_and_cover_all_images():
    shards = [BalancedPatchSampler(5, 4, 2, 3, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [list(s.images) for s in shards] == [[0, 2, 4], [1, 3, 0]]
    assert len(shards[0]) == len(shards[1]) == 9
    np.testing.assert_array_equal(shard(5, 1, 2, pad=False), [1, 3])


def test_whole_sphere_training_yields_each_map_once():
    sampler = BalancedPatchSampler(3, 4, -1, 5, seed=0)
    pairs = sampler.samples()
    assert sorted(pairs[:, 0].tolist()) == [0, 1, 2] and np.all(pairs[:, 1] == -1)


def test_all_patches_sampler_covers_every_patch_once_across_processes():
    pairs = [p for r in range(3) for p in AllPatchesSampler(2, 48, r, 3)]
    assert sorted(pairs) == [(i, k) for i in range(2) for k in range(48)]
    assert list(AllPatchesSampler(2, 1)) == [(0, -1), (1, -1)]


def test_loader_workers_read_the_same_batches(tmp_path):
    files = write_maps(tmp_path, 3, 2)
    sampler = BalancedPatchSampler(2, 3, 1, 6, seed=0)
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(MapPatches(files, 3, 1), batch_size=4,
                                             sampler=sampler, num_workers=workers)
        batches.append([(x.clone(), ids.clone()) for x, ids in loader])
    for (x0, i0), (x2, i2) in zip(*batches, strict=True):
        assert torch.equal(x0, x2) and torch.equal(i0, i2)
