"""generate_healpix_samples_and_split_to_train_and_test.py: outputs, splits and bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generate_healpix_samples_and_split_to_train_and_test import main
from utils.dataset_split import split_files
from utils.errors import OsloError
from utils.io import read_list

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "generate_healpix_samples_and_split_to_train_and_test.py"


def run(*args):
    main([str(a) for a in args])


def outputs(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_samples_every_image_and_writes_the_three_lists(image_dir, tmp_path):
    out = tmp_path / "out"
    run("-i", image_dir, "-e", "jpg", "-r", 3, "-s", "-o", out, "-t", 0.6, "-v", 0.2)
    maps = sorted(out.glob("healpix_sampling_res_3_img*.npy"))
    assert len(maps) == 5
    hp_map = np.load(maps[0])
    assert hp_map.shape == (12 * 4**3, 3) and hp_map.dtype == np.uint8
    lists = {name: read_list(out / name) for name in ("train.txt", "validation.txt", "test.txt")}
    assert [len(v) for v in lists.values()] == [3, 1, 1]
    assert sorted(p.resolve() for v in lists.values() for p in v) == [m.resolve() for m in maps]
    # entries are relative to the list's folder: the data set can be moved
    assert all("/" not in line for line in (out / "train.txt").read_text().splitlines())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_without_s_it_only_resplits_existing_maps(image_dir, tmp_path):
    out = tmp_path / "out"
    run("-i", image_dir, "-r", 2, "-s", "-o", out, "-t", 0.6, "-v", 0.2)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    run("-r", 2, "-o", out, "-t", 0.2, "-v", 0.2, "--seed", 3)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.npy")} == stamps
    assert len(read_list(out / "train.txt")) == 1 and len(read_list(out / "test.txt")) == 3


def test_keep_existing_does_not_sample_again(image_dir, tmp_path):
    out = tmp_path / "out"
    run("-i", image_dir, "-r", 2, "-s", "-o", out)
    first = out / "healpix_sampling_res_2_img0.npy"
    stamp = first.stat().st_mtime_ns
    run("-i", image_dir, "-r", 2, "-s", "-o", out, "--keep-existing", "--workers", 2)
    assert first.stat().st_mtime_ns == stamp


def test_parallel_workers_give_the_same_maps(image_dir, tmp_path):
    run("-i", image_dir, "-r", 3, "-s", "-o", tmp_path / "a")
    run("-i", image_dir, "-r", 3, "-s", "-o", tmp_path / "b", "--workers", 2)
    for a in sorted((tmp_path / "a").glob("*.npy")):
        np.testing.assert_array_equal(np.load(a), np.load(tmp_path / "b" / a.name))


@pytest.mark.parametrize("n", [1, 4, 10, 37])
def test_splits_are_disjoint_cover_follow_ratios_and_repeat(tmp_path, n):
    files = [tmp_path / f"f{i}.npy" for i in range(n)]
    split = split_files(files, 0.7, 0.2, seed=5)
    parts = [split.train, split.validation, split.test]
    assert sorted(f for part in parts for f in part) == sorted(files)
    assert abs(len(split.train) - 0.7 * n) <= 0.5
    assert abs(len(split.validation) - 0.2 * n) <= 0.5
    assert split_files(list(reversed(files)), 0.7, 0.2, seed=5) == split
    if n >= 10:
        assert split_files(files, 0.7, 0.2, seed=6) != split


def test_non_2_to_1_image_warns_and_goes_on(tmp_path, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (50, 40), (10, 20, 30)).save(folder / "square.png")
    run("-i", folder, "-e", "png", "-r", 1, "-s", "-o", tmp_path / "out")
    assert "square.png" in caplog.text and "not 2:1" in caplog.text
    np.testing.assert_array_equal(
        np.load(tmp_path / "out" / "healpix_sampling_res_1_square.npy"), [[10, 20, 30]] * 48
    )


def test_truncated_image_fails_and_leaves_no_output(image_dir, tmp_path):
    data = (image_dir / "img3.jpg").read_bytes()
    (image_dir / "img3.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    for workers in (1, 2):
        with pytest.raises(OsloError, match=r"img3\.jpg"):
            run("-i", image_dir, "-r", 3, "-s", "-o", out, "--workers", workers)
        assert outputs(out) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["-i", "{missing}", "-r", 2, "-s"], "does not exist"),
        (["-i", "{images}", "-e", "png", "-r", 2, "-s"], "no .png image"),
        (["-i", "{images}", "-e", "gif", "-r", 2, "-s"], "gif"),
        (["-i", "{images}", "-r", 14, "-s"], "outside 0..13"),
        (["-i", "{images}", "-r", -1, "-s"], "outside 0..13"),
        (["-i", "{images}", "-r", 2, "-s", "-t", -0.1], "outside"),
        (["-i", "{images}", "-r", 2, "-s", "-t", 0.8, "-v", 0.3], "sum to"),
        (["-r", 2, "-s"], "needs -i"),
        (["-r", 2], "no healpix_sampling_res_2"),
    ],
)
def test_bad_input_gives_one_error_and_no_output(image_dir, tmp_path, args, message):
    out = tmp_path / "out"
    args = [str(a).format(missing=tmp_path / "nope", images=image_dir) for a in args]
    with pytest.raises(OsloError, match=message):
        run(*args, "-o", out)
    assert outputs(out) == []


def test_output_path_that_is_a_file(image_dir, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(OsloError, match="not a folder"):
        run("-i", image_dir, "-r", 2, "-s", "-o", target)


def test_command_line_error_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "-i", str(tmp_path / "nope"), "-r", "2", "-s", "-o",
         str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: image folder '{tmp_path / 'nope'}' does not exist"
    ]
