"""A 360-degree image codec with a trained OSLO model: .oslo files from the command line.

encode: an ERP image (jpg, jpeg, png, tiff), sampled on HEALPix at -r, or a HEALPix map
(.npy, uint8 [12 * 4**r, 3]) -> one .oslo file (a small versioned header, then the strings).
decode: a .oslo file -> the HEALPix map (.npy) or an ERP image resampled from it (.png...),
refusing a checkpoint other than the one that encoded it.
info: the header of a .oslo file, its sizes and bpp.
models: the pretrained zoo (zoo/), which encode uses without --checkpoint (-q picks the quality)
and decode finds by the checkpoint hash of the file.
A folder for -i codes every file in it, into the folder -o. The file format, the checks and the
deterministic mode are described in spherical_models/coding/codec.py and docs/codec.md.

Examples:
    python oslo_codec.py encode -i photo.jpg -o photo.oslo -q 3
    python oslo_codec.py decode -i photo.oslo -o photo.png
    python oslo_codec.py encode -i samples/earth_day.jpg --checkpoint final.pth.tar -r 9 \\
        -o earth.oslo
    python oslo_codec.py decode -i earth.oslo --checkpoint final.pth.tar -o earth.png
    python oslo_codec.py info -i earth.oslo
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from spherical_models import zoo
from spherical_models.cli import HelpFormatter
from spherical_models.coding import codec
from spherical_models.coding.refine import DEFAULT_REFINE_LR, Refinement
from spherical_models.models.tiling import DEFAULT_TILE_RES
from utils.cli import get_logger, run_main, setup_logging
from utils.errors import OsloError
from utils.io import IMAGE_EXTENSIONS

INPUT_EXTENSIONS = (*IMAGE_EXTENSIONS, *codec.MAP_EXTENSIONS)
OUTPUT_FORMATS = (*codec.MAP_EXTENSIONS, *IMAGE_EXTENSIONS)


def _common(parser: argparse.ArgumentParser, device: bool = True) -> None:
    parser.add_argument("-i", "--input", required=True,
                        help="input file, or a folder of input files")
    if device:
        parser.add_argument("--checkpoint", default=None,
                            help="checkpoint of main_sphere_compression.py (e.g. final.pth.tar); "
                            "default: a zoo model (encode: --zoo-model at -q; decode: the zoo "
                            "model whose hash the file records)")
        parser.add_argument("--device", default="cpu",
                            help="torch device of the model: cpu, cuda, cuda:1...")
        parser.add_argument("--threads", type=int, default=0,
                            help="torch CPU threads (0: torch's default)")
        parser.add_argument("--no-progress", action="store_true",
                            help="no progress bar over the files of a folder, nor over the "
                            "tiles of --tile-res")
        parser.add_argument("--tile-res", type=int, default=DEFAULT_TILE_RES,
                            help="whole-sphere coding (-p -1) only: run the analysis (encode) "
                            "or the synthesis (decode) by tiles of 4**T pixels (HEALPix patches "
                            "of resolution T), exactly, in the memory of one tile and its halo "
                            "instead of the whole sphere's (more than 12 GB at -r 10); larger T: "
                            "more memory, less halo overhead. T >= the map's resolution, or -1: "
                            "the whole sphere at once; T must be at least 4. Not recorded in "
                            "the file: decoding may use another T (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter,
                                     epilog="See docs/codec.md.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    encode = commands.add_parser("encode", formatter_class=HelpFormatter,
                                 help="image or map -> .oslo",
                                 description="Compress ERP images or HEALPix maps into .oslo "
                                 "files.")
    _common(encode)
    encode.add_argument("-o", "--output", required=True,
                        help=".oslo file to write (a folder if -i is a folder: <stem>.oslo)")
    encode.add_argument("-q", "--quality", type=int, default=None,
                        help="quality of the zoo model (oslo_codec.py models lists them; "
                        "default: a middle one); not with --checkpoint")
    encode.add_argument("--zoo-model", choices=tuple(zoo.ZOO_MODELS), default=zoo.DEFAULT_MODEL,
                        help="zoo model of -q")
    encode.add_argument("-r", "--healpix-res", type=int, default=None,
                        help="HEALPix resolution an ERP image is sampled at (default: the "
                        "checkpoint's -hr; a .npy map keeps its own)")
    encode.add_argument("-p", "--patch-res", type=int, default=None,
                        help="patch resolution, -1: whole sphere (default: the checkpoint's "
                        "evaluation patch resolution -prvt, else -1 for a model trained with "
                        "--patch-border sphere, else its -prt)")
    encode.add_argument("-b", "--batch-size", type=int, default=10,
                        help="patches per compress call (as -bsvt; recorded, decoding uses the "
                        "same batches)")
    encode.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="deterministic entropy parameters (float64 on one CPU thread: the "
                        "file decodes on any machine); --no-deterministic: CompressAI's float32 "
                        "ones on --device (decode on the same kind of machine and thread count). "
                        "Default: on, except for the context models, which need "
                        "--no-deterministic. Recorded in the header")
    encode.add_argument("--scale-table-levels", type=int, default=None,
                        help="entries of the scale table of y (default: the checkpoint's; 64 "
                        "for checkpoints that do not record it); recorded in the header")
    encode.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="latent refinement: optimise each batch's latent for its own "
                        "rate-distortion cost with STEPS Adam steps before coding it (slower "
                        "encoding, same decoder and format; docs/codec.md); 0: off")
    encode.add_argument("--refine-lr", type=float, default=DEFAULT_REFINE_LR,
                        help="initial learning rate of --refine, decayed linearly to 0")
    encode.add_argument("--refine-lambda", type=float, default=None,
                        help="rate-distortion trade-off of --refine (default: the checkpoint's "
                        "lambda)")

    decode = commands.add_parser("decode", formatter_class=HelpFormatter,
                                 help=".oslo -> map or ERP image",
                                 description="Decompress .oslo files into HEALPix maps or ERP "
                                 "images.")
    _common(decode)
    decode.add_argument("-o", "--output", required=True,
                        help="map (.npy) or ERP image (.png, .jpg...) to write; a folder if -i "
                        "is a folder")
    decode.add_argument("-f", "--format", choices=OUTPUT_FORMATS, default=None,
                        help="output type in folder mode (default: npy); for a file, its suffix")
    decode.add_argument("--erp-width", type=int, default=None,
                        help="width of an ERP output, height width/2 (default: the size of the "
                        "image encoded; 4 * nside for a map)")

    commands.add_parser("models", formatter_class=HelpFormatter,
                        help="the pretrained zoo: qualities, lambdas, steps, results",
                        description="List the zoo's models: quality, lambda, training steps, "
                        "and the mean bpp and S-PSNR Y of the bundled test images.")

    info = commands.add_parser("info", formatter_class=HelpFormatter,
                               help="header, sizes and bpp of .oslo files",
                               description="Print the header, the sizes and the bpp of .oslo "
                               "files.")
    _common(info, device=False)
    return parser


def _files(folder: Path, extensions: Sequence[str]) -> list[Path]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower().lstrip(".") in extensions)
    if not files:
        raise OsloError(f"no {'/'.join(extensions)} file in '{folder}'")
    stems = [p.stem for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise OsloError(f"several inputs in '{folder}' share the name '{duplicates[0]}'")
    return files


def _pairs(args: argparse.Namespace, extensions: Sequence[str],
           out_suffix: str | None) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or every file of a folder into the folder ``-o``."""
    source, target = Path(args.input), Path(args.output)
    if not source.exists():
        raise OsloError(f"input '{source}' does not exist")
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise OsloError(f"-i is a folder, so -o must be a folder: '{target}' is a file")
        files = _files(source, extensions)
        target.mkdir(parents=True, exist_ok=True)
        return [(f, target / f"{f.stem}.{out_suffix}") for f in files]
    if target.is_dir():
        raise OsloError(f"output '{target}' is a folder; give a file name")
    if not target.parent.is_dir():
        raise OsloError(f"the folder of the output '{target}' does not exist")
    return [(source, target)]


