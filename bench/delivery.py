"""Delivery benchmarks: draining a queue under Attentive's rate limits, and raw requests/s.

Both run the real ``Sender`` (``SQLiteQueue`` in a temporary directory, ``make_client``) against
a real sandbox server in a subprocess (``SandboxProcess``) on 127.0.0.1. The events map to one
request each, spread evenly over the four endpoints limited to 150 requests/s
(``bench/delivery_corpus.py``); every event is routed once beforehand to check that.

Drain under enforced limits:
    N events (default 20,000) are queued, then drained with the default ``SenderSettings``
    (150 requests/s per endpoint) into a sandbox that enforces 150 requests/s per endpoint
    (its defaults) and answers after 50 ms. Reported: requests/s achieved, against the sum of
    the enforced limits of the endpoints used (600/s), and the share of 429 answers in the
    sandbox's own counts. Targets: at least 95 % of the limit, under 1 % of 429s.

Unthrottled requests/s from one process:
    A sandbox without rate limits or latency. Contenders, in interleaved rounds with their
    order alternated: the ``Sender`` draining K events (default 5,000) from a fresh queue with
    its client-side limit lifted, and a naive loop: one ``httpx.AsyncClient`` posting the same
    request bodies one at a time, awaiting each. Reported: median requests/s of each and the
    ratio. Queueing the events and transforming the naive loop's bodies are not timed.

CPU seconds of this process (the sender), of the sandbox and of the whole machine are read
around every run, as is the time the sender's queue thread spends in each queue call. During
the drain a probe samples every 10 ms where the sender's workers are (on the wire, or waiting
at an endpoint's bucket) and how late the event loop wakes up: a missed target then shows
where the time went.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from attentive_router import Context, Mapped, route, to_json
from attentive_router._console.journal import Journal
from attentive_router._delivery.observe import Observer
from attentive_router._delivery.ratelimit import RateLimiter
from attentive_router._delivery.sender import Sender, SenderSettings, make_client
from attentive_router._queue.intake import new_event
from attentive_router._queue.interface import (
    Claim,
    Enqueued,
    NewEvent,
    Queue,
    Record,
    Settlement,
    State,
)
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess
from attentive_router._sandbox.server import DEFAULT_RATE_LIMITS
from bench import delivery_corpus, system
from bench.delivery_corpus import ENDPOINTS, Event

DRAIN_EVENTS = 20_000
UNTHROTTLED_EVENTS = 5_000
ROUNDS = 3
LATENCY_MS = 50

ACHIEVED_TO_LIMIT_TARGET = 0.95
"""The drain should reach at least this share of the sum of the enforced limits."""

THROTTLED_SHARE_TARGET = 0.01
"""Fewer than this share of the drain's answers may be 429s."""

UNLIMITED_RATE = 1e9
"""Client-side requests/s per endpoint that never holds a request back."""

PUT_BATCH = 500


# -- the queue, timed ---------------------------------------------------------------------------


class TimedQueue:
    """A ``Queue`` that clocks every call it passes on (the calls run on the sender's thread)."""

    def __init__(self, inner: Queue) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def _clock(self, name: str, started: float) -> None:
        self.calls[name] += 1
        self.seconds[name] += time.perf_counter() - started

    def put(self, events: Sequence[NewEvent], now: float) -> Enqueued:
        started = time.perf_counter()
        try:
            return self.inner.put(events, now)
        finally:
            self._clock("put", started)

    def put_many(self, batches: Sequence[tuple[Sequence[NewEvent], float]]) -> list[Enqueued]:
        started = time.perf_counter()
        try:
            return self.inner.put_many(batches)
        finally:
            self._clock("put", started)

    def claim(self, now: float, limit: int) -> list[Claim]:
        started = time.perf_counter()
        try:
            return self.inner.claim(now, limit)
        finally:
            self._clock("claim", started)

    def settle(self, settlements: Sequence[Settlement]) -> None:
        started = time.perf_counter()
        try:
            self.inner.settle(settlements)
        finally:
            self._clock("settle", started)

    def release(self, ids: Iterable[int]) -> None:
        self.inner.release(ids)

    def recover(self) -> int:
        return self.inner.recover()

    def next_due(self) -> float | None:
        started = time.perf_counter()
        try:
            return self.inner.next_due()
        finally:
            self._clock("next_due", started)

    def counts(self) -> dict[State, int]:
        return self.inner.counts()

    def oldest_queued(self) -> float | None:
        return self.inner.oldest_queued()

    def records(self, state: State | None = None, limit: int = 100, after: int = 0) -> list[Record]:
        return self.inner.records(state, limit, after)

    def record(self, id_or_key: int | str) -> Record | None:
        return self.inner.record(id_or_key)

    def replay(self, ids: Iterable[int] | None, now: float) -> int:
        return self.inner.replay(ids, now)

    def prune(self, now: float) -> int:
        return self.inner.prune(now)

    def close(self) -> None:
        self.inner.close()


