"""The scale-out topology on a real broker, and the faults delivery must survive.

One Tansu broker for the module; each test makes its own topics (``kafka init``, 4 partitions)
under a fresh prefix and runs the real processes on 127.0.0.1: the sandbox standing in for
Attentive (recording what it accepts), ``serve --queue kafka://...`` nodes taking the events in
and ``deliver --follow --queue kafka://...`` workers of one consumer group delivering them.
The configuration file sets ``[kafka] session_timeout = 3`` so that a killed worker's
partitions go to the other one within seconds.

Events are custom track events (``messageId``, a ``userId`` among a few dozen users, ``n`` the
user's sequence number); the sandbox records each accepted request with its ``seq``, and a
custom event's body carries the ``messageId`` as ``externalEventId``. Passing means:

- every event a ``serve`` answered 200 for reaches the sandbox, and each user's events arrive
  in the order they were sent;
- a worker killed mid-delivery, or a worker joining mid-run, repeats only what could have been
  unsettled at that moment (bounds in the tests), loses nothing and keeps each user's order;
- a ``serve`` killed mid-ingest fails some requests; resent to the other node they are
  delivered once, as is a batch resent on purpose;
- with the broker down, ``serve`` answers 503 with ``Retry-After`` and never 200, and its
  ``/healthz`` says the brokers are unreachable; once the broker is back it takes events again;
- two workers together keep within the account's rate limit;
- a worker's ``/healthz`` and ``/metrics`` show its partitions, their lag and the oldest
  unsettled event's age, and SIGTERM ends it with exit status 0 and its summary.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
import pytest
from tests.command import ROUTER_VARIABLES, run_command
from tests.delivery_harness import CUSTOM_PATH, custom_event
from tests.kafka_broker import Broker, running_broker

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.kafka.codec import record_key
from attentive_router._queue.kafka.work import COMMIT_INTERVAL
from attentive_router._sandbox.process import SandboxProcess

PARTITIONS = 4
SESSION_TIMEOUT = 3
CONCURRENCY = 4
"""Each worker's ``--concurrency``: it claims at most twice as many events at once."""
CLAIMED = 2 * CONCURRENCY
WRITE_KEY = "wk_scale_3b9e"
CLEAN = ROUTER_VARIABLES
_prefixes = itertools.count()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLEAN:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as started:
        yield started


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_command(*args, timeout=60)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


# --- the processes -----------------------------------------------------------------------------


