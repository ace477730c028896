"""A small interpreter of the rules table, used only by the tests and the benchmark.

It reads ``spec/events.csv`` and ``spec/rules.csv`` with the ``csv`` module and turns every
mapping into a transform with the signature of the generated ones. Nothing is compiled ahead:
each event walks the mapping's rows, looks each function up by name, reads the input path,
then assembles the JSON body from the dotted output keys and builds the typed body with the
project's converter. The tests check that routing with these transforms gives the same
outcomes as routing with the generated module; the benchmark uses it as the baseline.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Any

import attentive_router
from attentive_router import body_schema, converter
from attentive_router._transform import expressions as _expressions
from attentive_router._transform import values as _values
from attentive_router._transform.mapping import Mapping, missing
from attentive_router._transform.models import Body
from attentive_router._transform.options import Context
from attentive_router._transform.outcome import Rejected, Skipped, TransformWarning
from attentive_router._transform.router import Dispatch, build_dispatch
from attentive_router._transform.source import Source

SPEC_DIR = Path(__file__).parent.parent / "spec"
EXPRESSION_PREFIX = "Expression – "


class Row:
    """One row of ``spec/rules.csv``, as read (only the columns the interpreter needs)."""

    __slots__ = ("function", "input", "output_key", "required")

    def __init__(self, output_key: str, required: str, input_: str, function: str) -> None:
        self.output_key = output_key
        self.required = required
        self.input = input_
        self.function = function

    @property
    def is_expression(self) -> bool:
        return self.input.startswith(EXPRESSION_PREFIX)

    @property
    def shown_input(self) -> str:
        """The input as a ``missing`` message names it: a path, or ``function()``."""
        return f"{self.function}()" if self.is_expression else self.input


def read_input(src: Source, path: str) -> Any:
    """Read an input path: ``traits.X``, ``properties.X``, ``properties`` or a top-level name."""
    if "." in path:
        root, key = path.split(".", 1)
        if root == "traits":
            return src.traits.get(key)
        if root == "properties":
            return src.properties.get(key)
        msg = f"unknown input root {root!r} in {path!r}"
        raise ValueError(msg)
    if path == "properties":
        return src.properties
    return src.event.get(path)


def _plain(value: Any) -> Any:
    """JSON form of a row's result: tuples of model values are unstructured, the rest kept."""
    if isinstance(value, tuple):
        return converter.unstructure(value)
    return value


def _required_keys(body_name: str) -> tuple[str, ...]:
    definition = body_schema(body_name)["$defs"][body_name]
    return tuple(definition.get("required", ()))


class InterpretedTransform:
    """A transform that interprets the rows of one mapping on every call."""

    def __init__(self, name: str, body_name: str, rows: tuple[Row, ...]) -> None:
        self.name = name
        self.body_name = body_name
        self.body_class: type[Body] = getattr(attentive_router, body_name)
        self.required_keys = _required_keys(body_name)
        self.rows = rows

    def __repr__(self) -> str:
        return f"InterpretedTransform({self.name!r}, {self.body_name!r}, {len(self.rows)} rows)"

    def __call__(
        self, src: Source, ctx: Context, warnings: list[TransformWarning]
    ) -> Body | Rejected | Skipped:
        results: list[tuple[str, Any]] = []
        for row in self.rows:
            if row.is_expression:
                expression = getattr(_expressions, row.function)
                result = expression(src, ctx, warnings)
            else:
                value_function = getattr(_values, row.function)
                result = value_function(read_input(src, row.input), row.input, ctx, warnings)
            if isinstance(result, Rejected | Skipped):
                return result
            if row.required == "required" and result is None:
                return missing(row.output_key, row.input, warnings)
            results.append((row.output_key, result))
        document: dict[str, Any] = {}
        for output_key, result in results:
            if result is None:
                continue
            *parents, leaf = output_key.split(".")
            node = document
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = _plain(result)
        for key in self.required_keys:
            if key not in document:
                inputs = ", ".join(
                    row.shown_input for row in self.rows if row.output_key.split(".")[0] == key
                )
                return missing(key, inputs, warnings)
        body: Body = converter.structure(document, self.body_class)
        return body


def _read_csv(name: str) -> list[dict[str, str]]:
    with (SPEC_DIR / name).open(encoding="utf-8", newline="") as handle:
        return [
            {key: value.strip() for key, value in row.items()} for row in csv.DictReader(handle)
        ]


@cache
def interpreted_mappings() -> tuple[Mapping, ...]:
    """One ``Mapping`` per row of ``spec/events.csv`` (same order), each with its interpreter."""
    rules = _read_csv("rules.csv")
    mappings = []
    for event in _read_csv("events.csv"):
        rows = tuple(
            Row(rule["output_key"], rule["required"], rule["input"], rule["function"])
            for rule in rules
            if rule["mapping"] == event["mapping"]
        )
        mappings.append(
            Mapping(
                name=event["mapping"],
                doc_table=int(event["doc_table"]) if event["doc_table"] else None,
                call=event["call"],
                event=event["event"] or None,
                method=event["method"],
                path=event["path"],
                transform=InterpretedTransform(event["mapping"], event["body"], rows),
            )
        )
    return tuple(mappings)


@cache
def interpreted_dispatch() -> Dispatch:
    """The router's dispatch table over the interpreted mappings."""
    return build_dispatch(interpreted_mappings())
