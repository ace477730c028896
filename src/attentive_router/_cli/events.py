"""``events list``: the queue's events by state, with the input line each was read from.

After ``send``, this is where the skipped and rejected events of a run are found: each with
its messageId, its position in the input file and the reason it was not sent.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson

from attentive_router._cli.delivery import (
    PROG,
    _open_existing_queue,
    _queue_option,
    config_file_options,
    refuse_kafka,
)
from attentive_router._cli.numbers import at_least_one
from attentive_router._queue.interface import QueueError, Record, State
from attentive_router._queue.kafka.settings import KafkaSettings

if TYPE_CHECKING:
    from attentive_router._queue.sqlite import SQLiteQueue

STATES = {state.label: state for state in State}
DEFAULT_STATES = "skipped,rejected"

EVENTS_EPILOG = f"""\
states: {", ".join(STATES)}

LINE is the input line an event was read from, with [N] for the Nth event (from 0) of a
JSON array or batch envelope on that line; "-" for events that did not come from a file
(serve). Events without a messageId show "-" there; `attentive-router dead-letters show ID`
shows everything about one event.

examples:
  attentive-router send events.ndjson
  attentive-router events list
  attentive-router events list --state rejected --since 2026-01-08T14:00:00Z
  attentive-router events list --state skipped,rejected,dead_lettered --json
"""

_PAGE = 500


def _states(value: str) -> tuple[State, ...]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in STATES]
    if unknown or not names:
        msg = f"{', '.join(unknown) or repr(value)}: choose from {', '.join(STATES)}"
        raise argparse.ArgumentTypeError(msg)
    return tuple(dict.fromkeys(STATES[name] for name in names))


def _since(value: str) -> float:
    from attentive_router._transform.expressions import parse_timestamp  # noqa: PLC0415

    moment = parse_timestamp(value)
    if moment is None:
        msg = f"{value!r} is not an ISO 8601 timestamp"
        raise argparse.ArgumentTypeError(msg)
    return moment.timestamp()


def add_events_parser(commands: Any) -> None:
    """Add ``events list`` to ``commands``."""
    events = commands.add_parser(
        "events",
        help="list queued events by state: the skipped and rejected ones of a run, and why",
        description="List the events in the queue by state, oldest first, with the input line "
        "each was read\nfrom and the reason it was skipped, rejected or dead-lettered.",
        epilog=EVENTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="one line per event",
        epilog=EVENTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument(
        "--state",
        type=_states,
        default=_states(DEFAULT_STATES),
        metavar="STATE[,STATE...]",
        help=f"the states to list (default: {DEFAULT_STATES})",
    )
    listing.add_argument(
        "--since",
        type=_since,
        metavar="ISO",
        help="only events received at or after this time, e.g. when a run started",
    )
    listing.add_argument(
        "--limit", type=at_least_one, default=100, help="at most this many (default 100)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _queue_option(listing)
    config_file_options(listing)


def _selected(
    queue: SQLiteQueue, states: tuple[State, ...], since: float | None, limit: int
) -> list[Record]:
    """Up to ``limit`` events in ``states`` received at or after ``since``, in id order."""
    found: list[Record] = []
    if limit <= 0:
        return found
    for state in states:
        matched = 0
        for record in _of_state(queue, state):
            if since is None or record.received_at >= since:
                found.append(record)
                matched += 1
                if matched >= limit:
                    break
    found.sort(key=lambda record: record.id)
    return found[:limit]


def _of_state(queue: SQLiteQueue, state: State) -> Iterator[Record]:
    after = 0
    while True:
        page = queue.records(state, limit=_PAGE, after=after)
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1].id


def _message_id(record: Record) -> str | int | None:
    """The event's own messageId (the queue's key is a digest when it has none)."""
    try:
        event = orjson.loads(record.event)
    except orjson.JSONDecodeError:
        return None
    value = event.get("messageId") if isinstance(event, dict) else None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    return None


def _time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _position(record: Record) -> str:
    if record.line is None:
        return "-"
    return str(record.line) if record.index is None else f"{record.line}[{record.index}]"


def event_json(record: Record) -> dict[str, Any]:
    """The JSON object ``events list --json`` prints for one event."""
    return {
        "id": record.id,
        "messageId": _message_id(record),
        "state": record.state.label,
        "reason": record.reason,
        "message": record.message,
        "line": record.line,
        "index": record.index,
        "source": record.source,
        "destination": record.destination,
        "receivedAt": _time(record.received_at),
    }


def run_events(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """``events list`` (of a queue file: a Kafka queue keeps no record of each event)."""
    if isinstance(args.queue, KafkaSettings):
        return refuse_kafka("events", args.queue, stderr)
    queue = _open_existing_queue(args.queue, stderr)
    if queue is None:
        return 2
    try:
        records = _selected(queue, args.state, args.since, args.limit)
    except QueueError as error:
        print(f"{PROG}: {error}", file=stderr)
        return 2
    finally:
        queue.close()
    if args.json:
        for record in records:
            stdout.write(orjson.dumps(event_json(record)).decode() + "\n")
        return 0
    if not records:
        print(f"no {' or '.join(state.label for state in args.state)} events", file=stdout)
        return 0
    # The destination column only for a queue that records destinations (a configuration file).
    width = max((len(r.destination) for r in records if r.destination), default=0)
    width = max(width, 11) if width else 0
    column = f"{'DESTINATION':<{width}}  " if width else ""
    print(
        f"{'ID':>8}  {'STATE':<13}  {'LINE':>9}  {column}{'REASON':<22}  MESSAGE ID  WHY",
        file=stdout,
    )
    for record in records:
        message_id = _message_id(record)
        where = f"{record.destination or '-':<{width}}  " if width else ""
        print(
            f"{record.id:>8}  {record.state.label:<13}  {_position(record):>9}  {where}"
            f"{record.reason or '-':<22}  {'-' if message_id is None else message_id}  "
            f"{record.message or '-'}",
            file=stdout,
        )
    return 0
