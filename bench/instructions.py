"""Instruction counts of the contenders under callgrind: ratios that machine noise cannot move.

Wall-clock ratios on a shared machine swing by tens of percent from run to run. Callgrind
counts the instructions the CPU executes instead, which repeat exactly for the same program and
input. Each contender runs in its own process under ``valgrind --tool=callgrind`` twice: once
making one pass over the corpus, once making two. The difference is one warm pass, with the
interpreter start-up, imports and corpus generation cancelled out (``PYTHONHASHSEED`` is fixed
so both processes do the same set-up work).

Run with ``python -m bench --instructions [N]`` (N events, default 2000); it needs valgrind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from attentive_router import Context
from attentive_router._transform.router import DEFAULT_DISPATCH
from bench import transform as contenders
from bench.corpus import DEFAULT_SEED, RECEIVED_AT, generate

CONTENDERS = (
    "pipeline",
    "floor",
    "interpreter",
    "generated_mappings",
    "interpreted_mappings",
)
LABELS = {
    "pipeline": "(a) pipeline: loads, route, to_record, dumps",
    "floor": "(b) floor: orjson loads + dumps only",
    "interpreter": "(c) interpreter pipeline (rules_interpreter)",
    "generated_mappings": "(d) generated mapping functions only",
    "interpreted_mappings": "(e) interpreted mapping functions only",
}
_COLLECTED = re.compile(r"Collected : (\d+)")
_ROOT = Path(__file__).resolve().parent.parent


def _runner(contender: str, lines: Sequence[bytes], ctx: Context) -> Callable[[], object]:
    if contender == "pipeline":
        return lambda: contenders.pipeline(lines, ctx)
    if contender == "floor":
        return lambda: contenders.floor(lines)
    dispatch, why = contenders.load_interpreter()
    if dispatch is None:
        raise SystemExit(why)
    if contender == "interpreter":
        return lambda: contenders.pipeline(lines, ctx, dispatch)
    chosen = DEFAULT_DISPATCH if contender == "generated_mappings" else dispatch
    calls = contenders.mapping_calls(lines, ctx, chosen)
    return lambda: contenders.mappings_only(calls, ctx)


def child(contender: str, passes: int, events: int, seed: int) -> None:
    """Inside valgrind: set up, then make ``passes`` passes of ``contender`` over the corpus."""
    ctx = Context(RECEIVED_AT)
    lines = generate(events, seed)
    run = _runner(contender, lines, ctx)
    for _ in range(passes):
        run()


def count(contender: str, passes: int, events: int, seed: int) -> int:
    """Instructions of a whole child process (set-up plus ``passes`` passes)."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={scratch}/callgrind.out",
            sys.executable,
            "-m",
            "bench.instructions",
            contender,
            str(passes),
            str(events),
            str(seed),
        ]
        environment = {**os.environ, "PYTHONHASHSEED": "0"}
        result = subprocess.run(  # noqa: S603 - valgrind running this interpreter
            command, capture_output=True, text=True, check=False, cwd=_ROOT, env=environment
        )
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        tail = result.stderr.strip().splitlines()[-5:]
        msg = f"callgrind run of {contender} failed: {' | '.join(tail)}"
        raise RuntimeError(msg)
    return int(found.group(1))


def report(events: int, seed: int = DEFAULT_SEED) -> int:
    """Count every contender, print instructions per event and the target ratios."""
    if shutil.which("valgrind") is None:
        print("python -m bench --instructions: valgrind is not installed", file=sys.stderr)
        return 2
    jobs = [(name, passes) for name in CONTENDERS for passes in (1, 2)]
    print(f"counting instructions under callgrind ({len(jobs)} runs)...", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = dict(
            zip(jobs, pool.map(lambda job: count(job[0], job[1], events, seed), jobs), strict=True)
        )
    per_pass = {name: counts[name, 2] - counts[name, 1] for name in CONTENDERS}
    print()
    print(f"instructions per event under callgrind ({events:,} events, one warm pass)")
    for name in CONTENDERS:
        print(f"  {LABELS[name]:<46} {per_pass[name] / events:>12,.0f}")
    print()
    print("ratios (of instructions)")
    lines = (
        ("pipeline / floor", per_pass["pipeline"] / per_pass["floor"], 2.0, True),
        ("interpreter / pipeline", per_pass["interpreter"] / per_pass["pipeline"], 3.0, False),
        (
            "interpreted / generated mappings",
            per_pass["interpreted_mappings"] / per_pass["generated_mappings"],
            3.0,
            False,
        ),
    )
    for label, ratio, target, at_most in lines:
        met = ratio <= target if at_most else ratio >= target
        sign = "<=" if at_most else ">="
        verdict = "PASS" if met else "MISS"
        print(f"  {label:<34} {ratio:>6.2f}x   target {sign} {target:.1f}   {verdict}")
    return 0


if __name__ == "__main__":
    name, passes, size, seed_text = sys.argv[1:5]
    child(name, int(passes), int(size), int(seed_text))