class Worker:
    """``attentive-router deliver --follow`` on the Kafka queue, its stderr kept in a file."""

    def __init__(self, cluster: Cluster, name: str, args: Sequence[str]) -> None:
        self.name = name
        self.log = cluster.directory / f"{name}.stderr"
        command = [
            sys.executable,
            "-m",
            "attentive_router",
            "deliver",
            "--follow",
            "--queue",
            cluster.url,
            "--config",
            str(cluster.config),
            "--base-url",
            cluster.sandbox.url,
            "--token",
            cluster.sandbox.token,
            "--concurrency",
            str(CONCURRENCY),
            "--listen",
            "127.0.0.1:0",
            *args,
        ]
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        self.killed_at: float | None = None

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def partitions(self) -> set[int]:
        """The partitions it holds, as its log lines say."""
        held: set[int] = set()
        for line in self.stderr().splitlines():
            found = re.search(r"partitions=\[([\d, ]*)\]", line)
            if found is None:
                continue
            numbers = {int(n) for n in found[1].split(",") if n.strip()}
            if "partitions assigned" in line:
                held = numbers
            elif "partitions revoked" in line:
                held -= numbers
        return held

    @property
    def status_url(self) -> str:
        found = wait_for(
            lambda: re.search(r"status on (http://\S+)/healthz", self.stderr()),
            f"{self.name} to say where its status is",
        )
        return str(found[1])

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.status_url + path, timeout=10.0, trust_env=False)

    def kill(self) -> None:
        self.killed_at = time.time()
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Cluster:
    """The sandbox, ``serve`` nodes and workers on one fresh topic prefix; all stopped at exit."""

    def __init__(
        self,
        broker: Broker,
        directory: Path,
        *,
        rate_limits: dict[str, int] | None = None,
    ) -> None:
        self.broker = broker
        self.directory = directory
        self.prefix = f"scale{next(_prefixes)}-{time.time_ns()}"
        self.url = broker.url(self.prefix)
        self.config = directory / "scale.toml"
        self.config.write_text(f"[kafka]\nsession_timeout = {SESSION_TIMEOUT}\n")
        self.config.chmod(0o600)
        self.record = directory / "sandbox.ndjson"
        self.sandbox = SandboxProcess(
            rate_limits=rate_limits,
            no_rate_limits=rate_limits is None,
            record=self.record,
        )
        self.serves: list[ServeProcess] = []
        self.workers: list[Worker] = []

    def __enter__(self) -> Self:
        self.init()
        self.sandbox.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for worker in self.workers:
            worker.stop()
        for serve in self.serves:
            serve.stop()
        self.sandbox.stop()

    def init(self) -> None:
        """``kafka init``: the events topic with 4 partitions, and the dead-letter topic."""
        done = cli(
            "kafka", "init", "--queue", self.url, "--config", str(self.config),
            "--partitions", str(PARTITIONS),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{self.prefix}.events ({PARTITIONS} partitions" in done.stdout, done.stdout

    def serve(self, *args: str) -> ServeProcess:
        node = ServeProcess(
            queue=self.url,
            write_keys=(WRITE_KEY,),
            args=["--config", str(self.config), *args],
        )
        self.serves.append(node)
        return node.start()

    def worker(self, *args: str) -> Worker:
        started = Worker(self, f"worker{len(self.workers) + 1}", args)
        self.workers.append(started)
        return started

    def wait_for_split(self, *workers: Worker) -> None:
        """Wait until ``workers`` hold every partition between them, each some."""

        def split() -> bool:
            held = [worker.partitions() for worker in workers]
            every = set().union(*held)
            return (
                all(held) and every == set(range(PARTITIONS)) and sum(map(len, held)) == len(every)
            )

        wait_for(split, "the partitions to be shared out", 60)

    def delivered(self) -> list[dict[str, Any]]:
        """The custom events the sandbox accepted, in the order it accepted them."""
        if not self.record.exists():
            return []
        found = []
        written = self.record.read_bytes()
        # The sandbox may be writing a line right now: only lines it has ended count yet.
        for line in written[: written.rfind(b"\n") + 1].splitlines():
            record = orjson.loads(line)
            if record["path"] == CUSTOM_PATH:
                found.append(record)
        return sorted(found, key=lambda record: record["seq"])

    def wait_delivered(self, expected: set[str], timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until every messageId of ``expected`` reached the sandbox; return the records."""
        wait_for(
            lambda: expected <= {event_id(r) for r in self.delivered()},
            f"{len(expected)} events delivered",
            timeout,
        )
        return self.delivered()


# --- events ------------------------------------------------------------------------------------


def make_batches(
    tag: str, users: int, batches: int, size: int, seed: int = 0
) -> list[list[dict[str, Any]]]:
    """``batches`` batches of ``size`` custom events; ``n`` counts each user's events from 0."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    sequence: Counter[str] = Counter()
    made = []
    for number in range(batches):
        batch = []
        for index in range(size):
            user = f"{tag}-u{rng.randrange(users)}"
            batch.append(custom_event(f"{tag}-{number}-{index}", user, sequence[user]))
            sequence[user] += 1
        made.append(batch)
    return made


def post(url: str, batch: Sequence[dict[str, Any]], timeout: float = 15.0) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/batch",
        json={"batch": list(batch)},
        auth=(WRITE_KEY, ""),
        timeout=timeout,
        trust_env=False,
    )


def event_id(record: dict[str, Any]) -> str:
    return str(record["body"]["externalEventId"])


def user_of(record: dict[str, Any]) -> str:
    return str(record["body"]["user"]["externalIdentifiers"]["clientUserId"])


def n_of(record: dict[str, Any]) -> int:
    return int(record["body"]["properties"]["n"])


def ids(batches: Sequence[Sequence[dict[str, Any]]]) -> set[str]:
    return {event["messageId"] for batch in batches for event in batch}


def arrived_at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["received_at"]).timestamp()


def assert_per_user_order(records: Sequence[dict[str, Any]]) -> None:
    """Each user's ``n`` values, first arrivals in the sandbox's order, increase.

    A repeated event (delivered again after a rebalance) is left out of the order: it was
    already accepted once, in its place.
    """
    seen: set[str] = set()
    last: dict[str, int] = {}
    for record in records:
        key = event_id(record)
        if key in seen:
            continue
        seen.add(key)
        user, n = user_of(record), n_of(record)
        assert n > last.get(user, -1), (user, n, last.get(user))
        last[user] = n


def repeats(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The events accepted more than once: messageId -> its records."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_id[event_id(record)].append(record)
    return {key: found for key, found in by_id.items() if len(found) > 1}


def assert_repeats_are_copies(repeated: dict[str, list[dict[str, Any]]]) -> None:
    """A repeated event is the same request again: same body, same externalEventId."""
    for key, found in repeated.items():
        assert {event_id(record) for record in found} == {key}
        bodies = {orjson.dumps(record["body"], option=orjson.OPT_SORT_KEYS) for record in found}
        assert len(bodies) == 1, (key, bodies)


def settled_in_summary(log: str) -> int | None:
    """The events a worker's final summary says it settled, or None without a summary."""
    found = re.search(r"^deliver: ([\d,]+) event\(s\) settled in ", log, re.MULTILINE)
    return None if found is None else int(found[1].replace(",", ""))


def partition_of(user: str) -> int:
    """The partition a user's events land in (the producers' default partitioner)."""
    from aiokafka.partitioner import DefaultPartitioner  # noqa: PLC0415 - Kafka only

    key = record_key("default", user)
    every = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key, every, every))


