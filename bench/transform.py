"""The transform's contenders and how they are measured: shared by the wall-clock report
(``python -m bench``) and the instruction counts (``bench/instructions.py``).

Each contender takes the same in-memory NDJSON lines and returns a ``Measurement``; ``measure``
runs them in interleaved rounds.
"""

from __future__ import annotations

import gc
import importlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from attentive_router import Context, Rejected, TransformWarning, route, to_record
from attentive_router._transform.mapping import Transform
from attentive_router._transform.router import DEFAULT_DISPATCH, MAPPED_CALLS, Dispatch, _select
from attentive_router._transform.source import Source, read_source

_OPTION = orjson.OPT_APPEND_NEWLINE
_TESTS = Path(__file__).resolve().parent.parent / "tests"


@dataclass
class Measurement:
    """One run of one contender: wall seconds, and named parts of them when it times parts."""

    seconds: float
    parts: dict[str, float] = field(default_factory=dict)


Runner = Callable[[Sequence[bytes]], Measurement]


# -- contenders -------------------------------------------------------------------------------


def pipeline(
    lines: Sequence[bytes], ctx: Context, dispatch: Dispatch = DEFAULT_DISPATCH
) -> Measurement:
    """What ``attentive-router transform`` does per NDJSON line (with the generated transforms,
    or with another dispatch such as the rules interpreter's)."""
    loads, dumps = orjson.loads, orjson.dumps
    start = time.perf_counter()
    for line in lines:
        event = loads(line)
        dumps(to_record(route(event, ctx, dispatch=dispatch), event), option=_OPTION)
    return Measurement(time.perf_counter() - start)


def floor(lines: Sequence[bytes]) -> Measurement:
    """JSON in and out of the same lines, nothing else."""
    loads, dumps = orjson.loads, orjson.dumps
    start = time.perf_counter()
    for line in lines:
        dumps(loads(line), option=_OPTION)
    return Measurement(time.perf_counter() - start)


def transform_only(lines: Sequence[bytes], ctx: Context) -> Measurement:
    """The pipeline with a clock between its stages; its seconds are route + to_record only.

    Each event is timed right after it is parsed, as in the pipeline, so its objects are still
    in the CPU caches and the heap stays as small as the pipeline's. The four clock reads per
    event cost well under 1 % of an event's time.
    """
    loads, dumps = orjson.loads, orjson.dumps
    clock = time.perf_counter
    parsing = routing = recording = writing = 0.0
    before = clock()
    for line in lines:
        event = loads(line)
        parsed = clock()
        outcome = route(event, ctx)
        routed = clock()
        record = to_record(outcome, event)
        recorded = clock()
        dumps(record, option=_OPTION)
        written = clock()
        parsing += parsed - before
        routing += routed - parsed
        recording += recorded - routed
        writing += written - recorded
        before = written
    parts = {"loads": parsing, "route": routing, "to_record": recording, "dumps": writing}
    return Measurement(routing + recording, parts)


Calls = list[tuple[Source, tuple[Transform, ...]]]


def mapping_calls(lines: Sequence[bytes], ctx: Context, dispatch: Dispatch) -> Calls:
    """Each routable event resolved once, with the mapping functions the router would call."""
    calls: Calls = []
    for line in lines:
        event = orjson.loads(line)
        call = event.get("type") if isinstance(event, dict) else None
        if call not in MAPPED_CALLS:
            continue
        src = read_source(event)
        if isinstance(src, Rejected):
            continue
        selected = _select(call, src, ctx, dispatch, [])
        if isinstance(selected, tuple):
            mappings, src = selected
            calls.append((src, tuple(mapping.transform for mapping in mappings)))
    return calls


def mappings_only(calls: Calls, ctx: Context) -> Measurement:
    """The mapping functions alone (generated or interpreted) on pre-resolved events."""
    start = time.perf_counter()
    for src, transforms in calls:
        warnings: list[TransformWarning] = []
        for transform in transforms:
            transform(src, ctx, warnings)
    return Measurement(time.perf_counter() - start)


# -- the interpreter ----------------------------------------------------------------------------


def load_interpreter() -> tuple[Dispatch | None, str]:
    """``interpreted_dispatch()`` of ``tests/rules_interpreter.py``, or why it is unavailable."""
    if str(_TESTS) not in sys.path:
        sys.path.insert(0, str(_TESTS))
    try:
        module = importlib.import_module("rules_interpreter")
    except ImportError as error:
        return None, f"tests/rules_interpreter.py cannot be imported ({error})"
    factory: Any = getattr(module, "interpreted_dispatch", None)
    if not callable(factory):
        return None, "tests/rules_interpreter.py has no interpreted_dispatch()"
    dispatch: Dispatch = factory()
    return dispatch, ""


def _record(line: bytes, ctx: Context, dispatch: Dispatch | None) -> bytes:
    event = orjson.loads(line)
    outcome = route(event, ctx) if dispatch is None else route(event, ctx, dispatch=dispatch)
    return orjson.dumps(to_record(outcome, event), option=orjson.OPT_SORT_KEYS)


def disagreements(lines: Sequence[bytes], ctx: Context, dispatch: Dispatch) -> int:
    """How many of ``lines`` the interpreter turns into a different record than the pipeline.

    Records are compared as JSON values: the order of object keys is not compared.
    """
    return sum(_record(line, ctx, None) != _record(line, ctx, dispatch) for line in lines)


# -- measuring ----------------------------------------------------------------------------------


def outcome_counts(lines: Sequence[bytes], ctx: Context) -> Counter[str]:
    """Outcome (and reason) of every event; running it also warms the caches (phone numbers)."""
    counts: Counter[str] = Counter()
    for line in lines:
        event = orjson.loads(line)
        record = to_record(route(event, ctx), event)
        reason = record.get("reason")
        counts[f"{record['outcome']} ({reason})" if reason else str(record["outcome"])] += 1
    return counts


def measure(
    contenders: dict[str, Runner], lines: Sequence[bytes], rounds: int
) -> dict[str, list[Measurement]]:
    """Run every contender once per round over ``lines``, rotating the order each round."""
    names = list(contenders)
    results: dict[str, list[Measurement]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            gc.collect()
            results[name].append(contenders[name](lines))
        line = "  ".join(f"{name} {results[name][-1].seconds:.3f}s" for name in names)
        print(f"  round {number + 1}/{rounds}: {line}", file=sys.stderr, flush=True)
    return results
