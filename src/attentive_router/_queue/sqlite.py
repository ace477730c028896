"""The embedded queue backend: one SQLite file in WAL mode with ``synchronous=FULL``.

Every ``put``, ``put_many`` and ``settle`` is one transaction, so a batch is either wholly
on disk or not at all, and an acknowledged batch survives a crash or power loss. One process
delivers from a file at a time (the commands hold a lock file); readers may look at it concurrently.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from attrs import frozen

from attentive_router._queue.files import create_private, exposure, tighten_side_files
from attentive_router._queue.interface import (
    DEFAULT_DEDUPE_WINDOW,
    Claim,
    Enqueued,
    NewEvent,
    QueueError,
    Record,
    Settlement,
    State,
)

DEFAULT_RETENTION = 7 * 24 * 3600.0
"""How long finished events stay in the file for inspection (seconds)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    source TEXT NOT NULL,
    user TEXT NOT NULL,
    state INTEGER NOT NULL,
    event BLOB NOT NULL,
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    throttles INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    last_attempt_at REAL,
    next_attempt_at REAL NOT NULL,
    settled_at REAL,
    status INTEGER,
    response TEXT,
    reason TEXT,
    message TEXT,
    endpoint TEXT,
    request BLOB,
    input_line INTEGER,
    input_index INTEGER,
    destination TEXT
);
CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at, id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS events_open_by_user ON events (user, id) WHERE state IN (0, 1);
CREATE INDEX IF NOT EXISTS events_in_flight_by_user ON events (user) WHERE state = 1;
CREATE INDEX IF NOT EXISTS events_dead ON events (id) WHERE state = 5;
CREATE TABLE IF NOT EXISTS seen (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "id, key, source, user, state, event, received_at, attempts, throttles, done, "
    "first_attempt_at, last_attempt_at, next_attempt_at, status, response, reason, message, "
    "endpoint, request, input_line, input_index, destination"
)

_ADDED_COLUMNS = {"input_line": "INTEGER", "input_index": "INTEGER", "destination": "TEXT"}
"""Columns newer than the first version of the file, added to older files when opened."""

# Due: queued, its time has come, recorded for this queue's destination (or for none), no
# earlier event of the same user is still open, and no event of the user is in flight (a
# replayed dead letter may be older than one in flight). Order is kept per destination: an event
# recorded for another destination (never sent from here) holds back none of this one's.
_OURS = "(:destination IS NULL OR q.destination IS NULL OR q.destination = :destination)"
_EARLIER_OURS = _OURS.replace("q.", "p.")
_FLYING_OURS = _OURS.replace("q.", "f.")
_DUE = f"""
    q.state = 0 AND q.next_attempt_at <= :now AND {_OURS} AND NOT EXISTS (
        SELECT 1 FROM events AS p
        WHERE p.user = q.user AND p.id < q.id AND p.state IN (0, 1) AND {_EARLIER_OURS}
    ) AND NOT EXISTS (
        SELECT 1 FROM events AS f WHERE f.user = q.user AND f.state = 1 AND {_FLYING_OURS}
    )
"""  # noqa: S608 - constant SQL, values are bound

_CLAIM = f"""
UPDATE events SET state = 1 WHERE id IN (
    SELECT q.id FROM events AS q WHERE {_DUE} ORDER BY q.next_attempt_at, q.id LIMIT :limit
)
RETURNING id, key, event, received_at, attempts, throttles, first_attempt_at, done
"""  # noqa: S608 - constant SQL, values are bound

# Earliest time at which some user's first open event becomes due (users whose first open
# event is in flight are waiting on the sender, not on the clock).
_NEXT_DUE = f"""
SELECT min(q.next_attempt_at) FROM events AS q
WHERE q.state = 0 AND {_OURS} AND NOT EXISTS (
    SELECT 1 FROM events AS p
    WHERE p.user = q.user AND p.id < q.id AND p.state IN (0, 1) AND {_EARLIER_OURS}
) AND NOT EXISTS (
    SELECT 1 FROM events AS f WHERE f.user = q.user AND f.state = 1 AND {_FLYING_OURS}
)
"""  # noqa: S608 - constant SQL, values are bound

