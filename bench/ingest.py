"""Ingest through ``attentive-router serve``: events/s stored durably and request latency.

The server is ``attentive-router serve --no-deliver --log-level warning --commit MODE`` in a
subprocess (``ServeProcess``) on 127.0.0.1, with both commit modes side by side: ``group``
(requests that wait together share a transaction) and ``per-request`` (one transaction each),
started afresh for every run on its own new queue file (WAL, ``synchronous=FULL``). The load
generator is this benchmark process, on the same machine (its CPU shows beside the server's):
an asyncio loop with one ``httpx.AsyncClient`` posting pre-built ``/v1/batch`` bodies over
keep-alive connections. A body holds 100 events (``--ingest-batch``) of the transform
benchmark's corpus (``bench/corpus.py``: analytics.js-shaped page, track and identify calls,
about 1.3 KB each, a few with unreadable timestamps that the server stores as rejected), every
messageId distinct so that nothing is deduplicated, and the write key goes as HTTP Basic auth.
Only 200 answers count. Warm-up requests (other messageIds) open the connections before the
clock starts. After the last answer the server is killed with SIGKILL, so that nothing can
reach the file afterwards, and the queue file is opened again: it must hold exactly the events
of the requests answered 200 (warm-up included), and as many of them rejected as the answers
listed.

Two kinds of load:
    closed loop: C connections (8, and 1, 4, 16 beside it), each posting its next body as
        soon as its last one is answered: the most the server accepts, and the latency when
        C requests are always waiting (which then grows with C, by Little's law).
    open loop: requests sent at Poisson arrival times averaging 5,000 events/s (the target
        rate), whatever the answers, over up to 64 connections; each request's latency counts
        from its scheduled time, so a server falling behind shows in it: the latency a
        client sees at the target rate.

Beside them, in the same rounds, the ceilings and the CPU part of the server's work:
    SQLiteQueue.put: the same events, prepared by the server's own code (untimed), stored
        100 per ``put`` (one transaction each) on a fresh file: what the server's storage can
        take when nothing else runs.
    SQLiteQueue.put_many: the same, 8 requests' batches per ``put_many`` (one transaction):
        what the storage takes with group commit when 8 requests wait together.
    raw sqlite3: the same two INSERTs per event (``seen``, then ``events``) with
        ``executemany``, rows pre-built, 100 per transaction, same schema and pragmas:
        SQLite's own cost, without the queue's Python loop.
    parse + prepare_batch: ``loads`` and ``prepare_batch`` of the same bodies, nothing
        stored: the CPU the server spends per event before it writes.

Every round runs each contender once, in an order rotated from round to round; the report
gives medians. Targets, for group commit at the first closed-loop connection count given (8 by
default): at least 5,000 events/s accepted; at least 2x the events/s of per-request commits
measured in the same rounds; the raw sqlite3 ceiling at most 1.2x the ingest rate (the time to
ingest an event at most 1.2x SQLite's own time to insert it; the ``SQLiteQueue.put`` ceiling is
judged beside it, within 2x); p99 under 100 ms, at 5,000 events/s offered and (stricter) at
that full closed-loop load.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._ingest.parse import loads, prepare_batch
from attentive_router._queue.interface import NewEvent, State
from attentive_router._queue.sqlite import _SCHEMA, SQLiteQueue
from bench import system
from bench.corpus import generate

EVENTS = 30_000
"""Events posted per server run (and stored per ceiling run)."""
BATCH = 100
"""Events per request by default (``--ingest-batch``): what server libraries send at once."""
ROUNDS = 3
CONNECTIONS = (8, 1, 4, 16)
"""Connection counts of the closed-loop load; the first is the one judged against the targets."""
OPEN_CONNECTIONS = 64
"""Connections the open-loop load may open (it sends on schedule, whatever the answers)."""
OPEN_WARMUPS = 2

RATE_TARGET = 5_000.0
"""Events/s the server should accept (stored durably) at least."""
P99_TARGET = 0.100
"""Seconds under which 99 % of the requests should be answered."""
COMMITS = ("group", "per-request")
"""The ``serve --commit`` modes measured side by side; the first is judged against the targets."""
GROUP_TARGET = 2.0
"""Group commit should accept at least this many times the events/s of per-request commits."""
RAW_TARGET = 1.2
"""The raw sqlite3 ceiling should be at most this many times the ingest rate."""
GROUP_REQUESTS = 8
"""Requests per ``put_many`` in the group-commit ceiling (as 8 connections waiting together)."""
CEILING_TARGET = 2.0
"""The SQLiteQueue.put ceiling should be at most this many times the ingest rate."""

BUSY_MACHINE = 0.25
"""Cores of other processes past which the report warns that the machine was not idle."""

SOURCE = "bench"
_SENT_AT = "2026-01-08T14:00:00.000Z"
_SEEN = (
    "INSERT INTO seen (source, key, at) VALUES (?, ?, ?) "
    "ON CONFLICT (source, key) DO UPDATE SET at = excluded.at WHERE seen.at < ?"
)
_EVENTS = (
    "INSERT INTO events (key, source, user, state, event, received_at, next_attempt_at, "
    "settled_at, reason, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the load -----------------------------------------------------------------------------------


@dataclass
class Load:
    """The request bodies of a run, and of the warm-up requests."""

    bodies: list[tuple[bytes, int]]
    """Each body with the number of events it holds."""
    warmups: list[tuple[bytes, int]]
    events: int
    batch: int = BATCH
    """Events per request, at most."""

    @property
    def mean_body(self) -> float:
        """Mean body size, bytes."""
        return sum(len(body) for body, _ in self.bodies) / len(self.bodies)


def _bodies(events: Sequence[dict[str, object]], size: int) -> list[tuple[bytes, int]]:
    batches = [list(events[start : start + size]) for start in range(0, len(events), size)]
    return [(orjson.dumps({"batch": batch, "sentAt": _SENT_AT}), len(batch)) for batch in batches]


def build_load(events: int, warmups: int, seed: int, batch: int = BATCH) -> Load:
    """``events`` corpus events as ``batch``-event batch bodies, every messageId distinct."""
    parsed: list[dict[str, object]] = [orjson.loads(line) for line in generate(events, seed)]
    seen: set[object] = set()
    for index, event in enumerate(parsed):
        if event.get("messageId") in seen or not event.get("messageId"):
            event["messageId"] = f"bench-ingest-{index:08d}"
        seen.add(event["messageId"])
    extra: list[dict[str, object]] = []
    for number in range(warmups):
        for index, event in enumerate(parsed[:batch]):
            extra.append({**event, "messageId": f"bench-warmup-{number}-{index}"})
    return Load(_bodies(parsed, batch), _bodies(extra, batch), events, batch)


# -- the server, under load ---------------------------------------------------------------------


@dataclass
class ServeRun:
    """One run of the server: closed loop over ``connections``, or open loop at ``offered``."""

    connections: int
    offered: float | None = None
    """Events/s offered by the open loop; None for a closed loop."""
    commit: str = COMMITS[0]
    """The server's ``--commit`` mode."""
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    """Seconds of every request answered 200, sorted."""
    accepted_events: int = 0
    listed_rejected: int = 0
    """Items the 200 answers listed as stored rejected."""
    statuses: Counter[int] = field(default_factory=Counter)
    server_cpu: float = math.nan
    client_cpu: float = math.nan
    machine_cpu: float = math.nan
    """CPU seconds of the whole machine during the run (all processes)."""
    expected: int = 0
    """Events the file must hold: those of every request answered 200, warm-up included."""
    stored: int = 0
    stored_rejected: int = 0

    @property
    def rate(self) -> float:
        """Events accepted (answered 200) per second."""
        return self.accepted_events / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, share: float) -> float:
        """Latency below which ``share`` of the 200 answers came (nearest rank), seconds."""
        if not self.latencies:
            return math.nan
        rank = max(1, math.ceil(share * len(self.latencies)))
        return self.latencies[rank - 1]

    @property
    def others_cpu(self) -> float:
        """CPU seconds of the machine's other processes during the run."""
        return max(0.0, self.machine_cpu - self.server_cpu - self.client_cpu)

    @property
    def durable(self) -> bool:
        """The file holds exactly the acknowledged events, with the rejected ones listed."""
        return self.stored == self.expected and self.stored_rejected == self.listed_rejected


