"""The router: one Segment event and a context in, exactly one outcome out.

Pure: it never raises for any JSON object, never reads the clock, and performs no I/O. The
per-event mappings are generated from the rules table (``generated``); this module applies
the rules that hold for every event: call-type checks, the configured filters and consent,
the global identifier filter, event-name aliases, dispatch, Attentive's body-level rules, and
the warning about users known only by an external id.

The order of the checks: the event's shape and call type; then ``Config.filters`` (an event
the destination does not take is ``filtered``, whatever else is true of it); then the shape of
``context``, ``traits`` and ``properties``; then consent (``no_consent``); then the identifier
filter; then the track event name, its alias and the mapping. So a filtered or unconsented
event never reaches the mapping, and aliases rename an event only just before dispatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from attentive_router._transform import constraints as _constraints
from attentive_router._transform.generated.event_names import MAPPED_EVENT_NAMES
from attentive_router._transform.generated.transforms import MAPPINGS
from attentive_router._transform.mapping import ANY_EVENT
from attentive_router._transform.mapping import Mapping as EventMapping
from attentive_router._transform.models import Body
from attentive_router._transform.options import (
    FILTERED_CALLS,
    SEGMENT_V1_ALIASES,
    Config,
    Context,
    EventFilter,
)
from attentive_router._transform.outcome import (
    Mapped,
    Outcome,
    Rejected,
    Request,
    Skipped,
    TransformWarning,
)
from attentive_router._transform.source import Source, is_blank, json_type, read_source, shown

MAPPED_CALLS = frozenset(FILTERED_CALLS)
UNSUPPORTED_CALLS = frozenset({"screen", "group", "alias"})

Dispatch = dict[tuple[str, str | None], tuple[EventMapping, ...]]


def build_dispatch(mappings: Iterable[EventMapping]) -> Dispatch:
    """Index mappings by (call, event name); identify may have several."""
    table: dict[tuple[str, str | None], list[EventMapping]] = {}
    for mapping in mappings:
        table.setdefault((mapping.call, mapping.event), []).append(mapping)
    return {key: tuple(value) for key, value in table.items()}


DEFAULT_DISPATCH = build_dispatch(MAPPINGS)


def mapped_event_names() -> frozenset[str]:
    """The track event names the rules table maps: the valid targets of an alias."""
    return MAPPED_EVENT_NAMES


V1_ORIGIN = "Segment eCommerce v1 name"
USER_ORIGIN = "alias"


@lru_cache(maxsize=16)
def _alias_table(aliases: Mapping[str, str], builtin: bool) -> dict[str, tuple[str, str]]:
    """Each aliased name -> (its target, where the alias comes from); user aliases win."""
    table = {name: (target, V1_ORIGIN) for name, target in SEGMENT_V1_ALIASES.items()}
    if not builtin:
        table.clear()
    table.update((name, (target, USER_ORIGIN)) for name, target in aliases.items())
    return table


_ALIASES: dict[int, tuple[Config, dict[str, tuple[str, str]]]] = {}
"""Per configuration: its alias table (``_alias_table`` hashes the aliases on every call)."""


def _aliases(config: Config) -> dict[str, tuple[str, str]]:
    cached = _ALIASES.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    table = _alias_table(config.aliases, config.builtin_aliases)
    if len(_ALIASES) >= 8:  # a few configurations at most; never grow without bound
        _ALIASES.clear()
    _ALIASES[id(config)] = (config, table)
    return table


@lru_cache(maxsize=16)
def _folded_aliases(aliases: Mapping[str, str], builtin: bool) -> dict[str, str]:
    return {name.strip().casefold(): name for name in _alias_table(aliases, builtin)}


def _first_match(name: str, patterns: tuple[str, ...]) -> str | None:
    return next((pattern for pattern in patterns if fnmatchcase(name, pattern)), None)


def _listed(patterns: tuple[str, ...]) -> str:
    return ", ".join(shown(pattern) for pattern in patterns)


def _filtered(call: str, name: object, filters: EventFilter) -> Skipped | None:
    """The skip for an event ``filters`` leave out, or None; deny lists win over allow lists.

    Event-name lists judge track calls with a string name only: a track call without a usable
    name goes on, and is rejected as before. ``route`` calls it only when a list is set.
    """
    named = call == "track" and isinstance(name, str)
    pattern = _first_match(call, filters.deny_calls)
    if pattern is not None:
        return Skipped("filtered", f"{_subject(call, name)} matches deny_calls {shown(pattern)}")
    if named and isinstance(name, str):
        pattern = _first_match(name, filters.deny_events)
        if pattern is not None:
            return Skipped(
                "filtered", f"{_subject(call, name)} matches deny_events {shown(pattern)}"
            )
    if filters.allow_calls and _first_match(call, filters.allow_calls) is None:
        listed = _listed(filters.allow_calls)
        return Skipped("filtered", f"{_subject(call, name)} matches none of allow_calls ({listed})")
    if (
        named
        and isinstance(name, str)
        and filters.allow_events
        and _first_match(name, filters.allow_events) is None
    ):
        listed = _listed(filters.allow_events)
        return Skipped(
            "filtered", f"{_subject(call, name)} matches none of allow_events ({listed})"
        )
    return None


def _subject(call: str, name: object) -> str:
    """How a skip message names the event: built only for the events that are skipped."""
    return f"track {shown(name)}" if call == "track" and isinstance(name, str) else f"{call} call"


_CONSENT_PATH = "context.consent.categoryPreferences"


def _consent(event: Mapping[str, Any], category: str) -> bool | str:
    """True or False as the event says, or why it says neither (for the message)."""
    holder: Any = event
    path = ""
    for key in ("context", "consent", "categoryPreferences"):
        value = holder.get(key)
        path = f"{path}.{key}" if path else key
        if value is None:
            return f"it has no {path}"
        if not isinstance(value, Mapping):
            return f"{path} is {shown(value)}, not an object"
        holder = value
    if category not in holder:
        return f"{_CONSENT_PATH} has no {shown(category)}"
    value = holder[category]
    if isinstance(value, bool):
        return value
    return (
        f"{_CONSENT_PATH}[{shown(category)}] is {shown(value)}, not true or false, which "
        "counts as no consent information"
    )


def _unconsented(event: Mapping[str, Any], config: Config) -> Skipped | None:
    category = config.consent_category
    if category is None:
        return None
    consent = _consent(event, category)
    if consent is True:
        return None
    if consent is False:
        return Skipped(
            "no_consent",
            f"{_CONSENT_PATH}[{shown(category)}] is false: the user did not consent to "
            f"{shown(category)}",
        )
    preferences: Any = event
    for key in ("context", "consent", "categoryPreferences"):
        preferences = preferences.get(key) if isinstance(preferences, Mapping) else None
    if isinstance(preferences, Mapping) and category in preferences:
        # Present but not a boolean ("false", 0, null): not consent, whatever consent_missing.
        return Skipped(
            "no_consent",
            f"{consent}: the event is not sent without a true consent",
            (
                TransformWarning(
                    "non_boolean_consent",
                    f"{_CONSENT_PATH}[{shown(category)}] is {shown(preferences[category])}, "
                    "not true or false: treated as no consent",
                ),
            ),
        )
    if config.consent_missing == "send":
        return None
    return Skipped(
        "no_consent",
        f"the event carries no consent information for {shown(category)} ({consent}), and "
        "consent_missing skip leaves such events out",
    )


def _has_identifier(event: Mapping[str, Any], traits: Mapping[str, Any]) -> bool:
    for value in (traits.get("email"), traits.get("phone"), event.get("userId")):
        if type(value) is str:
            if value and not value.isspace():  # ``is_blank``, without a call per value
                return True
        elif not is_blank(value):
            return True
    return False


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


def _near_miss(name: str, dispatch: Dispatch, config: Config) -> str | None:
    """The mapped or aliased name ``name`` differs from only by case or surrounding whitespace.

    A mapped name is shown as is, an aliased one with its target.
    """
    folded = name.strip().casefold()
    mapped = _folded_names(dispatch).get(folded)
    if mapped is not None:
        return shown(mapped)
    aliased = _folded_aliases(config.aliases, config.builtin_aliases).get(folded)
    if aliased is None:
        return None
    target, origin = _aliases(config)[aliased]
    kind = "an alias" if origin == USER_ORIGIN else "the Segment eCommerce v1 name"
    return f"{shown(aliased)} ({kind} of {shown(target)})"


def _select(
    call: str,
    src: Source,
    ctx: Context,
    dispatch: Dispatch,
    warnings: list[TransformWarning],
) -> tuple[tuple[EventMapping, ...], Source] | Outcome:
    if call != "track":
        return dispatch.get((call, None), ()), src
    name = src.event.get("event")
    if is_blank(name):
        return Rejected("missing_event_name", "a track call needs a non-empty event name in event")
    if not isinstance(name, str):
        return Rejected("invalid_event_name", f"event must be a string, not {json_type(name)}")
    alias = _aliases(ctx.config).get(name)
    if alias is not None:
        target, origin = alias
        warnings.append(
            TransformWarning(
                "aliased_event", f"event {shown(name)} is sent as {shown(target)} ({origin})"
            )
        )
        name = target
        src = src._replace(event={**src.event, "event": target})
    named = dispatch.get(("track", name))
    if named:
        return named, src
    intended = _near_miss(name, dispatch, ctx.config)
    if ctx.config.unnamed_track == "skip":
        hint = "" if intended is None else f" (did you mean {intended}?)"
        return Skipped(
            "unmapped_event",
            f"track event {shown(name)} is not in the mapping tables, and --unnamed-track skip "
            f"leaves such events out{hint}",
        )
    if intended is not None:
        warnings.append(
            TransformWarning(
                "near_miss_event_name",
                f"event {shown(name)} differs from {intended} only in case or surrounding "
                "whitespace; names are matched exactly, so it is sent as a custom event",
            )
        )
    return dispatch.get(("track", ANY_EVENT), ()), src


def _dedupe(warnings: list[TransformWarning]) -> tuple[TransformWarning, ...]:
    return tuple(dict.fromkeys(warnings)) if len(warnings) > 1 else tuple(warnings)


def _unmapped_call(call: object) -> Skipped | Rejected:
    """The outcome of an event whose type is not identify, track or page."""
    if is_blank(call):
        return Rejected("missing_type", "the event has no type (identify, track, page, ...)")
    if not isinstance(call, str):
        return Rejected("invalid_type", f"type must be a string, not {json_type(call)}")
    if call in UNSUPPORTED_CALLS:
        return Skipped("unsupported_call_type", f"{call} calls have no Attentive counterpart")
    return Rejected("invalid_type", f"type {shown(call)} is not a Segment call type")


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
    if type(call) is not str or call not in MAPPED_CALLS:
        return _unmapped_call(call)
    config = ctx.config
    filters = config.filters
    if filters.deny_calls or filters.deny_events or filters.allow_calls or filters.allow_events:
        filtered = _filtered(call, event.get("event"), filters)
        if filtered is not None:
            return filtered
    src = read_source(event)
    if isinstance(src, Rejected):
        return src
    if config.consent_category is not None:
        unconsented = _unconsented(event, config)
        if unconsented is not None:
            return unconsented
    if not _has_identifier(event, src.traits):
        return Skipped(
            "no_identifier",
            "none of traits.email, traits.phone or userId is present; Attentive cannot tie the "
            "event to a user",
        )
    warnings: list[TransformWarning] = []
    selected = _select(call, src, ctx, dispatch, warnings)
    if not isinstance(selected, tuple):
        return selected
    mappings, src = selected
    requests: list[Request] = []
    bodies: list[Body] = []
    for mapping in mappings:
        built = mapping.transform(src, ctx, warnings)
        if isinstance(built, (Rejected, Skipped)):
            return built
        body = _constraints.check(built, ctx, warnings)
        if isinstance(body, Rejected):
            return body
        if body is not None:
            requests.append(Request(mapping.method, mapping.path, body))
            bodies.append(body)
    if not requests:
        return Skipped(
            "nothing_to_send",
            "the identify call has no identifier to link and no other traits to store",
        )
    _constraints.user_warnings(bodies, warnings)
    return Mapped(tuple(requests), _dedupe(warnings))
