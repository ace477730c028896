"""Outcome values: what the transform says about one event.

Every event gets exactly one outcome: ``Mapped`` (Attentive requests to send), ``Skipped``
(deliberately not sent) or ``Rejected`` (could not be made valid). Outcomes are plain values;
nothing here raises, logs or performs I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from attentive_router._transform.models import Body


@frozen
class TransformWarning:
    """Something the transform changed or dropped while still sending the event.

    Attributes:
        code: Stable machine-readable code, e.g. ``invalid_phone``.
        message: Human-readable sentence naming the input field.
    """

    code: str
    message: str


@frozen
class Request:
    """One HTTP request to Attentive (the body is a typed model, see ``to_json``)."""

    method: str
    path: str
    body: Body


@frozen
class Mapped:
    """The event maps to one or more Attentive requests."""

    requests: tuple[Request, ...]
    warnings: tuple[TransformWarning, ...] = ()


@frozen
class Skipped:
    """The event is deliberately not sent (no identifier, unsupported call, nothing to send).

    ``warnings`` says what in the event led to the skip when it is worth a warning (a consent
    preference that is not a boolean: ``non_boolean_consent``).
    """

    reason: str
    message: str
    warnings: tuple[TransformWarning, ...] = ()


@frozen
class Rejected:
    """The event could not be made valid; the message names the offending field."""

    reason: str
    message: str


Outcome = Mapped | Skipped | Rejected
"""Exactly one of these per input event."""

OUTCOME_NAMES: dict[type[Outcome], str] = {
    Mapped: "mapped",
    Skipped: "skipped",
    Rejected: "rejected",
}
"""The name of each kind of outcome, as records and summaries give it."""