def _rejected_in(answer: bytes) -> int:
    listed = orjson.loads(answer).get("rejected")
    return len(listed) if isinstance(listed, list) else 0


class _Poster:
    """Posts bodies to the server and records the answers in ``run``."""

    def __init__(self, client: httpx.AsyncClient, run: ServeRun) -> None:
        self.client = client
        self.run = run
        self.latencies: list[float] = []

    async def post(self, body: bytes, events: int, since: float) -> None:
        """Post ``body``; its latency counts from ``since`` (a ``perf_counter`` time)."""
        answer = await self.client.post("/v1/batch", content=body)
        elapsed = time.perf_counter() - since
        self.run.statuses[answer.status_code] += 1
        if answer.status_code == 200:
            self.latencies.append(elapsed)
            self.run.accepted_events += events
            self.run.listed_rejected += _rejected_in(answer.content)


async def _closed(poster: _Poster, load: Load, connections: int) -> None:
    """``connections`` workers, each posting the next body once its last one is answered."""
    pending = iter(load.bodies)

    async def worker() -> None:
        for body, events in pending:
            await poster.post(body, events, time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(connections)))


async def _open(poster: _Poster, load: Load, offered: float, seed: int) -> None:
    """Requests sent at Poisson arrival times (mean ``offered`` events/s), whatever the
    answers; each latency counts from the request's scheduled time, so a server falling
    behind shows in it even when the client had to wait for a connection."""
    arrivals = random.Random(seed)
    started = time.perf_counter()
    due = started
    tasks: list[asyncio.Task[None]] = []
    for body, events in load.bodies:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(poster.post(body, events, due)))
        due += arrivals.expovariate(offered / events)
    await asyncio.gather(*tasks)


