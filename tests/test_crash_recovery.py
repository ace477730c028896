"""Fault F9: ``kill -9`` of the router during delivery, then a restart.

Passing means nothing is lost, and an event is sent more than once only when it was in
flight at a kill, each copy with the same ``externalEventId`` and the same body.

Each seed writes a file of custom events, starts ``send`` against a real sandbox (with
latency and a few injected 503s, so that requests are in flight and retries are pending),
kills it with SIGKILL once the sandbox has accepted a seeded random number of requests, reads
the queue file as the crash left it, then restarts with ``deliver`` or ``send FILE`` (some
seeds kill that run too) and checks the ledger and what the sandbox accepted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router._delivery.job import PUT_BATCH
from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

CUSTOM = "/v1/events/custom"
TOKEN = "crash-test-token-5c21e0"
SEEDS = range(10)
EVENTS = 300
USERS = 60
RATE = 300
"""Client-side requests per second (the sandbox allows more)."""
FAULTS = {
    "latency_ms": 20,
    "latency_jitter_ms": 30,
    "error_rate": 0.05,
    "error_statuses": [503],
    "seed": 9,
}
EVENT_NAMES = ("Gift Card Redeemed", "Loyalty Tier Changed", "Referral Link Shared")
ATTEMPTS = 3
"""Tries per seed to land the first kill before the sender finishes (each aims earlier)."""
MIN_TARGET = 20
"""The first kill comes once the sandbox has accepted at least this many requests."""
KILL_DEADLINE = 30.0
RUN_TIMEOUT = 60.0
STRAGGLERS = 0.2
"""Seconds after a kill by which the sandbox has answered what it had read (latency < 0.05)."""
MAX_DELAY = 0.05
"""Seconds, at most, between reaching the target and the kill (seeded)."""
RESEND_SHARE = 0.5
"""Share of restarts that run ``send FILE`` again rather than ``deliver``."""
SECOND_KILL_SHARE = 0.4
SECOND_KILL_MIN_OPEN = 60
"""A restart is killed too only when at least this many events were still open."""

assert EVENTS <= PUT_BATCH  # one transaction queues the whole file before anything is sent


@dataclass(frozen=True)
class Kill:
    """What the queue file held right after one SIGKILL, and what the sandbox accepted."""

    counts: dict[State, int]
    in_flight: frozenset[str]
    delivered: frozenset[str]
    retrying: int
    """Queued events waiting for a retry after an injected 503."""
    arrived: Counter[str] = field(default_factory=Counter)
    """Copies of each event the sandbox had accepted when the queue file was read."""
    late: Counter[str] = field(default_factory=Counter)
    """The same once the sandbox had answered the last requests of the killed process."""

    @property
    def accepted(self) -> int:
        """Requests the sandbox had accepted, the killed process's last ones included."""
        return sum(self.late.values())


def arrivals(sandbox: SandboxProcess) -> Counter[str]:
    """Copies of each event the sandbox has accepted, by ``externalEventId``."""
    return Counter(r["body"]["externalEventId"] for r in sandbox.requests(CUSTOM))


def write_events(path: Path, rng: random.Random, prefix: str) -> list[str]:
    """Write ``EVENTS`` custom events over ``USERS`` users as NDJSON; return their messageIds."""
    now = datetime.now(UTC)
    ids: list[str] = []
    lines: list[bytes] = []
    for number in range(EVENTS):
        user = rng.randrange(USERS)
        message_id = f"{prefix}-{number:04d}"
        when = now - timedelta(seconds=rng.randint(1, 6 * 3600), milliseconds=rng.randint(0, 999))
        event = {
            "type": "track",
            "event": rng.choice(EVENT_NAMES),
            "messageId": message_id,
            "userId": f"{prefix}-user-{user}",
            "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "properties": {"n": number, "amount": rng.randint(1, 500), "tag": rng.choice("abc")},
            "context": {"traits": {"email": f"{prefix}-user-{user}@example.com"}},
        }
        ids.append(message_id)
        lines.append(orjson.dumps(event))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return ids


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(token=TOKEN, faults=FAULTS, rate_limits={CUSTOM: 1000}) as server:
        yield server


