"""Read and validate the rules table (``spec/rules.csv``) and the event table (``spec/events.csv``).

Validation reports every problem at once, each as ``file:line: column 'x': what is wrong``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Literal, cast

from attrs import frozen

Required = Literal["required", "one_of", "optional"]
REQUIRED_VALUES: tuple[str, ...] = ("required", "one_of", "optional")
TYPES: tuple[str, ...] = ("String", "Number", "Array", "Object")
CALLS: tuple[str, ...] = ("identify", "track", "page")
EXPRESSION_PREFIX = "Expression – "  # the doc's own wording, en dash included
INPUT_PATH = re.compile(r"(traits|properties)\.[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*")
TOP_LEVEL_INPUTS = frozenset(
    {"userId", "anonymousId", "messageId", "type", "event", "name", "properties"}
)
OUTPUT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
NAME = re.compile(r"[a-z][a-z0-9_]*")

RULE_COLUMNS = (
    "mapping",
    "doc_table",
    "output_key",
    "required",
    "type",
    "input",
    "function",
    "description",
)
EVENT_COLUMNS = ("mapping", "doc_table", "call", "event", "method", "path", "body", "doc_clue")


class SpecError(Exception):
    """The spec has problems; ``problems`` lists every one, ready to print."""

    def __init__(self, problems: list[str]) -> None:
        """Keep the problems."""
        super().__init__("\n".join(problems))
        self.problems = problems


@frozen
class Rule:
    """One row of the rules table: where one output key of one mapping comes from."""

    where: str
    mapping: str
    doc_table: int | None
    output_key: str
    required: Required
    type: str
    input: str
    function: str
    description: str

    @property
    def is_expression(self) -> bool:
        """True when the input is a hand-written expression rather than an input path."""
        return self.input.startswith(EXPRESSION_PREFIX)


@frozen
class Event:
    """One row of the event table: which Segment call a mapping takes and what it sends."""

    where: str
    mapping: str
    doc_table: int | None
    call: str
    event: str | None
    method: str
    path: str
    body: str
    doc_clue: str


@frozen
class Spec:
    """The whole validated spec."""

    events: tuple[Event, ...]
    rules: tuple[Rule, ...]

    def rules_of(self, mapping: str) -> tuple[Rule, ...]:
        """The rules of one mapping, in table order."""
        return tuple(rule for rule in self.rules if rule.mapping == mapping)


def _rows(
    text: str, name: str, columns: tuple[str, ...], problems: list[str]
) -> list[tuple[str, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != columns:
        problems.append(
            f"{name}:1: header must be {','.join(columns)}, not {','.join(reader.fieldnames or ())}"
        )
        return []
    rows = []
    for row in reader:
        where = f"{name}:{reader.line_num}"
        if None in row or any(value is None for value in row.values()):
            problems.append(f"{where}: expected {len(columns)} columns")
            continue
        rows.append((where, {key: value.strip() for key, value in row.items()}))
    return rows


def _doc_table(where: str, value: str, problems: list[str]) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 99:
        problems.append(f"{where}: column 'doc_table': {value!r} is not a table number")
        return None
    return int(value)


def _read_events(text: str, name: str, problems: list[str]) -> list[Event]:
    events = []
    seen: dict[str, str] = {}
    for where, row in _rows(text, name, EVENT_COLUMNS, problems):
        mapping = row["mapping"]
        if not NAME.fullmatch(mapping):
            problems.append(
                f"{where}: column 'mapping': {mapping!r} is not a lower_snake_case name"
            )
        elif mapping in seen:
            problems.append(
                f"{where}: column 'mapping': {mapping!r} is already defined at {seen[mapping]}"
            )
        seen.setdefault(mapping, where)
        if row["call"] not in CALLS:
            problems.append(
                f"{where}: column 'call': {row['call']!r} is not one of {', '.join(CALLS)}"
            )
        if (row["call"] == "track") != bool(row["event"]):
            problems.append(
                f"{where}: column 'event': a track mapping names its event (or *); "
                "other calls leave it empty"
            )
        if row["method"] != "POST":
            problems.append(f"{where}: column 'method': only POST is used, not {row['method']!r}")
        if not row["path"].startswith("/v1/"):
            problems.append(f"{where}: column 'path': {row['path']!r} does not start with /v1/")
        events.append(
            Event(
                where=where,
                mapping=mapping,
                doc_table=_doc_table(where, row["doc_table"], problems),
                call=row["call"],
                event=row["event"] or None,
                method=row["method"],
                path=row["path"],
                body=row["body"],
                doc_clue=row["doc_clue"],
            )
        )
    return events


def _read_rules(text: str, name: str, events: list[Event], problems: list[str]) -> list[Rule]:
    known = {event.mapping: event for event in events}
    rules = []
    seen: dict[tuple[str, str], str] = {}
    for where, row in _rows(text, name, RULE_COLUMNS, problems):
        mapping = row["mapping"]
        if mapping not in known:
            problems.append(f"{where}: column 'mapping': {mapping!r} is not in events.csv")
        key = row["output_key"]
        if not OUTPUT_KEY.fullmatch(key):
            problems.append(f"{where}: column 'output_key': {key!r} is not a dotted key")
        elif (mapping, key) in seen:
            problems.append(
                f"{where}: column 'output_key': {key!r} is already mapped at {seen[mapping, key]}"
            )
        seen.setdefault((mapping, key), where)
        if row["required"] not in REQUIRED_VALUES:
            problems.append(
                f"{where}: column 'required': {row['required']!r} is not one of "
                f"{', '.join(REQUIRED_VALUES)}"
            )
        if row["type"] not in TYPES:
            problems.append(
                f"{where}: column 'type': {row['type']!r} is not one of {', '.join(TYPES)}"
            )
        source = row["input"]
        if not source.startswith(EXPRESSION_PREFIX):
            root = source.split(".", 1)[0]
            if not INPUT_PATH.fullmatch(source) or (
                "." not in source and root not in TOP_LEVEL_INPUTS
            ):
                problems.append(
                    f"{where}: column 'input': {source!r} is neither an input path (traits.x, "
                    f"properties.x, {', '.join(sorted(TOP_LEVEL_INPUTS))}) nor "
                    f"'{EXPRESSION_PREFIX}...'"
                )
        if not NAME.fullmatch(row["function"]):
            problems.append(
                f"{where}: column 'function': {row['function']!r} is not a function name"
            )
        doc_table = _doc_table(where, row["doc_table"], problems)
        event = known.get(mapping)
        if event is not None and doc_table != event.doc_table:
            problems.append(
                f"{where}: column 'doc_table': {row['doc_table']!r} differs from events.csv's "
                f"{event.doc_table!r} for {mapping}"
            )
        rules.append(
            Rule(
                where=where,
                mapping=mapping,
                doc_table=doc_table,
                output_key=key,
                required=cast("Required", row["required"]),
                type=row["type"],
                input=source,
                function=row["function"],
                description=row["description"],
            )
        )
    mapped = {rule.mapping for rule in rules}
    problems.extend(
        f"{event.where}: mapping {event.mapping!r} has no rows in {name}"
        for event in events
        if event.mapping not in mapped
    )
    return rules


def parse_spec(
    events_text: str,
    rules_text: str,
    *,
    events_name: str = "events.csv",
    rules_name: str = "rules.csv",
) -> Spec:
    """Parse and validate both tables; raise ``SpecError`` listing every problem."""
    problems: list[str] = []
    events = _read_events(events_text, events_name, problems)
    rules = _read_rules(rules_text, rules_name, events, problems)
    if problems:
        raise SpecError(problems)
    return Spec(tuple(events), tuple(rules))


def load_spec(directory: Path) -> Spec:
    """Read ``events.csv`` and ``rules.csv`` from ``directory``."""
    return parse_spec(
        (directory / "events.csv").read_text(encoding="utf-8"),
        (directory / "rules.csv").read_text(encoding="utf-8"),
        events_name=str(directory / "events.csv"),
        rules_name=str(directory / "rules.csv"),
    )