def fill(queue: Queue, events: Sequence[Event]) -> int:
    """Queue ``events`` as ``send`` does (``new_event``, batches of 500); return how many."""
    accepted = 0
    for start in range(0, len(events), PUT_BATCH):
        now = time.time()
        batch = [new_event(event, now) for event in events[start : start + PUT_BATCH]]
        accepted += queue.put(batch, now).accepted
    return accepted


# -- what the sender's workers are doing --------------------------------------------------------


class CountingLimiter(RateLimiter):
    """The sender's rate limiter, counting the workers waiting at each endpoint's bucket."""

    def __init__(self, settings: SenderSettings, waiting: Counter[str]) -> None:
        super().__init__(time.time, asyncio.sleep, rate=settings.rate, rates=settings.rates)
        self.waiting = waiting

    async def acquire(self, path: str) -> None:
        self.waiting[path] += 1
        try:
            await super().acquire(path)
        finally:
            self.waiting[path] -= 1


@dataclass
class Probe:
    """Samples, every ``interval`` seconds, where the sender's events are.

    Workers waiting at a bucket are counted by a ``CountingLimiter``; requests on the wire by
    the client's request and response hooks; events in flight (claimed, not yet settled) are
    the sender's own count.
    """

    interval: float = 0.01
    waiting: Counter[str] = field(default_factory=Counter)
    on_wire: int = 0
    samples: list[tuple[float, int, int, dict[str, int]]] = field(default_factory=list)

    def attach(self, sender: Sender, client: httpx.AsyncClient) -> None:
        sender.limiter = CountingLimiter(sender.settings, self.waiting)

        async def sent(_: httpx.Request) -> None:
            self.on_wire += 1

        async def answered(_: httpx.Response) -> None:
            self.on_wire -= 1

        client.event_hooks = {"request": [sent], "response": [answered]}

    async def watch(self, sender: Sender) -> None:
        while True:
            self.samples.append(
                (time.perf_counter(), sender.in_flight, self.on_wire, dict(self.waiting))
            )
            await asyncio.sleep(self.interval)

    def steady(self, margin: float = 1.0) -> list[tuple[float, int, int, dict[str, int]]]:
        """The samples without the first and last ``margin`` seconds (or tenth of the run)."""
        if not self.samples:
            return []
        first, last = self.samples[0][0], self.samples[-1][0]
        margin = min(margin, (last - first) / 10)
        return [s for s in self.samples if first + margin <= s[0] <= last - margin]


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run: wall seconds, requests accepted, CPU seconds of both processes."""

    seconds: float
    requests: int
    sender_cpu: float
    sandbox_cpu: float
    answers: dict[str, dict[str, int]] = field(default_factory=dict)
    queue_calls: Counter[str] = field(default_factory=Counter)
    queue_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    remaining: dict[State, int] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    probe: Probe | None = None
    machine_cpu: float = float("nan")
    """CPU seconds the whole machine used during the run (all processes)."""

    @property
    def rate(self) -> float:
        """Accepted requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def count(self, status: str | None = None, path: str | None = None) -> int:
        """Answers of the sandbox (with ``status``, to ``path``), from its own counts."""
        return sum(
            number
            for where, statuses in self.answers.items()
            if path is None or where == path
            for code, number in statuses.items()
            if status is None or code == status
        )


def _answers(sandbox: SandboxProcess) -> dict[str, dict[str, int]]:
    received: dict[str, dict[str, int]] = sandbox.stats()["received"]
    return received


