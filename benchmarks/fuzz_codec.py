"""Fuzzing of the ``.oslo`` decoder: altered rANS strings in files whose framing is valid.

A map is encoded once (:func:`spherical_models.coding.codec.encode_map`) and decoded once for the
reference. Each case then alters the *strings* of that file, writes the header's string length
varints for the new lengths and the file CRC-32 again (:func:`spherical_models.coding.codec.pack`),
so the file parses, and decodes it. Case ``i`` uses kind ``i % 6``, seeded by ``--seed`` and ``i``:

* ``random``: random bytes over a random span of a random string;
* ``zeros``: a span set to 0x00;
* ``ones``: a span set to 0xFF;
* ``longer``: random bytes (1..256) inserted at a random position of a string (its end
  included);
* ``shorter``: a random span removed from a string (it may become empty);
* ``swapped``: the ``y`` and ``z`` strings exchanged (one latent: the string's 4-byte words in
  reverse order).

Spans start anywhere and have a log-uniform length, from one byte to the rest of the string.
Each case decodes in a child process forked from this one (torch and the codec loaded once, on
one thread) under a wall-clock limit. Outcomes: ``refused`` (the decoder's
:class:`~spherical_models.entropy.streams.LatentMismatchError`), ``exact`` (decoded to the
reference map), and the failures: ``wrong`` (decoded to another map: a silent wrong image),
``error`` (any other exception), ``crash`` (the child died: a signal or a non-zero exit) and
``timeout``.

Prints a table per kind and in total, and exits 1 if any failure occurs or fewer than 99% of
the cases are refused::

    python benchmarks/fuzz_codec.py --cases 1000
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = "tests/data/checkpoints/scale_hyperprior.pth.tar"
DEFAULT_INPUT = "samples/earth_day.jpg"
KINDS = ("random", "zeros", "ones", "longer", "shorter", "swapped")
OUTCOMES = ("refused", "exact", "wrong", "error", "crash", "timeout")
FAILURES = ("wrong", "error", "crash", "timeout")
MIN_REFUSED = 0.99
MAX_INSERTED = 256
MESSAGE_CHARS = 300


# ---------------------------------------------------------------------------------------------
# Mutations


def _span_length(rng: np.random.Generator, most: int) -> int:
    """A log-uniform length in 1..``most``."""
    return min(most, max(1, int(math.exp(rng.uniform(0.0, math.log(most + 1))))))


def _span(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """``(start, stop)`` of a random non-empty span of ``size`` bytes (``size`` > 0)."""
    start = int(rng.integers(0, size))
    return start, start + _span_length(rng, size - start)


def mutate(strings: list[bytes], kind: str, rng: np.random.Generator,
           names: tuple[str, ...] = ("y", "z")) -> tuple[list[bytes], str]:
    """The strings altered by ``kind`` (module docstring), and a description of the change."""
    strings = [bytes(s) for s in strings]
    if kind == "swapped":
        if len(strings) > 1:
            strings[0], strings[1] = strings[1], strings[0]
            return strings, f"{names[0]} and {names[1]} exchanged"
        string = strings[0]
        cut = len(string) - len(string) % 4
        words = [string[i : i + 4] for i in range(0, cut, 4)]
        strings[0] = b"".join(reversed(words)) + string[cut:]
        return strings, f"{names[0]}: {len(words)} words reversed"
    candidates = [i for i, s in enumerate(strings) if s or kind == "longer"]
    index = int(rng.choice(candidates))
    string = strings[index]
    size = len(string)
    if kind == "longer":
        position = int(rng.integers(0, size + 1))
        count = _span_length(rng, MAX_INSERTED)
        inserted = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
        strings[index] = string[:position] + inserted + string[position:]
        return strings, f"{names[index]}: {count} bytes inserted at {position}/{size}"
    start, stop = _span(rng, size)
    where = f"{names[index]}[{start}:{stop}] of {size}"
    if kind == "shorter":
        strings[index] = string[:start] + string[stop:]
        return strings, f"{where} removed"
    if kind == "random":
        fill = rng.integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    elif kind == "zeros":
        fill = bytes(stop - start)
    elif kind == "ones":
        fill = b"\xff" * (stop - start)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    strings[index] = string[:start] + fill + string[stop:]
    return strings, f"{where} set to {kind}"


def case_bytes(valid, kind: str, seed: int, case: int) -> tuple[bytes, str, bool]:
    """The bytes of case ``case``: ``valid`` (an :class:`~spherical_models.coding.codec.OsloFile`)
    with its strings altered by ``kind`` and framed again; its description; whether the
    strings are unchanged (a no-op mutation)."""
    from spherical_models.coding import codec

    rng = np.random.default_rng([seed, case])
    names = ("y", "z", "w", "v")[: len(valid.strings)]
    strings, text = mutate(valid.strings, kind, rng, names)
    return codec.pack(valid.header, strings), text, strings == valid.strings


# ---------------------------------------------------------------------------------------------
# Cases in child processes


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"[:MESSAGE_CHARS]


def _child(loaded, data: bytes, reference: np.ndarray, connection) -> None:
    """Decode ``data`` and send ``(outcome, message)``."""
    from spherical_models.coding import codec
    from spherical_models.entropy.streams import LatentMismatchError

    try:
        decoded = codec.decode(loaded, codec.unpack(data))
    except LatentMismatchError as error:
        result = ("refused", str(error))
    except BaseException as error:  # every other exception is an outcome
        result = ("error", _one_line(error))
    else:
        same = decoded.shape == reference.shape and bool(np.array_equal(decoded, reference))
        result = ("exact", "") if same else (
            "wrong", f"{int(np.count_nonzero(decoded != reference))} values differ")
    connection.send(result)
    connection.close()


def _exit_text(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode} without a result"


def run_cases(
    loaded, reference: np.ndarray, jobs: list[tuple[int, bytes]], timeout: float, workers: int
) -> dict[int, tuple[str, str, float]]:
    """Decode every ``(case, bytes)`` of ``jobs`` in a forked child, ``workers`` at a time:
    ``{case: (outcome, message, seconds)}``; a child past ``timeout`` seconds is killed."""
    context = multiprocessing.get_context("fork")
    pending = list(reversed(jobs))
    running: dict[int, tuple[int, object, object, float]] = {}
    results: dict[int, tuple[str, str, float]] = {}
    while pending or running:
        while pending and len(running) < max(1, workers):
            case, data = pending.pop()
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(loaded, data, reference, send),
                                      daemon=True)
            start = time.perf_counter()
            process.start()
            send.close()
            running[process.sentinel] = (case, process, receive, start)
        now = time.perf_counter()
        deadline = min(start + timeout for _, _, _, start in running.values())
        ready = set(wait(list(running), max(0.0, deadline - now)))
        now = time.perf_counter()
        for sentinel in list(running):
            case, process, receive, start = running[sentinel]
            if sentinel in ready:
                result = None
                try:
                    if receive.poll():
                        result = receive.recv()
                except (EOFError, OSError):
                    result = None
                process.join()
                if result is None or process.exitcode != 0:
                    result = ("crash", _exit_text(process.exitcode))
            elif now - start >= timeout:
                process.kill()
                process.join()
                result = ("timeout", f"no result after {timeout:g} s")
            else:
                continue
            receive.close()
            results[case] = (*result, time.perf_counter() - start)
            del running[sentinel]
    return results


# ---------------------------------------------------------------------------------------------
# The run


def _located(path: str | Path) -> Path:
    """``path``, or where it is relative and missing, the same path in the repository."""
    path = Path(path)
    return ROOT / path if not path.is_absolute() and not path.exists() else path


def run_fuzz(
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    input_path: str | Path = DEFAULT_INPUT,
    patch_res: int = 6,
    batch_size: int = 12,
    cases: int = 1000,
    seed: int = 0,
    timeout: float = 10.0,
    workers: int = 2,
    healpix_res: int = 7,
    log: Callable[[str], None] | None = print,
    show: int = 20,
) -> dict:
    """Fuzz the decoder (module docstring) and print the table with ``log``.

    Returns:
        ``{"kinds": {kind: {outcome: count}}, "total": {outcome: count}, "cases",
        "refused_fraction", "max_seconds", "mean_seconds", "seconds" (the whole run),
        "file_bytes", "string_bytes", "messages": {refusal message: count}, "cases_not_refused":
        [(case, kind, outcome, description, message)], "noop": cases whose strings were left
        unchanged, "passed": no failure and at least 99% refused}``.
    """
    import torch

    log = log or (lambda _line: None)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fast tiny layers, and safe forks
    try:
        return _run(checkpoint, input_path, patch_res, batch_size, cases, seed, timeout,
                    workers, healpix_res, log, show, started)
    finally:
        torch.set_num_threads(threads)


def _run(checkpoint, input_path, patch_res, batch_size, cases, seed, timeout, workers,
         healpix_res, log, show, started) -> dict:
    from spherical_models.coding import codec
    from utils.errors import OsloError

    checkpoint, input_path = _located(checkpoint), _located(input_path)
    loaded = codec.load_codec(checkpoint)
    hp_map, shape = codec.read_input(input_path, healpix_res)
    data = codec.encode_map(loaded, hp_map, patch_res, batch_size, image_shape=shape)
    valid = codec.unpack(data)
    if codec.pack(valid.header, valid.strings) != data:
        raise RuntimeError("pack(unpack(file)) is not the file: the framing cannot be rebuilt")
    reference = codec.decode(loaded, valid)
    names = loaded.model.latent_names
    sizes = " + ".join(f"{n} {len(s)}" for n, s in zip(names, valid.strings, strict=True))
    log(f"{loaded.config.get('model')} from {checkpoint}; {input_path} at resolution "
        f"{healpix_res}, patches of resolution {patch_res}, batches of {batch_size}: "
        f"{len(data)} bytes, strings {sizes}; {cases} cases, seed {seed}, {workers} workers, "
        f"{timeout:g} s each")

    jobs, descriptions, results, noop = [], {}, {}, 0
    for case in range(cases):
        kind = KINDS[case % len(KINDS)]
        mutated, text, unchanged = case_bytes(valid, kind, seed, case)
        descriptions[case] = text
        noop += unchanged
        try:
            codec.unpack(mutated)
        except OsloError as error:
            results[case] = ("error", f"does not parse: {error}"[:MESSAGE_CHARS], 0.0)
            continue
        jobs.append((case, mutated))
    results.update(run_cases(loaded, reference, jobs, timeout, workers))

    kinds = {kind: Counter() for kind in KINDS}
    seconds = {kind: [] for kind in KINDS}
    messages: Counter = Counter()
    not_refused = []
    for case in range(cases):
        kind = KINDS[case % len(KINDS)]
        outcome, message, elapsed = results[case]
        kinds[kind][outcome] += 1
        seconds[kind].append(elapsed)
        if outcome == "refused":
            messages[message] += 1
        else:
            not_refused.append((case, kind, outcome, descriptions[case], message))
    total = sum(kinds.values(), Counter())
    every = [s for kind in KINDS for s in seconds[kind]]
    refused = total["refused"] / cases if cases else 0.0
    failed = sum(total[o] for o in FAILURES)
    passed = failed == 0 and refused >= MIN_REFUSED

    head = f"{'kind':10s}{'cases':>7s}" + "".join(f"{o:>9s}" for o in OUTCOMES)
    log(head + f"{'refused%':>10s}{'max s':>8s}{'mean s':>8s}")
    for kind in [*KINDS, "total"]:
        counts, times = (total, every) if kind == "total" else (kinds[kind], seconds[kind])
        n = sum(counts.values())
        row = f"{kind:10s}{n:7d}" + "".join(f"{counts[o]:9d}" for o in OUTCOMES)
        row += (f"{100 * counts['refused'] / n:9.1f}%{max(times):8.2f}"
                f"{sum(times) / n:8.3f}") if n else ""
        log(row)
    for message, count in messages.most_common():
        log(f"refused {count}x: {message}")
    for case, kind, outcome, text, message in not_refused[:show]:
        log(f"case {case} ({kind}): {text}: {outcome}" + (f" ({message})" if message else ""))
    if len(not_refused) > show:
        log(f"... and {len(not_refused) - show} more cases not refused")
    elapsed = time.perf_counter() - started
    log(f"{noop} case(s) left the strings unchanged; total {elapsed:.1f} s; "
        f"{'PASS' if passed else 'FAIL'}: {failed} failure(s), {100 * refused:.1f}% refused "
        f"(at least {100 * MIN_REFUSED:g}% needed)")
    return {
        "kinds": {kind: dict(counts) for kind, counts in kinds.items()},
        "total": dict(total), "cases": cases, "refused_fraction": refused,
        "max_seconds": max(every, default=0.0),
        "mean_seconds": sum(every) / cases if cases else 0.0, "seconds": elapsed,
        "file_bytes": len(data), "string_bytes": [len(s) for s in valid.strings],
        "messages": dict(messages), "cases_not_refused": not_refused, "noop": noop,
        "passed": passed,
    }


def main(argv: list[str] | None = None) -> int:
    from utils.cli import HelpFormatter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="checkpoint of main_sphere_compression.py (a relative path is also "
                        "looked for in the repository)")
    parser.add_argument("--input", default=DEFAULT_INPUT,
                        help="ERP image (sampled at --healpix-res) or .npy HEALPix map")
    parser.add_argument("--healpix-res", type=int, default=7,
                        help="HEALPix resolution the image is sampled at")
    parser.add_argument("--patch-res", type=int, default=6, help="patch resolution (-1: sphere)")
    parser.add_argument("--batch-size", type=int, default=12, help="patches per batch")
    parser.add_argument("--cases", type=int, default=1000, help="cases (kind = case %% 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="wall-clock limit of one case, seconds")
    parser.add_argument("--workers", type=int, default=2, help="cases decoded in parallel")
    parser.add_argument("--show", type=int, default=20,
                        help="cases not refused to list with their mutation")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.workers < 1 or args.timeout <= 0:
        parser.error("--cases and --workers must be at least 1, --timeout positive")
    result = run_fuzz(args.checkpoint, args.input, args.patch_res, args.batch_size, args.cases,
                      args.seed, args.timeout, args.workers, args.healpix_res, show=args.show)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
