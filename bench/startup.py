"""Start-up of the command line: the whole process of short commands, beside two floors.

Every run is a fresh process, timed from spawn to exit (wall clock, the target's measure; the
CPU time of the process, user and system, is shown beside it: other load on the machine moves
it less). In each round every command
runs once, in an order rotated from round to round, after one unmeasured warm-up run of each;
the report gives medians. The processes keep their compiled bytecode (in a temporary
``PYTHONPYCACHEPREFIX``, written by the warm-up runs even where ``PYTHONDONTWRITEBYTECODE`` is
set), as an installed package has it: compiling the sources again on every run would be most of
what is measured. The command line is
started as ``python -m attentive_router`` (as the memory benchmark starts it), so that it runs the
code of the checkout it is started from.

Floors: ``python -c pass`` (the interpreter alone) and ``python -c "import orjson"`` (the
interpreter and the JSON library that every command loads).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import system

RUNS = 10
"""Runs of each command (interleaved rounds)."""

TARGET_MS = 150.0
"""``transform`` of an empty file and ``--help`` should take less than this, whole process."""

LABELS = {
    "pass": "(q) floor: python -c pass",
    "orjson": '(r) floor: python -c "import orjson"',
    "transform": "(s) attentive-router transform EMPTY",
    "help": "(t) attentive-router --help",
}
JUDGED = {"transform": "transform of an empty file", "help": "--help"}


def commands(empty: Path) -> dict[str, list[str]]:
    """The command lines, by key of ``LABELS``."""
    python = sys.executable
    return {
        "pass": [python, "-c", "pass"],
        "orjson": [python, "-c", "import orjson"],
        "transform": [python, "-m", "attentive_router", "transform", str(empty)],
        "help": [python, "-m", "attentive_router", "--help"],
    }


def _cpu() -> float:
    """CPU seconds (user + system) of the waited-for children of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(command: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds from spawn to exit of ``command``, which must succeed."""
    cpu = _cpu()
    start = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        msg = f"{' '.join(command)} exited {result.returncode}: {result.stderr.decode()}"
        raise RuntimeError(msg)
    return seconds, _cpu() - cpu


def measure(runs: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) milliseconds of every run of every command, by key of ``LABELS``."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        empty = Path(folder) / "empty.ndjson"
        empty.write_bytes(b"")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(folder) / "pycache")
        lines = commands(empty)
        keys = list(lines)
        for key in keys:
            _run(lines[key], env)  # warm-up: compiles the bytecode; not counted
        results: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
        for round_ in range(runs):
            shift = round_ % len(keys)
            for key in keys[shift:] + keys[:shift]:
                wall, cpu = _run(lines[key], env)
                results[key].append((wall * 1000, cpu * 1000))
    return results


def report(results: dict[str, list[tuple[float, float]]]) -> None:
    """Print the table and the verdict of each judged command."""
    runs = len(results["pass"])
    print()
    print("attentive-router start-up (whole process, wall clock)")
    print(system.machine())
    print(
        f"runs: {runs} per command, interleaved, order rotated every round, after a warm-up "
        "run that caches the bytecode"
    )
    print()
    header = f"  {'command':<44} {'median ms':>10} {'min-max ms':>14} {'median CPU ms':>14}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    medians = {key: statistics.median(wall for wall, _ in runs) for key, runs in results.items()}
    for key, label in LABELS.items():
        walls = [wall for wall, _ in results[key]]
        cpu = statistics.median(cpu for _, cpu in results[key])
        spread = f"{min(walls):.1f}-{max(walls):.1f}"
        print(f"  {label:<44} {medians[key]:>10.1f} {spread:>14} {cpu:>14.1f}")
    print()
    print("targets (median, whole process)")
    for key, label in JUDGED.items():
        ok = medians[key] < TARGET_MS
        above = medians[key] - medians["orjson"]
        print(
            f"  {label:<32} {medians[key]:>7.1f} ms   target < {TARGET_MS:.0f} ms   "
            f"{'PASS' if ok else 'MISS'}   ({above:.1f} ms above the orjson floor, "
            f"{medians[key] / medians['pass']:.1f}x python -c pass)"
        )


def run(runs: int = RUNS) -> None:
    """Measure and print the start-up section."""
    print(f"measuring start-up, {runs} runs per command...", file=sys.stderr, flush=True)
    report(measure(runs))