async def _run_sender(
    queue: Queue,
    settings: SenderSettings,
    probe: Probe | None = None,
    observer: Observer | None = None,
) -> tuple[float, Counter[str]]:
    async with make_client(settings) as client:
        sender = Sender(queue, client, settings)
        sender.observer = observer
        watcher: asyncio.Task[None] | None = None
        if probe is not None:
            probe.attach(sender, client)
            watcher = asyncio.create_task(probe.watch(sender))
        started = time.perf_counter()
        try:
            stats = await sender.run()
        finally:
            seconds = time.perf_counter() - started
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    return seconds, stats.outcomes


def sender_run(
    sandbox: SandboxProcess,
    events: Sequence[Event],
    directory: Path,
    settings: SenderSettings,
    probe: Probe | None = None,
    *,
    observer: Observer | None = None,
) -> Run:
    """Queue ``events`` in a fresh queue (untimed), then drain it with a ``Sender``.

    ``observer``: what the sender tells of each answer and verdict (the console's journal).
    """
    sandbox.reset()
    path = directory / f"queue-{time.monotonic_ns()}.db"
    timed = TimedQueue(SQLiteQueue(path))
    try:
        fill(timed.inner, events)
        gc.collect()
        cpu, sandbox_cpu = time.process_time(), system.cpu_seconds(sandbox.pid)
        machine = system.machine_busy_seconds()
        seconds, outcomes = asyncio.run(_run_sender(timed, settings, probe, observer))
        machine = system.machine_busy_seconds() - machine
        cpu, sandbox_cpu = (
            time.process_time() - cpu,
            system.cpu_seconds(sandbox.pid) - sandbox_cpu,
        )
        remaining = timed.counts()
    finally:
        timed.close()
        for leftover in directory.glob(path.name + "*"):
            leftover.unlink()
    answers = _answers(sandbox)
    run = Run(seconds, sum_ok(answers), cpu, sandbox_cpu, answers)
    run.queue_calls, run.queue_seconds = timed.calls, timed.seconds
    run.remaining, run.outcomes, run.probe = remaining, outcomes, probe
    run.machine_cpu = machine
    return run


def sum_ok(answers: dict[str, dict[str, int]]) -> int:
    """Answers with a 2xx status."""
    return sum(
        count
        for statuses in answers.values()
        for status, count in statuses.items()
        if status.startswith("2")
    )


async def _post_each(url: str, token: str, bodies: Sequence[tuple[str, bytes]]) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        started = time.perf_counter()
        for path, body in bodies:
            response = await client.post(url + path, content=body, headers=headers)
            response.raise_for_status()
        return time.perf_counter() - started


def naive_run(sandbox: SandboxProcess, bodies: Sequence[tuple[str, bytes]]) -> Run:
    """One ``httpx.AsyncClient`` posting ``bodies`` one at a time, awaiting each answer."""
    sandbox.reset()
    gc.collect()
    cpu, sandbox_cpu = time.process_time(), system.cpu_seconds(sandbox.pid)
    machine = system.machine_busy_seconds()
    seconds = asyncio.run(_post_each(sandbox.url, sandbox.token, bodies))
    machine = system.machine_busy_seconds() - machine
    cpu, sandbox_cpu = time.process_time() - cpu, system.cpu_seconds(sandbox.pid) - sandbox_cpu
    answers = _answers(sandbox)
    run = Run(seconds, sum_ok(answers), cpu, sandbox_cpu, answers)
    run.machine_cpu = machine
    return run


def request_bodies(events: Iterable[Event]) -> list[tuple[str, bytes]]:
    """The request of each event, as the sender would send it: ``(path, JSON bytes)``."""
    ctx = Context(datetime.now(UTC))
    bodies: list[tuple[str, bytes]] = []
    for event in events:
        outcome = route(event, ctx)
        assert isinstance(outcome, Mapped)
        bodies.extend((r.path, orjson.dumps(to_json(r.body))) for r in outcome.requests)
    return bodies


# -- the two benchmarks -------------------------------------------------------------------------


@dataclass
class DrainResult:
    """The drain under enforced limits."""

    events: int
    run: Run
    limits: dict[str, int]

    @property
    def limit(self) -> int:
        """Sum of the enforced limits of the endpoints used, requests/s."""
        return sum(self.limits.values())


