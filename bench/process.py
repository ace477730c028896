"""The whole ``transform`` process against a process that only parses and re-serialises.

Both corpora (the default mix and the custom-heavy one) are written to NDJSON files; each round
runs, in a rotated order, ``python -m attentive_router transform FILE`` and a floor process that
reads the same file line by line with ``orjson.loads`` and writes ``orjson.dumps`` of each line,
both writing to /dev/null. Start-up (interpreter and imports) is measured the same way on an
empty file and shown beside the ratio, since it is part of the whole-process time but not of
the per-event cost.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attentive_router
from bench.corpus import generate

PROCESS_EVENTS = 30_000
"""Events per file: enough that the transform's work outweighs its start-up."""

ROUNDS = 5

TARGETS = {"default": 2.0, "custom-heavy": 3.0}
"""The transform process should take at most this many times the floor process's time."""

_FLOOR = """\
import sys
import orjson
loads, dumps, option = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE
write = sys.stdout.buffer.write
with open(sys.argv[1], "rb") as lines:
    for line in lines:
        if line.strip():
            write(dumps(loads(line), option=option))
"""

_RECEIVED_AT = "2026-01-08T14:00:00Z"


def _environment() -> dict[str, str]:
    """The environment of both processes: the package measured is the one imported here."""
    source = str(Path(attentive_router.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (source, env.get("PYTHONPATH"))))
    env.pop("ATTENTIVE_ROUTER_CONFIG", None)
    return env


def _commands(path: Path) -> dict[str, list[str]]:
    transform = [sys.executable, "-m", "attentive_router", "transform"]
    return {
        "transform": [*transform, "--received-at", _RECEIVED_AT, str(path)],
        "floor": [sys.executable, "-c", _FLOOR, str(path)],
    }


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(  # noqa: S603 - our own interpreter with our own arguments
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        check=True,
    )
    return time.perf_counter() - start


def run(events: int, rounds: int, seed: int) -> None:
    """Measure and print the whole-process ratios of both corpora."""
    env = _environment()
    with tempfile.TemporaryDirectory(prefix="bench-process-") as directory:
        folder = Path(directory)
        files = {"empty": folder / "empty.ndjson"}
        files["empty"].write_bytes(b"")
        for mix in TARGETS:
            files[mix] = folder / f"{mix}.ndjson"
            files[mix].write_bytes(b"".join(generate(events, seed, mix=mix)))
        runs = {
            (file, contender): command
            for file, path in files.items()
            for contender, command in _commands(path).items()
        }
        seconds: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        names = list(runs)
        print(
            f"measuring whole processes, {rounds} rounds of {len(names)} runs...",
            file=sys.stderr,
            flush=True,
        )
        for number in range(rounds):
            shift = (number * 3) % len(names)
            for key in names[shift:] + names[:shift]:
                seconds[key].append(_timed(runs[key], env, folder))
        sizes = {mix: files[mix].stat().st_size for mix in TARGETS}
    report(seconds, sizes, events)


def report(seconds: dict[tuple[str, str], list[float]], sizes: dict[str, int], events: int) -> None:
    """Print the medians, the ratios with their verdicts, and the start-up beside them."""
    median = {key: statistics.median(values) for key, values in seconds.items()}
    rounds = len(next(iter(seconds.values())))
    print()
    print("whole process: `python -m attentive_router transform FILE` against an orjson floor")
    print(
        f"files: {events:,} events each ("
        + ", ".join(f"{mix} {size / 1e6:.1f} MB" for mix, size in sizes.items())
        + f"); rounds: {rounds}, interleaved, order rotated; output to /dev/null"
    )
    print()
    header = f"  {'process':<36} {'median s':>9} {'min-max s':>13} {'events/s':>10}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for (file, contender), values in seconds.items():
        rate = "" if file == "empty" else f"{events / median[file, contender]:>10,.0f}"
        spread = f"{min(values):.3f}-{max(values):.3f}"
        label = f"{contender}, {file} file"
        print(f"  {label:<36} {median[file, contender]:>9.3f} {spread:>13} {rate}")
    print()
    print("ratios (of median seconds per run)")
    start_t, start_f = median["empty", "transform"], median["empty", "floor"]
    for mix, target in TARGETS.items():
        top, bottom = median[mix, "transform"], median[mix, "floor"]
        ratio = top / bottom
        per_round = [
            a / b for a, b in zip(seconds[mix, "transform"], seconds[mix, "floor"], strict=True)
        ]
        net = (top - start_t) / max(bottom - start_f, 1e-9)
        verdict = "PASS" if ratio <= target else "MISS"
        print(
            f"  {'transform / floor, ' + mix:<32} {ratio:>6.2f}x   target <= {target:.1f}   "
            f"{verdict}   (per round {min(per_round):.2f}-{max(per_round):.2f}; "
            f"{net:.2f}x without start-up)"
        )
    print(
        f"  start-up (empty file): transform {start_t * 1000:.0f} ms, floor {start_f * 1000:.0f} ms"
    )