def _progress(pairs: list, args: argparse.Namespace, desc: str):
    disable = len(pairs) < 2 or args.no_progress
    return tqdm(pairs, desc=desc, unit="file", disable=True if disable else None)


def _device(args: argparse.Namespace) -> torch.device:
    if args.threads < 0:
        raise OsloError(f"--threads must not be negative, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise OsloError(f"unknown --device '{args.device}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OsloError("--device cuda, but CUDA is not available")
    return device


def _encoder(args: argparse.Namespace) -> codec.Codec:
    """The codec of --checkpoint, or of the zoo entry (--zoo-model, -q)."""
    device = _device(args)
    if args.checkpoint is not None:
        if args.quality is not None:
            raise OsloError("-q picks a zoo model: it excludes --checkpoint")
        return codec.load_codec(args.checkpoint, device)
    entry = zoo.zoo_entry(args.zoo_model, args.quality)
    loaded = codec.load_codec(zoo.checked_path(entry), device)
    get_logger().info("zoo model %s quality %d (lambda %g)", entry.model, entry.quality,
                      entry.lmbda)
    return loaded


class _Decoders:
    """The codec of --checkpoint, or per file the zoo model of the hash it records."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = _device(args)
        self.fixed = codec.load_codec(args.checkpoint, self.device) if args.checkpoint else None
        self.loaded: dict[str, codec.Codec] = {}

    def __call__(self, source: Path, coded: codec.OsloFile) -> codec.Codec:
        if self.fixed is not None:
            return self.fixed
        entry = zoo.entry_by_digest(coded.header.checkpoint_hash)
        if entry is None:
            raise OsloError(f"'{source}' was not encoded by a zoo model: give its --checkpoint")
        if entry.file not in self.loaded:
            self.loaded[entry.file] = codec.load_codec(zoo.checked_path(entry), self.device)
        return self.loaded[entry.file]


def _refinement(args: argparse.Namespace) -> Refinement | None:
    """The refinement of --refine, --refine-lr and --refine-lambda (None: off)."""
    if args.refine < 0:
        raise OsloError(f"--refine must not be negative, got {args.refine}")
    if not args.refine:
        if args.refine_lambda is not None or args.refine_lr != DEFAULT_REFINE_LR:
            raise OsloError("--refine-lr and --refine-lambda need --refine STEPS")
        return None
    try:
        return Refinement(args.refine, args.refine_lr, args.refine_lambda)
    except ValueError as error:
        raise OsloError(f"--refine: {error}") from None


def encode(args: argparse.Namespace) -> None:
    pairs = _pairs(args, INPUT_EXTENSIONS, codec.SUFFIX.lstrip("."))
    refinement = _refinement(args)
    model = _encoder(args)
    res = args.healpix_res
    if res is None:
        res = model.config.get("healpix_res")
    log = get_logger()
    for source, target in _progress(pairs, args, "encode"):
        is_map = source.suffix.lower() == ".npy"
        hp_map, shape = codec.read_input(source, args.healpix_res if is_map else res)
        data = codec.encode_map(model, hp_map, args.patch_res, args.batch_size,
                                args.deterministic, shape, args.scale_table_levels,
                                args.tile_res, not args.no_progress, refinement)
        codec.write_bytes(target, data)
        log.info("%s -> %s: %d bytes, %.4f bpp", source, target, len(data),
                 8 * len(data) / len(hp_map))


def decode(args: argparse.Namespace) -> None:
    fmt = args.format or "npy"
    pairs = _pairs(args, (codec.SUFFIX.lstrip("."),), fmt)
    if len(pairs) == 1 and not Path(args.input).is_dir() and args.format:
        if pairs[0][1].suffix.lower().lstrip(".") != args.format:
            raise OsloError(f"-f {args.format} does not match the output '{pairs[0][1]}'")
    decoders = _Decoders(args)
    log = get_logger()
    for source, target in _progress(pairs, args, "decode"):
        coded = codec.read_file(source)
        model = decoders(source, coded)
        try:
            hp_map = codec.decode(model, coded, args.tile_res, not args.no_progress)
        except OsloError as error:
            raise OsloError(f"'{source}': {error}") from None
        codec.write_output(target, hp_map, coded.header, args.erp_width)
        log.info("%s -> %s", source, target)


def info(args: argparse.Namespace) -> None:
    source = Path(args.input)
    files = _files(source, ("oslo",)) if source.is_dir() else [source]
    for i, path in enumerate(files):
        text = codec.info_text(codec.read_file(path))
        sys.stdout.write(("\n" if i else "") + f"file: {path}\n" + text)


def models(args: argparse.Namespace) -> None:
    sys.stdout.write(zoo.listing(zoo.read_registry()))


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    {"encode": encode, "decode": decode, "info": info, "models": models}[args.command](args)


if __name__ == "__main__":
    run_main(main)
