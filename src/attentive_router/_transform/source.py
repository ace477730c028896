"""The parts of a Segment event the mapping rules read, checked once per event.

A rules-table input path ``traits.X`` reads ``Source.traits``, which is the event's ``traits``
falling back, key by key, to ``context.traits`` (where analytics.js puts them on track and page
calls); ``properties.X`` reads ``Source.properties``; any other path reads the event itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from attentive_router._transform.outcome import Rejected

_EMPTY: Mapping[str, Any] = {}


def json_type(value: object) -> str:
    """Name the JSON type of a parsed value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


_SHOWN = 60
_LARGE = 10**30


def shown(value: object) -> str:
    """A short rendering of an input value for messages (containers by type, long text cut)."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 4]}...{text[0]}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _LARGE:
        return "a very large integer"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a JSON {json_type(value)}"


def is_blank(value: object) -> bool:
    """True for ``None`` and for strings that are empty or whitespace only."""
    return value is None or (isinstance(value, str) and not value.strip())


class Source(NamedTuple):
    """A Segment event with its traits and properties resolved (a tuple: cheap to build).

    Attributes:
        event: The event as received.
        traits: ``traits`` over ``context.traits`` (a blank value does not hide the other).
        properties: ``properties``, or an empty mapping.
    """

    event: Mapping[str, Any]
    traits: Mapping[str, Any]
    properties: Mapping[str, Any]


def _object_at(holder: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | Rejected:
    value = holder.get(key)
    if value is None:
        return _EMPTY
    if type(value) is dict or isinstance(value, Mapping):
        return value
    return Rejected("invalid_field", f"{path} must be a JSON object, not {json_type(value)}")


def read_source(event: Mapping[str, Any]) -> Source | Rejected:
    """Resolve traits and properties of ``event``, or reject it when one is not an object."""
    context = event.get("context")
    properties = event.get("properties")
    if type(context) is dict and type(properties) is dict and event.get("traits") is None:
        # A track or page call as analytics.js sends it: the traits are context.traits alone.
        context_traits = context.get("traits")
        if type(context_traits) is dict and context_traits:
            return Source(event, context_traits, properties)
        if context_traits is None:
            return Source(event, _EMPTY, properties)
    return _read_source(event)


def _read_source(event: Mapping[str, Any]) -> Source | Rejected:
    context = _object_at(event, "context", "context")
    if isinstance(context, Rejected):
        return context
    context_traits = _object_at(context, "traits", "context.traits")
    if isinstance(context_traits, Rejected):
        return context_traits
    traits = _object_at(event, "traits", "traits")
    if isinstance(traits, Rejected):
        return traits
    properties = _object_at(event, "properties", "properties")
    if isinstance(properties, Rejected):
        return properties
    if context_traits and not traits:
        traits = context_traits
    elif context_traits:
        merged = dict(context_traits)
        for key, value in traits.items():
            if not is_blank(value) or key not in merged:
                merged[key] = value
        traits = merged
    return Source(event, traits, properties)