def command(sandbox: SandboxProcess, queue: Path, source: Path | None) -> list[str]:
    """``send FILE`` (when ``source`` is given) or ``deliver``, against the sandbox."""
    head = ["send", str(source)] if source is not None else ["deliver"]
    return [
        sys.executable,
        "-m",
        "attentive_router",
        *head,
        "--queue",
        str(queue),
        "--base-url",
        sandbox.url,
        "--token",
        TOKEN,
        "--progress",
        "never",
        "--rate",
        str(RATE),
    ]


Children = list[subprocess.Popen[bytes]]


@pytest.fixture
def children() -> Iterator[Children]:
    """The processes a test starts; any still running at its end are killed."""
    started: Children = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def start(args: list[str], log: Path, children: Children) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=output, stderr=output)
    children.append(process)
    return process


def snapshot(queue: Path) -> Kill:
    """Read the queue file as the killed process left it (before anything restarts)."""
    store = SQLiteQueue(queue)
    try:
        counts = store.counts()
        in_flight = store.records(State.IN_FLIGHT, limit=EVENTS + 1)
        delivered = store.records(State.DELIVERED, limit=EVENTS + 1)
        queued = store.records(State.QUEUED, limit=EVENTS + 1)
    finally:
        store.close()
    return Kill(
        counts=counts,
        in_flight=frozenset(r.key for r in in_flight),
        delivered=frozenset(r.key for r in delivered),
        retrying=sum(r.attempts > 0 for r in queued),
    )


def kill_at(
    process: subprocess.Popen[bytes],
    sandbox: SandboxProcess,
    queue: Path,
    target: int,
    delay: float,
) -> Kill | None:
    """SIGKILL ``process`` ``delay`` s after the sandbox has accepted ``target`` requests.

    Returns None when the process ended on its own first.
    """
    deadline = time.monotonic() + KILL_DEADLINE
    while sandbox.stats()["accepted"] < target:
        if process.poll() is not None:
            return None
        if time.monotonic() > deadline:
            pytest.fail(f"the sandbox had not accepted {target} requests after {KILL_DEADLINE} s")
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is not None:
        return None
    os.kill(process.pid, signal.SIGKILL)
    status = process.wait()
    if status != -signal.SIGKILL:  # it ended by itself just before the signal
        return None
    kill = replace(snapshot(queue), arrived=arrivals(sandbox))
    time.sleep(STRAGGLERS)  # requests the sandbox had already read end their latency
    return replace(kill, late=arrivals(sandbox))


def finish(args: list[str], log: Path) -> None:
    """Run a restart to its end; it must settle everything."""
    with log.open("ab") as output:
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    assert result.returncode == 0, log.read_text()


def check_kill(kill: Kill) -> None:
    """The kill came mid-delivery, and what the ledger called delivered had arrived."""
    assert sum(kill.counts.values()) == EVENTS, kill.counts
    assert kill.counts[State.DELIVERED] > 0, f"killed before anything was delivered: {kill}"
    assert kill.counts[State.QUEUED] + kill.counts[State.IN_FLIGHT] > 0, (
        "killed after everything was delivered"
    )
    assert kill.counts[State.DEAD] == kill.counts[State.SKIPPED] == 0, kill.counts
    assert len(kill.in_flight) == kill.counts[State.IN_FLIGHT]
    missing = sorted(key for key in kill.delivered if not kill.arrived[key])
    assert not missing, f"settled as delivered but never accepted: {missing[:5]}"


def check_ledger(queue: Path, ids: list[str]) -> None:
    """Exactly one row per event of the file, each delivered with its one request."""
    store = SQLiteQueue(queue)
    try:
        records = store.records(limit=2 * EVENTS)
        counts = store.counts()
    finally:
        store.close()
    rows = Counter(r.key for r in records)
    assert sorted(rows) == ids
    assert max(rows.values()) == 1, [key for key, n in rows.items() if n > 1]
    assert counts[State.DELIVERED] == EVENTS, counts
    for record in records:
        assert record.done == 1, record
        assert record.attempts >= 1, record
        assert record.reason is None, record


