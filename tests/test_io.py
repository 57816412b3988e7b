"""utils.io: atomic writes, list files, image and map reading errors."""

import os

import numpy as np
import pytest

from utils.errors import OsloError
from utils.io import atomic_path, load_image, load_map, read_list, save_npy, write_list


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError), atomic_path(target, ".npy") as tmp:
        np.save(tmp, np.zeros(3))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_save_replaces_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "m.npy"
    save_npy(target, np.arange(4))
    save_npy(target, np.arange(5))
    np.testing.assert_array_equal(np.load(target), np.arange(5))
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_lists_are_relative_to_their_folder_and_accept_absolute_paths(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    files = [data / "a.npy", data / "sub" / "b.npy"]
    write_list(data / "train.txt", files)
    assert (data / "train.txt").read_text() == "a.npy\nsub/b.npy\n"
    moved = tmp_path / "moved"
    data.rename(moved)
    assert read_list(moved / "train.txt") == [moved / "a.npy", moved / "sub" / "b.npy"]
    (moved / "abs.txt").write_text(f"# comment\n\n{tmp_path / 'x.npy'}\n")
    assert read_list(moved / "abs.txt") == [tmp_path / "x.npy"]
    with pytest.raises(OsloError, match="cannot read list file"):
        read_list(tmp_path / "missing.txt")


def test_unreadable_inputs_name_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(OsloError, match=r"bad\.jpg"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(OsloError, match=r"missing\.npy"):
        load_map(tmp_path / "missing.npy")