async def _load_server(server: ServeProcess, load: Load, run: ServeRun, seed: int) -> int:
    """Warm up, then post ``load.bodies`` (closed or open loop, as ``run`` says); return the
    events of the warm-up requests answered 200."""
    connections = run.connections
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=server.url,
        auth=(server.write_key, ""),
        headers={"Content-Type": "application/json"},
        limits=limits,
        timeout=60.0,
        trust_env=False,
    ) as client:
        warm = _Poster(client, ServeRun(connections))
        warmups = load.warmups[: connections if run.offered is None else OPEN_WARMUPS]
        await asyncio.gather(*(warm.post(body, events, 0.0) for body, events in warmups))
        run.listed_rejected += warm.run.listed_rejected
        poster = _Poster(client, run)
        gc.collect()
        server_cpu, client_cpu = system.cpu_seconds(server.pid), time.process_time()
        machine_cpu = system.machine_busy_seconds()
        started = time.perf_counter()
        if run.offered is None:
            await _closed(poster, load, connections)
        else:
            await _open(poster, load, run.offered, seed)
        run.seconds = time.perf_counter() - started
        run.machine_cpu = system.machine_busy_seconds() - machine_cpu
        run.server_cpu = system.cpu_seconds(server.pid) - server_cpu
        run.client_cpu = time.process_time() - client_cpu
        run.latencies = sorted(poster.latencies)
    return warm.run.accepted_events


def _stored(path: Path) -> tuple[int, int]:
    """Events in the queue file, and how many of them are rejected."""
    queue = SQLiteQueue(path)
    try:
        counts = queue.counts()
    finally:
        queue.close()
    return sum(counts.values()), counts[State.REJECTED]


def _remove(path: Path) -> None:
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()


