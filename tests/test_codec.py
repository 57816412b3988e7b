"""oslo_codec.py and spherical_models/coding/codec.py on tiny models (N = M = 8) and maps at
resolution 6: the codec reproduces the evaluation of main_sphere_compression.py bit for bit (patches
and whole sphere, every model), decodes the same with any thread count (and on CUDA), refuses other
checkpoints, corrupt files and decoded latents that are not the encoder's in one line, and
survives a fuzz of truncations and bit flips."""

import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import generate_and_save_healpix_oslo_struct as oslo_script
import main_sphere_compression as main_script
import oslo_codec
from spherical_models.coding import codec
from spherical_models.entropy.streams import LatentMismatchError
from spherical_models.evaluation.maps import code_map
from spherical_models.models import SCALE_TABLE_LEVELS
from utils.cli import run_main
from utils.errors import OsloError
from utils.io import write_list
from utils.sampling import erp_to_healpix, healpix_to_erp

HR = 6
MODELS = {
    "SphereFactorizedPrior": ("-m", "SphereFactorizedPrior"),
    "SphereScaleHyperprior": ("-m", "SphereScaleHyperprior"),
    "SphereMeanScaleHyperprior": ("-m", "SphereMeanScaleHyperprior"),
    "joint": ("-m", "SphereMeanScaleHyperprior", "-cm", "full"),
    "context-only": ("-m", "SphereMeanScaleHyperprior", "-cm", "autoregressive"),
}
"""Checkpoint name -> model flags (the context models code with --no-deterministic, their
default)."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train(data, out, model, seed=1, extra=()):
    """One epoch of a tiny model, then the evaluation of the test map (deterministic where
    the model supports it, the default)."""
    main_script.main([
        "-nd", str(data.structures), "-hr", str(HR), "-prt", str(HR), "--channels", "8", "8",
        "-np", "2", "-bst", "2", "--dataloader-num-workers", "0", "--seed", str(seed),
        "--no-progress", "--print-freq", "0", "--lambda", "0.01", *MODELS[model], "-i",
        str(data.train), "-o", str(out), "-e", "1", "-t", str(data.test), "-bsvt", "5",
        "--only-npy-valtest", *extra,
    ])
    return out / "final.pth.tar"


@pytest.fixture(scope="module")
def data(tmp_path_factory, smooth_maps):
    """Two smooth noisy maps at resolution 6 (train, test), the structures (6, 6) .. (0, 0),
    and one trained checkpoint per model (evaluated deterministically on the test map)."""
    root = tmp_path_factory.mktemp("oslo_codec")
    files = smooth_maps(root, HR, 2)
    write_list(root / "train.txt", files[:1])
    write_list(root / "test.txt", files[1:])
    for level in range(7):
        oslo_script.main(["-o", str(root / "structures"), "-hr", str(HR - level), "-pr",
                          str(HR - level)])
    data = SimpleNamespace(root=root, structures=root / "structures", train=root / "train.txt",
                           test=root / "test.txt", map=files[1])
    data.checkpoints = {m: train(data, root / m, m) for m in MODELS}
    return data


def evaluation_outputs(data, model):
    folder = data.root / model / "reconstruction"
    recon = np.load(folder / f"{data.map.stem}_reconstructed.npy")
    _, _, actual = (folder / "rates.txt").read_text().splitlines()[1].split("\t")
    return recon, int(actual)


def encode(data, out, model="SphereScaleHyperprior", *extra, source=None):
    oslo_codec.main(["encode", "-i", str(source or data.map), "--checkpoint",
                     str(data.checkpoints[model]), "-o", str(out), "-b", "5", "--no-progress",
                     *extra])
    return out


def decode(data, source, out, model="SphereScaleHyperprior", *extra):
    oslo_codec.main(["decode", "-i", str(source), "--checkpoint", str(data.checkpoints[model]),
                     "-o", str(out), "--no-progress", *extra])
    return out


def refusal_lines(monkeypatch, capsys, *argv):
    """stderr lines of ``oslo_codec.py *argv`` run as a command, which must exit with 2, but
    its ``[oslo]`` log lines."""
    monkeypatch.setattr(sys, "argv", ["oslo_codec.py", *argv])
    capsys.readouterr()  # what earlier steps wrote
    with pytest.raises(SystemExit) as exit_info:
        run_main(oslo_codec.main)
    assert exit_info.value.code == 2
    return [line for line in capsys.readouterr().err.strip().splitlines()
            if not line.startswith("[oslo] ")]


# --- the evaluation path, threads, devices ------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_encode_decode_is_the_evaluation_of_main_sphere_compression(data, tmp_path, model):
    oslo = encode(data, tmp_path / "m.oslo", model)
    recon = np.load(decode(data, oslo, tmp_path / "m.npy", model))
    expected, actual_bits = evaluation_outputs(data, model)
    np.testing.assert_array_equal(recon, expected)
    coded = codec.read_file(oslo)
    assert oslo.stat().st_size == actual_bits // 8 + coded.header_bytes
    assert coded.payload_bytes * 8 == actual_bits


@pytest.mark.parametrize("model", MODELS)
def test_whole_sphere_encode_decode_is_the_evaluation(data, model):
    loaded = codec.load_codec(data.checkpoints[model])
    hp_map = np.load(data.map)
    blob = codec.encode_map(loaded, hp_map, patch_res=-1)
    coded = codec.unpack(blob)
    recon = codec.decode(loaded, coded)
    # the evaluation's coding of the whole sphere, in the mode the file records
    reference, stats = code_map(loaded.model, loaded.geometry(HR, -1), hp_map, -1, 1,
                                torch.device("cpu"))
    np.testing.assert_array_equal(recon, reference)
    assert len(blob) == stats["actual_bits"] // 8 + coded.header_bytes
    assert coded.header.deterministic == loaded.model.supports_deterministic


def test_a_decoder_whose_scale_indexes_differ_by_one_level_is_refused(data, tmp_path,
                                                                       monkeypatch, capsys):
    oslo = encode(data, tmp_path / "s.oslo")
    model_cls = type(codec.load_codec(data.checkpoints["SphereScaleHyperprior"]).model)
    original = model_cls.coding_parameters

    def perturbed(self, z_hat, geometry, patch_ids):
        # one level down at the widest scale of the batch (the tables of neighbouring scales
        # near the bottom of the table can be equal once quantised to 16 bits)
        indexes, means = original(self, z_hat, geometry, patch_ids)
        indexes = indexes.clone()
        indexes.view(-1)[indexes.argmax()] -= 1
        return indexes, means

    monkeypatch.setattr(model_cls, "coding_parameters", perturbed)
    out = tmp_path / "s.npy"
    err = refusal_lines(monkeypatch, capsys, "decode", "-i", str(oslo), "--checkpoint",
                        str(data.checkpoints["SphereScaleHyperprior"]), "-o", str(out),
                        "--no-progress")
    assert err == [f"error: '{oslo}': decoded y does not match the encoder's: a different "
                   "platform, thread count, device or corrupted data"]
    assert not out.exists() and not list(tmp_path.glob("*.npy*"))


def test_one_thread_encoding_decodes_bit_identically_with_two_threads(data, tmp_path):
    loaded = codec.load_codec(data.checkpoints["SphereMeanScaleHyperprior"])
    hp_map = np.load(data.map)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode_map(loaded, hp_map, batch_size=5)
        recon_one = codec.decode(loaded, codec.unpack(one))
        torch.set_num_threads(2)
        two = codec.encode_map(loaded, hp_map, batch_size=5)
        recon_two = codec.decode(loaded, codec.unpack(one))
    finally:
        torch.set_num_threads(threads)
    assert one == two
    np.testing.assert_array_equal(recon_one, recon_two)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", ["SphereScaleHyperprior", "SphereMeanScaleHyperprior"])
def test_cpu_encoding_decodes_on_cuda(data, model):
    hp_map = np.load(data.map)
    cpu = codec.load_codec(data.checkpoints[model])
    gpu = codec.load_codec(data.checkpoints[model], "cuda")
    coded = codec.encode_map(cpu, hp_map, batch_size=5)
    assert codec.encode_map(gpu, hp_map, batch_size=5) == coded
    recon_cpu = codec.decode(cpu, codec.unpack(coded))
    try:
        recon_gpu = codec.decode(gpu, codec.unpack(coded))
    except LatentMismatchError:  # an honest refusal, never a silent difference
        return
    # the latents decoded identically (their CRC-32s hold); g_s in float32 on another device
    # may move a pixel by one level after rounding
    assert np.abs(recon_cpu.astype(int) - recon_gpu.astype(int)).max() <= 1
    assert np.mean(recon_cpu != recon_gpu) < 1e-3


def test_non_deterministic_mode_is_recorded_and_decodes(data, tmp_path):
    oslo = encode(data, tmp_path / "n.oslo", "SphereScaleHyperprior", "--no-deterministic")
    coded = codec.read_file(oslo)
    assert not coded.header.deterministic
    recon = np.load(decode(data, oslo, tmp_path / "n.npy"))
    assert recon.shape == (12 * 4**HR, 3)


# --- inputs and outputs ---------------------------------------------------------------------------


def test_erp_image_in_erp_image_out(data, image_dir, tmp_path):
    source = image_dir / "img0.jpg"
    oslo = encode(data, tmp_path / "i.oslo", "SphereScaleHyperprior", "-r", str(HR),
                  source=source)
    header = codec.read_file(oslo).header
    assert header.image_shape == (32, 64) and header.healpix_res == HR
    as_map = np.load(decode(data, oslo, tmp_path / "i.npy"))
    default = np.asarray(Image.open(decode(data, oslo, tmp_path / "i.png")))
    assert default.shape == (32, 64, 3)
    wide = np.asarray(Image.open(decode(data, oslo, tmp_path / "w.png",
                                        "SphereScaleHyperprior", "--erp-width", "100")))
    assert wide.shape == (50, 100, 3)
    np.testing.assert_array_equal(wide, healpix_to_erp(as_map, 100, 50))
    # the map coded is the image sampled as in step 1
    loaded = codec.load_codec(data.checkpoints["SphereScaleHyperprior"])
    image = np.asarray(Image.open(source).convert("RGB"))
    again = codec.encode_map(loaded, erp_to_healpix(image, HR), batch_size=5,
                             image_shape=(32, 64))
    assert again == oslo.read_bytes()


def test_folders_in_folders_out(data, image_dir, tmp_path):
    encode(data, tmp_path / "coded", "SphereFactorizedPrior", "-r", str(HR),
           source=image_dir)
    coded = sorted(p.name for p in (tmp_path / "coded").iterdir())
    assert coded == [f"img{i}.oslo" for i in range(5)]
    decode(data, tmp_path / "coded", tmp_path / "maps", "SphereFactorizedPrior")
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        f"img{i}.npy" for i in range(5)
    ]
    decode(data, tmp_path / "coded", tmp_path / "images", "SphereFactorizedPrior", "-f", "png")
    assert len(list((tmp_path / "images").glob("*.png"))) == 5


def test_info_prints_the_header_and_the_bpp(data, tmp_path, capsys):
    oslo = encode(data, tmp_path / "i.oslo")
    capsys.readouterr()
    oslo_codec.main(["info", "-i", str(oslo)])
    out = capsys.readouterr().out
    size = oslo.stat().st_size
    coded = codec.read_file(oslo)
    for text in ("format version: 2", "model: SphereScaleHyperprior", "quality: 1",
                 "lambda: 0.01", f"healpix resolution: {HR} (49152 pixels)",
                 f"patch resolution: {HR} (12 patches)", "deterministic: yes",
                 f"checkpoint hash: {coded.header.checkpoint_hash.hex()}",
                 f"file bytes: {size}", f"header bytes: {coded.header_bytes}",
                 f"bpp: {8 * size / 49152:.6f}",
                 f"payload bpp: {8 * coded.payload_bytes / 49152:.6f}",
                 f"scale table levels: {SCALE_TABLE_LEVELS}", "latents: 2",
                 "latent checksums: " + " ".join(f"{c:08x}" for c in coded.header.checksums),
                 "string bytes: " + " ".join(str(len(s)) for s in coded.strings)):
        assert text in out
    # at most 64 bytes plus the model name
    assert coded.header_bytes <= 64 + len("SphereScaleHyperprior")


def test_help_documents_every_flag_with_its_default():
    parser = oslo_codec.build_parser()
    sub = parser._subparsers._group_actions[0].choices
    encode_help = " ".join(sub["encode"].format_help().split())
    for flag in ("-i", "--checkpoint", "-o", "-r", "-p", "-b", "--no-deterministic",
                 "--scale-table-levels", "--device", "--threads", "--no-progress"):
        assert flag in encode_help
    assert "(default: 10)" in encode_help and "(default: cpu)" in encode_help
    decode_help = " ".join(sub["decode"].format_help().split())
    for flag in ("--erp-width", "-f", "--format"):
        assert flag in decode_help


# --- refusals and corruption -------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid(data, tmp_path_factory):
    """A valid file of the scale hyperprior, its bytes, and the loaded codec."""
    out = tmp_path_factory.mktemp("valid") / "v.oslo"
    encode(data, out)
    return SimpleNamespace(path=out, data=out.read_bytes(),
                           codec=codec.load_codec(data.checkpoints["SphereScaleHyperprior"]))


def test_another_checkpoint_is_refused_by_its_hash(data, valid, tmp_path):
    other = train(data, tmp_path / "other", "SphereScaleHyperprior", seed=2)
    with pytest.raises(OsloError, match="hash") as error:
        oslo_codec.main(["decode", "-i", str(valid.path), "--checkpoint", str(other), "-o",
                         str(tmp_path / "x.npy")])
    assert "\n" not in str(error.value)
    assert not (tmp_path / "x.npy").exists()


def write(tmp_path, data):
    path = tmp_path / "bad.oslo"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"JPEG" + d[4:], "not an OSLO file"),
    (lambda d: d[:4] + bytes([3]) + d[5:], "file format version 3 is newer than this codec's 2"),
    (lambda d: d[:4] + bytes([1]) + d[5:],
     "file format version 1 .*git worktree add ../oslo-v1 4ff145f"),
    (lambda d: d[:-7], "corrupt file: CRC-32 mismatch"),
    (lambda d: d[:2], "corrupt file: truncated to 2 bytes"),
    (lambda d: d[:40] + bytes([d[40] ^ 4]) + d[41:], "corrupt file: CRC-32 mismatch"),
    (lambda d: b"", "corrupt file: truncated to 0 bytes"),
])
def test_corrupt_files_give_one_clear_line(data, valid, tmp_path, mutate, message):
    bad = write(tmp_path, mutate(valid.data))
    with pytest.raises(OsloError, match=message) as error:
        decode(data, bad, tmp_path / "x.npy")
    assert "\n" not in str(error.value) and str(bad) in str(error.value)
    with pytest.raises(OsloError, match=message):
        oslo_codec.main(["info", "-i", str(bad)])


def test_framing_is_validated_even_with_a_valid_crc(valid):
    import struct
    import zlib

    def resealed(body: bytes) -> bytes:
        return valid.data[:5] + struct.pack("<I", zlib.crc32(body)) + body

    body = valid.data[9:]
    coded = codec.unpack(valid.data)
    strings_start = coded.header_bytes - 9
    with pytest.raises(OsloError, match="corrupt file: the strings take"):
        codec.unpack(resealed(body[: strings_start + 2]))  # y shorter than its length
    with pytest.raises(OsloError, match="corrupt file"):
        codec.unpack(resealed(body[:strings_start - 3]))  # the header cut
    with pytest.raises(OsloError, match="corrupt file"):
        codec.unpack(resealed(bytes([2]) + body[1:]))  # unknown flag


def test_the_command_prints_one_line_and_exits_2(valid, tmp_path, monkeypatch, capsys):
    bad = write(tmp_path, valid.data[:-1])
    err = refusal_lines(monkeypatch, capsys, "info", "-i", str(bad))
    assert err == [f"error: '{bad}': corrupt file: CRC-32 mismatch (the file is truncated or "
                   "altered)"]


def test_context_models_are_refused_in_deterministic_mode(data, tmp_path):
    checkpoint = data.checkpoints["joint"]
    with pytest.raises(OsloError, match="deterministic mode is not available"):
        oslo_codec.main(["encode", "-i", str(data.map), "--checkpoint", str(checkpoint), "-o",
                         str(tmp_path / "c.oslo"), "--deterministic"])
    assert not (tmp_path / "c.oslo").exists()
    # by default they code with CompressAI's float32 parameters, and say so in the header
    oslo_codec.main(["encode", "-i", str(data.map), "--checkpoint", str(checkpoint), "-o",
                     str(tmp_path / "c.oslo"), "--no-progress"])
    assert not codec.read_file(tmp_path / "c.oslo").header.deterministic


def test_fuzz_truncations_and_bit_flips(valid):
    """200 seeded truncations and bit flips: each ends in an OsloError or a valid decode,
    within 5 s, never another exception."""
    rng = random.Random(0)
    reference = codec.decode(valid.codec, codec.unpack(valid.data))
    outcomes = {"error": 0, "decoded": 0}
    for case in range(200):
        data = bytearray(valid.data)
        if case % 2:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 3)):
                position = rng.randrange(len(data))
                data[position] ^= 1 << rng.randrange(8)
        start = time.perf_counter()
        try:
            recon = codec.decode(valid.codec, codec.unpack(bytes(data)))
        except OsloError as error:
            assert "\n" not in str(error) and str(error)
            outcomes["error"] += 1
        else:
            assert recon.shape == reference.shape and recon.dtype == np.uint8
            outcomes["decoded"] += 1
        assert time.perf_counter() - start < 5, f"case {case} took too long"
    assert outcomes["error"] > 0


def test_a_missing_input_or_output_folder_is_refused(data, tmp_path):
    with pytest.raises(OsloError, match="does not exist"):
        encode(data, tmp_path / "x.oslo", source=tmp_path / "missing.npy")
    with pytest.raises(OsloError, match="does not exist"):
        encode(data, tmp_path / "no" / "x.oslo")
    assert Path(data.map).is_file()


def test_the_header_of_any_map_up_to_resolution_10_is_at_most_64_bytes_plus_the_name():
    name = "SphereMeanScaleHyperprior"
    largest = codec.Header(
        model=name, quality=8, lmbda=0.18, healpix_res=10, patch_res=-1,
        batch_size=codec.MAX_BATCH_SIZE, checkpoint_hash=bytes(codec.HASH_BYTES),
        image_shape=(0, 0), scale_table_levels=codec.MAX_SCALE_TABLE_LEVELS,
        checksums=(0xFFFFFFFF, 0xFFFFFFFF),
    )
    # y of q8 at resolution 10 (270 channels, 49,152 pixels) at 32 bits a symbol at most
    y_bytes = 270 * 12 * 4**10 // 256 * 4
    header = codec.pack_header(largest, [y_bytes, 10**6])
    assert len(header) <= 64 + len(name)
    smallest = codec.Header(
        model=name, quality=1, lmbda=0.0018, healpix_res=7, patch_res=6, batch_size=1,
        checkpoint_hash=bytes(codec.HASH_BYTES), image_shape=(0, 0), scale_table_levels=64,
        checksums=(1,),
    )
    assert len(codec.pack_header(smallest, [100])) == 35 + len(name)
    assert len(header) == 47 + len(name)
