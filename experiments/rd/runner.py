"""Running the steps of the RD study: in this process or as subprocesses, several chains at a
time (``--jobs``), skipping every step whose output exists (so that a study resumes), with the
seconds of each step in ``steps.csv``."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from types import ModuleType

import torch

from experiments.rd.steps import Step
from utils.cli import get_logger
from utils.errors import OsloError
from utils.io import write_text

REPO = Path(__file__).resolve().parents[2]
"""The repository root, which the steps' scripts are relative to."""

_SCRIPT_MAINS: dict[str, Callable[[Sequence[str]], object]] = {}


def script_main(script: str) -> Callable[[Sequence[str]], object]:
    """The ``main(argv)`` of a toolkit script (imported once)."""
    if script not in _SCRIPT_MAINS:
        path = REPO / script
        name = "_rd_study_" + path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _SCRIPT_MAINS[script] = module.main
    return _SCRIPT_MAINS[script]


def run_in_subprocess(step: Step, threads: int, log_file: Path) -> None:
    """Run ``step`` as ``python <script> <argv>`` with ``threads`` torch threads, its output
    appended to ``log_file``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    with log_file.open("a") as out:
        out.write(f"$ {step.command()}\n")
        out.flush()
        code = subprocess.run([sys.executable, str(REPO / step.script), *step.argv], env=env,
                              stdout=out, stderr=subprocess.STDOUT).returncode
    if code:
        raise OsloError(f"step '{step.name}' failed (exit {code}); its output: {log_file}")


def run_steps(steps: Sequence[Step], log_path: Path, jobs: int = 1) -> float:
    """Run the steps whose output is missing; append each one's seconds to ``log_path``
    (``steps.csv``). Returns the seconds spent (summed over the steps).

    With ``jobs == 1`` every step runs in this process, in order. With more, the shared steps
    (``chain == ""``) run first in this process, then the chains run ``jobs`` at a time, each
    step in a subprocess with ``torch.get_num_threads() // jobs`` threads and its output in
    ``logs/<chain>.log`` beside ``log_path``: small models train faster as two one-thread
    processes than as one two-thread process."""
    log = get_logger()
    if not log_path.exists():
        write_text(log_path, "step,seconds\n")
    lock = threading.Lock()

    def run(number: int, step: Step, runner: Callable[[Step], object]) -> float:
        if step.output.exists():
            log.info("[%d/%d] %s: done before, skipped", number, len(steps), step.name)
            return 0.0
        log.info("[%d/%d] %s: %s", number, len(steps), step.name, step.command())
        start = time.perf_counter()
        runner(step)
        seconds = time.perf_counter() - start
        if not step.output.exists():
            raise OsloError(f"step '{step.name}' ended without writing '{step.output}'")
        with lock, log_path.open("a") as handle:
            handle.write(f"\"{step.name}\",{seconds:.1f}\n")
        return seconds

    def in_process(step: Step) -> object:
        return script_main(step.script)(list(step.argv))

    numbered = list(enumerate(steps, 1))
    if jobs == 1:
        return sum(run(number, step, in_process) for number, step in numbered)
    spent = sum(run(number, step, in_process) for number, step in numbered if not step.chain)
    chains: dict[str, list[tuple[int, Step]]] = {}
    for number, step in numbered:
        if step.chain:
            chains.setdefault(step.chain, []).append((number, step))
    threads = max(1, torch.get_num_threads() // jobs)
    logs = log_path.parent / "logs"
    logs.mkdir(exist_ok=True)

    def run_chain(chain: str, members: list[tuple[int, Step]]) -> float:
        log_file = logs / (re.sub(r"[^A-Za-z0-9.=_-]+", "_", chain) + ".log")
        return sum(run(number, step, lambda s: run_in_subprocess(s, threads, log_file))
                   for number, step in members)

    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_chain, chain, members) for chain, members in chains.items()]
        try:
            for future in as_completed(futures):
                spent += future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return spent
