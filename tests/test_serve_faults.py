"""Faults F10-F12 of ``ingest-and-delivery.md``: ``serve`` killed, stopped, and out of storage.

Every test runs ``attentive-router serve`` as a real process on 127.0.0.1 (``ServeProcess``),
with real clients posting to it over HTTP: threads posting ``/v1/batch`` with httpx, and
segment-analytics-python, the library users point at ``serve`` unchanged. Every client keeps,
for each of its events, whether the server answered 200. Passing means:

- F10, ``kill -9`` during ingest: the queue file the kill left is intact and holds every event
  that got a 200 exactly once, and each request either whole or not at all; a restarted server
  takes the unanswered requests again without storing anything twice and, when delivering,
  sends every event, repeating only those that were in flight at the kill.
- F11, SIGTERM under load (delivering to a slow sandbox): the listening socket closes at once
  (connections are refused while the process still finishes its work), a request in progress
  still gets its 200, every request gets 200 or no answer at all, the process exits 0 within
  the grace period and a margin and logs its stop lines; deliveries in flight either finish
  (latency below the grace period) or are released to the queue (latency above it), so
  nothing is left in flight; ``deliver`` then sends the rest, each event once but for a
  released request that reached the sandbox all the same.
- F12, database locked (another connection's ``BEGIN EXCLUSIVE`` past ``--lock-timeout``) or
  disk full (RLIMIT_FSIZE lowered on the running server): the request gets 503 with
  ``Retry-After`` and nothing of it is stored; the server stays up; once the storage is back
  the same request gets 200 and is stored once; ``/metrics`` counts the 503s. When
  delivering, the sender's failed writes restart delivery, and every event is delivered.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
import pytest
from segment.analytics import Client

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import Record, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

SOURCE = "shop"
KEY = "wk_serve_faults_7d41"
WRITE_KEY = f"{SOURCE}={KEY}"
CUSTOM = "/v1/events/custom"
EVENT_NAME = "Gift Card Redeemed"
"""A track event no mapping table names: one custom-event request, externalEventId = messageId."""
BATCH = "/v1/batch"
DELIVERY_ARGS = ("--rate", "2000")
"""The sandbox runs without rate limits; delivery is paced well above Attentive's 150/s."""
CLIENT_TIMEOUT = 10.0
"""Seconds a client waits for an answer; no request in these tests should come near it."""
NO_ANSWER = frozenset({"ConnectError", "RemoteProtocolError", "ReadError", "WriteError"})
"""How httpx reports a server that is gone or closing: anything else (a timeout) is a hang."""


def track(message_id: str, user: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A custom track event with an email, so that delivery maps it to one request."""
    return {
        "type": "track",
        "event": EVENT_NAME,
        "messageId": message_id,
        "userId": user,
        "properties": properties,
        "context": {"traits": {"email": f"{user}@example.com"}},
    }


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout} s")
        time.sleep(0.01)


def running(serve: ServeProcess) -> bool:
    try:
        serve.wait(0)
    except subprocess.TimeoutExpired:
        return True
    return False


def read_rows(path: Path) -> list[Record]:
    """Every row of the queue file, in id order (opening it recovers the WAL after a crash)."""
    store = SQLiteQueue(path)
    rows: list[Record] = []
    try:
        while page := store.records(limit=5000, after=rows[-1].id if rows else 0):
            rows += page
    finally:
        store.close()
    return rows


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        result: str = db.execute("PRAGMA integrity_check").fetchone()[0]
    return result


def ingest_requests(serve: ServeProcess, endpoint: str, status: int) -> float:
    """``attentive_router_ingest_requests_total`` for one endpoint and status, from /metrics."""
    response = serve.get("/metrics")
    assert response.status_code == 200, response.text
    head = f'attentive_router_ingest_requests_total{{endpoint="{endpoint}",status="{status}"}} '
    for line in response.text.splitlines():
        if line.startswith(head):
            return float(line.removeprefix(head))
    return 0.0


def post_batch(serve: ServeProcess, body: bytes) -> httpx.Response:
    return serve.post(
        BATCH, content=body, headers={"Content-Type": "application/json"}, auth=(KEY, "")
    )


def log_lines(stderr: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def check_row(row: Record, expected: dict[str, dict[str, Any]]) -> None:
    """A stored event reads back as the event that was sent, stamped by the server."""
    assert row.source == SOURCE, row
    assert row.reason is None, row
    event = orjson.loads(row.event)
    assert event["messageId"] == row.key, row
    assert event["type"] == "track", event
    assert event["event"] == EVENT_NAME, event
    assert event["properties"] == expected[row.key], (event, expected[row.key])
    assert event["context"]["traits"]["email"] == f"{event['userId']}@example.com", event
    assert row.user == f"user:{event['userId']}", row
    assert "receivedAt" in event, event


@dataclass(frozen=True)
class Post:
    """One ``/v1/batch`` request and how it ended (``status`` None: no answer at all)."""

    ids: tuple[str, ...]
    body: bytes
    status: int | None
    error: str | None
    started: float
    ended: float


class BatchSenders:
    """Threads that post batches of fresh messageIds to ``/v1/batch`` until stopped.

    Each thread has its own keep-alive connection (HTTP Basic with the write key) and its own
    seeded generator of batch sizes and pauses.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        seed: str,
        senders: int,
        sizes: Callable[[random.Random], int],
        pause: tuple[float, float],
        users: int = 400,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.seed = seed
        self.sizes = sizes
        self.pause = pause
        self.users = users
        self.expected: dict[str, dict[str, Any]] = {}
        self._posts: list[Post] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(number,), daemon=True)
            for number in range(senders)
        ]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(CLIENT_TIMEOUT + 5)
                assert not thread.is_alive(), "a sender is stuck"

    def _run(self, number: int) -> None:
        rng = random.Random(f"{self.seed}-{number}")  # noqa: S311 - test load, not secrets
        with httpx.Client(
            base_url=self.url, auth=(KEY, ""), timeout=CLIENT_TIMEOUT, trust_env=False
        ) as client:
            for k in itertools.count():
                if self._halt.is_set():
                    return
                ids = tuple(
                    f"{self.prefix}-{number}-{k:04d}-{i:04d}" for i in range(self.sizes(rng))
                )
                events = []
                for i, message_id in enumerate(ids):
                    properties = {"sender": number, "request": k, "item": i}
                    with self._lock:
                        self.expected[message_id] = properties
                    user = f"{self.prefix}-u{rng.randrange(self.users)}"
                    events.append(track(message_id, user, properties))
                body = orjson.dumps({"batch": events})
                started = time.monotonic()
                try:
                    response = client.post(
                        BATCH, content=body, headers={"Content-Type": "application/json"}
                    )
                except httpx.TransportError as error:
                    post = Post(ids, body, None, type(error).__name__, started, time.monotonic())
                else:
                    post = Post(ids, body, response.status_code, None, started, time.monotonic())
                with self._lock:
                    self._posts.append(post)
                if post.status is None:
                    time.sleep(0.01)  # the server is gone or going: do not spin
                else:
                    time.sleep(rng.uniform(*self.pause))

    @property
    def posts(self) -> list[Post]:
        with self._lock:
            return list(self._posts)

    def acknowledged(self) -> set[str]:
        return {i for post in self.posts if post.status == 200 for i in post.ids}

    def sent(self) -> set[str]:
        return {i for post in self.posts for i in post.ids}

    def answered(self, status: int = 200) -> int:
        return sum(post.status == status for post in self.posts)