def drain(events: int, seed: int, directory: Path) -> DrainResult:
    """Queue ``events`` events and drain them into a rate-limited sandbox with 50 ms latency."""
    corpus = list(delivery_corpus.events(events, seed))
    used = delivery_corpus.check(corpus)
    limits = {path: DEFAULT_RATE_LIMITS[path] for path in ENDPOINTS if used[path]}
    _progress(f"drain: {events:,} events into a sandbox enforcing 150/s per endpoint...")
    with SandboxProcess(faults={"latency_ms": LATENCY_MS}) as sandbox:
        settings = SenderSettings(base_url=sandbox.url, token=sandbox.token)
        run = sender_run(sandbox, corpus, directory, settings, Probe())
    _progress(f"  drained in {run.seconds:.1f}s: {run.rate:,.1f} requests/s")
    return DrainResult(events, run, limits)


@dataclass
class UnthrottledResult:
    """Sender and naive loop, round by round."""

    events: int
    requests: int
    sender: list[Run]
    naive: list[Run]
    journaled: list[Run]
    """The Sender again, telling the console's journal each answer (as serve with a console)."""


def unthrottled(events: int, rounds: int, seed: int, directory: Path) -> UnthrottledResult:
    """Sender vs one-at-a-time loop against a sandbox without limits, interleaved rounds."""
    corpus = list(delivery_corpus.events(events, seed + 7))
    delivery_corpus.check(corpus)
    bodies = request_bodies(corpus)
    senders: list[Run] = []
    naives: list[Run] = []
    journaled: list[Run] = []
    _progress(
        f"unthrottled: {events:,} events, {rounds} round(s), sender vs naive loop, "
        "and the sender with the console's journal..."
    )
    with SandboxProcess(no_rate_limits=True) as sandbox:
        settings = SenderSettings(base_url=sandbox.url, token=sandbox.token, rate=UNLIMITED_RATE)
        request_bodies(corpus[:50])  # warm the transform's caches outside the timed runs
        contenders = ["sender", "naive", "journal"]
        for number in range(rounds):
            for name in contenders[number % 3 :] + contenders[: number % 3]:  # rotated
                if name == "sender":
                    senders.append(sender_run(sandbox, corpus, directory, settings))
                elif name == "journal":
                    journal = Journal()
                    journaled.append(
                        sender_run(sandbox, corpus, directory, settings, observer=journal)
                    )
                else:
                    naives.append(naive_run(sandbox, bodies))
            _progress(
                f"  round {number + 1}/{rounds}: sender {senders[-1].rate:,.0f}/s  "
                f"naive {naives[-1].rate:,.0f}/s  with journal {journaled[-1].rate:,.0f}/s"
            )
    return UnthrottledResult(events, len(bodies), senders, naives, journaled)


# -- reporting ----------------------------------------------------------------------------------


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def _cpu_line(run: Run) -> str:
    others = run.machine_cpu - run.sender_cpu - run.sandbox_cpu
    return (
        f"CPU: sender process {run.sender_cpu:.1f} s ({run.sender_cpu / run.seconds:.0%} of one "
        f"core), sandbox {run.sandbox_cpu:.1f} s ({run.sandbox_cpu / run.seconds:.0%}), "
        f"other processes {max(others, 0.0):.1f} s ({max(others, 0.0) / run.seconds:.0%}); "
        f"per request: sender {run.sender_cpu / max(run.requests, 1) * 1e6:,.0f} µs, "
        f"sandbox {run.sandbox_cpu / max(run.requests, 1) * 1e6:,.0f} µs"
    )


def _queue_line(run: Run) -> str:
    parts = [
        f"{name} {run.queue_calls[name]:,}× {run.queue_seconds[name]:.2f} s"
        for name in ("claim", "settle", "next_due")
        if run.queue_calls[name]
    ]
    busy = sum(run.queue_seconds.values())
    return (
        f"queue thread: {', '.join(parts)} (busy {busy / run.seconds:.0%} of the run; "
        f"claim {run.queue_seconds['claim'] / max(run.queue_calls['claim'], 1) * 1e3:.1f} ms, "
        f"settle {run.queue_seconds['settle'] / max(run.queue_calls['settle'], 1) * 1e3:.1f} ms "
        "per call)"
    )


