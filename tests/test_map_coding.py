"""One rANS string per latent per map (spherical_models.coding.maps and entropy.streams), checked
against CompressAI's own coder and entropy models used directly: the strings are those of one
BufferedRansEncoder fed every patch's symbols in order with the full CDF tables, the decoded
maps are those of the per-patch strings, and the checksums are the CRC-32 of the symbols."""

import zlib

import numpy as np
import pytest
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder

from spherical_models.coding.maps import compress_map, decompress_map, map_batches, to_uint8
from spherical_models.entropy.streams import (
    LatentDecoder,
    LatentEncoder,
    LatentMismatchError,
)
from spherical_models.geometry import SphereGeometry
from spherical_models.models import (
    SphereFactorizedPrior,
    SphereJointAutoregressiveHierarchicalPriors,
    SphereMeanScaleHyperprior,
    SphereScaleHyperprior,
)
from spherical_models.models.base import from_entropy_layout, to_entropy_layout

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def context_codec(N, M, context_model=None, ar_hops=1):
    """The mean-scale hyperprior, or the joint model of ``context_model``."""
    if context_model is None:
        return SphereMeanScaleHyperprior(N, M)
    return SphereJointAutoregressiveHierarchicalPriors(N, M, context_model=context_model,
                                                       ar_hops=ar_hops)
HR, PR, BATCH = 7, 6, 20