def failure(error: Exception) -> str:
    status = getattr(error, "status", None)
    return f"{type(error).__name__} {status}" if status is not None else type(error).__name__


class SegmentSync:
    """segment-analytics-python with ``sync_mode=True``, one event per call, in a thread.

    In sync mode ``Client._enqueue`` posts the event at once through ``request.post``, which
    returns only for a 2xx answer and raises otherwise (``APIError`` for a status, the
    ``requests`` exception when no answer came); there are no retries. So a call that returns
    is an event the server acknowledged.
    """

    def __init__(self, url: str, prefix: str, pause: float = 0.004) -> None:
        self.client = Client(
            write_key=KEY, host=url, sync_mode=True, timeout=CLIENT_TIMEOUT, max_retries=0
        )
        self.prefix = prefix
        self.pause = pause
        self.expected: dict[str, dict[str, Any]] = {}
        self.users: dict[str, str] = {}
        self.acked: list[str] = []
        self.failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(CLIENT_TIMEOUT + 5)
            assert not self._thread.is_alive(), "the sync client is stuck"

    def send(self, message_id: str, user: str, properties: dict[str, Any]) -> str | None:
        """Track one event; None when the server acknowledged it, else what went wrong."""
        try:
            self.client.track(
                user_id=user,
                event=EVENT_NAME,
                properties=dict(properties),
                context={"traits": {"email": f"{user}@example.com"}},
                message_id=message_id,
            )
        except Exception as error:  # noqa: BLE001 - requests' and segment's errors alike
            return failure(error)
        return None

    def _run(self) -> None:
        for n in itertools.count():
            if self._halt.is_set():
                return
            message_id = f"{self.prefix}-sync-{n:05d}"
            user = f"{self.prefix}-sync-u{n % 50}"
            properties = {"client": "sync", "n": n}
            with self._lock:
                self.expected[message_id] = properties
                self.users[message_id] = user
            problem = self.send(message_id, user, properties)
            with self._lock:
                if problem is None:
                    self.acked.append(message_id)
                else:
                    self.failed[message_id] = problem
            time.sleep(self.pause if problem is None else 0.01)

    def acknowledged(self) -> set[str]:
        with self._lock:
            return set(self.acked)


