"""Configuration of the transform: a small typed value with documented defaults.

Nothing here reads the environment or the clock; callers build a ``Context`` and pass it in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import phonenumbers
from attrs import field, frozen

UnnamedTrackPolicy = Literal["custom_event", "skip"]
StalePolicy = Literal["send", "skip"]

DEFAULT_STALE_AFTER = timedelta(hours=12)
"""Attentive does not trigger journeys for events older than this."""


def _check_region(_instance: object, _attribute: object, value: str) -> None:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        msg = f"default_region {value!r} is not a region code phonenumbers knows (e.g. 'US', 'GB')"
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
    """

    unnamed_track: UnnamedTrackPolicy = "custom_event"
    stale_events: StalePolicy = "send"
    stale_after: timedelta = DEFAULT_STALE_AFTER
    strict_property_keys: bool = False
    default_region: str = field(default="US", validator=_check_region)


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
