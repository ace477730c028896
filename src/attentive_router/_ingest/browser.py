"""What browsers need besides the event paths: analytics.js's settings, its files, its telemetry.

Segment's analytics.js (``@segment/analytics-next``, also what the classic snippet loads) first
fetches ``{cdn}/v1/projects/{writeKey}/settings``; without a 2xx JSON answer it sends nothing at
all. The only fields it needs to send every event to this server are in ``settings_document``.
With ``--analytics-js DIR`` the server also hosts the library itself, under the paths the snippet
and the library use on Segment's CDN, so that one first-party host is the whole setup.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from attrs import define, field, frozen

SETTINGS_MAX_AGE = 300
"""Seconds a browser or CDN may cache a settings answer (Segment's CDN uses a few minutes)."""

TELEMETRY_LIMIT = 64 * 1024
"""Bytes of a ``/v1/m`` body read before it is dropped unread."""

LOADER = "standalone.js"
"""The standalone build in the package's ``dist/umd`` folder, served as ``analytics.min.js``."""

_KEY_MARK = b'"__WRITE_KEY__"'
"""Where the standalone build takes a write key embedded by the server that hosts it."""

_BUNDLE = re.compile(r"[A-Za-z0-9_.-]+\.js(\.map)?")


class PublicUrlError(ValueError):
    """``--public-url`` is not an http(s) URL with a host."""


@frozen
class PublicBase:
    """Where browsers reach this server: ``protocol`` (http or https) and ``host`` (host[:port])."""

    protocol: str
    host: str


def parse_public_url(value: str) -> PublicBase:
    """``https://events.shop.example`` (a path is not allowed) -> its protocol and host."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PublicUrlError(f"--public-url {value!r}: expected http(s)://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise PublicUrlError(
            f"--public-url {value!r}: only the scheme, host and port (the paths are fixed)"
        )
    return PublicBase(parts.scheme, parts.netloc)


def request_base(
    headers: Mapping[str, str], scheme: str, public: PublicBase | None, trust_proxy: bool
) -> PublicBase:
    """Where the browser that sent ``headers`` reached this server.

    ``--public-url`` wins; behind a proxy that is trusted (``--trust-proxy``), the first
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host``; otherwise the request's own scheme and Host.
    """
    if public is not None:
        return public
    host = headers.get("host", "")
    if trust_proxy:
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
        host = headers.get("x-forwarded-host", "").split(",")[0].strip() or host
    return PublicBase(scheme, host)


def settings_document(write_key: str, base: PublicBase) -> dict[str, Any]:
    """The settings that make an unmodified analytics.js send everything here, and only here.

    - ``integrations["Segment.io"]``: ``apiKey`` (the write key it puts in every request),
      ``apiHost`` and ``protocol`` (where it posts: ``{protocol}://{apiHost}/t``, ``/p``, ...).
      No other integration is listed, so it loads no device-mode destinations.
    - ``metrics``: ``sampleRate`` 0 turns the library's own telemetry off; ``host`` points it here
      too, so a page that turns it on posts to this server's ``/v1/m``, never to Segment.

    Nothing else is read at load: without ``remotePlugins``, ``middlewareSettings``,
    ``enabledMiddleware`` or ``legacyVideoPluginsEnabled`` the library loads none of those.
    """
    api_host = f"{base.host}/v1"
    return {
        "integrations": {
            "Segment.io": {"apiKey": write_key, "apiHost": api_host, "protocol": base.protocol}
        },
        "metrics": {"sampleRate": 0, "host": api_host},
    }


class AnalyticsJsError(ValueError):
    """``--analytics-js DIR`` is not the ``dist/umd`` folder of ``@segment/analytics-next``."""


@define
class AnalyticsJs:
    """A self-hosted copy of analytics.js: the ``dist/umd`` folder of the npm package."""

    folder: Path
    loader: bytes = field(init=False)

    def __attrs_post_init__(self) -> None:
        path = self.folder / LOADER
        if not path.is_file():
            raise AnalyticsJsError(
                f"--analytics-js {self.folder}: no {LOADER} there; give the dist/umd folder of "
                "the npm package @segment/analytics-next"
            )
        self.loader = path.read_bytes()

    def loader_for(self, write_key: str) -> bytes:
        """The standalone build with ``write_key`` embedded, as Segment's CDN serves it."""
        return self.loader.replace(_KEY_MARK, orjson.dumps(write_key), 1)

    def bundle(self, name: str) -> bytes | None:
        """A lazily loaded bundle of the library by its file name, or None."""
        if not _BUNDLE.fullmatch(name) or name.startswith("."):
            return None
        path = self.folder / name
        return path.read_bytes() if path.is_file() else None


@define
class OncePerMinute:
    """Says whether to log a thing now: at most once a minute per key, with the count since."""

    interval: float = 60.0
    _last: dict[str, float] = field(factory=dict)
    _since: dict[str, int] = field(factory=dict)

    def due(self, key: str, now: float | None = None) -> int | None:
        """The number of times ``key`` happened since it was last logged, when it is due."""
        now = time.monotonic() if now is None else now
        self._since[key] = self._since.get(key, 0) + 1
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return None
        if len(self._last) > 10_000:  # many distinct origins: forget the old ones
            self._last.clear()
        self._last[key] = now
        return self._since.pop(key)