def check_partitioner_sees_users(records: Sequence[dict[str, Any]]) -> None:
    """The users' partitions, as computed here, are several (else the tests prove little)."""
    assert len({partition_of(user_of(record)) for record in records}) == PARTITIONS


# --- 1. every acknowledged event arrives, in each user's order ---------------------------------


def test_every_acknowledged_event_arrives_in_per_user_order(broker: Broker, tmp_path: Path) -> None:
    with Cluster(broker, tmp_path) as cluster:
        nodes = [cluster.serve(), cluster.serve()]
        workers = [cluster.worker(), cluster.worker()]
        cluster.wait_for_split(*workers)
        batches = make_batches("order", users=30, batches=24, size=10, seed=1)
        acknowledged: set[str] = set()
        for number, batch in enumerate(batches):
            answer = post(nodes[number % 2].url, batch)
            assert answer.status_code == 200, answer.text
            acknowledged |= {event["messageId"] for event in batch}
        assert acknowledged == ids(batches)
        records = cluster.wait_delivered(acknowledged)
    assert {event_id(record) for record in records} == acknowledged
    assert repeats(records) == {}  # no worker died: nothing is sent twice
    check_partitioner_sees_users(records)
    assert_per_user_order(records)
    # Both workers delivered: the log lines of each say it settled some events.
    settled = [settled_in_summary(worker.stderr()) for worker in workers]
    assert sum(n or 0 for n in settled) == len(acknowledged), settled
    assert all(settled), settled


# --- 2. a worker killed mid-delivery -----------------------------------------------------------

KILL_RATE = 40.0
"""The account's rate in the kill and join tests: slow enough for a run to take a few seconds."""
KILL_MAX_AHEAD = 8
"""The victim reads a partition at most this far past its oldest unsettled event."""
KILL_CONCURRENCY = 4
"""Requests on the wire per worker in the kill test (twice as many events may be claimed)."""
SLACK = 1.0
"""Seconds of scheduling delay allowed on a busy machine, in the bounds below."""
KILL_WINDOW = COMMIT_INTERVAL + 0.2 + SLACK
"""Seconds before a kill in which what a worker settled may not be committed yet.

It commits every ``COMMIT_INTERVAL`` seconds, looked at after each fetch (at most 0.2 s); the
sender writes each verdict as it comes. A revoked partition is committed at the revocation.
"""