def serve_run(
    load: Load,
    connections: int,
    directory: Path,
    offered: float | None = None,
    seed: int = 0,
    *,
    commit: str = COMMITS[0],
) -> ServeRun:
    """Start a server on a fresh queue, load it, kill it, count what its file holds."""
    path = directory / f"serve-{time.monotonic_ns()}.db"
    run = ServeRun(connections, offered, commit)
    server = ServeProcess(queue=path, args=["--commit", commit])
    try:
        server.start()
        warm_events = asyncio.run(_load_server(server, load, run, seed))
        server.kill()
    finally:
        server.stop()
    run.expected = warm_events + run.accepted_events
    run.stored, run.stored_rejected = _stored(path)
    _remove(path)
    return run


# -- the ceilings -------------------------------------------------------------------------------


def prepared(load: Load) -> list[list[NewEvent]]:
    """The queue entries the server makes of each body (its own code; not timed)."""
    now = time.time()
    return [prepare_batch(loads(body), now, SOURCE).events for body, _ in load.bodies]


def put_run(batches: Sequence[Sequence[NewEvent]], directory: Path, group: int = 1) -> float:
    """Seconds ``SQLiteQueue`` takes to store ``batches`` on a fresh file: one ``put`` each, or
    ``put_many`` of ``group`` batches at a time (a group commit of that many requests)."""
    path = directory / f"put-{time.monotonic_ns()}.db"
    queue = SQLiteQueue(path)
    try:
        gc.collect()
        started = time.perf_counter()
        if group == 1:
            for batch in batches:
                queue.put(batch, time.time())
        else:
            for start in range(0, len(batches), group):
                now = time.time()
                queue.put_many([(batch, now) for batch in batches[start : start + group]])
        seconds = time.perf_counter() - started
    finally:
        queue.close()
    _remove(path)
    return seconds


Rows = tuple[list[tuple[object, ...]], list[tuple[object, ...]]]


def raw_rows(batches: Sequence[Sequence[NewEvent]]) -> list[Rows]:
    """The parameters of ``SQLiteQueue.put``'s two INSERTs for every event, per batch."""
    now = time.time()
    cutoff = now - 24 * 3600.0
    result: list[Rows] = []
    for batch in batches:
        seen: list[tuple[object, ...]] = []
        rows: list[tuple[object, ...]] = []
        for item in batch:
            seen.append((item.source, item.key, now, cutoff))
            if item.rejected is None:
                state, settled, reason, message = State.QUEUED, None, None, None
            else:
                state, settled = State.REJECTED, now
                reason, message = item.rejected
            rows.append(
                (
                    *(item.key, item.source, item.user, int(state), item.event),
                    *(item.received_at, item.received_at, settled, reason, message),
                )
            )
        result.append((seen, rows))
    return result


def raw_run(batches: Sequence[Rows], directory: Path) -> float:
    """Seconds plain sqlite3 takes for the same INSERTs, ``executemany``, 100 per transaction."""
    path = directory / f"raw-{time.monotonic_ns()}.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.executescript(_SCHEMA)
        gc.collect()
        started = time.perf_counter()
        for seen, rows in batches:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(_SEEN, seen)
            db.executemany(_EVENTS, rows)
            db.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        db.close()
    _remove(path)
    return seconds


def prepare_run(load: Load) -> float:
    """Seconds the server's parse and ``prepare_batch`` take over the bodies, nothing stored."""
    gc.collect()
    started = time.perf_counter()
    for body, _ in load.bodies:
        prepare_batch(loads(body), time.time(), SOURCE)
    return time.perf_counter() - started


# -- the rounds ---------------------------------------------------------------------------------


@dataclass
class IngestResult:
    """Every run of every contender, round by round."""

    load: Load
    connections: tuple[int, ...]
    closed: dict[str, dict[int, list[ServeRun]]]
    """Closed-loop runs by commit mode, then connection count."""
    open: dict[str, list[ServeRun]]
    """Open-loop runs at the target rate, by commit mode."""
    ceilings: dict[str, list[float]]
    """Seconds per run of ``put``, ``put_many``, ``raw`` and ``prepare``."""
    rounds: int

    def rate(self, name: str) -> float:
        """Median events/s of a ceiling contender."""
        return self.load.events / statistics.median(self.ceilings[name])

    def runs(self) -> list[ServeRun]:
        """Every server run."""
        closed = [runs for by_count in self.closed.values() for runs in by_count.values()]
        return [run for runs in [*closed, *self.open.values()] for run in runs]


