"""Resolve the validated spec against the JSON Schema and the hand-written functions.

Produces the plan the templates render: for each mapping, the value steps (one per rule), the
objects assembled from them (bottom-up), and the body. Every problem is reported at once:
an output key Attentive's body does not have, a type that contradicts the schema, a function
that does not exist or has the wrong signature, a required body field no rule produces.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from codegen.spec import Event, Rule, Spec, SpecError

VALUE_PARAMS = ("value", "field", "ctx", "warnings")
EXPRESSION_PARAMS = ("src", "ctx", "warnings")
SCHEMA_TYPES = {
    "String": ("string",),
    "Number": ("number", "integer"),
    "Array": ("array",),
    "Object": ("object",),
}
RETURN_TOKENS = {
    "String": ("str",),
    "Number": ("int", "float"),
    "Array": ("tuple", "list"),
    "Object": ("JSONObject", "dict"),
}
STOP_TYPES = ("Rejected", "Skipped")
_RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"src", "ctx", "warnings"}


@frozen
class Signature:
    """A hand-written function as the generator sees it (read with ``ast``)."""

    name: str
    params: tuple[str, ...]
    returns: str

    @property
    def may_stop(self) -> bool:
        """True when it can return a Rejected or Skipped outcome."""
        return any(re.search(rf"\b{name}\b", self.returns) for name in STOP_TYPES)

    @property
    def may_be_none(self) -> bool:
        """True when it can return None (or Any)."""
        return bool(re.search(r"\bNone\b|\bAny\b", self.returns))


def read_functions(path: Path) -> dict[str, Signature]:
    """Public top-level functions of a module, by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            params = tuple(arg.arg for arg in node.args.args)
            returns = ast.unparse(node.returns) if node.returns is not None else ""
            found[node.name] = Signature(node.name, params, returns)
    return found


def read_markers(path: Path) -> dict[str, frozenset[str]]:
    """Module-level ``NAME = frozenset({...})`` constants of function names (read with ``ast``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "frozenset"
            and len(node.value.args) == 1
            and isinstance(node.value.args[0], ast.Set)
        ):
            names = [elt.value for elt in node.value.args[0].elts if isinstance(elt, ast.Constant)]
            found[node.targets[0].id] = frozenset(str(name) for name in names)
    return found


SHORTCUTS = {
    "KEEPS_NONBLANK_STRINGS": "nonblank_str",
    "PASSES_THROUGH": "identity",
    "ABSENT_FOR_NONE": "absent",
}
"""Marker constants of ``values.py`` and the shortcut the template takes for their functions."""


def read_classes(path: Path) -> dict[str, tuple[str, ...]]:
    """Top-level classes of a module with their annotated attribute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.name: tuple(
            item.target.id
            for item in node.body
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
        )
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


