"""Value normalisers that rules-table rows name in their ``function`` column.

Each takes the raw input value, the input path (for messages), the context and the warnings
accumulator, and returns the normalised value, ``None`` when the value is absent or unusable
(with a warning saying why), or a ``Rejected`` outcome. Pure: no I/O, clock or logging. The code
generator checks that every function a row names exists here with this signature.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from attentive_router._transform.models import JSONObject
from attentive_router._transform.options import Context
from attentive_router._transform.outcome import Rejected, TransformWarning
from attentive_router._transform.source import is_blank, json_type, shown

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
CURRENCY = re.compile(r"[A-Z]{3}")
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT64 = 2**63

KEEPS_NONBLANK_STRINGS = frozenset({"identifier", "text"})
"""Normalisers that return a non-blank string argument unchanged and ``None`` for ``None``, both
without warnings. Generated code reads such values without calling them; the tests hold each of
them to this promise."""

PASSES_THROUGH = frozenset({"json_value"})
"""Normalisers that return any argument unchanged; generated code reads the input directly."""

ABSENT_FOR_NONE = frozenset({"currency", "email", "event_type", "json_object", "number", "phone"})
"""Normalisers that return ``None`` for ``None`` without a warning. Generated code calls them
only for values that are present (most optional inputs are absent from most events); the tests
hold each of them to this promise."""


def _warn(warnings: list[TransformWarning], code: str, message: str) -> None:
    warnings.append(TransformWarning(code, message))


def text(value: Any, field: str, ctx: Context, warnings: list[TransformWarning]) -> str | None:
    """A string field: strings as sent, integers and decimals written out, blanks absent."""
    if isinstance(value, str):
        return value if value.strip() else None
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value) if math.isfinite(value) else None
    _warn(
        warnings, "invalid_value", f"{field}: expected a string, got {json_type(value)}; left out"
    )
    return None


def identifier(
    value: Any, field: str, ctx: Context, warnings: list[TransformWarning]
) -> str | None:
    """An identifier: strings as sent (blank ones absent), integers written out."""
    if isinstance(value, str):
        return value if value.strip() else None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    _warn(
        warnings,
        "invalid_identifier",
        f"{field}: expected a string or an integer, got {json_type(value)}; left out",
    )
    return None


_EMAILS: dict[str, str] = {}
"""Valid email addresses already trimmed, by their raw form (users send many events)."""
_MAX_REMEMBERED = 65536


def email(value: Any, field: str, ctx: Context, warnings: list[TransformWarning]) -> str | None:
    """An email address, trimmed; one that is not ``local@domain`` is dropped with a warning."""
    if isinstance(value, str):
        known = _EMAILS.get(value)
        if known is not None:
            return known
        trimmed = value.strip()
        if not trimmed:
            return None
        if EMAIL.fullmatch(trimmed):
            if len(_EMAILS) < _MAX_REMEMBERED:
                _EMAILS[value] = trimmed
            return trimmed
        _warn(
            warnings,
            "invalid_email",
            f"{field}: {shown(trimmed)} is not an email address; left out",
        )
        return None
    if is_blank(value):
        return None
    _warn(
        warnings, "invalid_email", f"{field}: expected a string, got {json_type(value)}; left out"
    )
    return None


@lru_cache(maxsize=65536)
def _to_e164(raw: str, region: str) -> str | None:
    # Imported on the first number to normalise (then cached): not every run has one.
    import phonenumbers  # noqa: PLC0415

    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    formatted: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # Some plans allow numbers longer than E.164's 15 digits; Attentive cannot take those.
    return formatted if E164.fullmatch(formatted) else None


_PHONES: dict[str, str] = {}
"""Raw phones already in E.164 (give or take spaces around them), by their raw form."""


def phone(value: Any, field: str, ctx: Context, warnings: list[TransformWarning]) -> str | None:
    """A phone number in E.164; others are normalised, or dropped with a warning."""
    if isinstance(value, str):
        known = _PHONES.get(value)
        if known is not None:
            return known
    if is_blank(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        _warn(
            warnings,
            "invalid_phone",
            f"{field}: expected a string, got {json_type(value)}; left out",
        )
        return None
    raw = value.strip()
    if E164.fullmatch(raw):
        if len(_PHONES) < _MAX_REMEMBERED:
            _PHONES[value] = raw
        return raw
    normalised = _to_e164(raw, ctx.config.default_region)
    if normalised is None:
        _warn(
            warnings,
            "invalid_phone",
            f"{field}: {shown(raw)} cannot be read as a phone number "
            f"(default region {ctx.config.default_region}); left out",
        )
    return normalised


_GOOD_TYPES: set[str] = set()
"""Event types already found acceptable (names repeat across a stream of events)."""
_FORBIDDEN_TYPE = re.compile(r"[\"'(){}\[\]\\|,]")
"""Any character Attentive forbids in a custom event type: " ' ( ) { } [ ] \\ | ,"""
"""Any character Attentive forbids in a custom event type: " ' ( ) { } [ ] \\ | ,"""