def _round_line(number: int, result: IngestResult) -> str:
    events = result.load.events
    modes = []
    for commit, by_count in result.closed.items():
        closed = "  ".join(
            f"{count}c {runs[-1].rate:,.0f}/s p99 {runs[-1].percentile(0.99) * 1e3:.0f} ms"
            for count, runs in by_count.items()
        )
        last = result.open[commit][-1]
        modes.append(
            f"{commit}: {closed}  open {last.rate:,.0f}/s p99 {last.percentile(0.99) * 1e3:.0f} ms"
        )
    return (
        f"  round {number}/{result.rounds}: put {events / result.ceilings['put'][-1]:,.0f}/s  "
        f"raw {events / result.ceilings['raw'][-1]:,.0f}/s  " + "  ".join(modes)
    )


def measure(
    events: int, rounds: int, connections: Sequence[int], seed: int, batch: int = BATCH
) -> IngestResult:
    """Run every contender once per round, in an order rotated every round."""
    _progress(f"ingest: building {events:,} events as {batch}-event /v1/batch bodies...")
    load = build_load(events, max(*connections, OPEN_WARMUPS), seed, batch)
    batches = prepared(load)
    rows = raw_rows(batches)
    result = IngestResult(
        load,
        tuple(connections),
        {commit: {count: [] for count in connections} for commit in COMMITS},
        {commit: [] for commit in COMMITS},
        {"put": [], "put_many": [], "raw": [], "prepare": []},
        rounds,
    )
    names = [*result.ceilings]
    for commit in COMMITS:
        names += [*(f"closed-{count}-{commit}" for count in connections), f"open-0-{commit}"]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as name:
        directory = Path(name)
        prepare_run(load)  # warm this process's caches outside the timed runs
        for number in range(rounds):
            shift = number % len(names)
            for contender in names[shift:] + names[:shift]:
                if contender == "put":
                    result.ceilings["put"].append(put_run(batches, directory))
                elif contender == "put_many":
                    seconds = put_run(batches, directory, GROUP_REQUESTS)
                    result.ceilings["put_many"].append(seconds)
                elif contender == "raw":
                    result.ceilings["raw"].append(raw_run(rows, directory))
                elif contender == "prepare":
                    result.ceilings["prepare"].append(prepare_run(load))
                else:
                    kind, count_text, commit = contender.split("-", 2)
                    if kind == "open":
                        run = serve_run(
                            *(load, OPEN_CONNECTIONS, directory, RATE_TARGET, seed + number),
                            commit=commit,
                        )
                        result.open[commit].append(run)
                    else:
                        count = int(count_text)
                        run = serve_run(load, count, directory, commit=commit)
                        result.closed[commit][count].append(run)
            _progress(_round_line(number + 1, result))
    return result


# -- reporting ----------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def _median(runs: Sequence[ServeRun], value: Callable[[ServeRun], float]) -> float:
    return statistics.median(value(run) for run in runs)


def _spread(values: Sequence[float], form: str) -> str:
    return f"per round {format(min(values), form)}-{format(max(values), form)}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


LABEL = 60
"""Width of the contender column."""


def _serve_row(label: str, runs: Sequence[ServeRun]) -> str:
    rate = _median(runs, lambda run: run.rate)
    p50 = _median(runs, lambda run: run.percentile(0.50)) * 1e3
    p99 = _median(runs, lambda run: run.percentile(0.99)) * 1e3
    top = _median(runs, lambda run: run.latencies[-1] if run.latencies else math.nan) * 1e3
    server = _median(runs, lambda run: run.server_cpu / max(run.accepted_events, 1) * 1e3)
    client = _median(runs, lambda run: run.client_cpu / max(run.accepted_events, 1) * 1e3)
    others = _median(runs, lambda run: run.others_cpu / run.seconds if run.seconds else 0.0)
    return (
        f"  {label:<{LABEL}} {rate:>9,.0f} {p50:>7.1f} {p99:>7.1f} {top:>7.1f} "
        f"{server:>7.3f} {client:>7.3f} {others:>7.2f}"
    )


