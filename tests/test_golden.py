"""Golden fixtures: one Segment event each, with the outcome worked out by hand from the rules.

``tests/fixtures/golden/<case>/`` holds ``input.json`` (the event, any JSON value),
``expected.json`` (the outcome) and optionally ``config.json`` (``Config`` overrides; its
``filters`` object holds the ``EventFilter`` fields, its lists the patterns). The
expected outputs are derived from the integration doc, the mapping decisions and the rules
table, not recorded from the router, so they are an independent oracle for the transform.

Besides comparing outcomes, the tests check that the fixtures keep up with the code: every
mapping of ``spec/events.csv`` has a fixture that fills every output key of its rules, every
reason code and warning code the source can produce has a fixture, and every expected body
satisfies the project's JSON Schema.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen
from jsonschema import Draft202012Validator

import attentive_router
from attentive_router import Config, Context, Mapped, Outcome, Skipped
from attentive_router._transform.options import EventFilter

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
SPEC = ROOT / "spec"
PACKAGE = ROOT / "src" / "attentive_router"
RECEIVED_AT = datetime(2026, 1, 8, 14, 0, tzinfo=UTC)

STOP_CODE = re.compile(r"\b(?:Rejected|Skipped)\(\s*\"([a-z_]+)\"")
WARNING_CODE = re.compile(r"\b(?:TransformWarning\(|_warn\(\s*\w+,)\s*\"([a-z_]+)\"")


@frozen
class Case:
    """One golden fixture directory."""

    name: str
    event: Any
    expected: dict[str, Any]
    config: dict[str, Any]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _load(folder: Path) -> Case:
    config_file = folder / "config.json"
    config = _read_json(config_file) if config_file.exists() else {}
    return Case(
        folder.name, _read_json(folder / "input.json"), _read_json(folder / "expected.json"), config
    )


CASES = [_load(folder) for folder in sorted(GOLDEN.iterdir()) if folder.is_dir()]
MAPPED_CASES = [case for case in CASES if case.expected["outcome"] == "mapped"]


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (SPEC / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


EVENT_ROWS = _csv_rows("events.csv")
RULE_ROWS = _csv_rows("rules.csv")
NAMED_TRACK_EVENTS = frozenset(
    row["event"] for row in EVENT_ROWS if row["call"] == "track" and row["event"] != "*"
)


def _body_titles() -> dict[str, str]:
    titles: dict[str, str] = {}
    for row in EVENT_ROWS:
        assert titles.setdefault(row["path"], row["body"]) == row["body"], row["path"]
    return titles


BODY_TITLES = _body_titles()


def _config(overrides: dict[str, Any]) -> Config:
    options = dict(overrides)
    if "filters" in options:
        options["filters"] = EventFilter(**options["filters"])
    return Config(**options)


def _run(case: Case) -> Outcome:
    ctx = Context(received_at=RECEIVED_AT, config=_config(case.config))
    return attentive_router.route(case.event, ctx)


def _integral(value: Any) -> Any:
    """``value`` with whole floats written as integers: 25.0 and 25 are the same JSON number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_integral(inner) for inner in value]
    return value


def _assert_same_json(actual: Any, expected: Any) -> None:
    actual, expected = _integral(actual), _integral(expected)
    assert actual == expected
    # Python equates True with 1; the JSON texts do not.
    assert json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 40
    for case in CASES:
        if case.expected["outcome"] == "mapped":
            assert set(case.expected) == {"outcome", "requests", "warnings"}, case.name
            assert case.expected["requests"], case.name
        else:
            assert case.expected["outcome"] in {"skipped", "rejected"}, case.name
            # A skip may carry warnings (a consent preference that is not a boolean).
            assert set(case.expected) - {"warnings"} == {
                "outcome",
                "reason",
                "message_contains",
            }, case.name
            assert case.expected["message_contains"].strip(), case.name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_route_gives_the_golden_outcome(case: Case) -> None:
    outcome = _run(case)
    expected = case.expected
    record = attentive_router.to_record(outcome, case.event)
    assert record["outcome"] == expected["outcome"], record
    if isinstance(outcome, Mapped):
        requests = [
            {"method": r.method, "path": r.path, "body": attentive_router.to_json(r.body)}
            for r in outcome.requests
        ]
        _assert_same_json(requests, expected["requests"])
        assert [w.code for w in outcome.warnings] == expected["warnings"], outcome.warnings
    else:
        assert outcome.reason == expected["reason"], outcome.message
        assert expected["message_contains"] in outcome.message
        warnings = outcome.warnings if isinstance(outcome, Skipped) else ()
        assert [w.code for w in warnings] == expected.get("warnings", []), warnings