def check_deliveries(sandbox: SandboxProcess, ids: list[str], kills: list[Kill]) -> int:
    """Every event arrived; repeats only of events in flight at a kill, with identical bodies.

    An event in flight at a kill goes back to the queue and is sent again, so it arrives at
    least once more than it had when the queue file was read. Returns the repeated requests.
    """
    bodies: dict[str, list[Any]] = {}
    for request in sandbox.requests(CUSTOM):
        bodies.setdefault(request["body"]["externalEventId"], []).append(request["body"])
    assert sorted(bodies) == ids
    repeats = 0
    for key, copies in bodies.items():
        extra = len(copies) - 1
        allowed = sum(key in kill.in_flight for kill in kills)
        assert extra <= allowed, (key, len(copies), "in flight at", allowed, "kill(s)")
        for kill in kills:
            if key in kill.in_flight:
                assert len(copies) > kill.arrived[key], (key, "not sent again after a kill")
        assert all(copy == copies[0] for copy in copies), (key, copies)
        assert copies[0]["externalEventId"] == key
        repeats += extra
    assert repeats <= sum(len(kill.in_flight) for kill in kills)
    return repeats


@dataclass
class Trial:
    """One seed's run: its schedule, files and events, and the kills so far."""

    rng: random.Random
    attempt: int
    source: Path
    queue: Path
    log: Path
    ids: list[str]
    kills: list[Kill]
    restarts: list[str]

    def restart(self, sandbox: SandboxProcess) -> list[str]:
        """``deliver`` or ``send FILE`` again (which must queue nothing new), as seeded."""
        resend = self.rng.random() < RESEND_SHARE
        self.restarts.append("send" if resend else "deliver")
        return command(sandbox, self.queue, self.source if resend else None)


def first_kill(sandbox: SandboxProcess, tmp_path: Path, seed: int, children: Children) -> Trial:
    """Start ``send`` and kill it mid-delivery; aim earlier when it finished first."""
    for attempt in range(ATTEMPTS):
        rng = random.Random(f"crash-{seed}-{attempt}")  # noqa: S311 - test schedule, not secrets
        sandbox.reset()
        work = tmp_path / f"attempt-{attempt}"
        work.mkdir()
        source, queue, log = work / "events.ndjson", work / "queue.db", work / "log"
        ids = write_events(source, rng, f"s{seed}a{attempt}")
        high = max(EVENTS * 3 // (4 * 2**attempt), 2 * MIN_TARGET)
        target = rng.randint(MIN_TARGET, high)
        process = start(command(sandbox, queue, source), log, children)
        kill = kill_at(process, sandbox, queue, target, rng.uniform(0.0, MAX_DELAY))
        if kill is not None:
            return Trial(rng, attempt, source, queue, log, ids, [kill], [])
        assert process.returncode == 0, log.read_text()  # it finished first: aim earlier
    pytest.fail(f"the sender finished before every one of {ATTEMPTS} kills")


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_during_delivery_then_restart(
    sandbox: SandboxProcess, tmp_path: Path, children: Children, seed: int
) -> None:
    started = time.monotonic()
    trial = first_kill(sandbox, tmp_path, seed, children)
    check_kill(trial.kills[0])
    counts = trial.kills[0].counts
    still_open = counts[State.QUEUED] + counts[State.IN_FLIGHT]
    if trial.rng.random() < SECOND_KILL_SHARE and still_open >= SECOND_KILL_MIN_OPEN:
        process = start(trial.restart(sandbox), trial.log, children)
        target = trial.kills[0].accepted + trial.rng.randint(5, still_open // 2)
        again = kill_at(process, sandbox, trial.queue, target, trial.rng.uniform(0.0, MAX_DELAY))
        if again is None:  # the restart finished first
            assert process.returncode == 0, trial.log.read_text()
        else:
            check_kill(again)
            trial.kills.append(again)
    finish(trial.restart(sandbox), trial.log)
    check_ledger(trial.queue, trial.ids)
    repeats = check_deliveries(sandbox, trial.ids, trial.kills)
    figures = "; ".join(
        f"kill: {k.counts[State.DELIVERED]} settled, "
        f"{k.counts[State.QUEUED]} queued ({k.retrying} for a retry), "
        f"{len(k.in_flight)} in flight, "
        f"{sum(bool(k.arrived[key]) for key in k.in_flight)} of them had arrived "
        f"({sum(bool(k.late[key]) for key in k.in_flight)} with stragglers), "
        f"{k.accepted} requests accepted"
        for k in trial.kills
    )
    print(
        f"\nseed {seed} (try {trial.attempt + 1}, restarts {'+'.join(trial.restarts)}): "
        f"{figures}; {repeats} repeated; {time.monotonic() - started:.1f} s"
    )
