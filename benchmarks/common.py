"""Helpers shared by the benchmarks: timing and peak memory of a fresh process."""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time (seconds) of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _child(fn, args, queue) -> None:
    start = time.perf_counter()
    fn(*args)
    elapsed = time.perf_counter() - start
    queue.put((elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def run_isolated(fn: Callable, *args) -> tuple[float, int]:
    """Run ``fn(*args)`` in a fresh process; return (seconds, peak resident bytes of it).

    The peak includes the interpreter and the imported libraries (about 0.2 GB with torch
    absent), so it is an upper bound of what the work itself needs.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(fn, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result
