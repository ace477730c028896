"""``attentive-router transform`` run as the installed console script, in a subprocess."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import attentive_router

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("attentive-router")
SAMPLES = ROOT / "src" / "attentive_router" / "_cli" / "samples" / "sample-events.ndjson"
RECEIVED = "2026-01-08T14:00:00Z"
RECEIVED_OUT = "2026-01-08T14:00:00.000Z"

MAPPED_KEYS = {"messageId", "outcome", "requests", "warnings", "line"}
STOPPED_KEYS = {"messageId", "outcome", "reason", "message", "line"}
REQUEST_KEYS = {"method", "path", "body"}

IDENTIFY = {
    "type": "identify",
    "messageId": "identify-1",
    "userId": "u-1",
    "traits": {"email": "jane@example.com", "plan": "pro"},
    "timestamp": "2026-01-08T13:00:00Z",
}
PRODUCT_VIEWED = {
    "type": "track",
    "event": "Product Viewed",
    "messageId": "viewed-1",
    "context": {"traits": {"email": "jane@example.com"}},
    "properties": {"product_id": "p-1", "price": 10, "currency": "usd"},
    "timestamp": "2026-01-08T13:30:00.5Z",
}
ORDER_COMPLETED = {
    "type": "track",
    "event": "Order Completed",
    "messageId": "order-1",
    "userId": "u-1",
    "traits": {"phone": "+14155550100"},
    "properties": {
        "order_id": "o-1",
        "currency": "EUR",
        "products": [
            {"product_id": "p-1", "price": "19.99", "quantity": 2, "name": "Mug"},
            {"sku": "s-2", "price": 5},
        ],
    },
    "timestamp": "2026-01-08T13:45:00+01:00",
}
PAGE = {
    "type": "page",
    "messageId": "page-1",
    "userId": "u-1",
    "traits": {"email": "jane@example.com"},
    "properties": {"path": "/shop", "title": "Shop"},
    "timestamp": "2026-01-08T13:59:00Z",
}
CUSTOM = {
    "type": "track",
    "event": "Signed Up",
    "messageId": "custom-1",
    "traits": {"email": "jane@example.com"},
    "properties": {"plan": "pro", "seats": 3},
    "timestamp": "2026-01-08T13:59:59Z",
}
SCREEN = {"type": "screen", "messageId": "screen-1", "userId": "u-1", "name": "Home"}
ANONYMOUS = {"type": "track", "event": "Signed Up", "messageId": "anon-1", "anonymousId": "a-1"}
BAD_TIME = {**CUSTOM, "messageId": "bad-time-1", "timestamp": "last tuesday"}

EVENTS = [IDENTIFY, PRODUCT_VIEWED, ORDER_COMPLETED, PAGE, CUSTOM, SCREEN, ANONYMOUS, BAD_TIME]
OUTCOMES = [
    ("identify-1", "mapped", None),
    ("viewed-1", "mapped", None),
    ("order-1", "mapped", None),
    ("page-1", "mapped", None),
    ("custom-1", "mapped", None),
    ("screen-1", "skipped", "unsupported_call_type"),
    ("anon-1", "skipped", "no_identifier"),
    ("bad-time-1", "rejected", "invalid_timestamp"),
]


@cache
def body_titles() -> dict[str, str]:
    """Endpoint path → title of its body schema, from the event table."""
    with (ROOT / "spec" / "events.csv").open(encoding="utf-8", newline="") as table:
        rows = list(csv.DictReader(table))
    titles = {row["path"]: row["body"] for row in rows}
    assert len(titles) == len({(row["path"], row["body"]) for row in rows}), "one body per path"
    return titles


def assert_valid_bodies(records: list[dict[str, Any]]) -> None:
    """Every body of every mapped record validates against the project's JSON Schema."""
    for record in records:
        if record["outcome"] != "mapped":
            continue
        for request in record["requests"]:
            title = body_titles()[request["path"]]
            validator = jsonschema.Draft202012Validator(attentive_router.body_schema(title))
            errors = [error.message for error in validator.iter_errors(request["body"])]
            assert errors == [], (record["messageId"], request)


