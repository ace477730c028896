"""Where the pipeline spends its time: per event kind (clocked), and per function (cProfile).

``python -m bench --profile [N]`` prints both. The per-kind table reads the clock around
``route`` and ``to_record`` of each event, without a profiler, so its microseconds are real;
the cProfile listing names the functions but inflates the share of small, often-called ones.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from attentive_router import Context, route, to_record

_OPTION = orjson.OPT_APPEND_NEWLINE


def _kind(event: Any) -> str:
    if not isinstance(event, dict):
        return "(not an object)"
    call = event.get("type")
    if call == "track":
        return f"track {event.get('event')!r}"
    return str(call)


def by_kind(lines: Sequence[bytes], ctx: Context) -> None:
    """Print route and to_record microseconds per event, grouped by call and event name."""
    clock = time.perf_counter
    count: defaultdict[str, int] = defaultdict(int)
    routing: defaultdict[str, float] = defaultdict(float)
    recording: defaultdict[str, float] = defaultdict(float)
    for line in lines:
        event = orjson.loads(line)
        start = clock()
        outcome = route(event, ctx)
        middle = clock()
        to_record(outcome, event)
        end = clock()
        kind = _kind(event)
        count[kind] += 1
        routing[kind] += middle - start
        recording[kind] += end - middle
    total = sum(routing.values()) + sum(recording.values())
    print(f"route + to_record by event kind over {len(lines):,} events (clocked, no profiler)")
    print(
        f"  {'kind':<36} {'events':>7} {'route µs':>9} {'record µs':>10} "
        f"{'share of transform time':>24}"
    )
    for kind in sorted(count, key=lambda k: -(routing[k] + recording[k])):
        n = count[kind]
        share = (routing[kind] + recording[kind]) / total
        print(
            f"  {kind:<36} {n:>7,} {routing[kind] / n * 1e6:>9.2f} "
            f"{recording[kind] / n * 1e6:>10.2f} {share:>24.1%}"
        )
    print(
        f"  {'all':<36} {len(lines):>7,} {sum(routing.values()) / len(lines) * 1e6:>9.2f} "
        f"{sum(recording.values()) / len(lines) * 1e6:>10.2f} {1:>24.1%}"
    )


def _where(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~":
        return name
    short = path.rsplit("/", 1)[-1]
    return f"{short}:{line}({name})"


def functions(run: Callable[[], object], top: int = 30) -> None:
    """Print the ``top`` functions of ``run`` by cumulative time, as shares of the whole run."""
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = getattr(
        stats, "stats", {}
    )
    whole = max(row[3] for row in table.values())
    print()
    print("cProfile of the pipeline: top functions by cumulative time (share of the whole run)")
    print(f"  {'function':<64} {'calls':>9} {'cum %':>7} {'own %':>7}")
    rows = sorted(table.items(), key=lambda item: -item[1][3])
    for key, (_, calls, own, cumulative, _callers) in rows[:top]:
        print(
            f"  {_where(key)[:64]:<64} {calls:>9,} {cumulative / whole:>7.1%} {own / whole:>7.1%}"
        )
    print()
    print("cProfile of the pipeline: top functions by own time")
    print(f"  {'function':<64} {'calls':>9} {'own %':>7}")
    for key, (_, calls, own, _cumulative, _callers) in sorted(
        table.items(), key=lambda item: -item[1][2]
    )[:top]:
        print(f"  {_where(key)[:64]:<64} {calls:>9,} {own / whole:>7.1%}")


def profile(lines: Sequence[bytes], ctx: Context, top: int = 30) -> None:
    """Print the per-kind timings and the cProfile listings of the pipeline over ``lines``."""
    loads, dumps = orjson.loads, orjson.dumps

    def run() -> None:
        for line in lines:
            event = loads(line)
            dumps(to_record(route(event, ctx), event), option=_OPTION)

    by_kind(lines, ctx)
    functions(run, top)
