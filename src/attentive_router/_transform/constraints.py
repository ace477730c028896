"""Attentive's rules on whole request bodies, applied after a mapping has built one.

The rules table says where each value comes from; this module enforces what Attentive's API
documents about the values once assembled: property-key characters and the limits on custom
events, the 100-character identity limit and the "can it link anything" rule of the Identity
API, and non-empty custom attributes. Each check returns the body to send (possibly with keys
dropped), ``None`` when there is nothing worth sending, or a ``Rejected`` outcome. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs
from attrs import define, field

from attentive_router._transform.expressions import MAX_DEPTH
from attentive_router._transform.models import (
    Body,
    CustomAttributesRequest,
    CustomEventsRequest,
    IdentifyRequest,
)
from attentive_router._transform.options import Context
from attentive_router._transform.outcome import Rejected, TransformWarning
from attentive_router._transform.source import shown
from attentive_router._transform.values import E164, EMAIL

MAX_EVENT_KEYS = 200
MAX_SHORTENED_URL = 1024
MAX_IDENTITY_FIELD = 100


_FORBIDDEN_KEY = re.compile(r'["{}\[\]\\|]')
"""Any character Attentive forbids in custom event property keys: " { } [ ] \\ |."""


_CLEAN_KEYS: set[str] = set()
"""Property keys already found free of forbidden characters (bounded by ``_MAX_CLEAN_KEYS``)."""
_MAX_CLEAN_KEYS = 4096


def _forbidden(key: object) -> bool:
    if key in _CLEAN_KEYS:
        return False
    if not isinstance(key, str) or _FORBIDDEN_KEY.search(key):
        return True
    if len(_CLEAN_KEYS) < _MAX_CLEAN_KEYS:
        _CLEAN_KEYS.add(key)
    return False


_PLAIN: frozenset[type] = frozenset({int, float, bool, type(None)})
"""Types of values no rule applies to."""