class SegmentAsync:
    """segment-analytics-python as usually run: a consumer thread uploads batches.

    An upload that fails after its retries (``max_retries=1``: one immediate retry) reaches
    ``on_error`` with the whole batch (``consumer.py``); one that succeeds reports nothing. So
    once ``flush`` has returned, the acknowledged events are those queued minus those that
    reached ``on_error``.
    """

    def __init__(self, url: str, prefix: str, upload_size: int, pause: float = 0.003) -> None:
        self.client = Client(
            write_key=KEY,
            host=url,
            upload_size=upload_size,
            upload_interval=0.05,
            max_retries=1,
            timeout=CLIENT_TIMEOUT,
            on_error=self._on_error,
        )
        self.prefix = prefix
        self.pause = pause
        self.expected: dict[str, dict[str, Any]] = {}
        self.users: dict[str, str] = {}
        self.queued: list[str] = []
        self.dropped: list[str] = []
        self.failed_batches: list[tuple[str, tuple[str, ...]]] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._finished = False

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish()

    def _on_error(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self.failed_batches.append((failure(error), tuple(m["messageId"] for m in batch)))

    def _run(self) -> None:
        for n in itertools.count():
            if self._halt.is_set():
                return
            message_id = f"{self.prefix}-async-{n:05d}"
            user = f"{self.prefix}-async-u{n % 50}"
            properties = {"client": "async", "n": n}
            with self._lock:
                self.expected[message_id] = properties
                self.users[message_id] = user
            queued, _ = self.client.track(
                user_id=user,
                event=EVENT_NAME,
                properties=dict(properties),
                context={"traits": {"email": f"{user}@example.com"}},
                message_id=message_id,
            )
            with self._lock:
                (self.queued if queued else self.dropped).append(message_id)
            time.sleep(self.pause)

    def finish(self, timeout: float = 30.0) -> None:
        """Stop tracking, let the consumer upload (or fail) what it holds, stop it."""
        if self._finished:
            return
        self._finished = True
        self._halt.set()
        self._thread.join(CLIENT_TIMEOUT + 5)
        flusher = threading.Thread(target=self.client.flush, daemon=True)
        flusher.start()
        flusher.join(timeout)
        assert not flusher.is_alive(), "the async client did not flush"
        self.client.join()

    def failed(self) -> dict[str, str]:
        with self._lock:
            return {i: problem for problem, ids in self.failed_batches for i in ids}

    def acknowledged(self) -> set[str]:
        assert self._finished, "acknowledgements are known once flushed"
        failed = self.failed()
        with self._lock:
            return {i for i in self.queued if i not in failed}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(no_rate_limits=True) as server:
        yield server


def arrivals(sandbox: SandboxProcess) -> dict[str, list[dict[str, Any]]]:
    """The bodies the sandbox accepted, by ``externalEventId``."""
    bodies: dict[str, list[dict[str, Any]]] = {}
    for request in sandbox.requests(CUSTOM):
        bodies.setdefault(request["body"]["externalEventId"], []).append(request["body"])
    return bodies


def wait_for_delivery(path: Path, total: int, timeout: float) -> None:
    store = SQLiteQueue(path)
    try:
        wait_until(
            lambda: store.counts()[State.DELIVERED] == total,
            timeout,
            f"{total} events delivered",
        )
    finally:
        store.close()


# F10: kill -9 during ingest while real clients send.

F10_SEEDS = range(6)
"""Even seeds run ``--no-deliver``; odd ones deliver to the sandbox while ingesting."""
F10_FAULTS = {"latency_ms": 20, "latency_jitter_ms": 30}


def f10_sizes(rng: random.Random) -> int:
    """Mostly 20-100 events; now and then a large batch, whose write takes long enough to be
    cut by the kill more often."""
    return rng.randint(300, 800) if rng.random() < 0.1 else rng.randint(20, 100)


@dataclass
class Clients:
    """The three clients of one F10 run, stopped, with what each was told."""

    load: BatchSenders
    sync: SegmentSync
    background: SegmentAsync
    ran_for: float = 0.0

    @property
    def expected(self) -> dict[str, dict[str, Any]]:
        """Every event sent, by messageId, with its properties."""
        return self.load.expected | self.sync.expected | self.background.expected

    def acknowledged(self) -> set[str]:
        return self.load.acknowledged() | self.sync.acknowledged() | self.background.acknowledged()

    def unacknowledged_calls(self) -> list[str]:
        """Events of the segment clients that were not acknowledged."""
        return sorted(set(self.sync.failed) | set(self.background.failed()))


def send_until_killed(serve: ServeProcess, rng: random.Random, prefix: str) -> Clients:
    """Run the three clients against ``serve`` and SIGKILL it at a seeded moment."""
    load = BatchSenders(
        serve.url, prefix=prefix, seed=prefix, senders=3, sizes=f10_sizes, pause=(0.02, 0.08)
    )
    sync = SegmentSync(serve.url, prefix)
    background = SegmentAsync(serve.url, prefix, upload_size=rng.randint(10, 40))
    delay = rng.uniform(0.4, 1.2)
    with load, sync, background:
        began = time.monotonic()
        wait_until(
            lambda: load.answered() >= 3 and len(sync.acknowledged()) > 0,
            10,
            "both clients acknowledged",
        )
        time.sleep(max(0.0, began + delay - time.monotonic()))
        assert serve.kill() == -signal.SIGKILL
        ran_for = time.monotonic() - began
        load.stop()
        sync.stop()
        background.finish()
    return Clients(load, sync, background, ran_for)


def check_clients_after_kill(clients: Clients) -> None:
    """Each client was answered 200 or not at all (the server never refused anything)."""
    posts = clients.load.posts
    assert {p.status for p in posts} <= {200, None}, Counter(p.status for p in posts)
    assert {p.error for p in posts if p.status is None} <= NO_ANSWER
    assert set(clients.sync.failed.values()) <= {"ConnectionError"}, clients.sync.failed
    problems = {problem for problem, _ in clients.background.failed_batches}
    assert problems <= {"ConnectionError"}, problems
    assert clients.background.acknowledged(), "the async client had nothing acknowledged"
    assert not clients.background.dropped


@dataclass(frozen=True)
class AtKill:
    """What the queue file held right after the kill."""

    stored: frozenset[str]
    in_flight: frozenset[str]
    delivered: int


def check_file_after_kill(queue: Path, clients: Clients, delivering: bool) -> AtKill:
    """Intact, every acknowledged event once, every request whole or not at all."""
    assert integrity(queue) == "ok"
    rows = read_rows(queue)
    stored = Counter(row.key for row in rows)
    assert max(stored.values()) == 1, [key for key, n in stored.items() if n > 1][:5]
    missing = sorted(clients.acknowledged() - set(stored))
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    expected = clients.expected
    assert set(stored) <= set(expected), sorted(set(stored) - set(expected))[:5]
    allowed = {State.QUEUED, State.IN_FLIGHT, State.DELIVERED} if delivering else {State.QUEUED}
    for row in rows:
        assert row.state in allowed, row
        check_row(row, expected)
    for post in clients.load.posts:
        kept = sum(i in stored for i in post.ids)
        assert kept in {0, len(post.ids)}, f"{kept} of {len(post.ids)} events of a request"
    for _, ids in clients.background.failed_batches:
        kept = sum(i in stored for i in ids)
        assert kept in {0, len(ids)}, f"{kept} of {len(ids)} events of an upload"
    return AtKill(
        stored=frozenset(stored),
        in_flight=frozenset(row.key for row in rows if row.state is State.IN_FLIGHT),
        delivered=sum(row.state is State.DELIVERED for row in rows),
    )


def send_again(serve: ServeProcess, clients: Clients, prefix: str) -> None:
    """What a client does after no answer: send the same events again; all get 200."""
    for post in clients.load.posts:
        if post.status is None:
            response = post_batch(serve, post.body)
            assert response.status_code == 200, response.text
    retry = SegmentSync(serve.url, prefix)
    users = clients.sync.users | clients.background.users
    expected = clients.expected
    for message_id in clients.unacknowledged_calls():
        assert retry.send(message_id, users[message_id], expected[message_id]) is None


def check_deliveries(sandbox: SandboxProcess, sent: set[str], kill: AtKill) -> int:
    """Every event arrived; twice at most and only when in flight at the kill. Repeats."""
    bodies = arrivals(sandbox)
    assert set(bodies) == sent
    repeats = 0
    for key, copies in bodies.items():
        assert len(copies) == 1 or key in kill.in_flight, (key, len(copies), "not in flight")
        assert len(copies) <= 2, (key, len(copies))
        assert all(copy == copies[0] for copy in copies), key
        repeats += len(copies) - 1
    return repeats


@pytest.mark.parametrize("seed", F10_SEEDS)
def test_f10_kill_9_during_ingest_keeps_every_acknowledged_event(
    sandbox: SandboxProcess, tmp_path: Path, seed: int
) -> None:
    started = time.monotonic()
    rng = random.Random(f"f10-{seed}")  # noqa: S311 - test schedule, not secrets
    delivering = seed % 2 == 1
    box = sandbox if delivering else None
    if box is not None:
        box.reset()
        box.set_faults(F10_FAULTS, seed=seed)
    queue = tmp_path / "queue.db"
    prefix = f"f10s{seed}"
    args = DELIVERY_ARGS if delivering else ()
    with ServeProcess(queue=queue, sandbox=box, write_keys=[WRITE_KEY], args=args) as serve:
        clients = send_until_killed(serve, rng, prefix)
    check_clients_after_kill(clients)
    kill = check_file_after_kill(queue, clients, delivering)

    # A restart takes what was not acknowledged again; nothing is stored twice.
    sent = set(clients.expected)
    with ServeProcess(queue=queue, sandbox=box, write_keys=[WRITE_KEY], args=args) as again:
        send_again(again, clients, prefix)
        if delivering:
            wait_for_delivery(queue, len(sent), 30)
        assert again.stop() == 0, again.stderr()
    assert integrity(queue) == "ok"
    rows = read_rows(queue)
    assert sorted(row.key for row in rows) == sorted(sent)
    assert {row.state for row in rows} == {State.DELIVERED if delivering else State.QUEUED}
    repeats = check_deliveries(box, sent, kill) if box is not None else 0
    posts = clients.load.posts
    acked = clients.acknowledged()
    print(
        f"\nseed {seed} ({'delivering' if delivering else 'ingest only'}): killed after "
        f"{clients.ran_for:.2f} s of load; {len(posts)} batch requests "
        f"({sum(p.status is None for p in posts)} unanswered), "
        f"{len(clients.sync.acked)}+{len(clients.sync.failed)} sync calls, "
        f"{len(clients.background.queued)} async events "
        f"({len(clients.background.failed())} failed); {len(acked)} events acknowledged, "
        f"{len(kill.stored)} stored ({len(kill.stored - acked)} without an answer), "
        f"{kill.delivered} delivered and {len(kill.in_flight)} in flight at the kill; "
        f"{len(sent)} after the restart, {repeats} sent twice; "
        f"{time.monotonic() - started:.1f} s"
    )


# F11: SIGTERM under load.

SLOW_TAIL = 0.4
"""Seconds after SIGTERM before the slow request sends the rest of its body."""
F11_CONCURRENCY = 16
"""Deliveries on the wire at once: fewer than the clients' events, so a backlog is left."""
EXIT_MARGIN = 2.0
"""Seconds beyond --grace within which serve must have exited after SIGTERM."""


class SlowRequest:
    """One ``/v1/batch`` request whose body comes in two parts; the second only once
    ``release()`` was called and ``SLOW_TAIL`` seconds have passed, so that it is in
    progress when the server is told to stop."""

    def __init__(self, url: str, prefix: str, size: int = 10) -> None:
        self.url = url
        self.ids = tuple(f"{prefix}-slow-{i:02d}" for i in range(size))
        self.expected = {i: {"slow": True, "item": n} for n, i in enumerate(self.ids)}
        body = orjson.dumps(
            {"batch": [track(i, f"{prefix}-slow-user", self.expected[i]) for i in self.ids]}
        )
        self._parts = (body[: len(body) // 2], body[len(body) // 2 :])
        self.head_sent = threading.Event()
        self._go = threading.Event()
        self.status: int | None = None
        self.error: str | None = None
        self.answered_at = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self.head_sent.wait(5), "the slow request did not start"

    def release(self) -> None:
        self._go.set()

    def join(self) -> None:
        self._go.set()
        self._thread.join(CLIENT_TIMEOUT + 5)
        assert not self._thread.is_alive(), "the slow request is stuck"

    def _body(self) -> Iterator[bytes]:
        yield self._parts[0]
        self.head_sent.set()
        self._go.wait(CLIENT_TIMEOUT)
        time.sleep(SLOW_TAIL)
        yield self._parts[1]

    def _run(self) -> None:
        with httpx.Client(
            base_url=self.url, auth=(KEY, ""), timeout=CLIENT_TIMEOUT, trust_env=False
        ) as client:
            try:
                response = client.post(
                    BATCH, content=self._body(), headers={"Content-Type": "application/json"}
                )
            except httpx.TransportError as error:
                self.error = type(error).__name__
            else:
                self.status = response.status_code
            self.answered_at = time.monotonic()


@dataclass
class Listener:
    """What connection attempts saw between SIGTERM and the exit."""

    first_refusal: float | None = None
    refused_while_running: int = 0
    accepted_after_refusal: int = 0


def watch_listener(serve: ServeProcess, port: int, timeout: float) -> Listener:
    """Open fresh connections until the process exits."""
    seen = Listener()
    deadline = time.monotonic() + timeout
    while running(serve) and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                if seen.first_refusal is not None:
                    seen.accepted_after_refusal += 1
        except ConnectionRefusedError:
            if seen.first_refusal is None:
                seen.first_refusal = time.monotonic()
            if running(serve):
                seen.refused_while_running += 1
        time.sleep(0.005)
    return seen


def deliver(sandbox: SandboxProcess, queue: Path, log: Path) -> None:
    """``attentive-router deliver`` the queue to the sandbox, to its end."""
    command = [
        sys.executable,
        "-m",
        "attentive_router",
        "deliver",
        "--queue",
        str(queue),
        "--base-url",
        sandbox.url,
        "--token",
        sandbox.token,
        "--progress",
        "never",
        *DELIVERY_ARGS,
    ]
    with log.open("wb") as output:
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, timeout=60, check=False
        )
    assert result.returncode == 0, log.read_text()


@dataclass
class Stop:
    """One SIGTERM under load: what the process, the listener and the clients did."""

    load: BatchSenders
    sync: SegmentSync
    slow: SlowRequest
    listener: Listener
    status: int
    term_at: float
    exit_after: float
    stderr: str = ""

    @property
    def acknowledged(self) -> set[str]:
        return self.load.acknowledged() | self.sync.acknowledged() | set(self.slow.ids)

    @property
    def expected(self) -> dict[str, dict[str, Any]]:
        return self.load.expected | self.sync.expected | self.slow.expected


def stop_under_load(serve: ServeProcess, prefix: str, grace: float) -> Stop:
    """Post continuously, start a slow request, SIGTERM, watch the port until the exit."""
    port = int(serve.url.rpartition(":")[2])
    load = BatchSenders(
        serve.url,
        prefix=prefix,
        seed=prefix,
        senders=3,
        sizes=lambda rng: rng.randint(5, 20),
        pause=(0.02, 0.06),
    )
    sync = SegmentSync(serve.url, prefix, pause=0.01)
    slow = SlowRequest(serve.url, prefix)
    with load, sync:
        began = time.monotonic()
        wait_until(
            lambda: load.answered() >= 15 and len(sync.acknowledged()) >= 3,
            10,
            "clients acknowledged",
        )
        time.sleep(max(0.0, began + 0.8 - time.monotonic()))  # deliveries are under way
        slow.start()
        time.sleep(0.1)  # the server has read the slow request's headers
        term_at = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        slow.release()
        listener = watch_listener(serve, port, grace + EXIT_MARGIN + 5)
        status = serve.wait(grace + EXIT_MARGIN + 5)
        exit_after = time.monotonic() - term_at
        time.sleep(0.2)  # the clients meet the closed port
    slow.join()
    return Stop(load, sync, slow, listener, status, term_at, exit_after)


def check_process(stop: Stop, grace: float) -> None:
    """It stopped listening first, finished the request in progress, exited 0 in time."""
    assert stop.status == 0, stop.stderr
    assert stop.exit_after <= grace + EXIT_MARGIN, f"exited {stop.exit_after:.2f} s after SIGTERM"
    listener = stop.listener
    assert listener.first_refusal is not None
    assert listener.refused_while_running > 0, "no connection was refused before the exit"
    assert listener.accepted_after_refusal == 0
    assert stop.slow.status == 200, stop.slow.error
    assert stop.slow.answered_at > listener.first_refusal, "it ended before the port closed"


def check_answers(stop: Stop) -> Counter[int | None]:
    """Every request got 200 or no answer at all (never a 5xx but 503)."""
    posts = stop.load.posts
    statuses = Counter(p.status for p in posts)
    assert set(statuses) <= {200, 503, None}, statuses
    errors = Counter(p.error for p in posts if p.status is None)
    assert set(errors) <= NO_ANSWER, errors
    assert set(stop.sync.failed.values()) <= {"ConnectionError", "APIError 503"}, stop.sync.failed
    refused = sum(p.status is None and p.started > stop.term_at for p in posts)
    assert refused > 0, "no client request met the closed port"
    return statuses


@dataclass(frozen=True)
class AtStop:
    """What the queue file held once the process had exited."""

    delivered: frozenset[str]
    queued: frozenset[str]


def check_queue_at_stop(queue: Path, stop: Stop, releasing: bool) -> AtStop:
    """Every acknowledged event once, nothing else, nothing left in flight."""
    assert integrity(queue) == "ok"
    rows = read_rows(queue)
    stored = Counter(row.key for row in rows)
    acked = stop.acknowledged
    assert max(stored.values()) == 1
    assert set(stored) == acked, (sorted(acked - set(stored))[:5], sorted(set(stored) - acked)[:5])
    states = Counter(row.state for row in rows)
    assert set(states) <= {State.QUEUED, State.DELIVERED}, states
    expected = stop.expected
    for row in rows:
        check_row(row, expected)
        if row.state is State.QUEUED:  # never tried, or released unchanged
            assert row.attempts == 0, row
    delivered = frozenset(row.key for row in rows if row.state is State.DELIVERED)
    queued = frozenset(row.key for row in rows if row.state is State.QUEUED)
    assert queued, "everything was delivered before the stop: nothing left for the restart"
    if not releasing:
        assert delivered, "nothing was delivered before the stop"
    return AtStop(delivered, queued)


def check_stop_lines(stop: Stop, at_stop: AtStop, releasing: bool) -> int:
    """The log's stop lines, with the counts the clients and the queue saw; the deliveries
    released at the end of the grace period."""
    lines = log_lines(stop.stderr)
    messages = [line["message"] for line in lines]
    assert "stopping: no new requests; finishing deliveries in flight" in messages
    assert messages[-1] == "stopped", messages[-5:]
    stopped = lines[-1]
    answered = sum(p.status is not None for p in stop.load.posts) + len(stop.sync.acked) + 1
    answered += sum(problem.startswith("APIError") for problem in stop.sync.failed.values())
    assert stopped["requests"] == answered
    assert stopped["events_received"] == len(stop.acknowledged)
    assert stopped["delivered"] == len(at_stop.delivered)
    abandoned: int = stopped["attentive_requests"] - len(at_stop.delivered)
    if releasing:
        assert abandoned > 0, "no delivery was in flight at the end of the grace period"
    else:
        assert abandoned == 0, "deliveries in flight were cut off within the grace period"
    return abandoned


def check_restart(
    sandbox: SandboxProcess, queue: Path, stop: Stop, at_stop: AtStop, abandoned: int
) -> int:
    """Everything delivered; each event once, but that a released request may have reached
    the sandbox all the same (at least once, never lost). Returns the repeats."""
    rows = read_rows(queue)
    acked = stop.acknowledged
    assert len(rows) == len(acked)
    assert {row.state for row in rows} == {State.DELIVERED}
    bodies = arrivals(sandbox)
    assert set(bodies) == acked
    copies = Counter({key: len(found) for key, found in bodies.items()})
    for key in at_stop.delivered:
        assert copies[key] == 1, (key, copies[key], "delivered before the stop, sent again")
    repeated = {key: n - 1 for key, n in copies.items() if n > 1}
    assert set(repeated) <= at_stop.queued
    assert sum(repeated.values()) <= abandoned
    for found in bodies.values():
        assert all(body == found[0] for body in found)
    return sum(repeated.values())


@pytest.mark.parametrize(
    ("grace", "latency_ms"),
    [
        pytest.param(5.0, 300, id="deliveries-finish"),
        pytest.param(1.0, 3000, id="deliveries-released"),
    ],
)
def test_f11_sigterm_under_load_stops_accepting_finishes_and_exits_0(
    sandbox: SandboxProcess, tmp_path: Path, grace: float, latency_ms: int
) -> None:
    started = time.monotonic()
    releasing = latency_ms / 1000 > grace  # deliveries cannot end within the grace period
    sandbox.reset()
    sandbox.set_faults(latency_ms=latency_ms)
    queue = tmp_path / "queue.db"
    prefix = f"f11g{grace:g}"
    args = [*DELIVERY_ARGS, "--concurrency", str(F11_CONCURRENCY), "--grace", f"{grace:g}"]
    args += ["--log-level", "info"]  # the stop lines are logged at info
    with ServeProcess(queue=queue, sandbox=sandbox, write_keys=[WRITE_KEY], args=args) as serve:
        stop = stop_under_load(serve, prefix, grace)
        stop.stderr = serve.stderr()
    check_process(stop, grace)
    statuses = check_answers(stop)
    at_stop = check_queue_at_stop(queue, stop, releasing)
    abandoned = check_stop_lines(stop, at_stop, releasing)

    sandbox.set_faults({})
    deliver(sandbox, queue, tmp_path / "deliver.log")
    # Requests released at the stop reach the sandbox once their latency has passed.
    time.sleep(max(0.0, stop.term_at + latency_ms / 1000 + 0.5 - time.monotonic()))
    repeats = check_restart(sandbox, queue, stop, at_stop, abandoned)
    if not releasing:
        assert repeats == 0
    first_refusal = stop.listener.first_refusal or stop.term_at
    print(
        f"\ngrace {grace:g} s, latency {latency_ms} ms: {statuses[200]} batch requests "
        f"acknowledged, {statuses[None]} unanswered; {len(stop.sync.acked)} sync calls "
        f"acknowledged; exit 0 after {stop.exit_after:.2f} s, refused from "
        f"{first_refusal - stop.term_at:.3f} s ({stop.listener.refused_while_running} "
        f"refusals while running); {len(stop.acknowledged)} events: "
        f"{len(at_stop.delivered)} delivered, {len(at_stop.queued)} queued at the stop, "
        f"{abandoned} deliveries released; {repeats} sent twice; "
        f"{time.monotonic() - started:.1f} s"
    )


# F12: database locked, disk full.

LOCK_TIMEOUT = 0.5


def batch_body(ids: Iterable[str], user: str, pad: int = 0) -> tuple[bytes, dict[str, Any]]:
    """A ``/v1/batch`` body of ``ids`` (a user each) and the properties of each event."""
    expected = {i: {"n": n, "pad": "x" * pad} for n, i in enumerate(ids)}
    events = [track(i, f"{user}-{n}", p) for n, (i, p) in enumerate(expected.items())]
    body = orjson.dumps({"batch": events})
    return body, expected


def check_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["code"] == "storage_unavailable"


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the queue file's write lock (``BEGIN EXCLUSIVE``)."""
    db = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield db
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()


def stored_of(db: sqlite3.Connection, ids: Iterable[str]) -> int:
    wanted = list(ids)
    marks = ",".join("?" * len(wanted))
    query = f"SELECT count(*) FROM events WHERE key IN ({marks})"  # noqa: S608 - marks only
    count: int = db.execute(query, wanted).fetchone()[0]
    return count


def check_brief_lock(serve: ServeProcess, queue: Path, body: bytes) -> None:
    """A lock released within --lock-timeout only delays the write."""
    held = threading.Event()

    def hold_briefly() -> None:
        with write_lock(queue):
            held.set()
            time.sleep(0.25)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    try:
        assert held.wait(5)
        began = time.monotonic()
        response = post_batch(serve, body)
        waited = time.monotonic() - began
    finally:
        holder.join()
    assert response.status_code == 200, response.text
    assert waited >= 0.15, f"answered after {waited:.3f} s while the lock was held"


def check_long_lock(
    serve: ServeProcess, queue: Path, body: bytes, ids: Iterable[str], single: dict[str, Any]
) -> float:
    """A lock held past --lock-timeout: 503 after the timeout, nothing stored, server up."""
    with write_lock(queue) as db:
        began = time.monotonic()
        response = post_batch(serve, body)
        waited = time.monotonic() - began
        check_503(response)
        assert LOCK_TIMEOUT * 0.9 <= waited < LOCK_TIMEOUT + 3, waited
        check_503(serve.post("/v1/track", json=single, auth=(KEY, "")))
        health = serve.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert ingest_requests(serve, BATCH, 503) == 1
        assert ingest_requests(serve, "/v1/track", 503) == 1
        assert stored_of(db, [*ids, single["messageId"]]) == 0
    return waited


def test_f12_database_locked_answers_503_then_the_same_request_is_stored_once(
    tmp_path: Path,
) -> None:
    queue = tmp_path / "queue.db"
    args = ["--lock-timeout", f"{LOCK_TIMEOUT:g}"]
    warm, expected = batch_body([f"lock-warm-{i}" for i in range(20)], "lock-u1")
    brief, more = batch_body([f"lock-brief-{i}" for i in range(20)], "lock-u2")
    locked, most = batch_body([f"lock-held-{i}" for i in range(30)], "lock-u3")
    expected |= more | most
    single = track("lock-single", "lock-u4", {"single": True})
    expected["lock-single"] = single["properties"]
    with ServeProcess(queue=queue, write_keys=[WRITE_KEY], args=args) as serve:
        assert post_batch(serve, warm).status_code == 200
        check_brief_lock(serve, queue, brief)
        waited = check_long_lock(serve, queue, locked, most, single)
        # The lock is gone: the very same requests are taken, and a retry stores nothing twice.
        assert post_batch(serve, locked).status_code == 200
        assert serve.post("/v1/track", json=single, auth=(KEY, "")).status_code == 200
        assert post_batch(serve, locked).status_code == 200
        assert ingest_requests(serve, BATCH, 200) == 4
        assert ingest_requests(serve, BATCH, 503) == 1
        assert ingest_requests(serve, "/v1/track", 200) == 1
        assert ingest_requests(serve, "/v1/track", 503) == 1
        assert serve.stop() == 0
    assert integrity(queue) == "ok"
    rows = read_rows(queue)
    assert sorted(row.key for row in rows) == sorted(expected)
    assert {row.state for row in rows} == {State.QUEUED}
    for row in rows:
        check_row(row, expected)
    print(f"\nlocked: 503 after {waited:.2f} s (--lock-timeout {LOCK_TIMEOUT:g})")


HEADROOM = 64 * 1024
"""Bytes the queue's files may still grow by once the file size limit is lowered."""
FULL_BATCH = 40
"""Events per request while the disk is full (about 15 KB of WAL each)."""
FULL_POSTS = 12
"""Requests while the disk is full: the headroom holds four or five of them at most."""
FULL_LATENCY_MS = 500
"""Sandbox latency in the delivering variant: deliveries are in flight when the disk fills."""


@dataclass
class Attempt:
    ids: tuple[str, ...]
    body: bytes
    status: int


@contextlib.contextmanager
def file_size_limit(pid: int, limit: int) -> Iterator[None]:
    """Lower ``pid``'s RLIMIT_FSIZE soft limit to ``limit`` bytes; restore it on exit."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    try:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))
    except OSError as error:
        pytest.skip(f"cannot lower the server's file size limit: {error}")
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def post_while_full(serve: ServeProcess, expected: dict[str, dict[str, Any]]) -> list[Attempt]:
    """Post ``FULL_POSTS`` batches, more than the headroom holds; each answer is 200 or 503."""
    attempts: list[Attempt] = []
    for k in range(FULL_POSTS):
        ids = tuple(f"full-{k:03d}-{i:02d}" for i in range(FULL_BATCH))
        body, more = batch_body(ids, f"full-u{k % 3 + 1}", 200)
        expected |= more
        response = post_batch(serve, body)
        assert response.status_code in {200, 503}, response.text
        if response.status_code == 503:
            check_503(response)
        attempts.append(Attempt(ids, body, response.status_code))
    return attempts


def check_nothing_of_refused(queue: Path, attempts: list[Attempt]) -> None:
    """Read while the disk is full: every 200 is stored whole, every 503 not at all."""
    with contextlib.closing(sqlite3.connect(f"file:{queue}?mode=ro", uri=True)) as db:
        for attempt in attempts:
            wanted = len(attempt.ids) if attempt.status == 200 else 0
            assert stored_of(db, attempt.ids) == wanted, f"answered {attempt.status}"


def send_refused_again(
    serve: ServeProcess,
    refused: list[Attempt],
    single: dict[str, Any],
    expected: dict[str, dict[str, Any]],
) -> None:
    """The storage is back: the refused requests are taken, once each, and new ones too."""
    for attempt in refused:
        assert post_batch(serve, attempt.body).status_code == 200
    assert serve.post("/v1/track", json=single, auth=(KEY, "")).status_code == 200
    body, more = batch_body([f"full-after-{i}" for i in range(FULL_BATCH)], "full-u5", 200)
    expected |= more
    assert post_batch(serve, body).status_code == 200
    assert ingest_requests(serve, BATCH, 503) == len(refused)


def check_full_log(stderr: str, refusals: int, delivering: bool) -> None:
    """Each 503 was logged with the storage error; the sender's failure too, when sending."""
    errors = [line.get("error", "") for line in log_lines(stderr) if line.get("status") == 503]
    assert len(errors) == refusals
    assert all("disk I/O error" in e or "disk is full" in e for e in errors), errors[:3]
    restarted = "delivery stopped: the queue failed; starting again" in stderr
    assert restarted == delivering


def check_full_file(
    queue: Path, expected: dict[str, dict[str, Any]], sandbox: SandboxProcess | None
) -> int:
    """Intact; every event once, delivered when sending. Returns the repeated deliveries."""
    assert integrity(queue) == "ok"
    rows = read_rows(queue)
    assert sorted(row.key for row in rows) == sorted(expected)
    final = State.DELIVERED if sandbox is not None else State.QUEUED
    assert {row.state for row in rows} == {final}
    for row in rows:
        check_row(row, expected)
    if sandbox is None:
        return 0
    bodies = arrivals(sandbox)
    assert set(bodies) == set(expected)
    assert all(len(copies) <= 2 for copies in bodies.values())
    for copies in bodies.values():
        assert all(body == copies[0] for body in copies)
    return sum(len(copies) - 1 for copies in bodies.values())


@pytest.mark.parametrize("delivering", [False, True], ids=["ingest-only", "delivering"])
def test_f12_disk_full_answers_503_and_stores_nothing_of_the_request(
    sandbox: SandboxProcess, tmp_path: Path, delivering: bool
) -> None:
    """A file size limit (RLIMIT_FSIZE) on the running server makes its writes fail for real.

    Python ignores SIGXFSZ, so a write past the limit fails with EFBIG and SQLite reports a
    disk I/O error; the limit applies to every file, WAL included, as a full disk would.
    When delivering, the sender's own writes fail too: delivery restarts once the disk has
    room again, and every acknowledged event is delivered.
    """
    queue = tmp_path / "queue.db"
    box = sandbox if delivering else None
    if box is not None:
        box.reset()
        box.set_faults(latency_ms=FULL_LATENCY_MS)
    expected: dict[str, dict[str, Any]] = {}
    single = track("full-single", "full-u9", {"single": True})
    expected["full-single"] = single["properties"]
    args = DELIVERY_ARGS if delivering else ()
    with ServeProcess(queue=queue, sandbox=box, write_keys=[WRITE_KEY], args=args) as serve:
        for k in range(3):
            body, more = batch_body([f"full-warm-{k}-{i}" for i in range(50)], "full-u0", 200)
            assert post_batch(serve, body).status_code == 200
            expected |= more
        assert serve.pid is not None
        sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
        limit = max(sizes.values()) + HEADROOM
        with file_size_limit(serve.pid, limit):
            attempts = post_while_full(serve, expected)
            check_nothing_of_refused(queue, attempts)
            check_503(serve.post("/v1/track", json=single, auth=(KEY, "")))
            check_nothing_of_refused(queue, [Attempt(("full-single",), b"", 503)])
            refused = [a for a in attempts if a.status == 503]
            assert len(refused) >= FULL_POSTS // 2, "the file size limit did not make writes fail"
            health = serve.get("/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            assert ingest_requests(serve, BATCH, 503) == len(refused)
            assert ingest_requests(serve, "/v1/track", 503) == 1
            if delivering:  # the sender's verdicts could not be written either
                wait_until(
                    lambda: serve.get("/healthz").json()["delivery"] == "restarting",
                    5,
                    "delivery restarting",
                )
            assert running(serve)
        grown = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
        assert max(grown.values()) <= limit, grown

        send_refused_again(serve, refused, single, expected)
        if delivering:
            wait_for_delivery(queue, len(expected), 30)
            assert serve.get("/healthz").json()["delivery"] == "running"
        stderr = serve.stderr()
        assert serve.stop() == 0
    check_full_log(stderr, len(refused) + 1, delivering)
    repeats = check_full_file(queue, expected, box)
    print(
        f"\nfile size limit {limit} B (files were {sizes}): "
        f"{sum(a.status == 200 for a in attempts)} requests stored before the first 503, "
        f"{len(refused)} refused with 503, all stored once after the limit was lifted; "
        f"{repeats} deliveries repeated after the sender's restart"
    )
