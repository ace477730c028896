"""What only the SQLite backend promises: its file settings, and failing without half-writes.

Everything the ``Queue`` protocol promises is checked in ``tests/test_queue_contract.py``.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attentive_router._queue.interface import Enqueued, QueueError, Settlement, State
from attentive_router._queue.sqlite import SQLiteQueue

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.queue_contract import T0, by_key, event, finish, zero_counts  # noqa: E402


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "q.db"


@pytest.fixture
def queue(path: Path) -> Iterator[SQLiteQueue]:
    opened = SQLiteQueue(path)
    yield opened
    opened.close()


def test_the_file_is_in_wal_mode_with_full_synchronous_writes(
    queue: SQLiteQueue, path: Path
) -> None:
    assert queue._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert queue._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # kept in the file
    finally:
        other.close()


def test_an_acknowledged_put_survives_the_process_being_killed(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from attentive_router._queue.interface import NewEvent
        from attentive_router._queue.sqlite import SQLiteQueue
        queue = SQLiteQueue({str(path)!r})
        events = [NewEvent(f"k{{i}}", f"u{{i % 3}}", b"{{}}", {T0!r}) for i in range(50)]
        print(queue.put(events, {T0!r}).accepted, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "50"
    reopened = SQLiteQueue(path)
    try:
        assert reopened.counts() == zero_counts(queued=50)
    finally:
        reopened.close()


def _locked_by_another_connection(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def _prepare(queue: SQLiteQueue) -> None:
    """One event of each kind an operation could touch: queued, in flight, dead, delivered."""
    queue.put([event(k, k) for k in ("queued", "in_flight", "dead", "delivered")], T0)
    finish(queue, ["dead"], State.DEAD)
    finish(queue, ["delivered"], State.DELIVERED)
    claims = queue.claim(T0, 10)
    queue.release(c.id for c in claims if c.key != "in_flight")


OPERATIONS: dict[str, Callable[[SQLiteQueue], object]] = {
    "put": lambda q: q.put([event("new", "u9")], T0 + 1),
    "claim": lambda q: q.claim(T0 + 1, 10),
    "settle": lambda q: q.settle(
        [Settlement(by_key(q, "in_flight").id, State.DELIVERED, attempts=1)]
    ),
    "release": lambda q: q.release([by_key(q, "in_flight").id]),
    "recover": lambda q: q.recover(),
    "replay": lambda q: q.replay(None, T0 + 1),
    "prune": lambda q: q.prune(T0 + 10**9),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_locked_database_raises_queue_error_and_changes_nothing(
    queue: SQLiteQueue, path: Path, operation: str
) -> None:
    _prepare(queue)
    before = queue.records()
    queue._db.execute("PRAGMA busy_timeout = 20")  # milliseconds; the default waits 10 s
    other = _locked_by_another_connection(path)
    try:
        with pytest.raises(QueueError, match="locked"):
            OPERATIONS[operation](queue)
        assert queue.records() == before  # readers still see the last commit
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert queue.records() == before
    OPERATIONS[operation](queue)  # the queue works again once the lock is gone
    assert queue.records() != before


def test_a_failure_in_the_middle_of_a_put_stores_none_of_the_batch(
    queue: SQLiteQueue, path: Path
) -> None:
    _fail_when(path, "BEFORE INSERT ON events WHEN NEW.key = 'boom'")
    batch = [event("a", "u1"), event("b", "u2"), event("boom", "u3"), event("c", "u4")]
    with pytest.raises(QueueError, match="storage failed"):
        queue.put(batch, T0)
    assert queue.counts() == zero_counts()
    assert queue.records() == []
    # The keys of the failed batch were not remembered: sending it again stores it.
    assert queue.put([e for e in batch if e.key != "boom"], T0) == Enqueued(3, 0)


def test_a_failure_in_the_middle_of_a_settle_applies_none_of_the_verdicts(
    queue: SQLiteQueue, path: Path
) -> None:
    queue.put([event("a", "u1"), event("b", "u2")], T0)
    a, b = queue.claim(T0, 10)
    _fail_when(path, "BEFORE UPDATE OF state ON events WHEN NEW.state = 5")
    with pytest.raises(QueueError, match="storage failed"):
        queue.settle(
            [
                Settlement(a.id, State.DELIVERED, attempts=1),
                Settlement(b.id, State.DEAD, attempts=1, reason="permanent_error"),
            ]
        )
    assert queue.counts() == zero_counts(in_flight=2)
    assert by_key(queue, "a").attempts == 0


def _fail_when(path: Path, condition: str) -> None:
    """Make the file refuse a write, as a full disk would, through a trigger."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute(
            f"CREATE TRIGGER fail {condition} BEGIN SELECT RAISE(ABORT, 'storage failed'); END"
        )
    finally:
        other.close()


