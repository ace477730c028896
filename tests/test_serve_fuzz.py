"""Fuzzing ``attentive-router serve`` over HTTP, then checking that nothing was lost.

One server delivers into one sandbox for the whole module. Hypothesis sends requests to every
ingest path: Segment-like batches and single calls (valid, hostile and arbitrary events), any
JSON value, random bytes; gzip'd or not, truncated or not; under any content type; with a
valid, unknown, malformed or missing write key. Each answer must be 200, a 4xx or 503 with a
well-formed JSON body. At the end, once delivery has settled, every event the server took
must have a final outcome, and nothing refused may have been stored.

Every JSON object sent gets a unique ``fuzzId`` so that its stored record can be found again,
whatever the server made of the rest of it.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from attrs import define, field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.intake import UNSTORABLE
from attentive_router._queue.interface import FINAL_STATES, Record, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.strategies import (  # noqa: E402
    any_events,
    arbitrary_events,
    hostile_events,
    json_values,
    valid_events,
)

EXAMPLES = 250
KEYS = {"wk_fuzz_main": "main", "wk_fuzz_alt": "alt"}
SINGLE_CALLS = ("track", "page", "identify", "screen", "group", "alias")
PATHS = ("/v1/batch", "/v1/import", *(f"/v1/{call}" for call in SINGLE_CALLS))
GOOD_TYPES = (
    "application/json",
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/json; charset=utf-8",
    None,
)
BAD_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "text/csv")
CODES = {
    400: {
        "invalid_json",
        "empty_body",
        "invalid_batch",
        "too_deep",
        "body_too_large",
        "invalid_gzip",
        "too_many_events",
        "invalid_timestamp",
        "not_an_object",
        "type_mismatch",
        "missing_id",
        "missing_event_name",
        "invalid_event_name",
        "invalid_id",
        "event_too_large",
        "invalid_string",
        "number_out_of_range",
        "not_json",
    },
    401: {"unauthorized"},
    415: {"unsupported_content_type", "unsupported_encoding"},
    503: {"storage_unavailable"},
}
SETTLE_TIMEOUT = 60.0
RAW_VALUES = (
    b'"a\\u0000b"',
    b'"\\ud83c\\udf89"',
    b"18446744073709551615",
    b"-9223372036854775808",
    b"1.7976931348623157e308",
    b"5e-324",
    b"-0.0",
    b'{"a": ' * 300 + b"1" + b"}" * 300,
    b"[" * 900 + b"]" * 900,
    b'{"a": ' * 960 + b"1" + b"}" * 960,
    b'{"a": ' * 1010 + b"1" + b"}" * 1010,
    b'"a\\ud800b"',
    b"1e400",
    b"-1e400",
    b"1180591620717411303424",
)
"""JSON texts spliced into an event as they are: what orjson would not write, or not this way."""
_PLACEHOLDER = "\x00raw\x00"

_ids = itertools.count()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(no_rate_limits=True) as process:
        yield process


@pytest.fixture(scope="module")
def queue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "queue.db"


@pytest.fixture(scope="module")
def server(sandbox: SandboxProcess, queue_path: Path) -> Iterator[ServeProcess]:
    keys = [f"{name}={key}" for key, name in KEYS.items()]
    args = ["--rate", "1000", "--identity-rate", "1000", "--log-level", "warning"]
    with ServeProcess(queue=queue_path, sandbox=sandbox, write_keys=keys, args=args) as process:
        yield process


# --- what is sent -----------------------------------------------------------------------------


@define
class Sent:
    """One request as generated, and what the test needs to know of it afterwards."""

    path: str
    body: bytes
    headers: dict[str, str]
    source: str | None
    """The source of a valid write key, or None when the request must not be accepted."""
    items: list[Any] | None
    """The events (batch items, or the single call's object), when the body is one we wrote."""
    clean: bool = False
    """Everything about it is right: the answer must be 200 without rejections."""
    bad_basic: bool = False
    bad_type: bool = False


def _tag(value: Any) -> Any:
    """``value`` with a fresh ``fuzzId`` if it is an object (nested objects are left alone)."""
    if isinstance(value, dict):
        return {**value, "fuzzId": f"fz-{next(_ids):07d}"}  # fixed width: same body lengths
    return value


MESSAGE_IDS = st.sampled_from(("unique", "unique", "unique", "absent", "hostile"))
HOSTILE_MESSAGE_IDS: st.SearchStrategy[Any] = st.sampled_from(
    (True, False, 1.5, "", " ", {"id": 1}, [], None)
)


@st.composite
def events(draw: st.DrawFn, clean: bool) -> Any:
    """An event (or something posing as one), tagged, with a unique messageId mostly."""
    if clean:
        event: Any = {
            "type": "track",
            "event": draw(st.sampled_from(("Signed Up", "Gift Card Redeemed", "Order Shipped"))),
            "userId": f"user-{draw(st.integers(0, 20))}",
            "properties": {"amount": draw(st.integers(0, 500))},
            "context": {"traits": {"email": "fuzz@example.com"}},
        }
    else:
        event = draw(
            st.one_of(
                valid_events(),
                hostile_events(max_depth=60),
                arbitrary_events(),
                any_events(max_depth=60),
            )
        )
    event = _tag(event)
    if isinstance(event, dict):
        choice = "unique" if clean else draw(MESSAGE_IDS)
        if choice == "unique":
            event["messageId"] = event["fuzzId"]
        elif choice == "absent":
            event.pop("messageId", None)
        else:
            event["messageId"] = draw(HOSTILE_MESSAGE_IDS)
    return event


ENVELOPE_FIELDS = {
    "context": st.one_of(
        st.just({"library": {"name": "analytics-python", "version": "2.3.3"}}),
        json_values(max_leaves=4),
    ),
    "integrations": st.one_of(st.just({"All": True}), json_values(max_leaves=3)),
    "sentAt": st.one_of(
        st.just("2026-01-08T14:00:00.000Z"),
        st.sampled_from(("soon", "", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z")),
        json_values(max_leaves=1),
    ),
}


@st.composite
def documents(draw: st.DrawFn, path: str, clean: bool) -> tuple[Any, list[Any] | None]:
    """The JSON document of a request to ``path``, and its events when it has any."""
    kind = "segment" if clean else draw(st.sampled_from(("segment", "segment", "segment", "any")))
    if kind == "any":
        value = _tag(draw(json_values(max_leaves=10)))
        if path in {"/v1/batch", "/v1/import"}:
            if isinstance(value, dict):
                value.pop("batch", None)  # a batch the test did not write
            return value, None
        return value, [value]
    if path in {"/v1/batch", "/v1/import"}:
        items = draw(st.lists(events(clean), max_size=1 if clean else 6))
        document: dict[str, Any] = {"batch": items}
        if not clean:
            for name, strategy in ENVELOPE_FIELDS.items():
                if draw(st.booleans()):
                    document[name] = draw(strategy)
        return document, items
    event = draw(events(clean))
    if isinstance(event, dict) and (clean or draw(st.booleans())):
        event.pop("type", None)  # single calls take their type from the path
    return event, [event]


AUTHS = st.sampled_from(
    (
        "basic-main",
        "basic-main",
        "basic-alt",
        "body-main",
        "body-alt",
        "basic-unknown",
        "basic-malformed",
        "bearer",
        "body-unknown",
        "none",
    )
)


@st.composite
def requests(draw: st.DrawFn) -> Sent:
    path = draw(st.sampled_from(PATHS))
    clean = draw(st.integers(0, 4)) == 0
    auth = "basic-main" if clean else draw(AUTHS)
    headers: dict[str, str] = {}
    body_kind = "json" if clean else draw(st.sampled_from(("json", "json", "json", "bytes")))
    items: list[Any] | None = None
    document: Any = None
    if body_kind == "json":
        document, items = draw(documents(path, clean))
    source: str | None = None
    key = {"main": "wk_fuzz_main", "alt": "wk_fuzz_alt", "unknown": "wk_nope"}.get(
        auth.rpartition("-")[2], ""
    )
    if auth.startswith("basic-") and auth != "basic-malformed":
        token = base64.b64encode(f"{key}:".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        source = KEYS.get(key)
    elif auth == "basic-malformed":
        headers["Authorization"] = "Basic " + draw(st.sampled_from(("!!", "===", "a b", "Zm9v")))
    elif auth == "bearer":
        headers["Authorization"] = "Bearer wk_fuzz_main"
    elif auth.startswith("body-") and isinstance(document, dict):
        document["writeKey"] = key
        source = KEYS.get(key)
    if body_kind == "json":
        raw = b""
        if not clean and items and isinstance(items[0], dict) and draw(st.integers(0, 3)) == 0:
            raw = draw(st.sampled_from(RAW_VALUES))
            items[0]["raw"] = _PLACEHOLDER
        body = orjson.dumps(document)
        if raw:
            body = body.replace(orjson.dumps(_PLACEHOLDER), raw)
        if not clean and draw(st.integers(0, 9)) == 0:
            body = draw(st.sampled_from((b"\xef\xbb\xbf", b" \r\n", b""))) + body + b"\n"
    else:
        body = draw(st.binary(max_size=300))
    bad_basic = auth in {"basic-unknown", "basic-malformed", "bearer"}
    if bad_basic:
        source = None
    content_type = (
        "application/json"
        if clean
        else draw(st.sampled_from((*GOOD_TYPES, *GOOD_TYPES, *BAD_TYPES)))
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    encoding = (
        "none" if clean else draw(st.sampled_from(("none", "none", "gzip", "truncated", "br")))
    )
    if encoding != "none":
        headers["Content-Encoding"] = "br" if encoding == "br" else "gzip"
        if encoding != "br":
            body = gzip.compress(body)
            if encoding == "truncated":
                body = body[: len(body) * draw(st.integers(0, 99)) // 100]
    return Sent(
        path=path,
        body=body,
        headers=headers,
        source=source,
        items=items,
        clean=clean,
        bad_basic=bad_basic,
        bad_type=content_type in BAD_TYPES,
    )


# --- checking answers and outcomes ------------------------------------------------------------


@define
class Ledger:
    """What the server said it took, by ``fuzzId``, and what it refused."""

    taken: dict[str, tuple[str, str | None]] = field(factory=dict)
    """fuzzId -> (source, reason it was rejected at ingest or None)."""
    refused: set[str] = field(factory=set)
    """fuzzIds of objects in requests answered with anything but 200."""
    loose: Counter[tuple[str, bytes]] = field(factory=Counter)
    """Batch items that are not objects, by source and JSON (they carry no fuzzId)."""
    statuses: Counter[int] = field(factory=Counter)


def _fuzz_ids(items: list[Any] | None) -> list[str | None]:
    return [item.get("fuzzId") if isinstance(item, dict) else None for item in (items or [])]


def check_answer(sent: Sent, status: int, answer: Any, ledger: Ledger) -> None:
    ledger.statuses[status] += 1
    assert status == 200 or 400 <= status < 500 or status == 503, (status, answer)
    assert isinstance(answer, dict), answer
    if status != 200:
        assert set(answer) == {"success", "code", "message"}, answer
        assert answer["success"] is False
        assert answer["code"] in CODES.get(status, set()), (status, answer)
        assert isinstance(answer["message"], str)
        assert answer["message"]
        ledger.refused.update(i for i in _fuzz_ids(sent.items) if i is not None)
        if sent.bad_type:
            assert (status, answer["code"]) == (415, "unsupported_content_type")
        elif sent.bad_basic:
            assert (status, answer["code"]) == (401, "unauthorized")
        assert not sent.clean, (status, answer)
        return
    assert sent.source is not None, "accepted without a valid write key"
    assert not sent.bad_type
    assert answer["success"] is True
    rejected = answer.get("rejected", [])
    assert set(answer) == ({"success", "rejected"} if rejected else {"success"}), answer
    assert not (sent.clean and rejected), answer
    items = sent.items
    assert items is not None, "a body the test did not write was accepted"
    reasons: dict[int, str] = {}
    for entry in rejected:
        assert set(entry) == {"index", "reason", "message"}
        assert isinstance(entry["index"], int)
        assert 0 <= entry["index"] < len(items)
        assert entry["index"] not in reasons
        assert isinstance(entry["reason"], str)
        assert entry["reason"]
        assert isinstance(entry["message"], str)
        reasons[entry["index"]] = entry["reason"]
    for index, (item, fuzz_id) in enumerate(zip(items, _fuzz_ids(items), strict=True)):
        if fuzz_id is None:
            assert index in reasons, "a batch item that is not an object was accepted"
            ledger.loose[sent.source, orjson.dumps(item)] += 1
        else:
            assert fuzz_id not in ledger.taken
            ledger.taken[fuzz_id] = (sent.source, reasons.get(index))


def read_all(path: Path) -> list[Record]:
    queue = SQLiteQueue(path)
    try:
        found: list[Record] = []
        while batch := queue.records(limit=1000, after=found[-1].id if found else 0):
            found.extend(batch)
        return found
    finally:
        queue.close()


def wait_until_settled(path: Path) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        queue = SQLiteQueue(path)
        try:
            counts = queue.counts()
        finally:
            queue.close()
        if counts[State.QUEUED] + counts[State.IN_FLIGHT] == 0:
            return
        assert time.monotonic() < deadline, f"not settled after {SETTLE_TIMEOUT:g} s: {counts}"
        time.sleep(0.1)


def fuzz_id_of(record: Record) -> str | None:
    try:
        event = orjson.loads(record.event)
    except orjson.JSONDecodeError:
        try:  # an item kept as ASCII JSON with a lone surrogate, which orjson refuses
            event = json.loads(record.event)
        except (ValueError, RecursionError):  # a request body kept whole (found by its bytes)
            return None
    value = event.get("fuzzId") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def metric_totals(server: ServeProcess) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def match_bodies(
    ledger: Ledger, by_fuzz_id: dict[str, list[Record]], untagged: list[Record]
) -> None:
    """Find the rejected items stored as their whole request body (moving them out of
    ``untagged``): those that cannot be written back as JSON (past the writers' nesting, a
    number beyond a double), whatever else was wrong with them."""
    for fuzz_id, (_, reason) in ledger.taken.items():
        if fuzz_id in by_fuzz_id or reason is None:
            continue
        marker = orjson.dumps({"fuzzId": fuzz_id})[1:-1]
        found = next(
            (
                r
                for r in untagged
                if r.key.startswith(UNSTORABLE) and r.reason == reason and marker in r.event
            ),
            None,
        )
        if found is not None:
            untagged.remove(found)
            by_fuzz_id[fuzz_id] = [found]


# --- the test ---------------------------------------------------------------------------------


def test_fuzzed_requests_get_proper_answers_and_every_taken_event_an_outcome(
    server: ServeProcess, queue_path: Path
) -> None:
    ledger = Ledger()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(sent=requests())
    def exchange(sent: Sent) -> None:
        response = server.post(sent.path, content=sent.body, headers=sent.headers)
        assert response.headers["content-type"] == "application/json", response.text
        check_answer(sent, response.status_code, orjson.loads(response.content), ledger)

    exchange()
    assert ledger.statuses[200] >= EXAMPLES // 10, ledger.statuses
    assert ledger.taken, "no event was taken"

    wait_until_settled(queue_path)
    records = read_all(queue_path)
    by_fuzz_id: dict[str, list[Record]] = {}
    untagged: list[Record] = []
    for record in records:
        assert record.state in FINAL_STATES, record
        if record.state is not State.DELIVERED:
            assert record.reason, record
            assert record.message, record
        fuzz_id = fuzz_id_of(record)
        if fuzz_id is None:
            untagged.append(record)
        else:
            by_fuzz_id.setdefault(fuzz_id, []).append(record)

    match_bodies(ledger, by_fuzz_id, untagged)
    # Nothing refused was stored; everything taken was stored once, with its ingest verdict.
    assert not ledger.refused & set(by_fuzz_id)
    assert set(by_fuzz_id) == set(ledger.taken), set(ledger.taken) - set(by_fuzz_id)
    for fuzz_id, (source, reason) in ledger.taken.items():
        [record] = by_fuzz_id[fuzz_id]
        assert record.source == source, (fuzz_id, record)
        if reason is not None:
            assert (record.state, record.reason) == (State.REJECTED, reason), (fuzz_id, record)
            assert record.attempts == 0
        elif record.state is State.DELIVERED:
            assert record.attempts >= 1
    # Items that are not objects: one record per distinct value and source, the rest duplicates.
    loose = Counter((r.source, r.event) for r in untagged)
    assert set(loose) == set(ledger.loose), (loose, ledger.loose)
    assert all(count == 1 for count in loose.values())
    assert all(r.state is State.REJECTED and r.reason == "not_an_object" for r in untagged)
    # The server's own counts agree.
    totals = metric_totals(server)
    received = totals["attentive_router_events_received_total"]
    duplicates = totals["attentive_router_events_duplicate_total"]
    assert received == len(ledger.taken) + sum(ledger.loose.values())
    assert duplicates == sum(ledger.loose.values()) - len(ledger.loose)
    assert len(records) == received - duplicates
    assert totals["attentive_router_queue_depth"] == 0
    assert totals["attentive_router_delivery_paused"] == 0