def report_drain(result: DrainResult) -> None:
    """The drain's table, its two targets and where its time went."""
    run = result.run
    defaults = SenderSettings(base_url="", token="")
    print()
    print(
        f"drain under enforced limits: {result.events:,} events queued in SQLite, drained by "
        f"the Sender (default settings: {defaults.rate:g} requests/s per endpoint, "
        f"{defaults.concurrency} in flight)"
    )
    print(
        f"into a sandbox enforcing {', '.join(map(str, sorted(set(result.limits.values()))))} "
        f"requests/s per endpoint, answering after {LATENCY_MS} ms"
    )
    print()
    header = (
        f"  {'endpoint':<36} {'accepted':>9} {'429':>6} {'other':>6} "
        f"{'requests/s':>11} {'limit/s':>8} {'of limit':>9}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for path, limit in result.limits.items():
        ok = sum_ok({path: run.answers.get(path, {})})
        throttled = run.count("429", path)
        other = run.count(None, path) - ok - throttled
        rate = ok / run.seconds
        print(
            f"  {path:<36} {ok:>9,} {throttled:>6,} {other:>6,} "
            f"{rate:>11.1f} {limit:>8,} {rate / limit:>9.1%}"
        )
    throttled = run.count("429")
    total = run.count()
    other = total - run.requests - throttled
    print(
        f"  {'all four':<36} {run.requests:>9,} {throttled:>6,} {other:>6,} "
        f"{run.rate:>11.1f} {result.limit:>8,} {run.rate / result.limit:>9.1%}"
    )
    print()
    delivered = run.outcomes[State.DELIVERED.label]
    waiting = run.remaining.get(State.QUEUED, 0) + run.remaining.get(State.IN_FLIGHT, 0)
    print(
        f"  elapsed {run.seconds:.1f} s; events delivered {delivered:,} of {result.events:,}, "
        f"still queued {waiting:,}; ideal at the limit {result.events / result.limit:.1f} s"
    )
    print(f"  {_cpu_line(run)}")
    print(f"  {_queue_line(run)}")
    if run.probe is not None:
        _probe_lines(run, result)
    ratio = run.rate / result.limit
    share = throttled / total if total else 0.0
    print()
    print(
        f"  {'achieved / enforced limit':<32} {ratio:>7.1%}   target >= "
        f"{ACHIEVED_TO_LIMIT_TARGET:.0%}   {_verdict(ratio >= ACHIEVED_TO_LIMIT_TARGET)}   "
        f"({run.rate:,.1f} of {result.limit:,} requests/s)"
    )
    print(
        f"  {'429 share of answers':<32} {share:>7.2%}   target < "
        f"{THROTTLED_SHARE_TARGET:.0%}    {_verdict(share < THROTTLED_SHARE_TARGET)}   "
        f"({throttled:,} of {total:,} answers, sandbox counts)"
    )


def _probe_lines(run: Run, result: DrainResult) -> None:
    assert run.probe is not None
    samples = run.probe.steady()
    if not samples:
        return
    count = len(samples)
    in_flight = sum(s[1] for s in samples) / count
    wire = sum(s[2] for s in samples) / count
    waiting = {path: sum(s[3].get(path, 0) for s in samples) / count for path in result.limits}
    idle = {path: sum(not s[3].get(path, 0) for s in samples) / count for path in result.limits}
    concurrency = SenderSettings(base_url="", token="").concurrency
    # Little's law over the same seconds: requests on the wire = rate x time on the wire.
    seconds = samples[-1][0] - samples[0][0]
    print()
    spacing = seconds / max(count - 1, 1)
    print(
        f"  where the sender's events are ({count:,} samples over {seconds:.1f} s, first and "
        "last second (or tenth) left out; means)"
    )
    print(
        f"    event loop: a {run.probe.interval * 1e3:.0f} ms sleep took {spacing * 1e3:.0f} ms "
        f"on average (lag {max(spacing - run.probe.interval, 0.0) * 1e3:.0f} ms)"
    )
    print(
        f"    claimed, not yet settled {in_flight:6.1f}   (at most {2 * concurrency}: twice the "
        "concurrency)"
    )
    print(
        f"    requests on the wire     {wire:6.1f}   of {concurrency}; "
        f"{wire / run.rate * 1e3:.0f} ms per request at {run.rate:,.0f}/s (Little's law; "
        f"sandbox latency {LATENCY_MS} ms)"
    )
    print(
        f"    workers at a bucket      {sum(waiting.values()):6.1f}   of {2 * concurrency}; by "
        "endpoint, and the share of samples with none waiting there:"
    )
    for path in result.limits:
        print(f"      {path:<36} {waiting[path]:6.1f}   none waiting {idle[path]:6.1%}")


def _median(runs: Sequence[Run], value: str) -> float:
    values: list[float] = [getattr(run, value) for run in runs]
    return statistics.median(values)


def report_unthrottled(result: UnthrottledResult) -> None:
    """Medians of both contenders and their ratio."""
    rounds = len(result.sender)
    print()
    print(
        f"unthrottled requests/s from one process: {result.events:,} events "
        f"({result.requests:,} requests) per run, sandbox without rate limits or latency"
    )
    print(f"rounds: {rounds}, interleaved, order rotated every round")
    print()
    header = f"  {'contender':<54} {'median req/s':>13} {'median s/run':>13} {'min-max s':>13}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    concurrency = SenderSettings(base_url="", token="").concurrency
    labels = (
        (f"(f) Sender: SQLite queue, transform, {concurrency} in flight", result.sender),
        ("(g) naive: one AsyncClient, one request at a time", result.naive),
        ("(h) Sender, telling the console's journal each answer", result.journaled),
    )
    for label, runs in labels:
        seconds = [run.seconds for run in runs]
        spread = f"{min(seconds):.2f}-{max(seconds):.2f}"
        print(
            f"  {label:<54} {_median(runs, 'rate'):>13,.0f} {statistics.median(seconds):>13.3f} "
            f"{spread:>13}"
        )
    per_round = [s.rate / n.rate for s, n in zip(result.sender, result.naive, strict=True)]
    ratio = _median(result.sender, "rate") / _median(result.naive, "rate")
    print()
    print(
        f"  {'sender / naive requests/s':<32} {ratio:>6.2f}x   "
        f"(per round {min(per_round):.2f}-{max(per_round):.2f})"
    )
    middle = sorted(result.sender, key=lambda run: run.seconds)[rounds // 2]
    print(f"  sender, median run: {_cpu_line(middle)}")
    print(f"  sender, median run: {_queue_line(middle)}")
    naive = sorted(result.naive, key=lambda run: run.seconds)[rounds // 2]
    print(f"  naive, median run:  {_cpu_line(naive)}")
    journal = _median(result.journaled, "rate") / _median(result.sender, "rate")
    cpu = statistics.median(r.sender_cpu / max(r.requests, 1) for r in result.journaled) / (
        statistics.median(r.sender_cpu / max(r.requests, 1) for r in result.sender)
    )
    print(
        f"  {'with journal / sender requests/s':<32} {journal:>6.2f}x   "
        f"(sender CPU per request {cpu:.2f}x: what serve pays with --console-token)"
    )
    everyone = (*result.sender, *result.naive, *result.journaled)
    lost = [run.count() - run.requests for run in everyone if run.count()]
    complete = all(run.requests == result.requests for run in everyone)
    status = "all runs accepted every request" if complete else "SOME RUNS LOST REQUESTS"
    print(f"  {status} (non-2xx answers: {sum(lost):,})")


def run_all(
    parts: set[str], drain_events: int, unthrottled_events: int, rounds: int, seed: int
) -> dict[str, Any]:
    """Run the selected delivery benchmarks and print their reports."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as directory:
        if "drain" in parts:
            results["drain"] = drain(drain_events, seed, Path(directory))
        if "unthrottled" in parts:
            results["unthrottled"] = unthrottled(unthrottled_events, rounds, seed, Path(directory))
    print()
    print("attentive-router delivery")
    print(system.machine())
    if "drain" in results:
        report_drain(results["drain"])
    if "unthrottled" in results:
        report_unthrottled(results["unthrottled"])
    return results
