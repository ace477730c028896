"""Who may open the console: one admin token, a session cookie derived from it, CSRF checks.

- The console is off (every path 404) unless a token is configured.
- A person signs in with the token on the sign-in form; the answer sets an ``HttpOnly``,
  ``SameSite=Strict`` cookie holding an HMAC of the token (never the token itself), valid for
  the console's paths only. Scripts may send ``Authorization: Bearer TOKEN`` instead.
- Write keys never open it: only the console token is compared (in constant time).
- Every POST that changes something carries a form token derived from the session (checked in
  constant time), and is refused when the browser says it comes from another site (``Origin``
  or ``Sec-Fetch-Site``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from starlette.requests import Request

COOKIE = "attentive_router_console"
"""The session cookie's name."""

MIN_TOKEN = 16
"""The shortest console token accepted (characters)."""


class ConsoleTokenError(ValueError):
    """The console token cannot be used (too short, or the same as a write key)."""


def check_token(token: str, write_keys: Collection[str]) -> None:
    """Refuse a token that is too short, not printable, or that is also a write key."""
    if len(token) < MIN_TOKEN or not token.isprintable() or token != token.strip():
        raise ConsoleTokenError(
            f"the console token must be at least {MIN_TOKEN} printable characters, without "
            "spaces around it (e.g. `openssl rand -hex 24`)"
        )
    if token in write_keys:
        raise ConsoleTokenError(
            "the console token must not be a write key: write keys are public (browsers "
            "carry them), the console token opens every event"
        )


@frozen
class Guard:
    """Checks requests against the console token."""

    token: str

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def session(self) -> str:
        """The session cookie's value."""
        return self._derive("console session")

    @property
    def form_token(self) -> str:
        """The anti-CSRF token every state-changing form carries."""
        return self._derive("console form")

    def opens(self, token: str) -> bool:
        """Whether ``token`` (typed on the sign-in form) is the console token."""
        return hmac.compare_digest(token.encode(), self.token.encode())

    def signed_in(self, request: Request) -> bool:
        """A valid session cookie, or the token as a Bearer credential."""
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode()):
            return True
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.opens(value.strip())

    def form_ok(self, value: object) -> bool:
        """Whether a form's anti-CSRF token is right."""
        return isinstance(value, str) and hmac.compare_digest(
            value.encode(), self.form_token.encode()
        )


def own_origin(request: Request) -> str:
    """The origin a page of this server has, from the request itself (scheme and Host)."""
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def cross_site(request: Request, origin_of: Callable[[Request], str] = own_origin) -> str | None:
    """Why the browser says this request comes from another site, or None.

    ``origin_of`` says where browsers reach this server (behind a proxy: the public address).
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site!r}"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    if origin == "null":
        return "Origin is null"
    allowed = {origin_of(request), own_origin(request)}
    if origin not in allowed:
        return f"Origin {origin!r} is not this server ({' or '.join(sorted(allowed))})"
    return None