def assert_repeats_start_after(
    records: Sequence[dict[str, Any]],
    batches: Sequence[Sequence[dict[str, Any]]],
    partitions: set[int],
    since: float,
) -> int:
    """The repeats of ``partitions`` come from where the log was unsettled at ``since``.

    A partition's committed offset is its oldest unsettled event, so its next owner reads again
    from there: of the events before the oldest one not delivered by ``since`` (all settled and
    committed by the handover), none may come again. Events after it that were delivered
    already do come again; with per-user order they need not have been in flight (another
    user's events may have gone ahead of an older event waiting behind its user's), so their
    number is not bounded by what was in flight, only where they start. One ``serve`` node
    wrote ``batches`` in order: that is each partition's log order. Returns how many events of
    ``partitions`` were settled before ``since`` (what the bound protects).
    """
    first: dict[str, float] = {}
    for record in records:
        first.setdefault(event_id(record), arrived_at(record))
    repeated = set(repeats(records))
    protected = 0
    for partition in partitions:
        log = [e["messageId"] for b in batches for e in b if partition_of(e["userId"]) == partition]
        oldest = next((i for i, key in enumerate(log) if first[key] >= since), len(log))
        early = [key for key in log[:oldest] if key in repeated]
        assert early == [], (partition, oldest, early)
        protected += oldest
    return protected