def _target_lines(result: IngestResult) -> list[tuple[str, str, str, bool, str]]:
    judged = result.connections[0]
    group, single = COMMITS
    runs, opened = result.closed[group][judged], result.open[group]
    rate = _median(runs, lambda run: run.rate)
    others = result.closed[single][judged]
    other_rate = _median(others, lambda run: run.rate)
    gain = rate / other_rate if other_rate > 0 else math.inf
    gains = [a.rate / b.rate if b.rate else math.inf for a, b in zip(runs, others, strict=True)]
    p99 = _median(runs, lambda run: run.percentile(0.99))
    open_p99 = _median(opened, lambda run: run.percentile(0.99))
    put = result.rate("put")
    ratio = put / rate if rate > 0 else math.inf
    puts = [result.load.events / seconds for seconds in result.ceilings["put"]]
    per_round = [ceiling / run.rate for ceiling, run in zip(puts, runs, strict=True)]
    raw = result.rate("raw")
    raw_ratio = raw / rate if rate > 0 else math.inf
    raws = [result.load.events / seconds for seconds in result.ceilings["raw"]]
    raw_rounds = [ceiling / run.rate for ceiling, run in zip(raws, runs, strict=True)]
    every = result.runs()
    stored = sum(run.stored for run in every)
    expected = sum(run.expected for run in every)
    at = f"{_plural(judged, 'connection')}"
    return [
        (
            f"accepted events/s, {at}",
            f"{rate:,.0f}",
            f">= {RATE_TARGET:,.0f}",
            rate >= RATE_TARGET,
            _spread([run.rate for run in runs], ",.0f"),
        ),
        (
            f"{group} / {single} events/s, {at}",
            f"{gain:.2f}x",
            f">= {GROUP_TARGET:.1f}x",
            gain >= GROUP_TARGET,
            _spread(gains, ".2f"),
        ),
        (
            f"p99 at {RATE_TARGET:,.0f} events/s offered",
            f"{open_p99 * 1e3:.1f} ms",
            f"< {P99_TARGET * 1e3:.0f} ms",
            open_p99 < P99_TARGET,
            _spread([run.percentile(0.99) * 1e3 for run in opened], ".1f") + " ms",
        ),
        (
            f"p99 at full load, {at}",
            f"{p99 * 1e3:.1f} ms",
            f"< {P99_TARGET * 1e3:.0f} ms",
            p99 < P99_TARGET,
            _spread([run.percentile(0.99) * 1e3 for run in runs], ".1f") + " ms",
        ),
        (
            f"raw sqlite3 ceiling / ingest, {at}",
            f"{raw_ratio:.2f}x",
            f"<= {RAW_TARGET:.1f}x",
            raw_ratio <= RAW_TARGET,
            _spread(raw_rounds, ".2f"),
        ),
        (
            f"put ceiling / ingest, {at}",
            f"{ratio:.2f}x",
            f"<= {CEILING_TARGET:.1f}x",
            ratio <= CEILING_TARGET,
            _spread(per_round, ".2f"),
        ),
        (
            "acknowledged events on disk",
            f"{stored:,}",
            f"= {expected:,}",
            all(run.durable for run in every),
            _plural(len(every), "run"),
        ),
    ]


