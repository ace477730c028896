"""JSON form of the models: one cattrs converter, and the project's JSON Schemas.

The converter renames snake_case attributes to Attentive's camelCase keys and omits absent
(``None``) fields. Properties objects are passed through as they are, without copying.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import attrs
import cattrs
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from attentive_router._transform import models as _models
from attentive_router._transform.models import JSONObject
from attentive_router._transform.outcome import OUTCOME_NAMES, Mapped, Outcome, Skipped

_PART_TYPES: tuple[type[Any], ...] = (
    _models.CustomIdentifier,
    _models.ExternalIdentifiers,
    _models.EventUser,
    _models.Price,
    _models.Product,
    _models.SalesChannel,
)


def camel(name: str) -> str:
    """Return the camelCase JSON key of a snake_case attribute name."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_AS_IS = frozenset(
    {JSONObject, JSONObject | None, str | None, int | None, int | float, int | float | None}
)


def _structure_number(value: object, _type: object) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    msg = f"expected a number, got {value!r}"
    raise TypeError(msg)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(unstruct_collection_overrides={tuple: list})
    # JSON-ready values (and optional ones) unstructure as themselves; cattrs inlines the
    # identity hook, so generated functions read the attribute without a call per field.
    converter.register_unstructure_hook_func(lambda t: t in _AS_IS, identity)
    converter.register_structure_hook_func(lambda t: t == JSONObject, lambda value, _t: value)
    converter.register_structure_hook_func(lambda t: t == int | float, _structure_number)
    # Leaves first: a class's generated function binds the hooks of its fields when it is made.
    for cls in (*_PART_TYPES, *_models.BODY_TYPES):
        renames: dict[str, Any] = {
            a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)
        }
        converter.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=True, **renames)
        )
        converter.register_structure_hook(
            cls, make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **renames)
        )
    return converter


converter = _make_converter()
"""The converter between models and JSON-ready dicts."""


_BODY_HOOKS: dict[type[Any], Any] = {
    cls: converter.get_unstructure_hook(cls) for cls in _models.BODY_TYPES
}
"""Each body class's generated unstructure function, called without the converter's dispatch."""


def to_json(body: _models.Body) -> JSONObject:
    """Return the JSON object (dict) Attentive receives for ``body``."""
    hook = _BODY_HOOKS.get(type(body))
    result: JSONObject = converter.unstructure(body) if hook is None else hook(body)
    return result


@cache
def schema_document() -> JSONObject:
    """Return the project's JSON Schema document of Attentive's request bodies."""
    text = (
        resources.files("attentive_router._transform")
        .joinpath("schemas/attentive-v1.json")
        .read_text()
    )
    document: JSONObject = json.loads(text)
    return document


def body_schema(title: str) -> JSONObject:
    """Return a JSON Schema for the body model named ``title`` (e.g. ``PurchaseRequest``)."""
    document = schema_document()
    if title not in document["$defs"]:
        msg = f"no schema definition titled {title!r}"
        raise KeyError(msg)
    return {"$ref": f"#/$defs/{title}", "$defs": document["$defs"]}


def _message_id(event: Any) -> str | int | None:
    if isinstance(event, dict):
        value = event.get("messageId")
        if type(value) is str:
            return value
        if isinstance(value, str | int) and not isinstance(value, bool):
            return value
    return None


def to_record(outcome: Outcome, event: Any) -> JSONObject:
    """The JSON record of one event's outcome, as ``attentive-router transform`` prints it."""
    record: JSONObject = {"messageId": _message_id(event), "outcome": OUTCOME_NAMES[type(outcome)]}
    if isinstance(outcome, Mapped):
        record["requests"] = [
            {"method": request.method, "path": request.path, "body": to_json(request.body)}
            for request in outcome.requests
        ]
        record["warnings"] = [{"code": w.code, "message": w.message} for w in outcome.warnings]
    else:
        record["reason"] = outcome.reason
        record["message"] = outcome.message
        if isinstance(outcome, Skipped) and outcome.warnings:
            record["warnings"] = [{"code": w.code, "message": w.message} for w in outcome.warnings]
    return record