def snake(name: str) -> str:
    """``externalIdentifiers`` → ``external_identifiers``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def variable(output_key: str) -> str:
    """The one sanitising function for generated identifiers: a safe local variable name."""
    name = "_".join(snake(part) for part in output_key.split("."))
    name = re.sub(r"\W", "_", name)
    return f"{name}_" if name in _RESERVED else name


class Names:
    """Unique local variable names for one generated function, stable in the order asked."""

    def __init__(self) -> None:
        """Start with no names taken."""
        self._by_key: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, key: str) -> str:
        """The variable of ``key`` (an output key, or a helper's own key)."""
        if key not in self._by_key:
            base = candidate = variable(key)
            suffix = 2
            while candidate in self._taken:
                candidate = f"{base}_{suffix}"
                suffix += 1
            self._taken.add(candidate)
            self._by_key[key] = candidate
        return self._by_key[key]


def python_input(source: str) -> str:
    """Python source that reads an input path from ``src``."""
    if "." in source:
        root, key = source.split(".", 1)
        return f"src.{root}.get({key!r})"
    if source == "properties":
        return "src.properties"
    return f"src.event.get({source!r})"


@frozen
class Step:
    """One rule rendered: ``var = call`` plus the checks that follow it."""

    rule: Rule
    var: str
    call: str
    stops: bool
    required_check: bool
    shortcut: str = ""
    """``nonblank_str``, ``identity`` or ``absent`` when the value need not (always) go through
    the function."""
    read: str = ""
    """Python source reading the input (for value rows)."""
    raw: str = ""
    """Variable holding the input before a ``nonblank_str`` or ``absent`` shortcut decides."""


@frozen
class Part:
    """An object assembled from steps and other parts (``user``, ``properties``)."""

    var: str
    output_key: str
    class_name: str | None
    fields: tuple[tuple[str, str], ...]
    """(attribute name for a class, JSON key for a plain object; variable)."""
    scratch: str
    """Variable a plain object is filled in before it becomes ``var``."""


@frozen
class Check:
    """A body field the schema requires and that may come out empty."""

    var: str
    output_key: str
    inputs: str


@frozen
class MappingPlan:
    """Everything the template needs for one generated function."""

    event: Event
    steps: tuple[Step, ...]
    parts: tuple[Part, ...]
    checks: tuple[Check, ...]
    body_class: str
    body_fields: tuple[tuple[str, str], ...]


@frozen
class Plan:
    """The plan of the whole module."""

    mappings: tuple[MappingPlan, ...]


class Schema:
    """Navigation of the project's JSON Schema document by output key."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        """Keep the document."""
        self.defs: Mapping[str, Any] = document["$defs"]

    def resolve(self, node: Mapping[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` and merge ``allOf`` into one flat node."""
        merged: dict[str, Any] = {}
        if "$ref" in node:
            merged.update(self.resolve(self.defs[node["$ref"].rsplit("/", 1)[-1]]))
        for part in node.get("allOf", ()):
            for key, value in self.resolve(part).items():
                merged.setdefault(key, value)
        merged.update({key: value for key, value in node.items() if key not in {"$ref", "allOf"}})
        return merged

    def walk(self, title: str, output_key: str) -> list[dict[str, Any]] | str:
        """Nodes along ``output_key`` from the body ``title``; a message if it leaves the schema."""
        node = self.resolve(self.defs[title])
        nodes = [node]
        for part in output_key.split("."):
            properties = node.get("properties", {})
            if part in properties:
                node = self.resolve(properties[part])
            elif isinstance(node.get("additionalProperties"), dict) or node.get("free"):
                node = {"free": True}
            else:
                return f"{title} has no field {output_key!r} (no {part!r} here)"
            nodes.append(node)
        return nodes


def _types_of(node: Mapping[str, Any]) -> tuple[str, ...]:
    declared = node.get("type", ())
    return (declared,) if isinstance(declared, str) else tuple(declared)


def _check_rule(
    rule: Rule,
    event: Event,
    schema: Schema,
    values: dict[str, Signature],
    expressions: dict[str, Signature],
    problems: list[str],
) -> Signature | None:
    nodes = schema.walk(event.body, rule.output_key)
    if isinstance(nodes, str):
        problems.append(f"{rule.where}: column 'output_key': {nodes}")
    else:
        leaf = nodes[-1]
        if not leaf.get("free") and "type" in leaf:
            allowed = SCHEMA_TYPES[rule.type]
            if not set(allowed) & set(_types_of(leaf)):
                problems.append(
                    f"{rule.where}: column 'type': {rule.type} contradicts the schema, which "
                    f"says {event.body}.{rule.output_key} is {'/'.join(_types_of(leaf))}"
                )
    catalogue, params, module = (
        (expressions, EXPRESSION_PARAMS, "expressions.py")
        if rule.is_expression
        else (values, VALUE_PARAMS, "values.py")
    )
    signature = catalogue.get(rule.function)
    if signature is None:
        problems.append(
            f"{rule.where}: column 'function': no function {rule.function!r} in {module}"
        )
        return None
    if signature.params != params:
        problems.append(
            f"{rule.where}: column 'function': {module}:{rule.function} takes "
            f"({', '.join(signature.params)}), expected ({', '.join(params)})"
        )
        return None
    if not re.search(r"\bAny\b", signature.returns) and not any(
        re.search(rf"\b{token}\b", signature.returns) for token in RETURN_TOKENS[rule.type]
    ):
        problems.append(
            f"{rule.where}: column 'function': {rule.function} returns {signature.returns}, "
            f"which is not a {rule.type}"
        )
    return signature


def _plan_mapping(
    event: Event,
    rules: tuple[Rule, ...],
    schema: Schema,
    classes: dict[str, tuple[str, ...]],
    values: dict[str, Signature],
    expressions: dict[str, Signature],
    shortcuts: dict[str, str],
    problems: list[str],
) -> MappingPlan | None:
    if event.body not in schema.defs or event.body not in classes:
        problems.append(
            f"{event.where}: column 'body': {event.body!r} must be both a schema definition and a "
            "model class"
        )
        return None
    steps: list[Step] = []
    names = Names()
    keys = {rule.output_key for rule in rules}
    for rule in rules:
        if any(rule.output_key.startswith(f"{other}.") for other in keys):
            problems.append(
                f"{rule.where}: column 'output_key': {rule.output_key!r} lies inside another "
                "mapped key"
            )
        signature = _check_rule(rule, event, schema, values, expressions, problems)
        if signature is None:
            continue
        var = names(rule.output_key)
        if rule.is_expression:
            call, shortcut, read, raw = f"_x.{rule.function}(src, ctx, warnings)", "", "", ""
        else:
            shortcut = shortcuts.get(rule.function, "")
            read = python_input(rule.input)
            raw = names(f"{rule.output_key} raw") if shortcut in {"nonblank_str", "absent"} else ""
            call = f"_v.{rule.function}({raw or read}, {rule.input!r}, ctx, warnings)"
        steps.append(
            Step(
                rule=rule,
                var=var,
                call=call,
                stops=signature.may_stop,
                required_check=rule.required == "required" and signature.may_be_none,
                shortcut=shortcut,
                read=read,
                raw=raw,
            )
        )
    # Assemble objects bottom-up: every proper prefix of an output key is an object.
    children: dict[str, dict[str, str]] = {}
    for step in steps:
        parts = step.rule.output_key.split(".")
        for depth in range(len(parts)):
            parent = ".".join(parts[:depth])
            child = ".".join(parts[: depth + 1])
            children.setdefault(parent, {})[parts[depth]] = names(child)
    made: list[Part] = []
    for prefix in sorted((key for key in children if key), key=lambda key: (-key.count("."), key)):
        nodes = schema.walk(event.body, prefix)
        if isinstance(nodes, str):
            continue
        title = nodes[-1].get("title")
        if title is not None and title not in classes:
            problems.append(
                f"{event.where}: schema object {title!r} has no model class in models.py"
            )
            continue
        fields = tuple((snake(key) if title else key, var) for key, var in children[prefix].items())
        if title is not None:
            unknown = [name for name, _ in fields if name not in classes[title]]
            if unknown:
                problems.append(
                    f"{event.where}: model {title} has no attribute(s) {', '.join(unknown)}"
                )
        made.append(Part(names(prefix), prefix, title, fields, names(f"{prefix} fields")))
    body = schema.resolve(schema.defs[event.body])
    top = children.get("", {})
    missing = [key for key in body.get("required", ()) if key not in top]
    if missing:
        problems.append(
            f"{event.where}: body {event.body} requires {', '.join(missing)} but no rule of "
            f"{event.mapping!r} produces it"
        )
    checks = _required_checks(body.get("required", ()), top, made, steps, values, expressions)
    return MappingPlan(
        event=event,
        steps=tuple(steps),
        parts=tuple(made),
        checks=checks,
        body_class=event.body,
        body_fields=tuple((snake(key), var) for key, var in top.items()),
    )


def _required_checks(
    required: Iterable[str],
    top: dict[str, str],
    made: list[Part],
    steps: list[Step],
    values: dict[str, Signature],
    expressions: dict[str, Signature],
) -> tuple[Check, ...]:
    """Checks for the body fields the schema requires that may still be empty at the end."""
    part_vars = {part.var for part in made}
    step_by_var = {step.var: step for step in steps}
    checks = []
    for key in required:
        name = top.get(key)
        producer = step_by_var.get(name or "")
        if name is None or (
            name not in part_vars
            and (
                producer is None
                or producer.required_check
                or not _can_be_none(producer, values, expressions)
            )
        ):
            continue
        inputs = [
            f"{s.rule.function}()" if s.rule.is_expression else s.rule.input
            for s in steps
            if s.rule.output_key.split(".")[0] == key
        ]
        checks.append(Check(var=name, output_key=key, inputs=", ".join(inputs)))
    return tuple(checks)


def _can_be_none(
    step: Step, values: dict[str, Signature], expressions: dict[str, Signature]
) -> bool:
    catalogue = expressions if step.rule.is_expression else values
    return catalogue[step.rule.function].may_be_none


def make_plan(spec: Spec, schema_document: Mapping[str, Any], package: Path) -> Plan:
    """Resolve ``spec`` against the schema and the hand-written modules of the stage ``package``."""
    schema = Schema(schema_document)
    classes = read_classes(package / "models.py")
    values = read_functions(package / "values.py")
    expressions = read_functions(package / "expressions.py")
    markers = read_markers(package / "values.py")
    shortcuts = {
        function: shortcut
        for marker, shortcut in SHORTCUTS.items()
        for function in markers.get(marker, frozenset())
    }
    problems = [
        f"{package / 'values.py'}: {function!r} is marked for a shortcut but is not a function"
        for function in sorted(shortcuts)
        if function not in values
    ]
    plans = []
    for event in spec.events:
        plan = _plan_mapping(
            event,
            spec.rules_of(event.mapping),
            schema,
            classes,
            values,
            expressions,
            shortcuts,
            problems,
        )
        if plan is not None:
            plans.append(plan)
    if problems:
        raise SpecError(problems)
    return Plan(tuple(plans))