_FOREIGN = """
SELECT destination, count(*) FROM events
WHERE state IN (0, 1) AND destination IS NOT NULL AND destination != ?
GROUP BY destination ORDER BY destination
"""

_SETTLE = """
UPDATE events SET
    state = :state, attempts = :attempts, throttles = :throttles, done = :done,
    first_attempt_at = :first_attempt_at, last_attempt_at = :last_attempt_at,
    next_attempt_at = coalesce(:next_attempt_at, next_attempt_at),
    settled_at = CASE WHEN :state = 0 THEN NULL ELSE coalesce(:last_attempt_at, received_at) END,
    status = :status, response = :response, reason = :reason, message = :message,
    endpoint = :endpoint, request = :request
WHERE id = :id AND state = 1
"""

SEARCH_SPAN = 100_000
"""A search looks at this many of the newest events at most (a bound on its cost)."""

_RECENT = "id > (SELECT coalesce(max(id), 0) FROM events) - :span"
_TEXT = "CASE WHEN json_valid(CAST(event AS TEXT)) THEN CAST(event AS TEXT) END"


@frozen
class Search:
    """Which events to list, newest first (every field given must match).

    Attributes:
        source: The source (write key name) they came from.
        state: Their state.
        reason: The reason recorded with their outcome.
        name: Their call (``track``, ``identify``, ...) or event name (``Order Completed``).
        text: A user id, anonymous id or messageId (exact).
    """

    source: str | None = None
    state: State | None = None
    reason: str | None = None
    name: str | None = None
    text: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """The SQL condition and its values.

        Dead letters are searched whatever their age (they stay until replayed, and have an
        index of their own); other events among the newest ``SEARCH_SPAN``.
        """
        terms = [] if self.state is State.DEAD else [_RECENT]
        values: dict[str, Any] = {} if self.state is State.DEAD else {"span": SEARCH_SPAN}
        if self.source is not None:
            terms.append("source = :source")
            values["source"] = self.source
        if self.state is not None:
            terms.append("state = :state")
            values["state"] = int(self.state)
        if self.reason is not None:
            terms.append("reason = :reason")
            values["reason"] = self.reason
        if self.name is not None:
            terms.append(
                f"(json_extract({_TEXT}, '$.type') = :name "
                f"OR json_extract({_TEXT}, '$.event') = :name)"
            )
            values["name"] = self.name
        if self.text is not None:
            terms.append("(key = :text OR user = 'user:' || :text)")
            values["text"] = self.text
        return " AND ".join(terms) or "1", values


T = TypeVar("T")

_ROWS_PER_STATEMENT = 250
"""Rows per multi-row INSERT (13 values each: well inside SQLite's limit on parameters)."""


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _keys_by_source(events: Sequence[NewEvent]) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for item in events:
        keys.setdefault(item.source, []).append(item.key)
    return keys