@pytest.mark.parametrize("seed", [11, 12])
def test_a_worker_killed_mid_delivery_loses_nothing_and_repeats_only_the_unsettled(
    broker: Broker, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    batches = make_batches(f"kill{seed}", users=30, batches=24, size=10, seed=seed)
    total = len(ids(batches))
    kill_at = rng.randint(total // 4, total * 3 // 4)
    with Cluster(broker, tmp_path) as cluster:
        node = cluster.serve()
        victim, survivor = (
            cluster.worker(
                "--rate",
                str(KILL_RATE),
                "--max-ahead",
                str(KILL_MAX_AHEAD),
                "--concurrency",
                str(KILL_CONCURRENCY),
            )
            for _ in range(2)
        )
        cluster.wait_for_split(victim, survivor)
        victim_partitions = victim.partitions()
        for batch in batches:
            assert post(node.url, batch).status_code == 200
        wait_for(lambda: len(cluster.delivered()) >= kill_at, f"{kill_at} events delivered")
        victim.kill()
        assert victim.killed_at is not None
        records = cluster.wait_delivered(ids(batches), timeout=90)
        # The survivor took the victim's partitions (after the session timeout).
        wait_for(lambda: survivor.partitions() == set(range(PARTITIONS)), "the takeover", 30)
        time.sleep(1.0)  # anything delivered a second time after the last first delivery
        records = cluster.delivered()
    assert {event_id(record) for record in records} == ids(batches)
    assert_per_user_order(records)
    repeated = repeats(records)
    assert_repeats_are_copies(repeated)
    # The victim's partitions: committed up to what was unsettled shortly before it died.
    assert victim.killed_at is not None
    protected = assert_repeats_start_after(
        records, batches, victim_partitions, victim.killed_at - KILL_WINDOW
    )
    assert protected > 0, "the victim had settled nothing before the kill: the bound is empty"
    # The survivor's own partitions are revoked and handed back at the takeover (after the
    # kill), committed then up to what was unsettled.
    others = set(range(PARTITIONS)) - victim_partitions
    assert_repeats_start_after(records, batches, others, victim.killed_at - SLACK)
    # Nothing comes more than twice: one handover each.
    assert all(len(found) == 2 for found in repeated.values()), repeated
    # How many: per partition, what was in flight (at most twice the concurrency claimed) and
    # what was read past the oldest unsettled event (--max-ahead, plus half of it for the last
    # fetch). The survivor's partitions were committed at the handover, with nothing in flight.
    per_partition = 2 * KILL_CONCURRENCY + KILL_MAX_AHEAD + KILL_MAX_AHEAD // 2
    assert len(repeated) <= len(victim_partitions) * per_partition, len(repeated)


# --- 3. a worker joining mid-run ---------------------------------------------------------------


def test_a_worker_joining_mid_run_loses_nothing_and_repeats_only_the_unsettled(
    broker: Broker, tmp_path: Path
) -> None:
    batches = make_batches("join", users=30, batches=24, size=10, seed=3)
    total = len(ids(batches))
    with Cluster(broker, tmp_path) as cluster:
        node = cluster.serve()
        first = cluster.worker("--rate", str(KILL_RATE))
        wait_for(lambda: first.partitions() == set(range(PARTITIONS)), "the first assignment", 60)
        for batch in batches:
            assert post(node.url, batch).status_code == 200
        wait_for(lambda: len(cluster.delivered()) >= total // 4, "a quarter delivered")
        joined_at = time.time()
        second = cluster.worker("--rate", str(KILL_RATE))
        cluster.wait_for_split(first, second)
        joined_with = len(cluster.delivered())
        records = cluster.wait_delivered(ids(batches), timeout=90)
        time.sleep(1.0)
        records = cluster.delivered()
    assert joined_with < total, "the second worker joined after everything was delivered"
    assert {event_id(record) for record in records} == ids(batches)
    assert_per_user_order(records)
    repeated = repeats(records)
    assert_repeats_are_copies(repeated)
    # At the rebalance (after the second worker started) every partition is revoked, the first
    # worker committing each up to its oldest unsettled event.
    protected = assert_repeats_start_after(
        records, batches, set(range(PARTITIONS)), joined_at - SLACK
    )
    assert protected > 0, "nothing was settled before the join: the bound is empty"
    assert all(len(found) == 2 for found in repeated.values()), repeated
    second_log = second.stderr()
    assert "partitions assigned" in second_log
    assert settled_in_summary(second_log), second_log


# --- 4. a serve killed mid-ingest --------------------------------------------------------------


def test_a_serve_killed_mid_ingest_fails_requests_resent_to_the_other_node_once(
    broker: Broker, tmp_path: Path
) -> None:
    clients = 4
    # Each client its own users: their events go out (and are resent) in order.
    mine = [
        make_batches(f"ingest{c}", users=10, batches=12, size=10, seed=c) for c in range(clients)
    ]
    batches = [batch for batches_of_one in mine for batch in batches_of_one]
    with Cluster(broker, tmp_path) as cluster:
        doomed, other = cluster.serve(), cluster.serve()
        workers = [cluster.worker(), cluster.worker()]
        cluster.wait_for_split(*workers)
        lock = threading.Lock()
        answered = [0]
        failed: list[str] = []  # how each failed request to the doomed node failed
        resent: set[str] = set()
        acknowledged: set[str] = set()
        rng = random.Random(4)  # noqa: S311 - test schedule, not secrets
        kill_after = rng.randint(len(batches) // 4, len(batches) // 2)

        def client(mine: list[list[dict[str, Any]]]) -> None:
            for batch in mine:
                try:
                    answer = post(doomed.url, batch, timeout=10.0)
                    ok = answer.status_code == 200
                    why = str(answer.status_code)
                except httpx.HTTPError as error:
                    ok, why = False, type(error).__name__
                with lock:
                    if ok:
                        answered[0] += 1
                        acknowledged.update(event["messageId"] for event in batch)
                        continue
                    failed.append(why)
                    resent.update(event["messageId"] for event in batch)
                # The client sends the request again, to the other node, until it is taken.
                for _ in range(5):
                    with contextlib.suppress(httpx.HTTPError):
                        if post(other.url, batch).status_code == 200:
                            with lock:
                                acknowledged.update(event["messageId"] for event in batch)
                            break
                    time.sleep(0.2)

        threads = [
            threading.Thread(target=client, args=(batches_of_one,)) for batches_of_one in mine
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: answered[0] >= kill_after, f"{kill_after} requests answered")
        doomed.kill()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        assert acknowledged == ids(batches), "a request was never taken by either node"
        records = cluster.wait_delivered(acknowledged)
        # The last events (those resent last) are delivered: anything repeated would be by now.
        time.sleep(1.0)
        records = cluster.delivered()
    assert failed, "no request to the killed node failed"
    assert resent
    times = Counter(event_id(record) for record in records)
    assert set(times) == acknowledged
    # Once each: those the killed node stored before it died and those resent are the same
    # events, recognised by messageId in their partition whichever node wrote them.
    assert {key: count for key, count in times.items() if count > 1} == {}
    assert_per_user_order(records)


# --- 6. a batch resent to the other node -------------------------------------------------------


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` samples: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name``: labels -> value."""
    return {
        labels: value for (found, labels), value in metric_samples(text).items() if found == name
    }


def test_a_batch_resent_to_the_other_node_is_delivered_once(broker: Broker, tmp_path: Path) -> None:
    at_once, later, after = make_batches("resend", users=20, batches=3, size=20, seed=6)
    resent_partitions = {partition_of(e["userId"]) for e in [*at_once, *later]}
    assert resent_partitions <= {partition_of(e["userId"]) for e in after}
    with Cluster(broker, tmp_path) as cluster:
        one, two = cluster.serve(), cluster.serve()
        workers = [cluster.worker(), cluster.worker()]
        cluster.wait_for_split(*workers)
        # Resent at once (the answer to the first was lost, say) ...
        assert post(one.url, at_once).status_code == 200
        assert post(two.url, at_once).status_code == 200
        # ... and resent after it was delivered.
        assert post(two.url, later).status_code == 200
        cluster.wait_delivered(ids([at_once, later]))
        assert post(one.url, later).status_code == 200
        # Every user has events after the resent ones, in the same partitions: once these are
        # delivered, the copies have been read (and dropped).
        assert post(two.url, after).status_code == 200
        records = cluster.wait_delivered(ids([at_once, later, after]))
        time.sleep(1.0)
        records = cluster.delivered()
        dropped = sum(
            sum(metric(w.get("/metrics").text, "attentive_router_kafka_duplicates_total").values())
            for w in workers
        )
    times = Counter(event_id(record) for record in records)
    assert set(times) == ids([at_once, later, after])
    assert {key: count for key, count in times.items() if count > 1} == {}
    assert dropped == len(at_once) + len(later)
    assert_per_user_order(records)


# --- 7. two workers keep within the account's rate ---------------------------------------------

LIMIT = 20
"""The account's limit on the custom events endpoint, in the sandbox and given to each worker."""


def test_two_workers_together_keep_within_the_accounts_rate(broker: Broker, tmp_path: Path) -> None:
    batches = make_batches("rate", users=40, batches=30, size=10, seed=7)
    total = len(ids(batches))
    with Cluster(broker, tmp_path, rate_limits={CUSTOM_PATH: LIMIT}) as cluster:
        node = cluster.serve()
        workers = [cluster.worker("--rate", str(LIMIT)) for _ in range(2)]
        cluster.wait_for_split(*workers)
        for batch in batches:
            assert post(node.url, batch).status_code == 200
        records = cluster.wait_delivered(ids(batches), timeout=90)
        answers = cluster.sandbox.stats()["received"][CUSTOM_PATH]
        for worker in workers:
            assert worker.terminate() == 0, worker.stderr()
    assert len(records) == total
    throttled = answers.get("429", 0)
    # The sandbox's 429s (each worker's summary counts those it got).
    assert throttled < 0.01 * sum(answers.values()), answers
    summaries = [re.search(r"throttled \(429\) (\d[\d,]*)", worker.stderr()) for worker in workers]
    assert all(summaries), [worker.stderr() for worker in workers]
    assert sum(int(found[1].replace(",", "")) for found in summaries if found) == throttled
    # Limited, not lucky: no second at the sandbox saw more than the limit (and a little for
    # its bucket, which starts full, and the clocks), and the whole took as long as the limit
    # makes it.
    times = sorted(arrived_at(record) for record in records)
    busiest = max(sum(1 for t in times if start <= t < start + 1) for start in times)
    assert busiest <= LIMIT + 2, busiest
    assert times[-1] - times[0] >= 0.9 * (total - LIMIT) / LIMIT, times[-1] - times[0]
    assert_per_user_order(records)


# --- 8. a worker's /healthz and /metrics, and its exit --------------------------------------


def test_a_workers_status_shows_its_partitions_lag_and_oldest_event(
    broker: Broker, tmp_path: Path
) -> None:
    batches = make_batches("status", users=20, batches=10, size=10, seed=8)
    total = len(ids(batches))
    with Cluster(broker, tmp_path) as cluster:
        node = cluster.serve()
        workers = [cluster.worker("--rate", "20") for _ in range(2)]
        cluster.wait_for_split(*workers)
        for worker in workers:
            health = worker.get("/healthz")
            assert health.status_code == 200, health.text
            body = health.json()
            assert body["status"] == "ok", body
            assert body["kafka"]["reachable"] is True
            assert body["kafka"]["group"] == f"{cluster.prefix}.delivery"
            assert set(body["kafka"]["partitions"]) == worker.partitions()
            assert body["kafka"]["share"] == len(worker.partitions()) / PARTITIONS
        for batch in batches:
            assert post(node.url, batch).status_code == 200
        # While the backlog drains (10 events/s each): lag, and an oldest unsettled event.
        wait_for(lambda: len(cluster.delivered()) >= 10, "some events delivered")
        busy_ages = []
        lags: dict[int, float] = {}
        for worker in workers:
            text = worker.get("/metrics").text
            (assigned,) = metric(text, "attentive_router_kafka_partitions_assigned").values()
            assert assigned == len(worker.partitions())
            by_partition = {
                int(dict(labels)["partition"]): value
                for labels, value in metric(text, "attentive_router_kafka_partition_lag").items()
            }
            assert set(by_partition) == worker.partitions(), text
            assert all(value >= 0 for value in by_partition.values())
            lags.update(by_partition)
            (age,) = metric(text, "attentive_router_kafka_oldest_unsettled_age_seconds").values()
            busy_ages.append(age)
            (up,) = metric(text, "attentive_router_kafka_up").values()
            assert up == 1
        assert sum(lags.values()) > 0, lags
        assert sum(lags.values()) <= total
        assert max(busy_ages) > 0, busy_ages
        assert all(age < 60 for age in busy_ages), busy_ages
        cluster.wait_delivered(ids(batches))

        def settled() -> bool:
            texts = [worker.get("/metrics").text for worker in workers]
            return all(
                set(metric(text, "attentive_router_kafka_partition_lag").values()) == {0}
                and set(
                    metric(text, "attentive_router_kafka_oldest_unsettled_age_seconds").values()
                )
                == {0}
                for text in texts
            )

        wait_for(settled, "no lag and nothing unsettled")
        for worker in workers:
            assert worker.terminate() == 0, worker.stderr()
    settled_counts = []
    for worker in workers:
        log = worker.stderr()
        found = settled_in_summary(log)
        assert found is not None, log
        settled_counts.append(found)
        assert "throttled (429) 0" in log
    assert sum(settled_counts) == total
    assert all(settled_counts), settled_counts


# --- 5. the broker stopped (last: it restarts the module's broker) ----------------------------


def serve_kafka(node: ServeProcess) -> dict[str, Any]:
    """The ``kafka`` part of ``serve``'s ``/healthz`` (its one destination's)."""
    (destination,) = node.get("/healthz").json()["destinations"].values()
    return dict(destination["kafka"])


def test_serve_answers_503_while_the_broker_is_down_and_200_once_it_is_back(
    broker: Broker, tmp_path: Path
) -> None:
    (batch,) = make_batches("down", users=5, batches=1, size=5, seed=5)
    with Cluster(broker, tmp_path) as cluster:
        node = cluster.serve("--lock-timeout", "1")
        assert post(node.url, batch).status_code == 200
        assert serve_kafka(node)["reachable"] is True
        broker.stop()
        try:
            statuses = []
            for _ in range(4):
                answer = post(node.url, batch)
                statuses.append(answer.status_code)
                if answer.status_code == 503:
                    assert answer.headers.get("retry-after"), answer.headers
            assert statuses == [503] * 4, statuses
            # /healthz looks every 5 s.
            wait_for(
                lambda: serve_kafka(node)["reachable"] is False,
                "/healthz to say the brokers are unreachable",
                20,
            )
            down = node.get("/healthz").json()
            assert down["status"] == "degraded", down
            assert serve_kafka(node)["problem"], down
            assert post(node.url, batch).status_code == 503
        finally:
            if broker.process is None:
                broker.start()
        cluster.init()  # memory storage: the restarted broker forgot the topics
        wait_for(lambda: post(node.url, batch).status_code == 200, "a 200 again", 60)
        wait_for(
            lambda: serve_kafka(node)["reachable"] is True,
            "/healthz to say the brokers answer again",
            20,
        )
        # And the events taken after the restart are delivered.
        worker = cluster.worker()
        records = cluster.wait_delivered(ids([batch]))
        assert worker.partitions() == set(range(PARTITIONS))
    assert {event_id(record) for record in records} == ids([batch])