def cli(*args: str, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [str(SCRIPT), *args], input=stdin, capture_output=True, check=False, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


def records_of(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    text = result.stdout.decode("utf-8")
    assert text == "" or text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    assert_valid_bodies(records)
    return records


def transform(data: bytes, *options: str) -> list[dict[str, Any]]:
    """Run ``transform -`` on ``data`` with a fixed receipt time; return the records."""
    return records_of(cli("transform", "--received-at", RECEIVED, *options, "-", stdin=data))


def ndjson(events: Sequence[object], newline: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(event).encode() + newline for event in events)


def outcome_of(record: dict[str, Any]) -> tuple[str | None, str, str | None]:
    return record["messageId"], record["outcome"], record.get("reason")


def test_console_script_is_installed() -> None:
    assert SCRIPT.is_file()


def test_ndjson_gives_one_line_per_event_in_input_order() -> None:
    records = transform(ndjson(EVENTS))
    assert [outcome_of(record) for record in records] == OUTCOMES


def test_records_have_the_documented_keys() -> None:
    for record in transform(ndjson(EVENTS)):
        if record["outcome"] == "mapped":
            assert set(record) == MAPPED_KEYS
            assert record["requests"]
            for request in record["requests"]:
                assert set(request) == REQUEST_KEYS
                assert request["method"] == "POST"
                assert request["path"].startswith("/v1/")
            for warning in record["warnings"]:
                assert set(warning) == {"code", "message"}
        else:
            assert set(record) == STOPPED_KEYS
            assert record["message"]


def test_mapped_records_carry_the_exact_requests() -> None:
    identify, viewed, order, page, custom = transform(ndjson(EVENTS))[:5]
    assert identify["requests"] == [
        {
            "method": "POST",
            "path": "/v1/identity-resolution/user-identifiers",
            "body": {"email": "jane@example.com", "clientUserId": "u-1"},
        },
        {
            "method": "POST",
            "path": "/v1/attributes/custom",
            "body": {
                "properties": {"plan": "pro"},
                "user": {
                    "email": "jane@example.com",
                    "externalIdentifiers": {"clientUserId": "u-1"},
                },
            },
        },
    ]
    assert viewed["requests"] == [
        {
            "method": "POST",
            "path": "/v1/events/ecommerce/product-view",
            "body": {
                "items": [
                    {
                        "productId": "p-1",
                        "productVariantId": "p-1",
                        "price": [{"value": 10, "currency": "USD"}],
                    }
                ],
                "user": {"email": "jane@example.com"},
                "occurredAt": "2026-01-08T13:30:00.500Z",
            },
        }
    ]
    order_body = order["requests"][0]["body"]
    assert order["requests"][0]["path"] == "/v1/events/ecommerce/purchase"
    assert order_body["orderId"] == "o-1"
    assert order_body["occurredAt"] == "2026-01-08T12:45:00.000Z"
    assert order_body["items"] == [
        {
            "productId": "p-1",
            "productVariantId": "p-1",
            "price": [{"value": 19.99, "currency": "EUR"}],
            "name": "Mug",
            "quantity": 2,
        },
        {"productId": "s-2", "productVariantId": "s-2", "price": [{"value": 5, "currency": "EUR"}]},
    ]
    assert page["requests"][0]["body"]["properties"] == {"path": "/shop", "title": "Shop"}
    assert custom["requests"] == [
        {
            "method": "POST",
            "path": "/v1/events/custom",
            "body": {
                "type": "Signed Up",
                "user": {"email": "jane@example.com"},
                "properties": {"plan": "pro", "seats": 3},
                "externalEventId": "custom-1",
                "occurredAt": "2026-01-08T13:59:59.000Z",
            },
        }
    ]
    assert all(record["warnings"] == [] for record in (identify, viewed, order, page, custom))


def without_position(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k not in {"line", "index"}} for record in records]


def positions(records: list[dict[str, Any]]) -> list[tuple[int, int | None]]:
    return [(record["line"], record.get("index")) for record in records]


def test_json_array_gives_the_same_records_as_ndjson() -> None:
    as_array = transform(json.dumps(EVENTS).encode())
    by_line = transform(ndjson(EVENTS))
    assert without_position(as_array) == without_position(by_line)
    assert [outcome_of(record) for record in as_array] == OUTCOMES
    assert positions(as_array) == [(1, index) for index in range(len(EVENTS))]
    assert positions(by_line) == [(line, None) for line in range(1, len(EVENTS) + 1)]


def test_pretty_printed_json_array() -> None:
    records = transform(b"\n\n" + json.dumps(EVENTS, indent=2).encode() + b"\n")
    assert [outcome_of(record) for record in records] == OUTCOMES


def test_segment_batch_envelope_merges_its_context_into_the_items() -> None:
    envelope = {
        "batch": [
            {"type": "track", "event": "Signed Up", "messageId": "b-1", "userId": "u-1"},
            {
                "type": "track",
                "event": "Signed Up",
                "messageId": "b-2",
                "userId": "u-2",
                "context": {"ip": "192.0.2.1"},
            },
            {
                "type": "track",
                "event": "Signed Up",
                "messageId": "b-3",
                "context": {"traits": {"email": "own@example.com"}},
            },
        ],
        "context": {"traits": {"email": "batch@example.com"}},
        "sentAt": "2026-01-08T13:59:00Z",
    }
    records = transform(json.dumps(envelope).encode() + b"\n")
    assert [record["messageId"] for record in records] == ["b-1", "b-2", "b-3"]
    assert [record["outcome"] for record in records] == ["mapped"] * 3
    users = [record["requests"][0]["body"]["user"] for record in records]
    assert users == [
        {"email": "batch@example.com", "externalIdentifiers": {"clientUserId": "u-1"}},
        {"email": "batch@example.com", "externalIdentifiers": {"clientUserId": "u-2"}},
        {"email": "own@example.com"},
    ]


def test_batch_envelopes_on_ndjson_lines_and_in_an_array() -> None:
    first = {"batch": [CUSTOM, SCREEN], "context": {"library": {"name": "a"}}}
    second = {"batch": [ANONYMOUS]}
    expected = [("custom-1", "mapped", None), *OUTCOMES[5:7]]
    by_line = transform(ndjson([first, second]))
    in_array = transform(json.dumps([first, second]).encode())
    assert [outcome_of(record) for record in by_line] == expected
    assert without_position(by_line) == without_position(in_array)
    assert positions(by_line) == [(1, 0), (1, 1), (2, 0)]
    assert positions(in_array) == [(1, 0), (1, 1), (1, 2)]


def test_ndjson_lines_holding_arrays_of_events() -> None:
    # A line may hold a JSON array of events; that must not depend on which line it is.
    data = ndjson([[SCREEN], [ANONYMOUS, CUSTOM]])
    expected = [OUTCOMES[5], OUTCOMES[6], ("custom-1", "mapped", None)]
    assert [outcome_of(record) for record in transform(data)] == expected
    shifted = transform(ndjson([SCREEN, [ANONYMOUS, CUSTOM]]))
    assert [outcome_of(record) for record in shifted] == expected


def test_invalid_json_line_is_rejected_with_its_physical_line_number() -> None:
    data = (
        json.dumps(CUSTOM).encode()
        + b"\n"  # line 1
        + b"\n"  # line 2: blank
        + b'{"type": "track", "event": \n'  # line 3: broken
        + b"   \n"  # line 4: blank (spaces)
        + json.dumps(SCREEN).encode()
        + b"\n"  # line 5
        + b"[1, 2\n"  # line 6: broken
    )
    records = transform(data)
    assert [record["outcome"] for record in records] == [
        "mapped",
        "rejected",
        "skipped",
        "rejected",
    ]
    for record, line in ((records[1], 3), (records[3], 6)):
        assert set(record) == {*STOPPED_KEYS, "line"}
        assert record["messageId"] is None
        assert record["reason"] == "invalid_json"
        assert record["line"] == line
        assert record["message"].startswith(f"line {line}: not valid JSON")


def test_invalid_first_line_after_blank_lines() -> None:
    data = b"\n\r\n\nnot json at all\n" + json.dumps(CUSTOM).encode() + b"\n{\n"
    records = transform(data)
    assert [(record["outcome"], record.get("line")) for record in records] == [
        ("rejected", 4),
        ("mapped", 5),
        ("rejected", 6),
    ]
    assert records[0]["reason"] == records[2]["reason"] == "invalid_json"


def test_invalid_json_inside_a_pretty_printed_array_names_its_line() -> None:
    data = b"\n[\n" + json.dumps(CUSTOM).encode() + b",\n" + b'{"type": oops}\n]\n'
    records = transform(data)
    assert len(records) == 1
    assert records[0]["reason"] == "invalid_json"
    assert records[0]["line"] == 4


def test_bom_crlf_and_blank_lines_are_accepted() -> None:
    data = b"\xef\xbb\xbf" + ndjson([CUSTOM, SCREEN], newline=b"\r\n\r\n") + b"\r\n"
    records = transform(data)
    assert [outcome_of(record) for record in records] == [
        ("custom-1", "mapped", None),
        ("screen-1", "skipped", "unsupported_call_type"),
    ]


def test_bom_before_a_blank_first_line() -> None:
    data = b"\xef\xbb\xbf\r\n" + ndjson([CUSTOM], newline=b"\r\n") + b"\r\n{broken\r\n"
    records = transform(data)
    assert [(record["outcome"], record.get("line")) for record in records] == [
        ("mapped", 2),
        ("rejected", 4),
    ]


def test_bom_on_a_json_array() -> None:
    records = transform(b"\xef\xbb\xbf" + json.dumps([CUSTOM]).encode())
    assert [outcome_of(record) for record in records] == [("custom-1", "mapped", None)]


def test_pretty_printed_single_object_spanning_lines() -> None:
    records = transform(json.dumps(CUSTOM, indent=4).encode().replace(b"\n", b"\r\n"))
    assert records == transform(ndjson([CUSTOM]))
    assert len(records) == 1


def test_empty_input_gives_no_output() -> None:
    assert transform(b"") == []
    assert transform(b"\n \n\r\n") == []


def test_reads_stdin_by_default_and_with_a_dash() -> None:
    data = ndjson(EVENTS)
    with_dash = cli("transform", "--received-at", RECEIVED, "-", stdin=data)
    without = cli("transform", "--received-at", RECEIVED, stdin=data)
    assert with_dash.stdout == without.stdout
    assert [outcome_of(record) for record in records_of(with_dash)] == OUTCOMES


def test_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson(EVENTS))
    from_file = cli("transform", "--received-at", RECEIVED, str(path))
    from_stdin = cli("transform", "--received-at", RECEIVED, "-", stdin=ndjson(EVENTS))
    assert from_file.stdout == from_stdin.stdout
    assert from_file.stderr == b""


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attentive_router", "transform", "--received-at", RECEIVED, "-"],
        input=ndjson(EVENTS),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == cli("transform", "--received-at", RECEIVED, stdin=ndjson(EVENTS)).stdout