def event_type(
    value: Any, field: str, ctx: Context, warnings: list[TransformWarning]
) -> str | Rejected | None:
    """A custom event type: case-sensitive, kept as sent; forbidden characters reject the event."""
    if isinstance(value, str) and value in _GOOD_TYPES:
        return value
    if is_blank(value):
        return None
    if not isinstance(value, str):
        return Rejected("invalid_event_type", f"{field} must be a string, not {json_type(value)}")
    if not _FORBIDDEN_TYPE.search(value):
        if len(_GOOD_TYPES) < _MAX_REMEMBERED:
            _GOOD_TYPES.add(value)
        return value
    bad = sorted(set(_FORBIDDEN_TYPE.findall(value)))
    if bad:
        return Rejected(
            "invalid_event_type",
            f"{field} {shown(value)} contains {' '.join(bad)}, which Attentive forbids in a custom "
            "event type; renaming it would split the journey trigger, so the event is not sent",
        )
    return value


def currency_code(value: Any) -> str | None:
    """Three ASCII letters, uppercased; ``None`` for anything else."""
    if isinstance(value, str):
        code = value.strip()
        if code.isascii() and CURRENCY.fullmatch(code.upper()):
            return code.upper()
    return None


def currency(value: Any, field: str, ctx: Context, warnings: list[TransformWarning]) -> str | None:
    """An ISO 4217 currency code, uppercased; anything else is dropped with a warning."""
    if is_blank(value):
        return None
    code = currency_code(value)
    if code is not None:
        return code
    _warn(
        warnings,
        "invalid_currency",
        f"{field}: {shown(value)} is not an ISO 4217 currency code; left out",
    )
    return None


def as_number(value: Any) -> int | float | None:
    """Read a JSON number or a numeric string; ``None`` when it is neither (or not finite)."""
    kind = type(value)  # exact types first: what JSON parsers make, without isinstance chains
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return value if -_INT64 <= value < _INT64 else float(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        candidate = value.strip()
        if _NUMERIC.fullmatch(candidate):
            if candidate.lstrip("+-").isdigit():
                return as_number(int(candidate))
            number = float(candidate)
            return number if math.isfinite(number) else None
    return None


def number(
    value: Any, field: str, ctx: Context, warnings: list[TransformWarning]
) -> int | float | None:
    """A number: JSON numbers kept, numeric strings such as ``"19.99"`` converted."""
    if value is None:
        return None
    result = as_number(value)
    if result is None:
        _warn(warnings, "invalid_number", f"{field}: {shown(value)} is not a number; left out")
    return result


def json_value(value: Any, field: str, ctx: Context, warnings: list[TransformWarning]) -> Any:
    """Any JSON value, passed through (object keys are checked later, with the whole body)."""
    return value


def json_object(
    value: Any, field: str, ctx: Context, warnings: list[TransformWarning]
) -> JSONObject | None:
    """A JSON object passed through; an empty one is absent."""
    if isinstance(value, dict) and value:
        return value
    return None