class SQLiteQueue:
    """A durable queue in one SQLite file (see ``Queue`` for what each method promises).

    Args:
        path: The database file; created with its tables when missing.
        dedupe_window: Seconds during which a repeated ``(source, key)`` is ignored.
        retention: Seconds finished events are kept before ``prune`` forgets them.
        busy_timeout: Seconds to wait for another process's write lock before failing with
            ``QueueError``.
        checkpoint_every: When given, a background thread checkpoints the WAL at this interval
            (seconds) instead of the commit that crosses SQLite's threshold (for a server,
            whose commits keep clients waiting).
        destination: The destination (Attentive account) the queue holds events for: ``put``
            records it with each event, and ``claim`` hands out only events recorded for it
            (or for none: rows written without a destination belong to the queue's only one).
            Events recorded for another destination stay queued (``foreign`` counts them).
            None: no name is recorded and every event is handed out.

    ``counts`` and ``oldest_queued`` read through a second connection: in WAL mode a reader
    never waits for a writer, so a metrics scrape does not hold up events being queued.

    A missing file is created owner-only (0600, whatever the umask), and so are SQLite's
    ``-wal`` and ``-shm`` files next to it. ``warnings`` says, as found before opening, what
    lets other users read the queue or tamper with it (a world-writable folder, a queue file
    readable by others); the commands show it.
    """

    def __init__(  # noqa: PLR0913 - the options are keyword-only
        self,
        path: str | Path,
        *,
        dedupe_window: float = DEFAULT_DEDUPE_WINDOW,
        retention: float = DEFAULT_RETENTION,
        busy_timeout: float = 10.0,
        checkpoint_every: float | None = None,
        destination: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.destination = destination
        self.dedupe_window = dedupe_window
        self.retention = retention
        self._lock = threading.Lock()
        self._reader_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._timeout = busy_timeout
        self._stopping = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self.warnings = tuple(exposure(self.path))
        try:
            create_private(self.path)
        except OSError as error:
            msg = f"cannot open the queue {self.path}: {error.strerror or error}"
            raise QueueError(msg) from error
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
            self._add_columns()
            if checkpoint_every is not None:
                self._db.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as error:
            msg = f"cannot open the queue {self.path}: {error}"
            raise QueueError(msg) from error
        tighten_side_files(self.path)
        if checkpoint_every is not None:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_now_and_then,
                args=(checkpoint_every,),
                name="queue-checkpoint",
                daemon=True,
            )
            self._checkpointer.start()

    def _add_columns(self) -> None:
        """Bring a file written by an earlier version up to the current columns (additive)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in have:
                try:
                    self._db.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError:
                    # Another process opening the same file may have added it first.
                    have = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
                    if name not in have:
                        raise

    def _checkpoint_now_and_then(self, interval: float) -> None:
        """Copy the WAL into the database file off the writers' path (``checkpoint_every``).

        A commit that crosses SQLite's automatic threshold would otherwise do this work, and
        its fsync, while a client waits for its answer. A passive checkpoint never blocks a
        writer; committed transactions are durable in the WAL either way.
        """
        db = sqlite3.connect(self.path, isolation_level=None, timeout=self._timeout)
        try:
            db.execute("PRAGMA synchronous = FULL")
            while not self._stopping.wait(interval):
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                with contextlib.suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                msg = f"queue {self.path}: {error}"
                raise QueueError(msg) from error

    def _read(self, action: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return action(self._db)
            except sqlite3.Error as error:
                msg = f"queue {self.path}: {error}"
                raise QueueError(msg) from error

    def _snapshot(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on the second connection (opened on first use)."""
        with self._reader_lock:
            try:
                if self._reader is None:
                    self._reader = sqlite3.connect(
                        self.path,
                        isolation_level=None,
                        check_same_thread=False,
                        timeout=self._timeout,
                    )
                return action(self._reader)
            except sqlite3.Error as error:
                msg = f"queue {self.path}: {error}"
                raise QueueError(msg) from error

    def put(self, events: Sequence[NewEvent], now: float) -> Enqueued:
        """Store ``events`` in one transaction; skip keys seen within the window.

        A put is a handful of statements whatever its size: one look-up of the keys already
        seen, then multi-row inserts. The sqlite3 module lets go of the GIL at every step of
        a statement and must win it back from the event loop's thread afterwards; one
        statement per event made a put crawl while a server's loop was busy parsing.
        """
        return self.put_many([(events, now)])[0]

    def put_many(self, batches: Sequence[tuple[Sequence[NewEvent], float]]) -> list[Enqueued]:
        """Store several ``(events, now)`` batches in one transaction, as ``put`` one by one.

        The statements are those of one ``put`` over all the batches' events; each event
        keeps its own batch's time (``seen.at``, and ``settled_at`` of one stored rejected).
        """
        with self._transaction() as db:
            last = self._last_seen(db, [item for events, _ in batches for item in events])
            answers: list[Enqueued] = []
            accepted: list[tuple[NewEvent, float]] = []
            for events, now in batches:
                cutoff = now - self.dedupe_window
                stored = 0
                rejected: list[str] = []
                for item in events:
                    at = last.get((item.source, item.key))
                    if at is not None and at >= cutoff:
                        continue
                    last[item.source, item.key] = now
                    accepted.append((item, now))
                    stored += 1
                    if item.rejected is not None:
                        rejected.append(item.rejected[0])
                answers.append(Enqueued(stored, len(events) - stored, tuple(rejected)))
            for chunk in _chunks(accepted, _ROWS_PER_STATEMENT):
                marks = ", ".join(["(?, ?, ?)"] * len(chunk))
                params: list[Any] = []
                for item, now in chunk:
                    params += (item.source, item.key, now)
                db.execute(f"INSERT OR REPLACE INTO seen (source, key, at) VALUES {marks}", params)  # noqa: S608
                marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                params = []
                for item, now in chunk:
                    if item.rejected is None:
                        params += (item.key, item.source, item.user, 0, item.event)
                        params += (item.received_at, item.received_at, None, None, None)
                    else:
                        params += (item.key, item.source, item.user, int(State.REJECTED))
                        params += (item.event, item.received_at, item.received_at, now)
                        params += item.rejected
                    params += (item.line, item.index, self.destination)
                db.execute(
                    "INSERT INTO events (key, source, user, state, event, received_at, "  # noqa: S608 - placeholders only
                    "next_attempt_at, settled_at, reason, message, input_line, input_index, "
                    "destination) "
                    f"VALUES {marks}",
                    params,
                )
        return answers

    @staticmethod
    def _last_seen(
        db: sqlite3.Connection, events: Sequence[NewEvent]
    ) -> dict[tuple[str, str], float]:
        """When each of the events' keys was last stored, for those in ``seen``."""
        last: dict[tuple[str, str], float] = {}
        for source, keys in _keys_by_source(events).items():
            for some in _chunks(list(dict.fromkeys(keys)), _ROWS_PER_STATEMENT * 4):
                marks = ", ".join("?" * len(some))
                found = db.execute(
                    f"SELECT key, at FROM seen WHERE source = ? AND key IN ({marks})",  # noqa: S608 - placeholders only
                    (source, *some),
                )
                last.update(((source, key), at) for key, at in found)
        return last

    def claim(self, now: float, limit: int) -> list[Claim]:
        """Mark up to ``limit`` due events in flight and return them in id order."""
        with self._transaction() as db:
            rows = db.execute(
                _CLAIM, {"now": now, "limit": limit, "destination": self.destination}
            ).fetchall()
        return sorted((Claim(*row) for row in rows), key=lambda claim: claim.id)

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record verdicts in one transaction (only for events still in flight)."""
        with self._transaction() as db:
            db.executemany(
                _SETTLE,
                [
                    {
                        "id": s.id,
                        "state": int(s.state),
                        "attempts": s.attempts,
                        "throttles": s.throttles,
                        "done": s.done,
                        "first_attempt_at": s.first_attempt_at,
                        "last_attempt_at": s.last_attempt_at,
                        "next_attempt_at": s.next_attempt_at,
                        "status": s.status,
                        "response": s.response,
                        "reason": s.reason,
                        "message": s.message,
                        "endpoint": s.endpoint,
                        "request": s.request,
                    }
                    for s in settlements
                ],
            )

    def release(self, ids: Iterable[int]) -> None:
        """Put claimed events back unchanged."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE events SET state = 0 WHERE id = ? AND state = 1", [(i,) for i in ids]
            )

    def recover(self) -> int:
        """Put every in-flight event back in the queue; return how many."""
        with self._transaction() as db:
            return db.execute("UPDATE events SET state = 0 WHERE state = 1").rowcount

    def next_due(self) -> float | None:
        """The earliest time some queued event can be claimed, or None."""
        value = self._read(
            lambda db: db.execute(_NEXT_DUE, {"destination": self.destination}).fetchone()[0]
        )
        return None if value is None else float(value)

    def foreign(self) -> dict[str, int]:
        """Events waiting to be delivered that are recorded for another destination, by name.

        They are never claimed: a queue file moved from one destination to another in the
        configuration must not send one account's events with another account's key. Empty
        when the queue has no destination (``destination=None``).
        """
        if self.destination is None:
            return {}
        rows = self._snapshot(lambda db: db.execute(_FOREIGN, (self.destination,)).fetchall())
        return {str(name): int(count) for name, count in rows}

    def data_version(self) -> int:
        """A number that changes whenever some other connection commits to the file.

        Another process (``serve --no-deliver``) queuing events changes it, and so does this
        queue's own writing; reading it is cheap and takes no lock, so a deliverer in another
        process can look at it often to learn that there is new work.
        """
        value = self._snapshot(lambda db: db.execute("PRAGMA data_version").fetchone()[0])
        return int(value)

    def counts(self) -> dict[State, int]:
        """Number of events in each state (every state is present)."""
        rows = self._snapshot(
            lambda db: db.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall()
        )
        found = {State(state): count for state, count in rows}
        return {state: found.get(state, 0) for state in State}

    def oldest_queued(self) -> float | None:
        """The receipt time of the oldest event queued or in flight, or None."""
        value = self._snapshot(
            lambda db: db.execute(
                "SELECT min(received_at) FROM events WHERE state IN (0, 1)"
            ).fetchone()[0]
        )
        return None if value is None else float(value)

    def records(self, state: State | None = None, limit: int = 100, after: int = 0) -> list[Record]:
        """Events in id order, optionally only those in ``state``."""
        if state is None:
            sql = f"SELECT {_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608
            params: tuple[Any, ...] = (after, limit)
        else:
            sql = f"SELECT {_COLUMNS} FROM events WHERE state = ? AND id > ? ORDER BY id LIMIT ?"  # noqa: S608
            params = (int(state), after, limit)
        rows = self._read(lambda db: db.execute(sql, params).fetchall())
        return [_record(row) for row in rows]

    def search(self, search: Search, limit: int = 50, before: int | None = None) -> list[Record]:
        """The newest events matching ``search`` (ids below ``before``), newest first."""
        where, values = search.where()
        if before is not None:
            where += " AND id < :before"
            values["before"] = before
        sql = f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY id DESC LIMIT :limit"  # noqa: S608 - the terms are constants, the values bound
        values["limit"] = limit
        rows = self._snapshot(lambda db: db.execute(sql, values).fetchall())
        return [_record(row) for row in rows]

    def reasons(self) -> list[str]:
        """The reasons recorded with the newest events (for a search form's choices)."""
        sql = f"SELECT DISTINCT reason FROM events WHERE reason IS NOT NULL AND {_RECENT}"  # noqa: S608 - constant SQL
        rows = self._snapshot(lambda db: db.execute(sql, {"span": SEARCH_SPAN}).fetchall())
        return [str(row[0]) for row in rows]

    def record(self, id_or_key: int | str) -> Record | None:
        """One event by id, or (the latest) by key."""
        if isinstance(id_or_key, int):
            sql = f"SELECT {_COLUMNS} FROM events WHERE id = ?"  # noqa: S608
        else:
            sql = f"SELECT {_COLUMNS} FROM events WHERE key = ? ORDER BY id DESC LIMIT 1"  # noqa: S608
        row = self._read(lambda db: db.execute(sql, (id_or_key,)).fetchone())
        return None if row is None else _record(row)

    def replay(self, ids: Iterable[int] | None, now: float) -> int:
        """Re-queue dead letters; return how many were re-queued."""
        reset = (
            "UPDATE events SET state = 0, attempts = 0, throttles = 0, first_attempt_at = NULL, "
            "next_attempt_at = ?, settled_at = NULL, reason = NULL, message = NULL "
            "WHERE state = 5"
        )
        with self._transaction() as db:
            if ids is None:
                return db.execute(reset, (now,)).rowcount
            return sum(db.execute(f"{reset} AND id = ?", (now, i)).rowcount for i in ids)

    def prune(self, now: float) -> int:
        """Forget finished events past the retention and keys past the dedupe window."""
        with self._transaction() as db:
            db.execute("DELETE FROM seen WHERE at < ?", (now - self.dedupe_window,))
            return db.execute(
                "DELETE FROM events WHERE state IN (2, 3, 4) AND settled_at < ?",
                (now - self.retention,),
            ).rowcount

    def close(self) -> None:
        """Close the database."""
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._lock:
            self._db.close()


def _record(row: tuple[Any, ...]) -> Record:
    values = list(row)
    values[4] = State(values[4])
    return Record(*values)
