"""Training pieces: loss, optimisers, random states, checkpoints, logs, and evaluation helpers."""

import csv
import math
import random

import numpy as np
import pytest
import torch

from spherical_models.coding.maps import compress_map, map_batches
from spherical_models.evaluation.maps import code_map
from spherical_models.evaluation.results import (
    ImageResult,
    rates_text,
    read_previous_results,
    results_csv,
    string_bytes,
)
from spherical_models.geometry import SphereGeometry
from spherical_models.models import SphereScaleHyperprior
from spherical_models.training.checkpoint import (
    check_checkpoint,
    checkpoint_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from spherical_models.training.epoch import Meters, epoch_seed
from spherical_models.training.logs import LOG_COLUMNS, write_config, write_logs
from spherical_models.training.loss import RateDistortionLoss
from spherical_models.training.optim import configure_optimizers, make_scheduler
from utils.errors import OsloError
from utils.metrics import pixel_psnr

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_loss_is_bits_per_healpix_pixel_plus_weighted_mse():
    x = torch.rand(2, 16, 3)
    x_hat = x + 0.1
    y = torch.full((2, 4, 4, 1), 0.5)  # 1 bit per element
    z = torch.full((2, 3, 1, 1), 0.25)  # 2 bits per element
    out = RateDistortionLoss(0.01)({"x_hat": x_hat, "likelihoods": {"y": y, "z": z}}, x)
    bpp = (2 * 16 * 1 + 2 * 3 * 2) / (2 * 16)
    torch.testing.assert_close(out["bpp_loss"], torch.tensor(bpp))
    torch.testing.assert_close(out["mse_loss"], torch.tensor(0.01))
    torch.testing.assert_close(out["loss"], torch.tensor(bpp + 0.01 * 255**2 * 0.01))


def test_aux_optimiser_owns_exactly_the_quantiles():
    model = SphereScaleHyperprior(4, 6)
    optimizer, aux = configure_optimizers(model, 1e-4, 1e-3)
    aux_params = [p for g in aux.param_groups for p in g["params"]]
    assert aux_params == [model.entropy_bottleneck.quantiles]
    main = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert len(main) + 1 == sum(1 for _ in model.parameters())
    assert optimizer.param_groups[0]["lr"] == 1e-4 and aux.param_groups[0]["lr"] == 1e-3


def test_scheduler_divides_by_sqrt_10_after_patience():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    scheduler = make_scheduler(optimizer, patience=1)
    for loss in (1.0, 1.0, 1.0):
        scheduler.step(loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * math.sqrt(0.1))


def test_rng_state_round_trip_and_epoch_seeds():
    device = torch.device("cpu")
    torch.manual_seed(1)
    np.random.seed(1)  # noqa: NPY002
    random.seed(1)
    state = rng_state(device)
    first = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    set_rng_state(state, device)
    second = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2]
    seeds = {epoch_seed(0, e, r) for e in range(1, 4) for r in range(2)}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)


def small_checkpoint(model, **config):
    optimizer, aux = configure_optimizers(model, 1e-4, 1e-3)
    return checkpoint_state(
        model, optimizer, aux, make_scheduler(optimizer, 3), epoch=2,
        history=[{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}], best_loss=1.5,
        config={"model": "SphereScaleHyperprior", "quality": 1, "lambda": 0.0018, **config},
        args={"lmbda": 0.0018}, seed=7, rng=[rng_state(torch.device("cpu"))],
    )


def test_checkpoint_round_trip_is_atomic_and_weights_only(tmp_path):
    model = SphereScaleHyperprior(4, 6)
    path = save_checkpoint(tmp_path / "c.pth.tar", small_checkpoint(model))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth.tar"]
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert loaded["epoch"] == 2 and loaded["best_loss"] == 1.5 and loaded["seed"] == 7
    assert loaded["loss"] == 1.5 and set(loaded) >= {
        "state_dict", "optimizer", "aux_optimizer", "lr_scheduler", "history", "config",
        "args", "rng", "position",
    }
    other = SphereScaleHyperprior(4, 6)
    other.load_state_dict(loaded["state_dict"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                   other.state_dict().values(), strict=True))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("model", "SphereFactorizedPrior", "-m/--model SphereScaleHyperprior, the flags give "
         "-m/--model SphereFactorizedPrior"),
        ("quality", 3, "-q/--quality 1, the flags give -q/--quality 3"),
        ("lambda", 0.0035, "--lambda 0.0018, the flags give --lambda 0.0035"),
    ],
)
def test_check_checkpoint_names_the_flag_and_both_values(tmp_path, key, value, message):
    checkpoint = small_checkpoint(SphereScaleHyperprior(4, 6))
    expected = dict(checkpoint["config"])
    check_checkpoint(checkpoint, expected, "c.pth.tar")
    expected[key] = value
    with pytest.raises(OsloError, match=message):
        check_checkpoint(checkpoint, expected, "c.pth.tar")