def report(result: IngestResult) -> int:
    """Print the table and the targets; 1 when a file did not hold what was acknowledged."""
    load, judged = result.load, result.connections[0]
    print()
    print("attentive-router serve: ingest through POST /v1/batch")
    print(system.machine())
    print(
        "server: attentive-router serve --no-deliver --log-level warning --commit MODE on "
        "127.0.0.1, a fresh queue file per run (SQLite WAL, synchronous=FULL), killed with "
        "SIGKILL after the last answer; MODE group (requests waiting together share one "
        "transaction) and per-request (one transaction each), side by side in the same rounds"
    )
    print(
        f"load: {load.events:,} events per run as {_plural(len(load.bodies), 'request')} of up "
        f"to {load.batch} events ({load.mean_body / 1024:,.0f} KB each on average), HTTP Basic "
        "write key, keep-alive, from this process (asyncio, one httpx.AsyncClient) on the same "
        "machine as the server, sharing its cores. Closed loop: C "
        "connections, each posting its next request once the last is answered. Open loop: "
        f"Poisson arrivals at {RATE_TARGET:,.0f} events/s over up to {OPEN_CONNECTIONS} "
        "connections, latency counted from each request's scheduled time"
    )
    print(
        f"rounds: {result.rounds}, interleaved, order rotated every round; medians over the "
        f"rounds; targets judged on --commit {COMMITS[0]} at {_plural(judged, 'connection')} "
        f"(closed loop) and at {RATE_TARGET:,.0f} events/s offered (open loop)"
    )
    print()
    header = (
        f"  {'contender':<{LABEL}} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'server':>7} {'client':>7} {'others':>7}"
    )
    print(header)
    print(f"  {'':<{LABEL}} {'':>9} {'':>7} {'':>7} {'':>7} {'CPU s/1k events':>15} {'cores':>7}")
    print("  " + "-" * (len(header) - 2))
    for commit in COMMITS:
        for count in sorted(result.connections):
            mark = "  (judged)" if count == judged and commit == COMMITS[0] else ""
            label = f"(h) serve --commit {commit}, closed, {_plural(count, 'connection')}{mark}"
            print(_serve_row(label, result.closed[commit][count]))
        label = f"(i) serve --commit {commit}, open, {RATE_TARGET:,.0f} events/s offered"
        print(_serve_row(label, result.open[commit]))
    ceilings = (
        ("put", f"(j) ceiling: SQLiteQueue.put, {load.batch}/transaction"),
        (
            "put_many",
            f"(m) ceiling: SQLiteQueue.put_many, {GROUP_REQUESTS} x {load.batch}/transaction",
        ),
        ("raw", f"(k) raw sqlite3 executemany, {load.batch}/transaction"),
        ("prepare", "(l) parse + prepare_batch only, no storage"),
    )
    for name, label in ceilings:
        print(f"  {label:<{LABEL}} {result.rate(name):>9,.0f}")
    put, prepare = result.rate("put"), result.rate("prepare")
    print()
    print(
        "  the server's two halves (l then j) one after the other would reach "
        f"{1 / (1 / put + 1 / prepare):,.0f} events/s; fully overlapped, {min(put, prepare):,.0f}"
    )
    every = result.runs()
    statuses: Counter[int] = Counter()
    for run in every:
        statuses.update(run.statuses)
    answers = ", ".join(f"{code}: {count:,}" for code, count in sorted(statuses.items()))
    rejected = sum(run.stored_rejected for run in every)
    print(
        f"  answers over all runs (warm-up aside): {answers}; items stored as rejected (bad "
        f"timestamps in the corpus): {rejected:,}, as many as the answers listed: "
        f"{'yes' if all(r.stored_rejected == r.listed_rejected for r in every) else 'NO'}"
    )
    print(
        "  others: CPU of the machine's other processes (and kernel threads) during the runs, "
        "in cores; the load generator is 'client'"
    )
    busy = statistics.median(run.others_cpu / run.seconds for run in every if run.seconds)
    if busy > BUSY_MACHINE:
        print(
            f"  NOTE: other processes kept {busy:.2f} cores busy (median over the runs): the "
            "server and the load generator shared the machine, so rates are lower and latencies "
            "higher than on an idle one"
        )
    print()
    lines = _target_lines(result)
    for label, value, target, met, detail in lines:
        print(f"  {label:<44} {value:>10}   target {target:<11} {_verdict(met)}   ({detail})")
    return 0 if lines[-1][3] else 1


def run(events: int, rounds: int, connections: Sequence[int], seed: int, batch: int = BATCH) -> int:
    """Measure and report; the exit status (1 when the durability check failed)."""
    started = time.perf_counter()
    result = measure(events, rounds, connections, seed, batch)
    _progress(f"ingest: measured in {time.perf_counter() - started:.0f} s")
    return report(result)