@pytest.mark.parametrize(
    "received_at",
    ["2026-01-08T14:00:00Z", "2026-01-08T15:00:00+01:00", "2026-01-08T14:00:00.000+00:00"],
)
def test_received_at_is_the_time_of_events_without_a_timestamp(received_at: str) -> None:
    event = {key: value for key, value in CUSTOM.items() if key != "timestamp"}
    result = cli("transform", "--received-at", received_at, "-", stdin=ndjson([event]))
    (record,) = records_of(result)
    assert record["outcome"] == "mapped"
    assert record["requests"][0]["body"]["occurredAt"] == RECEIVED_OUT


def test_received_at_defaults_to_now() -> None:
    event = {key: value for key, value in CUSTOM.items() if key != "timestamp"}
    (record,) = records_of(cli("transform", stdin=ndjson([event])))
    occurred = record["requests"][0]["body"]["occurredAt"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", occurred)
    assert occurred != RECEIVED_OUT


def summary_counts(stderr: str) -> dict[str, int]:
    """The ``name  count`` lines of the summary, by name."""
    counts = {}
    for line in stderr.splitlines():
        match = re.fullmatch(r"\s+(\S+)\s+([\d,]+)", line)
        if match:
            counts[match[1]] = int(match[2].replace(",", ""))
    return counts


def test_summary_counts_outcomes_and_reasons_on_stderr() -> None:
    data = ndjson(EVENTS) + b"{not json\n"
    plain = cli("transform", "--received-at", RECEIVED, "-", stdin=data)
    summary = cli("transform", "--received-at", RECEIVED, "--summary", "-", stdin=data)
    assert summary.stdout == plain.stdout, "--summary must not change stdout"
    assert plain.stderr == b""
    stderr = summary.stderr.decode()
    assert re.fullmatch(r"9 event\(s\) in [\d.,]+ s \([\d,]+ events/s\)", stderr.splitlines()[0])
    counts = summary_counts(stderr)
    assert counts["mapped"] == 5
    assert counts["skipped"] == 2
    assert counts["rejected"] == 2
    assert counts["unsupported_call_type"] == 1
    assert counts["no_identifier"] == 1
    assert counts["invalid_timestamp"] == 1
    assert counts["invalid_json"] == 1
    assert counts["/v1/events/custom"] == 2
    assert counts["/v1/identity-resolution/user-identifiers"] == 1


def test_summary_of_nothing() -> None:
    result = cli("transform", "--summary", "-", stdin=b"")
    assert result.stdout == b""
    assert summary_counts(result.stderr.decode()) == {"mapped": 0, "skipped": 0, "rejected": 0}


def test_progress_never_writes_to_stdout() -> None:
    data = ndjson(EVENTS)
    quiet = cli("transform", "--received-at", RECEIVED, "--progress", "never", stdin=data)
    loud = cli("transform", "--received-at", RECEIVED, "--progress", "always", stdin=data)
    assert quiet.stdout == loud.stdout
    assert quiet.stderr == b""


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_input_fails_with_one_line_on_stderr(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "no-such-file.ndjson" if kind == "missing" else tmp_path
    result = cli("transform", str(path), check=False)
    assert result.returncode != 0
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"attentive-router: cannot read {path}: ")
    assert "Traceback" not in lines[0]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_write_failure_is_not_reported_as_an_input_problem(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson(EVENTS * 2000))
    with Path("/dev/full").open("wb") as full:
        result = subprocess.run(
            [str(SCRIPT), "transform", "--received-at", RECEIVED, str(path)],
            stdout=full,
            stderr=subprocess.PIPE,
            check=False,
            timeout=120,
        )
    assert result.returncode != 0
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "No space left on device" in lines[0]
    assert "cannot read" not in lines[0], "the input was readable; the output was not writable"


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", ""])
def test_bad_received_at_is_a_usage_error(value: str) -> None:
    result = cli("transform", "--received-at", value, "-", stdin=ndjson([CUSTOM]), check=False)
    assert result.returncode == 2
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert f"argument --received-at: {value!r} is not an ISO 8601 timestamp" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("value", ["XX", "USA", "1"])
def test_bad_default_region_is_a_clear_error(value: str) -> None:
    result = cli("transform", "--default-region", value, "-", stdin=ndjson([CUSTOM]), check=False)
    assert result.returncode == 2
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert stderr.splitlines() == [
        (
            f"attentive-router: default_region {value!r} is not a region code phonenumbers knows "
            "(e.g. 'US', 'GB')"
        )
    ]


def test_default_region_reads_national_phone_numbers() -> None:
    only_phone = {**CUSTOM, "traits": {"phone": "07700 900123"}}
    (gb,) = transform(ndjson([only_phone]), "--default-region", "gb")
    assert gb["requests"][0]["body"]["user"] == {"phone": "+447700900123"}
    # Read as a US number it is unusable: dropped with a warning, or the event rejected.
    (us_only,) = transform(ndjson([only_phone]))
    assert outcome_of(us_only) == ("custom-1", "rejected", "no_usable_identifier")
    with_email = {**CUSTOM, "traits": {"phone": "07700 900123", "email": "jane@example.com"}}
    (us,) = transform(ndjson([with_email]))
    assert us["requests"][0]["body"]["user"] == {"email": "jane@example.com"}
    assert [warning["code"] for warning in us["warnings"]] == ["invalid_phone"]


def test_help_describes_the_output_format() -> None:
    result = cli("transform", "--help")
    text = result.stdout.decode()
    assert "one JSON line per input event, in input order" in text
    for key in ('"outcome": "mapped"', '"requests"', '"reason"', '"warnings"'):
        assert key in text
    for option in ("--received-at", "--summary", "--unnamed-track", "--default-region"):
        assert option in text
    top = cli("--help").stdout.decode()
    assert "transform" in top


def test_no_command_is_a_usage_error() -> None:
    result = cli(check=False)
    assert result.returncode == 2
    assert b"usage: attentive-router" in result.stderr


def test_unnamed_track_policy() -> None:
    (default,) = transform(ndjson([CUSTOM]))
    (skipped,) = transform(ndjson([CUSTOM]), "--unnamed-track", "skip")
    (named,) = transform(ndjson([PRODUCT_VIEWED]), "--unnamed-track", "skip")
    assert default["outcome"] == "mapped"
    assert outcome_of(skipped) == ("custom-1", "skipped", "unmapped_event")
    assert named["outcome"] == "mapped"


def test_strict_property_keys() -> None:
    event = {**CUSTOM, "properties": {"ok": 1, "bad|key": 2}}
    (lenient,) = transform(ndjson([event]))
    (strict,) = transform(ndjson([event]), "--strict-property-keys")
    assert lenient["outcome"] == "mapped"
    assert lenient["requests"][0]["body"]["properties"] == {"ok": 1}
    assert [warning["code"] for warning in lenient["warnings"]] == ["property_key_dropped"]
    assert outcome_of(strict) == ("custom-1", "rejected", "invalid_property_key")


def test_stale_events_policy() -> None:
    event = {**CUSTOM, "timestamp": "2026-01-07T00:00:00Z"}
    (sent,) = transform(ndjson([event]))
    (skipped,) = transform(ndjson([event]), "--stale-events", "skip")
    assert sent["outcome"] == "mapped"
    assert [warning["code"] for warning in sent["warnings"]] == ["stale_event"]
    assert outcome_of(skipped) == ("custom-1", "skipped", "stale_event")


def test_bad_option_value_is_a_usage_error() -> None:
    result = cli("transform", "--unnamed-track", "drop", "-", check=False)
    assert result.returncode == 2
    assert b"invalid choice: 'drop'" in result.stderr


def test_bundled_sample_events() -> None:
    """``make run``: the bundled samples transform cleanly and show every kind of outcome."""
    lines = [line for line in SAMPLES.read_bytes().splitlines() if line.strip()]
    result = cli("transform", "--summary", str(SAMPLES))
    records = records_of(result)
    assert len(records) == len(lines)
    assert {record["outcome"] for record in records} == {"mapped", "skipped", "rejected"}
    first = result.stderr.decode().splitlines()[0]
    assert re.fullmatch(rf"{len(lines)} event\(s\) in [\d.,]+ s \([\d,]+ events/s\)", first)