def test_load_checkpoint_refuses_other_files(tmp_path):
    torch.save(SphereScaleHyperprior(4, 6).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(OsloError, match=r"not a checkpoint of main_sphere_compression\.py"):
        load_checkpoint(tmp_path / "bare.pth")
    (tmp_path / "junk.pth").write_text("junk")
    with pytest.raises(OsloError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(OsloError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pth")


def test_meters_summary():
    meters = Meters()
    for loss in (1.0, 3.0):
        losses = {"loss": torch.tensor(loss), "bpp_loss": torch.tensor(0.5),
                  "mse_loss": torch.tensor(0.01)}
        meters.add(losses, 2, aux_loss=4.0)
    summary = meters.summary()
    assert summary["loss"] == 2.0 and summary["bpp"] == 0.5
    assert summary["psnr"] == pytest.approx(20.0) and summary["aux_loss"] == 4.0


def test_logs_and_config(tmp_path):
    history = [{"epoch": 1, "loss": 2.5, "bpp": 0.5, "mse": 0.01, "psnr": 20.0, "lr": 1e-4,
                "seconds": 3.0, "aux_loss": 1.0, "data_seconds": 0.1},
               {"epoch": 2, "loss": 2.0, "bpp": 0.4, "mse": 0.01, "psnr": 20.0, "lr": 1e-4,
                "seconds": 3.0, "aux_loss": 1.0, "data_seconds": 0.1, "val_loss": 2.2}]
    write_logs(tmp_path, history)
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert tuple(rows[0]) == LOG_COLUMNS
    assert rows[0]["val_loss"] == "" and float(rows[1]["val_loss"]) == 2.2
    assert (tmp_path / "loss.txt").read_text().splitlines() == [
        "# epoch\ttraining_loss\tvalidation_loss", "1\t2.5\t", "2\t2\t2.2",
    ]
    write_config(tmp_path, {"lmbda": 0.01, "model": "X"}, {"seed": 5})
    text = (tmp_path / "config.txt").read_text()
    assert "lmbda = 0.01" in text and "seed = 5" in text


def test_map_batches_cover_the_map_in_nested_order():
    hp_map = np.arange(12 * 16 * 3).reshape(-1, 3)
    batches = list(map_batches(hp_map, 1, 5))
    assert [len(values) for _, values, _ in batches] == [5, 5, 5, 5, 5, 5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([ids for *_, ids in batches]), np.arange(48))
    joined = np.concatenate([values.reshape(-1, 3) for _, values, _ in batches])
    np.testing.assert_array_equal(joined, hp_map)
    [(_, values, ids)] = list(map_batches(hp_map, -1, 5))
    assert ids is None and values.shape == (1, 192, 3)


def test_code_map_rates_are_the_strings_and_the_likelihoods():
    torch.manual_seed(0)
    model = SphereScaleHyperprior(4, 6).eval()
    model.update(force=True)
    geometry = SphereGeometry.build(7, 6, model.num_levels)
    hp_map = np.random.default_rng(0).integers(0, 256, (12 * 4**7, 3), dtype=np.uint8)
    reconstruction, stats = code_map(model, geometry, hp_map, 6, 20, torch.device("cpu"))
    x = torch.from_numpy(hp_map.astype(np.float32) / 255).reshape(48, 4096, 3)
    with torch.no_grad():
        per_patch = model.compress(x, geometry)["strings"]
        bits = {k: -torch.log2(v.double()).sum().item()
                for k, v in model(x, geometry)["likelihoods"].items()}
    coded = compress_map(model, geometry, hp_map, 6, 20, torch.device("cpu"))
    assert stats["actual_bits"] == 8 * sum(len(s) for s in coded.strings.values())
    # one string per latent: 2 flushes instead of 96, so fewer bytes than per-patch strings
    assert stats["actual_bits"] < 8 * string_bytes(per_patch)
    assert stats["theoretical_bits"] == sum(math.ceil(b) for b in bits.values())
    assert reconstruction.dtype == np.uint8 and reconstruction.shape == hp_map.shape


def test_rates_and_results_files_round_trip(tmp_path):
    results = [ImageResult("healpix_sampling_res_7_a", 1000, 1048, 196608, 31.5, 0.5, 0.25)]
    (tmp_path / "rates.txt").write_text(rates_text(results, 7))
    (tmp_path / "test_results.csv").write_text(results_csv(results))
    lines = (tmp_path / "rates.txt").read_text().splitlines()
    assert lines[0].startswith("#") and "196608" in lines[0]
    assert lines[1] == "healpix_sampling_res_7_a\t1000\t1048"
    previous = read_previous_results(tmp_path)
    assert previous["healpix_sampling_res_7_a"]["actual_bits"] == 1048
    assert pixel_psnr(np.zeros((4, 3), np.uint8), np.full((4, 3), 255, np.uint8)) == 0.0
