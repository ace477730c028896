"""The router: one Segment event and a context in, exactly one outcome out.

Pure: it never raises for any JSON object, never reads the clock, and performs no I/O. The
per-event mappings are generated from the rules table (``generated``); this module applies
the rules that hold for every event: call-type checks, the global identifier filter, dispatch,
Attentive's body-level rules, and the warning about users known only by an external id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attentive_router._transform import constraints as _constraints
from attentive_router._transform.generated.transforms import MAPPINGS
from attentive_router._transform.mapping import ANY_EVENT
from attentive_router._transform.mapping import Mapping as EventMapping
from attentive_router._transform.options import Context
from attentive_router._transform.outcome import (
    Mapped,
    Outcome,
    Rejected,
    Request,
    Skipped,
    TransformWarning,
)
from attentive_router._transform.source import is_blank, json_type, read_source, shown

MAPPED_CALLS = frozenset({"identify", "track", "page"})
UNSUPPORTED_CALLS = frozenset({"screen", "group", "alias"})

Dispatch = dict[tuple[str, str | None], tuple[EventMapping, ...]]


def build_dispatch(mappings: Iterable[EventMapping]) -> Dispatch:
    """Index mappings by (call, event name); identify may have several."""
    table: dict[tuple[str, str | None], list[EventMapping]] = {}
    for mapping in mappings:
        table.setdefault((mapping.call, mapping.event), []).append(mapping)
    return {key: tuple(value) for key, value in table.items()}


DEFAULT_DISPATCH = build_dispatch(MAPPINGS)


def _has_identifier(event: Mapping[str, Any], traits: Mapping[str, Any]) -> bool:
    return not (
        is_blank(traits.get("email"))
        and is_blank(traits.get("phone"))
        and is_blank(event.get("userId"))
    )


_FOLDED: dict[int, tuple[Dispatch, dict[str, str]]] = {}
"""Per dispatch table: its track event names by their folded form (see ``_near_miss``)."""


def _folded_names(dispatch: Dispatch) -> dict[str, str]:
    cached = _FOLDED.get(id(dispatch))
    if cached is not None and cached[0] is dispatch:
        return cached[1]
    names = {
        event.strip().casefold(): event
        for call, event in dispatch
        if call == "track" and event is not None and event != ANY_EVENT
    }
    if len(_FOLDED) >= 8:  # a few tables at most; never grow without bound
        _FOLDED.clear()
    _FOLDED[id(dispatch)] = (dispatch, names)
    return names


def _near_miss(name: str, dispatch: Dispatch) -> str | None:
    """The mapped event ``name`` differs from only by case or surrounding whitespace, if any."""
    return _folded_names(dispatch).get(name.strip().casefold())


def _select(
    call: str,
    event: Mapping[str, Any],
    ctx: Context,
    dispatch: Dispatch,
    warnings: list[TransformWarning],
) -> tuple[EventMapping, ...] | Outcome:
    if call != "track":
        return dispatch.get((call, None), ())
    name = event.get("event")
    if is_blank(name):
        return Rejected("missing_event_name", "a track call needs a non-empty event name in event")
    if not isinstance(name, str):
        return Rejected("invalid_event_name", f"event must be a string, not {json_type(name)}")
    named = dispatch.get(("track", name))
    if named:
        return named
    intended = _near_miss(name, dispatch)
    if ctx.config.unnamed_track == "skip":
        hint = "" if intended is None else f" (did you mean {shown(intended)}?)"
        return Skipped(
            "unmapped_event",
            f"track event {shown(name)} is not in the mapping tables, and --unnamed-track skip "
            f"leaves such events out{hint}",
        )
    if intended is not None:
        warnings.append(
            TransformWarning(
                "near_miss_event_name",
                f"event {shown(name)} differs from {shown(intended)} only in case or surrounding "
                "whitespace; names are matched exactly, so it is sent as a custom event",
            )
        )
    return dispatch.get(("track", ANY_EVENT), ())


def _dedupe(warnings: list[TransformWarning]) -> tuple[TransformWarning, ...]:
    return tuple(dict.fromkeys(warnings)) if len(warnings) > 1 else tuple(warnings)


def route(event: object, ctx: Context, dispatch: Dispatch = DEFAULT_DISPATCH) -> Outcome:
    """Map one Segment event to its outcome.

    Args:
        event: A parsed Segment event (any JSON value is accepted; non-objects are rejected).
        ctx: Receipt time and configuration.
        dispatch: The mappings to use (the generated ones by default).

    Returns:
        ``Mapped`` with the Attentive requests and warnings, ``Skipped`` or ``Rejected``.
    """
    if type(event) is not dict and not isinstance(event, Mapping):
        return Rejected("not_an_object", f"an event must be a JSON object, not {json_type(event)}")
    call = event.get("type")
    if is_blank(call):
        return Rejected("missing_type", "the event has no type (identify, track, page, ...)")
    if not isinstance(call, str):
        return Rejected("invalid_type", f"type must be a string, not {json_type(call)}")
    if call in UNSUPPORTED_CALLS:
        return Skipped("unsupported_call_type", f"{call} calls have no Attentive counterpart")
    if call not in MAPPED_CALLS:
        return Rejected("invalid_type", f"type {shown(call)} is not a Segment call type")
    src = read_source(event)
    if isinstance(src, Rejected):
        return src
    if not _has_identifier(event, src.traits):
        return Skipped(
            "no_identifier",
            "none of traits.email, traits.phone or userId is present; Attentive cannot tie the "
            "event to a user",
        )
    warnings: list[TransformWarning] = []
    selected = _select(call, event, ctx, dispatch, warnings)
    if not isinstance(selected, tuple):
        return selected
    requests: list[Request] = []
    for mapping in selected:
        built = mapping.transform(src, ctx, warnings)
        if isinstance(built, (Rejected, Skipped)):
            return built
        body = _constraints.check(built, ctx, warnings)
        if isinstance(body, Rejected):
            return body
        if body is not None:
            requests.append(Request(mapping.method, mapping.path, body))
    if not requests:
        return Skipped(
            "nothing_to_send",
            "the identify call has no identifier to link and no other traits to store",
        )
    _constraints.user_warnings((request.body for request in requests), warnings)
    return Mapped(tuple(requests), _dedupe(warnings))
