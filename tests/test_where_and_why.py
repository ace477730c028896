"""Why an event was not sent, and where it came from, as users see it.

Messages name inputs and options as users know them; a near miss of a mapped event name is
warned about; every ``transform`` record and every queued event keeps its input position,
and ``events list`` shows a run's skipped and rejected events with it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router import Config, Context, Mapped, Skipped, route
from attentive_router._ingest.logs import TextFormatter
from attentive_router._queue.intake import new_event
from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.rules_interpreter import interpreted_dispatch  # noqa: E402
from tests.strategies import NAMED_TRACK_EVENTS  # noqa: E402

RECEIVED = "2026-01-08T14:00:00Z"
CTX = Context(datetime(2026, 1, 8, 14, tzinfo=UTC))
TOKEN = "where-and-why-token"


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


def transform(data: bytes, *options: str) -> list[dict[str, Any]]:
    result = cli("transform", "--received-at", RECEIVED, *options, "-", stdin=data)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def ndjson(*events: object) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


# --- finding 6: messages written for users -----------------------------------------------------


def test_no_usable_identifier_names_input_paths_and_each_reason_once() -> None:
    event = {"type": "identify", "messageId": "m-1", "traits": {"email": "ada@"}}
    (record,) = transform(ndjson(event))
    assert record["reason"] == "no_usable_identifier"
    # identify has two mappings; both read traits.email, the reason is given once.
    assert record["message"] == (
        "user is required, and nothing usable was found in traits.phone, traits.email, userId, "
        "traits.username (traits.email: 'ada@' is not an email address; left out)"
    )
    assert "()" not in record["message"]
    assert "custom_identifiers" not in record["message"]


def test_an_unusable_username_is_named_among_the_reasons() -> None:
    event = {"type": "track", "event": "Signed Up", "userId": "u", "traits": {"username": [1]}}
    # userId passes the filter and is usable: no rejection, and no message to check.
    (mapped,) = transform(ndjson(event))
    assert mapped["outcome"] == "mapped"
    identify = {"type": "identify", "traits": {"email": "ada@", "username": ["x"]}}
    (record,) = transform(ndjson(identify))
    assert "traits.username: expected a string, got array; left out" in record["message"]


def test_a_missing_price_is_called_missing_and_a_bad_one_not_a_number() -> None:
    viewed = {"type": "track", "event": "Product Viewed", "userId": "u"}
    missing, bad = transform(
        ndjson(
            {**viewed, "properties": {"product_id": "p-1"}},
            {**viewed, "properties": {"product_id": "p-1", "price": "cheap"}},
        )
    )
    assert missing["reason"] == bad["reason"] == "no_items"
    assert missing["message"].endswith("properties (product_id 'p-1'): price is missing; left out")
    assert "None" not in missing["message"]
    assert bad["message"].endswith("price 'cheap' is not a number; left out")


def test_unmapped_event_names_the_flag() -> None:
    event = {"type": "track", "event": "Signed Up", "userId": "u"}
    (record,) = transform(ndjson(event), "--unnamed-track", "skip")
    assert record["reason"] == "unmapped_event"
    assert record["message"] == (
        "track event 'Signed Up' is not in the mapping tables, and --unnamed-track skip leaves "
        "such events out"
    )
    assert "unnamed_track" not in record["message"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            b'{"type":"track","event":"x",\n',
            "unexpected end of data at the end of the line, column 29",
        ),
        (b'{"oops\r\n', "unexpected end of data at the end of the line, column 7"),
        (b'{"type":"track" "event":"x"}\n', "expected ',' or '}' at column 17"),
        (b'{"a":"\xff"}\n', "invalid UTF-8 at column 7"),
    ],
)
def test_invalid_json_names_the_column_where_it_breaks(line: bytes, message: str) -> None:
    records = transform(ndjson({"type": "screen"}) + line)
    assert records[1]["reason"] == "invalid_json"
    assert records[1]["message"].startswith("line 2: not valid JSON (")
    assert records[1]["message"].endswith(f"{message})")
    assert "column 1)" not in records[1]["message"]


def test_a_truncated_array_names_the_end_of_the_input() -> None:
    (record,) = transform(b'[{"type": "screen"},\n{"type": "track",\n')
    assert record["message"] == (
        "line 2: not valid JSON (unexpected end of data at the end of the input, column 18)"
    )


def test_dead_letters_show_writes_empty_times_as_null(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "q.db")
    try:
        queue.put([new_event({"type": "screen", "messageId": "never-tried"}, 1.7e9)], 1.7e9)
    finally:
        queue.close()
    shown = cli("dead-letters", "show", "never-tried", "--queue", str(tmp_path / "q.db"))
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["firstAttemptAt"] is None
    assert record["lastAttemptAt"] is None
    assert record["receivedAt"] == "2023-11-14T22:13:20Z"
    assert "-" not in record.values()


def _text_line(message: str, **fields: Any) -> str:
    record = logging.LogRecord("attentive_router", logging.INFO, __file__, 1, message, (), None)
    record.fields = fields
    return TextFormatter().format(record)


def test_text_logs_print_values_not_python_reprs() -> None:
    line = _text_line(
        "serving",
        url="http://127.0.0.1:8080",
        write_keys=["default", "shop"],
        public_url=None,
        trust_proxy=False,
        rejections=[{"reason": "no_identifier", "message": "none of traits.email"}],
        delivery="ingest only",
        status=200,
    )
    assert " url=http://127.0.0.1:8080 " in line
    assert ' write_keys=["default","shop"] ' in line
    assert " public_url=null trust_proxy=false " in line
    assert 'rejections=[{"reason":"no_identifier","message":"none of traits.email"}]' in line
    assert ' delivery="ingest only" status=200' in line
    assert "None" not in line
    assert "'" not in line


def test_text_logs_still_redact_contact_details() -> None:
    line = _text_line("ingest", error="jane@example.com sent +1 415 555 0100", keys=["x@y.co"])
    assert "jane@" not in line
    assert "555" not in line
    assert "x@y.co" not in line


# --- finding 8: near misses of mapped event names ----------------------------------------------


def _track(name: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "userId": "u-1",
        "properties": {"order_id": "o-1", "product_id": "p-1", "price": 1},
    }


def _variants(name: str) -> list[str]:
    return [name.lower(), name.upper(), f"{name} ", f" {name.swapcase()}\t"]


@pytest.mark.parametrize("intended", NAMED_TRACK_EVENTS)
def test_a_near_miss_is_sent_as_named_with_a_warning_naming_the_intended_event(
    intended: str,
) -> None:
    for name in _variants(intended):
        outcome = route(_track(name), CTX)
        assert isinstance(outcome, Mapped), (name, outcome)
        assert [request.path for request in outcome.requests] == ["/v1/events/custom"]
        assert outcome.requests[0].body.type == name  # type: ignore[union-attr]
        near = [w for w in outcome.warnings if w.code == "near_miss_event_name"]
        assert len(near) == 1, outcome.warnings
        assert f"differs from {intended!r} only in case or surrounding whitespace" in (
            near[0].message
        )
        # The rules interpreter's dispatch agrees (the router checks names for both).
        assert route(_track(name), CTX, dispatch=interpreted_dispatch()) == outcome


@pytest.mark.parametrize("name", [*NAMED_TRACK_EVENTS, "Signed Up", "Order Completed Twice"])
def test_exact_and_unrelated_names_get_no_near_miss_warning(name: str) -> None:
    outcome = route(_track(name), CTX)
    codes = [w.code for w in outcome.warnings] if isinstance(outcome, Mapped) else []
    assert "near_miss_event_name" not in codes


def test_a_skipped_near_miss_names_the_intended_event() -> None:
    ctx = Context(CTX.received_at, Config(unnamed_track="skip"))
    outcome = route(_track("order completed "), ctx)
    assert isinstance(outcome, Skipped)
    assert outcome.reason == "unmapped_event"
    assert outcome.message.endswith("(did you mean 'Order Completed'?)")
    unrelated = route(_track("Signed Up"), ctx)
    assert isinstance(unrelated, Skipped)
    assert "did you mean" not in unrelated.message


def test_transform_prints_the_near_miss_warning() -> None:
    near, exact = transform(ndjson(_track("product viewed"), _track("Product Viewed")))
    assert [w["code"] for w in near["warnings"]] == ["near_miss_event_name", "client_user_id_only"]
    assert "'Product Viewed'" in near["warnings"][0]["message"]
    assert near["requests"][0]["path"] == "/v1/events/custom"
    assert near["requests"][0]["body"]["type"] == "product viewed"
    assert [w["code"] for w in exact["warnings"]] == ["client_user_id_only"]
    assert exact["requests"][0]["path"].startswith("/v1/events/ecommerce/")


# --- finding 9: where is my event? -------------------------------------------------------------


def test_every_transform_record_names_its_line_and_index() -> None:
    screen = {"type": "screen"}  # no messageId: only the position tells them apart
    data = (
        b"\n"
        + ndjson(screen)
        + b"   \n"
        + ndjson([screen, {"batch": [screen, screen]}])
        + ndjson({"batch": [screen], "context": {}})
        + b"{broken\n"
    )
    records = transform(data)
    assert [(r["line"], r.get("index")) for r in records] == [
        (2, None),
        (4, 0),
        (4, 1),
        (4, 2),
        (5, 0),
        (6, None),
    ]
    assert all(record["messageId"] is None for record in records)


def test_a_clean_ndjson_record_has_no_index() -> None:
    event = {"type": "track", "event": "Signed Up", "userId": "u", "messageId": "m"}
    (record,) = transform(ndjson(event))
    assert set(record) == {"messageId", "outcome", "requests", "warnings", "line"}
    assert record["line"] == 1


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(token=TOKEN) as server:
        yield server


def _send(sandbox: SandboxProcess, source: Path, queue: Path) -> subprocess.CompletedProcess[bytes]:
    return cli(
        "send",
        str(source),
        "--queue",
        str(queue),
        "--base-url",
        sandbox.url,
        "--token",
        TOKEN,
        "--progress",
        "never",
    )


def test_events_list_shows_a_runs_skipped_and_rejected_events_with_their_lines(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.reset()
    source = tmp_path / "in.ndjson"
    source.write_bytes(
        ndjson({"type": "track", "event": "Signed Up", "messageId": "ok-1", "userId": "u"})
        + b"\n"
        + ndjson({"type": "track", "event": "Signed Up", "anonymousId": "a"})
        + ndjson({"type": "screen", "messageId": "screen-1", "userId": "u"})
        + b"{oops\n"
        + ndjson(
            [
                {"type": "track", "event": "Signed Up", "messageId": "ok-2", "userId": "u2"},
                {"type": "track", "event": "Signed Up", "userId": "u3", "timestamp": "bad"},
            ]
        )
    )
    queue = tmp_path / "q.db"
    sent = _send(sandbox, source, queue)
    assert sent.returncode == 0, sent.stderr
    listed = cli("events", "list", "--json", "--queue", str(queue))
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["messageId"], r["state"], r["line"], r["index"], r["reason"]) for r in rows] == [
        (None, "skipped", 3, None, "no_identifier"),
        ("screen-1", "skipped", 4, None, "unsupported_call_type"),
        (None, "rejected", 5, None, "invalid_json"),
        (None, "rejected", 6, 1, "invalid_timestamp"),
    ]
    assert rows[3]["message"] == "timestamp 'bad' is not an ISO 8601 timestamp"
    table = cli("events", "list", "--queue", str(queue)).stdout.decode()
    assert "     6[1]  invalid_timestamp" in table
    assert "screen-1  screen calls have no Attentive counterpart" in table
    assert "ok-1" not in table  # delivered events are not listed by default
    delivered = cli("events", "list", "--json", "--state", "delivered", "--queue", str(queue))
    assert [json.loads(line)["messageId"] for line in delivered.stdout.splitlines()] == [
        "ok-1",
        "ok-2",
    ]
    later = cli("events", "list", "--since", "2999-01-01T00:00:00Z", "--queue", str(queue))
    assert later.stdout.decode().strip() == "no skipped or rejected events"
    one = cli("events", "list", "--limit", "1", "--json", "--queue", str(queue))
    assert len(one.stdout.splitlines()) == 1


def test_events_list_refuses_unknown_states_and_missing_queues(tmp_path: Path) -> None:
    bad = cli("events", "list", "--state", "skipped,lost", "--queue", str(tmp_path / "q.db"))
    assert bad.returncode == 2
    assert b"lost: choose from queued, in_flight" in bad.stderr
    missing = cli("events", "list", "--queue", str(tmp_path / "none.db"))
    assert missing.returncode == 2
    assert b"no queue at" in missing.stderr


def test_a_queue_file_from_before_positions_opens_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    queue = SQLiteQueue(path)
    queue.close()
    with sqlite3.connect(path) as db:  # the file as earlier versions wrote it
        db.execute("ALTER TABLE events DROP COLUMN input_line")
        db.execute("ALTER TABLE events DROP COLUMN input_index")
        db.execute(
            "INSERT INTO events (key, source, user, state, event, received_at, next_attempt_at, "
            "reason, message) VALUES ('old-1', 'default', 'u', 3, X'7B7D', 1.7e9, 1.7e9, "
            "'no_identifier', 'none')"
        )
    db.close()
    reopened = SQLiteQueue(path)
    try:
        (old,) = reopened.records(State.SKIPPED)
        assert (old.key, old.line, old.index) == ("old-1", None, None)
    finally:
        reopened.close()
    listed = cli("events", "list", "--queue", str(path))
    assert listed.returncode == 0, listed.stderr
    assert b"        -  no_identifier" in listed.stdout


def test_the_intake_keeps_a_files_positions() -> None:
    from attentive_router._queue.intake import from_item  # noqa: PLC0415
    from attentive_router._transform.reader import read_events  # noqa: PLC0415

    data = b'\n{"type": "screen"}\n[{"type": "screen"}, {"type": "screen"}]\n{bad\n'
    entries = [from_item(item, 1.0) for item in read_events(io.BytesIO(data))]
    assert [(e.line, e.index) for e in entries] == [(2, None), (3, 0), (3, 1), (4, None)]
    assert new_event({"type": "screen"}, 1.0).line is None
