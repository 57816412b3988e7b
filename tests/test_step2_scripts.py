"""The step-2 scripts: OSLO structures (new and old name) and DeepSphere graphs."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import generate_and_save_healpix_deepsphere_graph as deepsphere_script
import generate_and_save_healpix_oslo_struct as oslo_script
from utils.errors import OsloError
from utils.structures import load_deepsphere_graph, load_oslo_structure

REPO = Path(__file__).resolve().parent.parent


def test_oslo_script_writes_each_pair_of_the_chain(tmp_path):
    for hr, pr in [(6, 4), (5, 3), (4, 2)]:
        oslo_script.main(["-o", str(tmp_path), "-hr", str(hr), "-pr", str(pr)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "oslo_struct_hr4_pr2_hops2.npz", "oslo_struct_hr5_pr3_hops2.npz",
        "oslo_struct_hr6_pr4_hops2.npz",
    ]
    s = load_oslo_structure(tmp_path, 6, 4, 2)
    assert s.index.shape == (256, 24)


def test_oslo_script_whole_sphere_one_hop_gaussian(tmp_path):
    oslo_script.main(["-o", str(tmp_path), "-hr", "3", "-pr", "-1", "-nh", "1", "-w", "gaussian"])
    s = load_oslo_structure(tmp_path, 3, -1, 1, "gaussian")
    assert s.index.shape == (768, 8) and s.weight.shape == (1, 768, 8)
    assert ((s.weight > 0) & (s.weight < 1)).sum() == 768 * 8 - 24


def test_deepsphere_script(tmp_path):
    deepsphere_script.main(["-o", str(tmp_path), "-hr", "5", "-pr", "3", "--use-euclidean"])
    g = load_deepsphere_graph(tmp_path, 5, 3, use_euclidean=True)
    assert g.edge_weight.shape == (12 * 4**2, g.edge_index.shape[1])
    assert np.all((g.edge_weight > 0) & (g.edge_weight < 1))


@pytest.mark.parametrize("module", [oslo_script, deepsphere_script])
@pytest.mark.parametrize(
    "args,message",
    [(["-hr", "14", "-pr", "2"], "outside 0..13"), (["-hr", "4", "-pr", "5"], "above")],
)
def test_bad_resolutions(tmp_path, module, args, message):
    with pytest.raises(OsloError, match=message):
        module.main(["-o", str(tmp_path / "s"), *args])
    assert not (tmp_path / "s").exists()


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(OsloError, match="not a folder"):
        oslo_script.main(["-o", str(tmp_path / "f"), "-hr", "2", "-pr", "1"])


def test_old_script_name_still_works(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "generate_and_save_healpix_sdpa_struct.py"), "-o",
         str(tmp_path), "-hr", "3", "-pr", "1", "-nh", "1"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "oslo_struct_hr3_pr1_hops1.npz").is_file()
    result = subprocess.run(
        [sys.executable, str(REPO / "generate_and_save_healpix_sdpa_struct.py"), "-o",
         str(tmp_path), "-hr", "3", "-pr", "4"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: patch resolution 4 is above the HEALPix resolution 3"