@pytest.fixture(scope="module")
def hp_map():
    """A smooth random map at resolution 7 (values spread over the whole range)."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 256, (12 * 4**3, 3))
    return np.repeat(coarse, 4**4, axis=0).astype(np.uint8)


def ready(model):
    torch.manual_seed(0)
    model = model.eval()
    model.update(force=True)
    return model


def full_tables(entropy_model):
    return (entropy_model._quantized_cdf.tolist(),
            entropy_model._cdf_length.reshape(-1).int().tolist(),
            entropy_model._offset.reshape(-1).int().tolist())


def reference_scale_hyperprior_strings(model, geometry, hp_map):
    """The one-stream strings built by hand: every batch's symbols, in order, into one
    BufferedRansEncoder per latent with the full tables (CompressAI's calls)."""
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    encoders = {"y": BufferedRansEncoder(), "z": BufferedRansEncoder()}
    crcs = {"y": 0, "z": 0}
    with torch.no_grad():
        for _, values, ids in map_batches(hp_map, PR, BATCH):
            x = torch.from_numpy(values.astype(np.float32) / 255)
            y = model.g_a(x, geometry, torch.from_numpy(ids))
            z = to_entropy_layout(model.h_a["down"](model.h_a["conv"](torch.abs(y), geometry),
                                                    geometry))
            medians = eb._get_medians().detach().reshape(1, -1, 1, 1).expand_as(z)
            z_symbols = eb.quantize(z, "symbols", medians)
            z_indexes = eb._build_indexes(z.size())
            encoders["z"].encode_with_indexes(z_symbols.reshape(-1).tolist(),
                                              z_indexes.reshape(-1).tolist(), *full_tables(eb))
            z_hat = eb.dequantize(z_symbols, medians)
            scales = model.h_s["conv"](model.h_s["up"](from_entropy_layout(z_hat), geometry),
                                       geometry)
            y_indexes = gc.build_indexes(to_entropy_layout(scales))
            y_symbols = gc.quantize(to_entropy_layout(y), "symbols")
            encoders["y"].encode_with_indexes(y_symbols.reshape(-1).tolist(),
                                              y_indexes.reshape(-1).tolist(), *full_tables(gc))
            for name, symbols in (("y", y_symbols), ("z", z_symbols)):
                crcs[name] = zlib.crc32(symbols.int().numpy().astype("<i4").tobytes(),
                                        crcs[name])
    return {name: encoder.flush() for name, encoder in encoders.items()}, crcs


def test_one_stream_per_latent_is_compressais_coder_fed_every_patch(hp_map):
    model = ready(SphereScaleHyperprior(8, 12))
    geometry = SphereGeometry.build(HR, PR, model.num_levels)
    coded = compress_map(model, geometry, hp_map, PR, BATCH, CPU)
    strings, crcs = reference_scale_hyperprior_strings(model, geometry, hp_map)
    assert list(coded.strings) == ["y", "z"]
    assert coded.strings == strings
    assert coded.checksums == crcs
    # and CompressAI's decoder reads the symbols of all 48 patches back from the one string
    decoder = RansDecoder()
    eb = model.entropy_bottleneck
    indexes = eb._build_indexes((48, 8, 1, 1)).reshape(-1).tolist()
    decoded = decoder.decode_with_indexes(coded.strings["z"], indexes, *full_tables(eb))
    assert len(decoded) == 48 * 8


@pytest.mark.parametrize("make", [
    lambda: SphereFactorizedPrior(8, 12),
    lambda: SphereScaleHyperprior(8, 12),
    lambda: SphereMeanScaleHyperprior(8, 12),
    lambda: context_codec(8, 12, context_model="full"),
    lambda: context_codec(8, 12, context_model="autoregressive"),
], ids=["factorized", "scale", "mean-scale", "joint", "context-only"])
def test_the_map_decodes_as_the_per_patch_strings_do(hp_map, make):
    model = ready(make())
    geometry = SphereGeometry.build(HR, PR, model.num_levels)
    coded = compress_map(model, geometry, hp_map, PR, BATCH, CPU)
    reconstruction = decompress_map(model, geometry, coded, CPU)
    per_patch = []
    per_patch_bytes = 0
    with torch.no_grad():
        for _, values, ids in map_batches(hp_map, PR, BATCH):
            x = torch.from_numpy(values.astype(np.float32) / 255)
            ids = torch.from_numpy(ids)
            encoded = model.compress(x, geometry, ids)
            per_patch_bytes += sum(len(s) for latent in encoded["strings"] for s in latent)
            x_hat = model.decompress(encoded["strings"], encoded["shape"], geometry, ids)["x_hat"]
            per_patch.append(to_uint8(x_hat).reshape(-1, 3))
    np.testing.assert_array_equal(reconstruction, np.concatenate(per_patch))
    # 48 patches x latents strings of ~8 bytes of flush each become one string per latent
    assert coded.num_bytes < per_patch_bytes - 40 * len(model.latent_names)


def test_a_stream_is_the_same_whatever_the_batches(hp_map):
    model = ready(SphereMeanScaleHyperprior(8, 12))
    geometry = SphereGeometry.build(HR, PR, model.num_levels)
    one = compress_map(model, geometry, hp_map, PR, 48, CPU)
    many = compress_map(model, geometry, hp_map, PR, 7, CPU)
    assert one.strings == many.strings and one.checksums == many.checksums


def test_a_wrong_checksum_or_garbage_is_refused_naming_the_latent(hp_map):
    model = ready(SphereScaleHyperprior(8, 12))
    geometry = SphereGeometry.build(HR, PR, model.num_levels)
    coded = compress_map(model, geometry, hp_map, PR, BATCH, CPU)
    wrong = dict(coded.checksums, y=coded.checksums["y"] ^ 1)
    with pytest.raises(LatentMismatchError, match=r"^decoded y does not match the encoder's: a "
                       r"different platform, thread count, device or corrupted data$"):
        decompress_map(model, geometry, type(coded)(**{**coded.__dict__, "checksums": wrong}),
                       CPU)
    garbage = dict(coded.strings, z=bytes(len(coded.strings["z"])))
    with pytest.raises(LatentMismatchError, match=r"^decoded z "):
        decompress_map(model, geometry, type(coded)(**{**coded.__dict__, "strings": garbage}),
                       CPU)



def test_the_coder_returns_the_dequantised_symbols_on_both_sides():
    torch.manual_seed(1)
    model = ready(SphereScaleHyperprior(8, 12))
    gc = model.gaussian_conditional
    values = torch.randn(2, 12, 5, 1) * 4
    indexes = torch.randint(0, 64, values.shape, dtype=torch.int32)
    means = torch.randn(2, 12, 5, 1)
    encoder = LatentEncoder()
    encoded = encoder.code("y", gc, values, indexes, means)
    torch.testing.assert_close(encoded, torch.round(values - means) + means, rtol=0, atol=0)
    coded = encoder.finish()
    decoder = LatentDecoder(coded.strings, coded.checksums, {"y": values.numel()})
    decoded = decoder.code("y", gc, None, indexes, means)
    decoder.verify()
    torch.testing.assert_close(decoded, encoded, rtol=0, atol=0)