def _expected_requests() -> Iterator[tuple[str, int, dict[str, Any]]]:
    for case in MAPPED_CASES:
        for index, request in enumerate(case.expected["requests"]):
            yield case.name, index, request


EXPECTED_REQUESTS = list(_expected_requests())


@pytest.mark.parametrize(
    "request_",
    [request for _name, _index, request in EXPECTED_REQUESTS],
    ids=[f"{name}-{index}" for name, index, _request in EXPECTED_REQUESTS],
)
def test_expected_bodies_satisfy_the_schema(request_: dict[str, Any]) -> None:
    assert request_["method"] == "POST"
    title = BODY_TITLES[request_["path"]]
    validator = Draft202012Validator(attentive_router.body_schema(title))
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(request_["body"])
    ]
    assert errors == []


def _call_and_event(case: Case) -> tuple[Any, Any]:
    if not isinstance(case.event, dict):
        return None, None
    return case.event.get("type"), case.event.get("event")


def _covers(case: Case, row: dict[str, str]) -> list[dict[str, Any]]:
    """The expected bodies of ``case`` that the mapping of ``row`` produced."""
    call, event = _call_and_event(case)
    if call != row["call"]:
        return []
    if row["call"] == "track":
        if row["event"] == "*":
            if event in NAMED_TRACK_EVENTS:
                return []
        elif event != row["event"]:
            return []
    bodies = [
        request["body"]
        for request in case.expected["requests"]
        if (request["method"], request["path"]) == (row["method"], row["path"])
    ]
    if row["body"] == "CustomEventsRequest":
        wanted = "page" if row["call"] == "page" else event
        bodies = [body for body in bodies if body.get("type") == wanted]
    return bodies


def _has_key(body: dict[str, Any], dotted: str) -> bool:
    value: Any = body
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


@pytest.mark.parametrize("row", EVENT_ROWS, ids=[row["mapping"] for row in EVENT_ROWS])
def test_every_mapping_has_a_fixture_filling_every_output_key(row: dict[str, str]) -> None:
    bodies = [body for case in MAPPED_CASES for body in _covers(case, row)]
    assert bodies, f"no golden fixture produces mapping {row['mapping']}"
    keys = [rule["output_key"] for rule in RULE_ROWS if rule["mapping"] == row["mapping"]]
    assert keys, f"rules.csv has no rows for {row['mapping']}"
    best = max(bodies, key=lambda body: sum(_has_key(body, key) for key in keys))
    assert [key for key in keys if not _has_key(best, key)] == []


def _source_texts() -> dict[str, str]:
    files = sorted(PACKAGE.rglob("*.py"))
    return {
        path.relative_to(PACKAGE).as_posix(): path.read_text(encoding="utf-8") for path in files
    }


def _missing_reasons(source: str) -> set[str]:
    """The reason codes ``mapping.missing`` assigns to ``reason`` (both branches of its ``if``)."""
    function = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "missing"
    )
    codes: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "reason" for target in node.targets
        ):
            pending: list[ast.expr] = [node.value]
            while pending:
                value = pending.pop()
                if isinstance(value, ast.IfExp):
                    pending.extend((value.body, value.orelse))
                elif isinstance(value, ast.Constant) and isinstance(value.value, str):
                    codes.add(value.value)
    return codes


def _stop_codes() -> set[str]:
    texts = _source_texts()
    codes = {code for text in texts.values() for code in STOP_CODE.findall(text)}
    if "missing(" in texts["_transform/generated/transforms.py"]:
        codes |= _missing_reasons(texts["_transform/mapping.py"])
    return codes


def test_the_code_scan_finds_the_reason_codes() -> None:
    # Guards the coverage test below against passing on a scan that found nothing.
    codes = _stop_codes()
    assert {"no_identifier", "invalid_timestamp", "no_usable_identifier"} <= codes
    assert "missing_required_field" in codes


def test_every_reason_code_has_a_fixture() -> None:
    covered = {case.expected["reason"] for case in CASES if "reason" in case.expected}
    codes = _stop_codes()
    assert sorted(codes - covered) == []
    assert sorted(covered - codes) == []


def test_every_warning_code_has_a_fixture() -> None:
    codes = {code for text in _source_texts().values() for code in WARNING_CODE.findall(text)}
    assert {"invalid_phone", "stale_event", "client_user_id_only"} <= codes
    covered = {code for case in CASES for code in case.expected.get("warnings", ())}
    assert sorted(codes - covered) == []
    assert sorted(covered - codes) == []