@define
class _Scan:
    """One pass over custom event properties: what Attentive's rules have to say about them.

    Most properties are short strings, numbers and booleans under keys seen before. The pass
    checks an object's keys against ``_CLEAN_KEYS`` in one set comparison, and then decides on
    each value by its exact type (JSON parsers make no subclasses); other types go the long way.
    """

    dropped: list[str] = field(factory=list)
    too_deep: list[str] = field(factory=list)
    nested: list[str] = field(factory=list)
    urls: list[str] = field(factory=list)
    keys: int = 0

    def visit(self, value: object, path: str, depth: int = 1) -> None:
        """Note forbidden keys, nesting and long URLs at every depth under ``path``."""
        if isinstance(value, dict):
            self._object(value, path, depth)
        elif isinstance(value, list):
            self._array(value, path, depth)

    def _object(self, value: dict[Any, Any], path: str, depth: int) -> None:
        self.keys += len(value)
        if not value.keys() <= _CLEAN_KEYS:
            self._object_with_bad_keys(value, path, depth)
            return
        for key, inner in value.items():
            kind = type(inner)
            if kind is str:
                if len(inner) > MAX_SHORTENED_URL and inner.startswith(_URL_SCHEMES):
                    self.urls.append(f"{path}.{key}")
            elif kind is dict or kind is list:
                where = f"{path}.{key}"
                self.nested.append(where)
                self._inner(inner, where, depth)
            elif kind not in _PLAIN:
                self._other(inner, f"{path}.{key}", depth, nested=True)

    def _object_with_bad_keys(self, value: dict[Any, Any], path: str, depth: int) -> None:
        for key, inner in value.items():
            if _forbidden(key):
                self.dropped.append(f"{path}.{key}")
            else:
                self._other(inner, f"{path}.{key}", depth, nested=True)

    def _array(self, value: list[Any], path: str, depth: int) -> None:
        for index, inner in enumerate(value):
            kind = type(inner)
            if kind is dict and depth < MAX_DEPTH:  # a list of objects (products): the common case
                self._object(inner, f"{path}[{index}]", depth + 1)
            elif kind is dict or kind is list:
                self._inner(inner, f"{path}[{index}]", depth)
            elif kind is str:
                if len(inner) > MAX_SHORTENED_URL and inner.startswith(_URL_SCHEMES):
                    self.urls.append(f"{path}[{index}]")
            elif kind not in _PLAIN:
                self._other(inner, f"{path}[{index}]", depth, nested=False)

    def _other(self, value: object, path: str, depth: int, *, nested: bool) -> None:
        """Any value, judged with ``isinstance`` (``nested``: it is the value of a key)."""
        if isinstance(value, str):
            if len(value) > MAX_SHORTENED_URL and value.startswith(_URL_SCHEMES):
                self.urls.append(path)
        elif isinstance(value, dict | list):
            if nested:
                self.nested.append(path)
            self._inner(value, path, depth)

    def _inner(self, value: dict[Any, Any] | list[Any], path: str, depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.too_deep.append(path)
        elif isinstance(value, dict):
            self._object(value, path, depth + 1)
        else:
            self._array(value, path, depth + 1)


_URL_SCHEMES = ("http://", "https://")


def _kept(value: Any, depth: int = 1) -> Any:
    """A copy without forbidden keys and without containers nested past ``MAX_DEPTH``."""
    if isinstance(value, dict):
        return {
            key: _kept(inner, depth + 1)
            for key, inner in value.items()
            if not _forbidden(key) and not (depth >= MAX_DEPTH and isinstance(inner, dict | list))
        }
    if isinstance(value, list):
        return [
            _kept(inner, depth + 1)
            for inner in value
            if not (depth >= MAX_DEPTH and isinstance(inner, dict | list))
        ]
    return value


def _distinct_keys(value: Any, path: str, seen: set[str]) -> None:
    """Key paths as journeys see them: the items of a list share their keys."""
    if isinstance(value, dict):
        for key, inner in value.items():
            seen.add(f"{path}.{key}")
            _distinct_keys(inner, f"{path}.{key}", seen)
    elif isinstance(value, list):
        for inner in value:
            _distinct_keys(inner, f"{path}[]", seen)


def _shown(paths: list[str], limit: int = 5) -> str:
    unique = list(dict.fromkeys(paths))
    more = f" and {len(unique) - limit} more" if len(unique) > limit else ""
    return ", ".join(unique[:limit]) + more


_NESTED_WARNINGS: dict[tuple[str, ...], TransformWarning] = {}
"""The ``nested_value`` warning by the paths it names: most events of a kind nest the same keys
(``properties.products``). Warnings are immutable values, so one serves them all."""
_MAX_NESTED_WARNINGS = 1024


def _nested_warning(paths: tuple[str, ...]) -> TransformWarning:
    warning = _NESTED_WARNINGS.get(paths)
    if warning is None:
        warning = TransformWarning(
            "nested_value",
            f"{_shown(list(paths))}: lists and nested objects render in email only, not in SMS",
        )
        # Kept only for a few short paths (what events of a kind nest), so memory stays small.
        if len(_NESTED_WARNINGS) < _MAX_NESTED_WARNINGS and sum(map(len, paths)) <= 256:
            _NESTED_WARNINGS[paths] = warning
    return warning


def custom_event(
    body: CustomEventsRequest, ctx: Context, warnings: list[TransformWarning]
) -> CustomEventsRequest | Rejected:
    """Drop (or, strictly, refuse) forbidden property keys; warn about Attentive's limits."""
    if body.properties is None:
        return body
    scan = _Scan()
    scan.visit(body.properties, "properties")
    properties = body.properties
    if scan.dropped:
        message = (
            f"key(s) {_shown(scan.dropped)} contain a character Attentive forbids in property "
            'keys (" { } [ ] \\ |)'
        )
        if ctx.config.strict_property_keys:
            return Rejected("invalid_property_key", message)
        warnings.append(TransformWarning("property_key_dropped", message + "; left out"))
    if scan.too_deep:
        warnings.append(
            TransformWarning(
                "value_too_deep",
                f"{_shown(scan.too_deep)} nest more than {MAX_DEPTH} levels deep; left out",
            )
        )
    if scan.dropped or scan.too_deep:
        properties = _kept(properties)
    if scan.keys > MAX_EVENT_KEYS:
        seen: set[str] = set()
        _distinct_keys(properties, "properties", seen)
        if len(seen) > MAX_EVENT_KEYS:
            warnings.append(
                TransformWarning(
                    "too_many_keys",
                    f"properties have {len(seen)} distinct keys; Attentive saves them all but "
                    f"only {MAX_EVENT_KEYS} are usable in journeys and macros",
                )
            )
    if scan.urls:
        warnings.append(
            TransformWarning(
                "long_url",
                f"{_shown(scan.urls)}: URLs longer than {MAX_SHORTENED_URL} characters are sent "
                "as they are, without Attentive's link shortening",
            )
        )
    if scan.nested:
        warnings.append(_nested_warning(tuple(scan.nested)))
    if properties is body.properties:
        return body
    return attrs.evolve(body, properties=properties or None)


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


def user_warnings(bodies: Iterable[Body], warnings: list[TransformWarning]) -> None:
    """Warn once per event about how Attentive will (or will not) recognise the user."""
    for body in bodies:
        # Every body but the Identity API's names its user (read without a failing getattr).
        if isinstance(body, IdentifyRequest):
            client_user_id = body.client_user_id
        else:
            user = body.user
            client_user_id = None
            if user.external_identifiers is not None:
                client_user_id = user.external_identifiers.client_user_id
            if user.phone is None and user.email is None:
                warnings.append(
                    TransformWarning(
                        "client_user_id_only",
                        "the user is known only by userId/custom identifiers; Attentive matches "
                        "it only if the Identity API linked them to a phone or email before",
                    )
                )
        if (
            client_user_id is not None
            and ("@" in client_user_id or client_user_id.startswith("+"))
            and (EMAIL.fullmatch(client_user_id) or E164.fullmatch(client_user_id))
        ):
            warnings.append(
                TransformWarning(
                    "contact_as_client_user_id",
                    f"userId {shown(client_user_id)} looks like an email address or phone "
                    "number; Attentive asks for a stable internal id in clientUserId, with email "
                    "and phone in their own fields (it is sent as it is)",
                )
            )


def check(body: Body, ctx: Context, warnings: list[TransformWarning]) -> Body | Rejected | None:
    """Apply the rules for the type of ``body``."""
    rule = _RULES.get(type(body))
    return body if rule is None else rule(body, ctx, warnings)


_RULES: dict[type[Any], Any] = {
    CustomEventsRequest: custom_event,
    IdentifyRequest: identity,
    CustomAttributesRequest: custom_attributes,
}
"""The rules of each body type that has any (the bodies are built by the generated code, with
these exact types)."""
