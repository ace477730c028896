"""Attentive's rules on whole request bodies, applied after a mapping has built one.

The rules table says where each value comes from; this module enforces what Attentive's API
documents about the values once assembled: property-key characters and the limits on custom
events, the 100-character identity limit and the "can it link anything" rule of the Identity
API, and non-empty custom attributes. Each check returns the body to send (possibly with keys
dropped), ``None`` when there is nothing worth sending, or a ``Rejected`` outcome. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from attrs import define, field

from attentive_router._config import Context
from attentive_router._models import (
    Body,
    CustomAttributesRequest,
    CustomEventsRequest,
    EventUser,
    IdentifyRequest,
    JSONObject,
)
from attentive_router._outcome import Rejected, TransformWarning

FORBIDDEN_IN_KEY = frozenset('"{}[]\\|')
MAX_EVENT_KEYS = 200
MAX_SHORTENED_URL = 1024
MAX_IDENTITY_FIELD = 100


@define
class _Scan:
    """What a pass over custom event properties found."""

    dropped: list[str] = field(factory=list)
    nested: list[str] = field(factory=list)
    keys: set[str] = field(factory=set)

    def clean(self, value: Any, path: str, depth: int) -> Any:
        """Copy ``value`` without keys holding forbidden characters, noting what it saw."""
        if isinstance(value, Mapping):
            if depth:
                self.nested.append(path)
            cleaned: JSONObject = {}
            for key, inner in value.items():
                name = f"{path}.{key}" if path else str(key)
                if not isinstance(key, str) or FORBIDDEN_IN_KEY.intersection(key):
                    self.dropped.append(name)
                    continue
                self.keys.add(name)
                cleaned[key] = self.clean(inner, name, depth + 1)
            return cleaned
        if isinstance(value, list):
            self.nested.append(path)
            return [self.clean(inner, f"{path}[]", depth + 1) for inner in value]
        return value


def _long_urls(value: Any, path: str, found: list[str]) -> None:
    if isinstance(value, str):
        if len(value) > MAX_SHORTENED_URL and value.startswith(("http://", "https://")):
            found.append(path)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            _long_urls(inner, f"{path}.{key}", found)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _long_urls(inner, f"{path}[{index}]", found)


def _shown(paths: list[str], limit: int = 5) -> str:
    unique = list(dict.fromkeys(paths))
    more = f" and {len(unique) - limit} more" if len(unique) > limit else ""
    return ", ".join(unique[:limit]) + more


def custom_event(
    body: CustomEventsRequest, ctx: Context, warnings: list[TransformWarning]
) -> CustomEventsRequest | Rejected:
    """Drop (or, strictly, refuse) forbidden property keys; warn about Attentive's limits."""
    if body.properties is None:
        return body
    scan = _Scan()
    cleaned = scan.clean(body.properties, "", 0)
    dropped, nested, keys = scan.dropped, scan.nested, scan.keys
    if dropped:
        message = (
            f"properties key(s) {_shown(dropped)} contain a character Attentive forbids "
            '(" { } [ ] \\ |)'
        )
        if ctx.config.strict_property_keys:
            return Rejected("invalid_property_key", message)
        warnings.append(TransformWarning("property_key_dropped", message + "; left out"))
    if len(keys) > MAX_EVENT_KEYS:
        warnings.append(
            TransformWarning(
                "too_many_keys",
                f"properties have {len(keys)} distinct keys; Attentive saves them all but only "
                f"{MAX_EVENT_KEYS} are usable in journeys and macros",
            )
        )
    urls: list[str] = []
    _long_urls(cleaned, "properties", urls)
    if urls:
        warnings.append(
            TransformWarning(
                "long_url",
                f"{_shown(urls)}: URLs longer than {MAX_SHORTENED_URL} characters are sent as "
                "they are, without Attentive's link shortening",
            )
        )
    if nested:
        warnings.append(
            TransformWarning(
                "nested_value",
                f"properties.{_shown(nested)}: lists and nested objects render in email only, "
                "not in SMS",
            )
        )
    if not dropped:
        return body
    return attrs.evolve(body, properties=cleaned or None)


def _limited(value: str | None, field: str, warnings: list[TransformWarning]) -> str | None:
    if value is not None and len(value) > MAX_IDENTITY_FIELD:
        warnings.append(
            TransformWarning(
                "identifier_too_long",
                f"{field} has {len(value)} characters; the Identity API takes at most "
                f"{MAX_IDENTITY_FIELD}; left out of the identity call",
            )
        )
        return None
    return value


def identity(
    body: IdentifyRequest, ctx: Context, warnings: list[TransformWarning]
) -> IdentifyRequest | None:
    """Apply the 100-character limit; send only when a linking identifier has a partner."""
    email = _limited(body.email, "traits.email", warnings)
    client_user_id = _limited(body.client_user_id, "userId", warnings)
    customs = tuple(
        identifier
        for identifier in body.custom_identifiers or ()
        if _limited(identifier.value, f"traits.{identifier.name}", warnings) is not None
    )
    linking = (client_user_id is not None) + len(customs)
    others = (body.phone is not None) + (email is not None)
    if linking == 0 or linking + others < 2:
        return None
    return attrs.evolve(
        body, email=email, client_user_id=client_user_id, custom_identifiers=customs or None
    )


def custom_attributes(
    body: CustomAttributesRequest, ctx: Context, warnings: list[TransformWarning]
) -> CustomAttributesRequest | None:
    """A Custom Attributes call with no attributes is not sent."""
    return body if body.properties else None


def only_external_identifiers(user: EventUser) -> bool:
    """True when Attentive can match the user only through a previously linked identifier."""
    return user.phone is None and user.email is None


def check(body: Body, ctx: Context, warnings: list[TransformWarning]) -> Body | Rejected | None:
    """Apply the rules for the type of ``body``."""
    if isinstance(body, CustomEventsRequest):
        return custom_event(body, ctx, warnings)
    if isinstance(body, IdentifyRequest):
        return identity(body, ctx, warnings)
    if isinstance(body, CustomAttributesRequest):
        return custom_attributes(body, ctx, warnings)
    return body