@pytest.mark.parametrize("kind", ["directory", "not a database", "missing directory"])
def test_a_file_that_cannot_be_opened_raises_queue_error(tmp_path: Path, kind: str) -> None:
    target = {
        "directory": tmp_path,
        "not a database": tmp_path / "notes.txt",
        "missing directory": tmp_path / "missing" / "q.db",
    }[kind]
    if kind == "not a database":
        target.write_bytes(b"these are not the pages of a database\n" * 200)
    with pytest.raises(QueueError, match=str(target)):
        SQLiteQueue(target)


def test_readers_see_the_queue_while_a_writer_holds_the_lock(
    queue: SQLiteQueue, path: Path
) -> None:
    queue.put([event("a")], T0)
    other = _locked_by_another_connection(path)
    try:
        reader = SQLiteQueue(path)
        try:
            assert reader.counts() == zero_counts(queued=1)
            assert [r.key for r in reader.records()] == ["a"]
        finally:
            reader.close()
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_prune_removes_old_keys_from_the_file(path: Path) -> None:
    queue = SQLiteQueue(path, dedupe_window=100.0)
    try:
        queue.put([event("old")], T0)
        queue.put([event("recent")], T0 + 150)
        queue.prune(T0 + 200)
        rows = queue._db.execute("SELECT key FROM seen").fetchall()
        assert rows == [("recent",)]
    finally:
        queue.close()


def test_the_queue_can_be_used_from_another_thread(queue: SQLiteQueue) -> None:
    # The sender runs every queue call on one worker thread.
    with ThreadPoolExecutor(1) as worker:
        assert worker.submit(queue.put, [event("a")], T0).result() == Enqueued(1, 0)
        claims = worker.submit(queue.claim, T0, 10).result()
    assert [c.key for c in claims] == ["a"]
    assert queue.counts() == zero_counts(in_flight=1)


def test_the_database_file_is_created_with_its_tables(path: Path) -> None:
    assert not path.exists()
    SQLiteQueue(path).close()
    assert path.exists()
    db = sqlite3.connect(path)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert {"events", "seen"} <= tables


@pytest.mark.parametrize("background", [True, False])
def test_checkpoint_every_moves_the_wal_into_the_file_off_the_writers_path(
    path: Path, background: bool
) -> None:
    """With ``checkpoint_every`` a thread copies committed pages into the database file.

    Without it, SQLite does so only at a commit crossing its 1,000-page threshold, so a few
    small puts stay in the WAL. Either way nothing committed is lost.
    """
    queue = SQLiteQueue(path, checkpoint_every=0.05 if background else None)
    try:
        before = path.stat().st_size
        for batch in range(5):
            queue.put([event(f"k{batch}-{i}", f"u{i}") for i in range(50)], T0)
        autocheckpoint = queue._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        time.sleep(0.5)
        after = path.stat().st_size
        assert queue.counts()[State.QUEUED] == 250
    finally:
        queue.close()
    if background:
        assert autocheckpoint == 0
        assert after > before
    else:
        assert autocheckpoint == 1000
        assert after == before
    reopened = SQLiteQueue(path)
    try:
        assert reopened.counts()[State.QUEUED] == 250
    finally:
        reopened.close()


def test_an_event_for_another_destination_holds_back_none_of_this_ones(path: Path) -> None:
    other = SQLiteQueue(path, destination="brand_b")
    other.put([event("theirs", "shared-user")], T0)
    other.close()
    ours = SQLiteQueue(path, destination="brand_a")
    try:
        ours.put([event("mine", "shared-user", T0 + 1)], T0 + 1)
        assert ours.next_due() == T0 + 1
        assert [claim.key for claim in ours.claim(T0 + 1, 10)] == ["mine"]
        assert ours.foreign() == {"brand_b": 1}  # still queued for its own destination
    finally:
        ours.close()
