"""Configuration of the transform: a small typed value with documented defaults.

Nothing here reads the environment or the clock; callers build a ``Context`` and pass it in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from attrs import field, frozen

from attentive_router._transform.generated.event_names import MAPPED_EVENT_NAMES

UnnamedTrackPolicy = Literal["custom_event", "skip"]
StalePolicy = Literal["send", "skip"]
ConsentMissingPolicy = Literal["send", "skip"]

FILTERED_CALLS = ("identify", "page", "track")
"""The call types filters apply to (the others are skipped as unsupported before filtering)."""

SEGMENT_V1_ALIASES: Mapping[str, str] = {
    "Viewed Product Category": "Product List Viewed",
    "Viewed Product": "Product Viewed",
    "Added Product": "Product Added",
    "Removed Product": "Product Removed",
    "Completed Order": "Order Completed",
    "Started Order": "Checkout Started",
    "Updated Order": "Order Updated",
    "Refunded Order": "Order Refunded",
    "Searched Products": "Products Searched",
    "Viewed Promotion": "Promotion Viewed",
    "Clicked Promotion": "Promotion Clicked",
}
"""Segment eCommerce v1 event names and their v2 names, for the v2 names the rules table maps
(v1's ``Viewed Checkout Step`` and ``Completed Checkout Step`` have no mapping to go to)."""

DEFAULT_STALE_AFTER = timedelta(hours=12)
"""Attentive does not trigger journeys for events older than this."""


DEFAULT_REGION = "US"
"""Region of phone numbers written without a country code, unless configured."""


def _check_region(_instance: object, _attribute: object, value: str) -> None:
    if value == DEFAULT_REGION:
        return  # known: the metadata loads only for another region or a phone number
    import phonenumbers  # noqa: PLC0415 - its metadata is a large share of the start-up

    if value not in phonenumbers.SUPPORTED_REGIONS:
        msg = f"default_region {value!r} is not a region code phonenumbers knows (e.g. 'US', 'GB')"
        raise ValueError(msg)


class FrozenAliases(Mapping[str, str]):
    """A read-only, hashable mapping of event names, so that ``Config`` stays hashable."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(items or {})

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenAliases({self._items!r})"


def _freeze_aliases(value: Mapping[str, str]) -> Mapping[str, str]:
    if isinstance(value, FrozenAliases):
        return value
    if not isinstance(value, Mapping):
        msg = f"aliases must map event names to mapped event names, not {type(value).__name__}"
        raise TypeError(msg)
    return FrozenAliases(value)


def _check_aliases(_instance: object, _attribute: object, value: Mapping[str, str]) -> None:
    problems = []
    for name, target in value.items():
        if not isinstance(name, str) or not name.strip():
            problems.append(f"alias {name!r}: the event name must be a non-empty string")
        elif not isinstance(target, str) or target not in MAPPED_EVENT_NAMES:
            problems.append(f"alias {name!r} -> {target!r}: unknown target")
        elif name == target:
            problems.append(f"alias {name!r} -> {target!r}: an event cannot alias itself")
    if problems:
        valid = ", ".join(repr(name) for name in sorted(MAPPED_EVENT_NAMES))
        msg = "; ".join(problems) + f" (valid targets are the mapped event names: {valid})"
        raise ValueError(msg)


def _patterns(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        msg = f"filter patterns must be a list of names or globs, not the string {value!r}"
        raise TypeError(msg)
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            msg = f"filter pattern {pattern!r} must be a non-empty string"
            raise ValueError(msg)
    return patterns


def _check_call_patterns(_instance: object, attribute: object, value: tuple[str, ...]) -> None:
    name = getattr(attribute, "name", "calls")
    for pattern in value:
        if not any(fnmatchcase(call, pattern) for call in FILTERED_CALLS):
            calls = ", ".join(FILTERED_CALLS)
            msg = f"{name} pattern {pattern!r} matches no call type ({calls})"
            raise ValueError(msg)


@frozen
class EventFilter:
    """Which events a destination takes, by call type and by track event name.

    Each field is a tuple of patterns: exact names or globs (``fnmatch.fnmatchcase``: ``*``,
    ``?``, ``[...]``, case-sensitive). An empty allow list allows everything; a deny match wins
    over an allow match. ``allow_events`` and ``deny_events`` judge track calls by their event
    name as received (before aliases); page and identify calls are chosen with the call lists.

    Attributes:
        allow_calls: Call types sent (``identify``, ``page``, ``track``); empty: all.
        deny_calls: Call types never sent.
        allow_events: Track event names sent; empty: all.
        deny_events: Track event names never sent.
    """

    allow_calls: tuple[str, ...] = field(
        default=(), converter=_patterns, validator=_check_call_patterns
    )
    deny_calls: tuple[str, ...] = field(
        default=(), converter=_patterns, validator=_check_call_patterns
    )
    allow_events: tuple[str, ...] = field(default=(), converter=_patterns)
    deny_events: tuple[str, ...] = field(default=(), converter=_patterns)


def _check_category(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        msg = f"consent_category must be a non-empty string or None, not {value!r}"
        raise ValueError(msg)


def _check_consent_missing(_instance: object, _attribute: object, value: str) -> None:
    if value not in ("send", "skip"):
        msg = f"consent_missing must be 'send' or 'skip', not {value!r}"
        raise ValueError(msg)


@frozen
class Config:
    """How the transform treats events the mapping leaves open.

    Attributes:
        unnamed_track: Track events whose name no mapping table lists: ``custom_event`` (default)
            sends them as custom events with their properties passed through; ``skip`` skips
            them with reason ``unmapped_event``.
        stale_events: Events whose time is older than ``stale_after`` before receipt: ``send``
            (default) sends them with a ``stale_event`` warning; ``skip`` skips them.
        stale_after: Age at which an event counts as stale (default 12 hours, Attentive's
            journey horizon).
        strict_property_keys: When true, a custom event property key with a character
            Attentive forbids rejects the event; by default the key is dropped with a warning.
        default_region: Region (ISO 3166 alpha-2) used to read phone numbers written without
            a country code (default ``US``).
        aliases: The user's track event names mapped to names the rules table maps
            (``{"Purchase": "Order Completed"}``): the event is renamed before dispatch and
            carries an ``aliased_event`` warning. Every target must be a mapped name.
        builtin_aliases: When true (default), Segment's eCommerce v1 names are aliases of
            their v2 names (``SEGMENT_V1_ALIASES``); ``aliases`` win over them.
        filters: Which events are sent at all; the others are skipped with ``filtered``.
        consent_category: When set, an event whose
            ``context.consent.categoryPreferences[category]`` is false is skipped with
            ``no_consent``; by default consent is not checked.
        consent_missing: Events without a true or false for the category: ``send`` (default)
            or ``skip`` them with ``no_consent``.
    """

    unnamed_track: UnnamedTrackPolicy = "custom_event"
    stale_events: StalePolicy = "send"
    stale_after: timedelta = DEFAULT_STALE_AFTER
    strict_property_keys: bool = False
    default_region: str = field(default=DEFAULT_REGION, validator=_check_region)
    aliases: Mapping[str, str] = field(
        default=FrozenAliases(), converter=_freeze_aliases, validator=_check_aliases
    )
    builtin_aliases: bool = True
    filters: EventFilter = EventFilter()
    consent_category: str | None = field(default=None, validator=_check_category)
    consent_missing: ConsentMissingPolicy = field(default="send", validator=_check_consent_missing)


def _check_aware(_instance: object, _attribute: object, value: datetime) -> None:
    if value.tzinfo is None:
        msg = "received_at must carry a UTC offset"
        raise ValueError(msg)


@frozen
class Context:
    """What the transform knows besides the event: when it was received, and the config.

    Attributes:
        received_at: Receipt time, timezone-aware. Used when an event carries no timestamp,
            and as the reference for stale and future checks.
        config: The transform configuration.
    """

    received_at: datetime = field(validator=_check_aware)
    config: Config = Config()
