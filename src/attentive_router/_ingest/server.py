"""``attentive-router serve``: Segment's HTTP Tracking API and a Webhooks destination endpoint.

Both stand in front of the queue and the sender. The app answers 200 only once a request's
events are in the queue file (requests that wait together share one durable transaction:
``_queue.group``), 401 for an unknown write key or a webhook signature that does not match,
400 (or 415) with a specific code for a body it cannot take, and 503 when the queue cannot be
written, so that the client retries.
Delivery runs in the same process and event loop unless it is turned off.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import math
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson
import uvicorn
from attrs import define, evolve, field, frozen
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from attentive_router._console.app import CONSOLE_PATH, Console, Destination
from attentive_router._console.journal import Journal
from attentive_router._console.security import Guard
from attentive_router._delivery.follow import PRUNE_EVERY, REPORT_CHECK, Hooks, keep_delivering
from attentive_router._delivery.health import Health, Report
from attentive_router._delivery.job import QueueBusyError, delivery_lock
from attentive_router._delivery.keycheck import KeyCheck
from attentive_router._delivery.keys import KeySource
from attentive_router._delivery.sender import (
    Paused,
    Sender,
    SenderSettings,
    Stats,
    make_client,
    scrub,
)
from attentive_router._ingest.browser import (
    SETTINGS_MAX_AGE,
    TELEMETRY_LIMIT,
    AnalyticsJs,
    OncePerMinute,
    PublicBase,
    request_base,
    settings_document,
)
from attentive_router._ingest.logs import configure, log
from attentive_router._ingest.metrics import (
    CONTENT_TYPE,
    DestinationCounts,
    KafkaSnapshot,
    Metrics,
    QueueSnapshot,
)
from attentive_router._ingest.parse import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    MAX_WEBHOOK_BYTES,
    BodyError,
    Decoder,
    Prepared,
    loads,
    prepare_batch,
    prepare_single,
    prepare_webhook,
    signed_by,
    size_text,
    write_key_of,
)
from attentive_router._queue.group import Commits
from attentive_router._queue.interface import CommitMode, QueueError, State
from attentive_router._queue.kafka.intake import KafkaIntake
from attentive_router._queue.kafka.settings import KafkaSettings, queue_text
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._transform.options import Config

T = TypeVar("T")

_CALLS = ("track", "page", "identify", "screen", "group", "alias")
SINGLE_CALLS = {
    **{f"/v1/{call}": call for call in _CALLS},
    # analytics.js posts each call to the first letter of its type (``/v1/t`` for track).
    **{f"/v1/{call[0]}": call for call in _CALLS},
}
BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b")
WEBHOOK_PATH = "/v1/webhook"
WEBHOOK_METHODS = ("POST", "PUT", "PATCH")
"""Segment's Webhooks (Actions) may be set to send with any of these."""
_ACCEPTED_TYPES = ("application/json", "text/plain")
_SHOWN_REJECTIONS = 5
SWITCH_INTERVAL = 0.0001
"""Seconds a thread may hold the GIL while another waits (Python's default is 0.005).

The queue's thread lets go of the GIL at every SQLite step and must win it back from the
event loop's thread, which parses request bodies; with the default, each hand-over could
cost up to 5 ms of a request's time."""
CHECKPOINT_EVERY = 0.5
"""Seconds between WAL checkpoints, done off the request path."""


DEFAULT_DESTINATION = "default"
"""The name of the only destination when no configuration file names one (labels, /healthz)."""


class ServeConfigError(ValueError):
    """A bad option for ``serve``."""


@frozen
class DestinationSettings:
    """One Attentive account ``serve`` delivers to.

    Attributes:
        name: Its name in the configuration file (recorded with each event queued for it).
        queue: Its own queue file, or its Kafka queue (then this process only ingests: the
            ``deliver --follow`` workers of the queue's consumer group deliver).
        sender: How to deliver to it; None runs ingest only.
        sources: The source names (write keys) whose events it receives.
        key_source: Where its API key came from (read again on SIGHUP).
        config: Its mapping options (the console's mapping tester and event pages use them;
            the sender has its own copy).
    """

    name: str
    queue: Path | KafkaSettings
    sender: SenderSettings | None
    sources: frozenset[str]
    key_source: KeySource | None = None
    config: Config = field(factory=Config)


@frozen
class ServeSettings:
    """How ``serve`` runs.

    Attributes:
        keys: Write key -> source name (the name deduplication and metrics use).
        webhook_secrets: Shared secret of a Segment Webhooks destination -> the source name
            of the write key it stands for.
        queue: The queue file.
        sender: Delivery settings; None runs ingest only.
        cors_origins: Origins browsers may post from ("*" for any); none: no CORS headers.
        dedupe_window: Seconds a messageId is remembered per write key.
        busy_timeout: Seconds a write waits for another process's lock (on Kafka: for the
            brokers' acknowledgements) before failing (503).
        grace: Seconds requests and deliveries in progress get to finish after SIGTERM.
        public_url: Where browsers reach the server (behind a proxy); None: from each request.
        trust_proxy: Take the scheme and host from ``X-Forwarded-Proto`` / ``X-Forwarded-Host``.
        analytics_js: The ``dist/umd`` folder of ``@segment/analytics-next`` to host; None: not.
        key_source: Where the API key came from (read again on SIGHUP).
        key_retry: Seconds between two checks of a key Attentive refused.
        destinations: The Attentive accounts of a configuration file, each with its own
            queue, sender and key; none: one destination made of ``queue``, ``sender`` and
            ``key_source``, which receives every source's events.
        commit: ``group``: requests waiting together share a transaction; ``per-request``:
            one transaction each.
        config: The mapping options of the destination made of ``queue`` and ``sender``.
        console_token: The operator console's token; None: no console (``/console`` is 404).
    """

    keys: Mapping[str, str]
    queue: Path | KafkaSettings
    sender: SenderSettings | None
    host: str = "127.0.0.1"
    port: int = 8088
    cors_origins: Sequence[str] = ()
    dedupe_window: float = 24 * 3600.0
    busy_timeout: float = 5.0
    grace: float = 5.0
    log_level: str = "info"
    log_format: str = "json"
    public_url: PublicBase | None = None
    trust_proxy: bool = False
    analytics_js: AnalyticsJs | None = None
    webhook_secrets: Mapping[str, str] = field(factory=dict)
    key_source: KeySource | None = None
    key_retry: float = 300.0
    commit: CommitMode = "group"
    destinations: Sequence[DestinationSettings] = ()
    config: Config = field(factory=Config)
    console_token: str | None = field(default=None, repr=False)

    def routes(self) -> tuple[DestinationSettings, ...]:
        """The destinations, the implicit one when the settings name none."""
        if self.destinations:
            return tuple(self.destinations)
        implicit = DestinationSettings(
            DEFAULT_DESTINATION,
            self.queue,
            self.sender,
            frozenset(self.keys.values()),
            self.key_source,
            self.config,
        )
        return (implicit,)


def parse_write_key(value: str) -> tuple[str, str]:
    """``KEY`` or ``NAME=KEY`` -> (key, source name); unnamed keys are named by a digest."""
    name, sep, key = value.partition("=")
    if not sep:
        name, key = "", value
    key = key.strip()
    if not key or not key.isprintable() or any(c.isspace() or c == ":" for c in key):
        raise ServeConfigError(
            "a write key must be printable, without spaces or ':' (NAME=KEY or KEY)"
        )
    if not name:
        name = "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    elif not all(c.isalnum() or c in "-_." for c in name):
        raise ServeConfigError(f"write key name {name!r}: use letters, digits, '-', '_', '.'")
    return key, name


def parse_webhook_secret(value: str, names: Collection[str]) -> tuple[str, str]:
    """``NAME=SECRET`` -> (secret, source name); NAME must name one of the write keys."""
    name, sep, secret = value.partition("=")
    if not sep or not name:
        raise ServeConfigError(
            "a webhook secret is NAME=SECRET, NAME being the name of a write key (NAME=KEY)"
        )
    if not secret.strip() or not secret.isprintable():
        raise ServeConfigError(f"webhook secret for {name!r}: the secret must be printable text")
    if name not in names:
        raise ServeConfigError(
            f"webhook secret for {name!r}: no write key is named {name!r} "
            "(name it with --write-key NAME=KEY)"
        )
    return secret, name


def parse_webhook_secrets(values: Iterable[str], names: Collection[str]) -> dict[str, str]:
    """``NAME=SECRET`` values -> {secret: source name}; a secret may stand for one name only."""
    secrets: dict[str, str] = {}
    for value in values:
        secret, name = parse_webhook_secret(value, names)
        if secrets.setdefault(secret, name) != name:
            msg = f"webhook secret for {name!r}: the same secret is given to {secrets[secret]!r}"
            raise ServeConfigError(msg)
    return secrets


@define
class _Delivery:
    """One destination's delivery side, as the app and the metrics see it."""

    name: str
    queue: SQLiteQueue | None
    queue_path: Path | str
    check: KeyCheck
    intake: KafkaIntake | None = None
    """The producer of a Kafka queue (then ``queue`` is None and this process only ingests)."""
    delivering: bool = False
    stats: Stats = field(factory=Stats)
    health: Health = field(factory=lambda: Health(""))
    sender: Sender | None = None
    state: str = "off"
    foreign: dict[str, int] = field(factory=dict)
    """Events in the queue recorded for other destinations (left queued, never sent)."""
    journal: Journal | None = None
    """What its sender did lately, for the console (None: no console, nothing kept)."""

    @property
    def paused(self) -> Paused | None:
        """Attentive's refusal of the key while sending is paused."""
        return self.check.paused

    @property
    def store(self) -> SQLiteQueue:
        """The queue file (the delivery side runs only for one)."""
        if self.queue is None:
            raise RuntimeError(f"{self.name}: a Kafka queue has no local queue file")
        return self.queue

    def use_token(self, token: str) -> None:
        """Send with ``token`` from now on (read again on SIGHUP)."""
        if self.sender is not None:
            self.sender.use_token(token)

    def note(self, level: int, message: str, fields: Mapping[str, object]) -> None:
        """A log line about this destination."""
        extra: dict[str, Any] = {"destination": self.name, **fields}
        log(level, message, **extra)

    def foreign_problem(self) -> str | None:
        """What to do about events recorded for other destinations, if there are any."""
        if not self.foreign:
            return None
        named = ", ".join(f"{count:,} for {name!r}" for name, count in self.foreign.items())
        return (
            f"the queue {self.queue_path} of destination {self.name!r} holds events recorded "
            f"for other destinations ({named}): they are not sent with {self.name!r}'s key and "
            "stay queued. Point each destination at its own queue file again in the "
            "configuration file (or deliver them with `attentive-router deliver --config FILE "
            "--destination NAME --queue PATH` for the destination they name)"
        )


class Ingest:
    """The request handlers, bound to a queue, the write keys and the delivery side."""

    def __init__(
        self,
        deliveries: Sequence[_Delivery],
        settings: ServeSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deliveries = list(deliveries)
        self.routes = {
            source: delivery
            for delivery, route in zip(deliveries, settings.routes(), strict=True)
            for source in route.sources
        }
        self.keys = dict(settings.keys)
        self.secrets = dict(settings.webhook_secrets)
        self.clock = clock
        self.metrics = Metrics(
            destinations=[
                DestinationCounts(d.name, d.stats if d.delivering else None) for d in deliveries
            ]
        )
        self.public_url = settings.public_url
        self.trust_proxy = settings.trust_proxy
        self.analytics_js = settings.analytics_js
        self.throttle = OncePerMinute()
        # Writes run on their own thread so that the event loop keeps answering; the
        # queue serialises them with the sender's claims and verdicts.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ingest")
        self.commits = Commits(self.call, settings.commit, self.metrics.commits)

    async def call(self, action: Callable[..., T], *args: Any) -> T:
        """Run a queue operation on the ingest thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, action, *args)

    def close(self) -> None:
        """Stop the ingest thread."""
        self._executor.shutdown(wait=True)

    def source_of(self, key: str | None) -> str | None:
        """The source name of a write key, compared in constant time."""
        if key is None:
            return None
        given = key.encode(errors="surrogatepass")
        found = None
        for known, name in self.keys.items():
            if hmac.compare_digest(known.encode(), given):
                found = name
        return found

    async def handle(self, request: Request) -> Response:
        """One ``/v1/...`` call: check, store durably, answer."""
        started = time.perf_counter()
        path = request.url.path
        fields: dict[str, Any] = {}
        try:
            status, body = await self._ingest(request, path, fields)
        except BodyError as error:
            status = error.status
            body = {"success": False, "code": error.code, "message": error.message}
            fields["code"] = error.code
        except ClientDisconnect:
            status, body = 499, {}
            fields["code"] = "client_disconnected"
        except Exception:  # noqa: BLE001 - a bug must not cost the client its events
            # Nothing was stored: 503 makes the client keep the events and send them again.
            log(logging.ERROR, "ingest failed unexpectedly", path=path, exc_info=True)
            status = 503
            body = {"success": False, "code": "internal_error", "message": "send again later"}
            fields["code"] = "internal_error"
        elapsed = time.perf_counter() - started
        self.metrics.ingest.requests[path, status] += 1
        self.metrics.latency.labels(path).observe(elapsed)
        level = logging.INFO if status == 200 else logging.WARNING
        if status >= 500:
            level = logging.ERROR
        log(level, "ingest", path=path, status=status, ms=round(elapsed * 1000, 2), **fields)
        headers = {"Retry-After": "5"} if status == 503 else None
        return Response(orjson.dumps(body), status, headers, media_type="application/json")

    async def _ingest(
        self, request: Request, path: str, fields: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        call = SINGLE_CALLS.get(path)
        webhook = path == WEBHOOK_PATH
        _check_content_type(request.headers.get("content-type"))
        # On the webhook path a signature alone decides: the Authorization header may then be
        # anything the destination was set to send.
        signature = request.headers.get("x-signature") if webhook else None
        basic = _basic_key(request.headers.get("authorization"))
        if signature is None and basic is not None and self.source_of(basic) is None:
            return _unauthorized(fields, "the write key in the Authorization header is not known")
        raw = await _body(request, _limit(call, webhook=webhook))
        if signature is not None:
            fields["auth"] = "signature"
            source = signed_by(raw, signature, self.secrets)
            if source is None:
                return _unauthorized(fields, _signature_problem(configured=bool(self.secrets)))
            document = loads(raw)
        else:
            document = loads(raw)
            source = self.source_of(basic if basic is not None else write_key_of(document))
            if source is None:
                return _unauthorized(fields, _no_key(webhook=webhook))
        fields["source"] = source
        now = self.clock()
        if webhook:
            prepared = prepare_webhook(document, now, source, raw)
        elif call is not None:
            prepared = Prepared([prepare_single(document, call, now, source)], [])
        else:
            prepared = prepare_batch(document, now, source, raw)
        events, rejections = prepared.events, prepared.rejections
        delivery = self.routes[source]
        fields["destination"] = delivery.name
        try:
            if delivery.intake is not None:
                result = await delivery.intake.put(events, now)
            else:
                result = await self.commits.put(delivery.store, events, now, delivery.name)
        except QueueError as error:
            fields["error"] = str(error)
            raise BodyError(
                503, "storage_unavailable", "the events could not be stored; send them again"
            ) from None
        counts = self.metrics.ingest
        counts.received[source, delivery.name] += len(events)
        counts.duplicates[source, delivery.name] += result.duplicates
        for reason in result.rejected:
            counts.rejected[delivery.name, reason] += 1
        if delivery.sender is not None and result.accepted > len(result.rejected):
            delivery.sender.notify()
        fields.update(events=len(events), stored=result.accepted, duplicates=result.duplicates)
        answer: dict[str, Any] = {"success": True}
        if rejections:
            fields["rejected"] = len(rejections)
            shown = [
                {"index": r.index, "reason": r.reason, "message": r.message} for r in rejections
            ]
            fields["rejections"] = shown[:_SHOWN_REJECTIONS]
            answer["rejected"] = shown
        return 200, answer

    async def healthz(self, _request: Request) -> Response:
        """Liveness, with each destination's delivery state (see ``health_body``)."""
        body = health_body([_destination_health(d) for d in self.deliveries])
        return Response(orjson.dumps(body), 200, media_type="application/json")

    async def metrics_text(self, _request: Request) -> Response:
        """Prometheus text format."""
        snapshots = {}
        for delivery in self.deliveries:
            if delivery.queue is None:
                continue  # a Kafka queue: its workers report lag and depth
            try:
                counts = await self.call(delivery.queue.counts)
                oldest = await self.call(delivery.queue.oldest_queued)
            except QueueError:
                counts, oldest = None, None
            age = None if oldest is None else max(0.0, self.clock() - oldest)
            snapshots[delivery.name] = QueueSnapshot(counts, age)
        paused = {d.name for d in self.deliveries if d.paused is not None}
        kafka = {
            d.name: KafkaSnapshot(d.intake.reach.reachable)
            for d in self.deliveries
            if d.intake is not None
        }
        text = self.metrics.render(snapshots, paused, kafka)
        return Response(text, 200, media_type=CONTENT_TYPE)

    async def settings(self, request: Request) -> Response:
        """``GET /v1/projects/{writeKey}/settings``: what analytics.js loads before anything."""
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": "GET, HEAD, OPTIONS"})
        source = self.source_of(request.path_params["key"])
        origin = request.headers.get("origin")
        if source is None:
            self.browser_event(
                "settings_unknown_key", "settings for an unknown write key", origin or "-"
            )
            return _json_error(404, "unknown_write_key", "no such write key")
        base = request_base(request.headers, request.url.scheme, self.public_url, self.trust_proxy)
        self.metrics.ingest.browser["settings"] += 1
        log(
            logging.INFO,
            "settings",
            source=source,
            origin=origin,
            api=base.protocol + "://" + base.host,
        )
        return Response(
            orjson.dumps(settings_document(request.path_params["key"], base)),
            200,
            {"Cache-Control": f"public, max-age={SETTINGS_MAX_AGE}"},
            media_type="application/json",
        )

    async def telemetry(self, request: Request) -> Response:
        """``POST /v1/m``: analytics.js's own telemetry, accepted and dropped unread."""
        read = 0
        with contextlib.suppress(ClientDisconnect):
            async for chunk in request.stream():
                read += len(chunk)
                if read > TELEMETRY_LIMIT:
                    break
        self.metrics.ingest.browser["telemetry_dropped"] += 1
        return Response(b'{"success":true}', 200, media_type="application/json")

    async def loader(self, request: Request) -> Response:
        """``GET /analytics.js/v1/{writeKey}/analytics.min.js``: the self-hosted library."""
        hosted = self.analytics_js
        if hosted is None or self.source_of(request.path_params["key"]) is None:
            what = (
                "analytics.js for an unknown write key" if hosted else "analytics.js (not hosted)"
            )
            self.browser_event("not_found", what, request.url.path)
            # A script, so that the browser reports the 404 instead of blocking a JSON body.
            script = b"console.error('analytics.js: no such write key on this server');\n"
            return Response(script, 404, media_type="application/javascript")
        self.metrics.ingest.browser["analytics_js"] += 1
        return Response(
            hosted.loader_for(request.path_params["key"]),
            200,
            {"Cache-Control": f"public, max-age={SETTINGS_MAX_AGE}"},
            media_type="application/javascript",
        )

    async def bundle(self, request: Request) -> Response:
        """``GET /analytics-next/bundles/{name}``: a bundle the library loads lazily."""
        hosted = self.analytics_js
        content = None if hosted is None else hosted.bundle(request.path_params["name"])
        if content is None:
            self.browser_event("not_found", "no such analytics.js bundle", request.url.path)
            return _json_error(404, "not_found", "no such file")
        self.metrics.ingest.browser["bundles"] += 1
        # Bundle names carry a content hash: a copy never goes stale.
        headers = {"Cache-Control": "public, max-age=31536000, immutable"}
        return Response(content, 200, headers, media_type="application/javascript")

    async def not_found(self, request: Request, _error: Exception) -> Response:
        """Any other path: a JSON 404, counted, logged once a minute per path."""
        self.browser_event("not_found", "no such path", request.url.path)
        return _json_error(404, "not_found", f"{request.method} {request.url.path}: no such path")

    def browser_event(self, kind: str, message: str, key: str | None) -> None:
        """Count ``kind`` and log it, at most once a minute for the same ``key``."""
        self.metrics.ingest.browser[kind] += 1
        repeated = self.throttle.due(f"{kind} {key}")
        if repeated is not None:
            log(logging.WARNING, message, kind=kind, about=key, times=repeated)

    async def not_allowed(self, request: Request) -> Response:
        """A GET (or other method) on an ingest path."""
        path = request.url.path
        allowed = ", ".join(WEBHOOK_METHODS) if path == WEBHOOK_PATH else "POST"
        body = {
            "success": False,
            "code": "method_not_allowed",
            "message": f"{request.method} {path}: events are sent with {allowed}",
        }
        return Response(orjson.dumps(body), 405, {"Allow": allowed}, "application/json")


def _limit(call: str | None, *, webhook: bool) -> int:
    if webhook:
        return MAX_WEBHOOK_BYTES
    return MAX_EVENT_BYTES if call is not None else MAX_BATCH_BYTES


async def _body(request: Request, limit: int) -> bytes:
    """The request body, decompressed; ``BodyError`` beyond ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + 1024:
        raise BodyError(
            400, "body_too_large", f"the request body is larger than {size_text(limit)}"
        )
    decoder = Decoder(request.headers.get("content-encoding"), limit)
    async for chunk in request.stream():
        decoder.feed(chunk)
    return decoder.finish()


def _json_error(status: int, code: str, message: str) -> Response:
    body = {"success": False, "code": code, "message": message}
    return Response(orjson.dumps(body), status, media_type="application/json")


class OriginGuard:
    """Refuses requests from browser origins that ``--cors-origin`` does not allow.

    A browser sends some cross-origin requests without asking first (a ``text/plain`` POST is
    one), and CORS only hides the answer from the page: the events would still be stored. So a
    request whose ``Origin`` is not allowed gets 403 ``origin_not_allowed`` before it is read,
    and a refused preflight is logged (once a minute per origin) before CORS answers it.
    """

    def __init__(self, app: ASGIApp, ingest: Ingest, origins: Sequence[str]) -> None:
        self.app = app
        self.ingest = ingest
        self.origins = frozenset(origin.encode() for origin in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = next((v for k, v in scope["headers"] if k == b"origin"), None)
            console = scope["path"].startswith(CONSOLE_PATH)  # it checks origins itself
            if origin is not None and origin not in self.origins and not console:
                shown = origin.decode("latin-1")
                preflight = scope["method"] == "OPTIONS"
                self.ingest.browser_event(
                    "origin_refused",
                    "a browser on an origin that --cors-origin does not allow",
                    shown,
                )
                if not preflight and scope["path"] not in ("/healthz", "/metrics"):
                    self.ingest.metrics.ingest.requests[scope["path"], 403] += 1
                    message = f"origin {shown!r} is not allowed (serve --cors-origin)"
                    await _json_error(403, "origin_not_allowed", message)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _unauthorized(fields: dict[str, Any], message: str) -> tuple[int, dict[str, Any]]:
    fields["code"] = "unauthorized"
    return 401, {"success": False, "code": "unauthorized", "message": message}


def _signature_problem(*, configured: bool) -> str:
    if not configured:
        return "X-Signature was sent but this server has no webhook secret (--webhook-secret)"
    return "X-Signature is not the HMAC-SHA1 of the body with a known webhook secret"


def _no_key(*, webhook: bool) -> str:
    if webhook:
        return (
            "no X-Signature and no known write key: sign with the shared secret or send HTTP Basic"
        )
    return "no known write key: send it with HTTP Basic or as writeKey"


def _check_content_type(value: str | None) -> None:
    if value is None:
        return
    kind = value.split(";", 1)[0].strip().lower()
    if kind in _ACCEPTED_TYPES or (kind.startswith("application/") and kind.endswith("+json")):
        return
    raise BodyError(
        415,
        "unsupported_content_type",
        f"Content-Type {kind!r} is not supported: send application/json",
    )


def _basic_key(header: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header (the write key), else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0]


def create_app(
    ingest: Ingest, cors_origins: Sequence[str] = (), console: Console | None = None
) -> Starlette:
    """The ASGI app of ``serve`` (with the operator console under ``/console`` when given)."""
    routes: list[BaseRoute] = [
        Route(path, ingest.handle, methods=["POST"]) for path in (*BATCH_PATHS, *SINGLE_CALLS)
    ]
    routes += [
        Route(path, ingest.not_allowed, methods=["GET", "PUT", "DELETE", "PATCH"])
        for path in (*BATCH_PATHS, *SINGLE_CALLS)
    ]
    routes += [
        Route(WEBHOOK_PATH, ingest.handle, methods=list(WEBHOOK_METHODS)),
        Route(WEBHOOK_PATH, ingest.not_allowed, methods=["GET", "DELETE"]),
    ]
    routes += [
        Route("/healthz", ingest.healthz, methods=["GET"]),
        Route("/metrics", ingest.metrics_text, methods=["GET"]),
        Route("/v1/projects/{key}/settings", ingest.settings, methods=["GET", "HEAD", "OPTIONS"]),
        Route("/v1/m", ingest.telemetry, methods=["POST"]),
        Route("/analytics.js/v1/{key}/analytics.min.js", ingest.loader, methods=["GET", "HEAD"]),
        Route("/analytics-next/bundles/{name}", ingest.bundle, methods=["GET", "HEAD"]),
    ]
    if console is not None:
        routes.append(Route(CONSOLE_PATH, console.entry, methods=["GET"]))
        routes.append(Mount(CONSOLE_PATH, routes=console.routes()))
    middleware = []
    if cors_origins and "*" not in cors_origins:
        middleware.append(Middleware(OriginGuard, ingest=ingest, origins=cors_origins))
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                allow_headers=[
                    "Content-Type",
                    "Content-Encoding",
                    "Authorization",
                    "X-Retry-Count",
                ],
                max_age=600,
            )
        )
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={404: ingest.not_found}
    )


def _iso(moment: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    return f"{whole}Z"


STATE_ORDER = ("paused", "restarting", "running", "off")
"""The top-level ``delivery`` of /healthz: the first of these that some destination is in."""


def _destination_health(delivery: _Delivery) -> dict[str, Any]:
    """One destination's part of /healthz."""
    body: dict[str, Any] = {"status": "ok", "delivery": delivery.state}
    paused = delivery.paused
    if paused is not None:
        body["status"] = "degraded"
        body["problem"] = paused.explain(delivery.check.remedy)
        if delivery.check.next_check is not None:
            body["next_key_check"] = _iso(delivery.check.next_check)
    elif delivery.state == "running":
        problems = delivery.health.failing()
        if problems:
            body["status"] = "degraded"
            body["problems"] = [
                {
                    "endpoint": problem.endpoint,
                    "target": problem.target,
                    "cause": problem.cause,
                    "since": _iso(problem.since),
                    "failures": problem.failures,
                    "last_error": problem.detail,
                }
                for problem in problems
            ]
    foreign = delivery.foreign_problem()
    if foreign is not None:
        body["status"] = "degraded"
        body["other_destinations"] = foreign
    intake = delivery.intake
    if intake is not None:
        reach = intake.reach
        broker: dict[str, Any] = {"queue": intake.settings.url, "reachable": reach.reachable}
        if reach.checked_at is not None:
            broker["checked_at"] = _iso(reach.checked_at)
        if not reach.reachable:
            body["status"] = "degraded"
            broker["problem"] = reach.problem or "no broker answered"
        body["kafka"] = broker
    return {"name": delivery.name, **body}


def health_body(destinations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """/healthz: the worst of the destinations at the top, each one under ``destinations``.

    ``status`` is ``degraded`` when any destination is; ``delivery`` is the first of
    ``STATE_ORDER`` some destination is in (``paused`` when any is paused). With one
    destination the top level also carries its ``problem``, ``next_key_check`` and ``problems``
    as before; with several, ``problem`` joins the paused ones' (each named) and ``problems``
    lists every failing endpoint with its ``destination``.
    """
    states = {d["delivery"] for d in destinations}
    body: dict[str, Any] = {
        "status": "degraded" if any(d["status"] != "ok" for d in destinations) else "ok",
        "delivery": next((state for state in STATE_ORDER if state in states), "off"),
    }
    if len(destinations) == 1:
        only = destinations[0]
        body.update({k: only[k] for k in ("problem", "next_key_check", "problems") if k in only})
    else:
        paused = [f"{d['name']}: {d['problem']}" for d in destinations if "problem" in d]
        if paused:
            body["problem"] = " | ".join(paused)
        failing = [
            {"destination": d["name"], **problem}
            for d in destinations
            for problem in d.get("problems", ())
        ]
        if failing:
            body["problems"] = failing
    body["destinations"] = {
        d["name"]: {k: v for k, v in d.items() if k != "name"} for d in destinations
    }
    return body


async def _check_foreign(delivery: _Delivery) -> None:
    """Count the queue's events recorded for other destinations; say so when there are some."""
    try:
        delivery.foreign = await asyncio.to_thread(delivery.store.foreign)
    except QueueError:
        return  # the sender meets the failure too, and says so
    problem = delivery.foreign_problem()
    if problem is not None:
        delivery.note(logging.ERROR, "events for another destination: " + problem, {})


async def _deliver_forever(
    delivery: _Delivery, settings: SenderSettings, stop: asyncio.Event
) -> None:
    """Run the destination's sender until ``stop`` (``keep_delivering``, as deliver --follow).

    It starts again after a storage failure, and once a key Attentive refused is accepted again.
    """
    client = make_client(settings)
    delivery.health = Health(settings.base_url)
    check = delivery.check
    check.token = settings.token

    async def started(sender: Sender) -> None:
        sender.stats = delivery.stats
        sender.health = delivery.health
        sender.observer = delivery.journal  # None without the console
        delivery.sender = sender
        delivery.state = "running"
        await _check_foreign(delivery)

    def failed(error: QueueError, wait: float) -> None:
        delivery.state = "restarting"
        delivery.note(
            logging.ERROR,
            "delivery stopped: the queue failed; starting again",
            {"error": scrub(str(error), check.token), "seconds": wait},
        )

    def paused() -> None:
        delivery.state = "paused"

    try:
        await keep_delivering(
            delivery.store,
            client,
            lambda: evolve(settings, token=check.token),
            stop,
            Hooks(started=started, failed=failed, paused=paused),
            keys=check,
            note=delivery.note,
        )
    finally:
        delivery.state = "off"
        await client.aclose()


def _log_report(report: Report, queue: Path | str, destination: str) -> None:
    """One delivery problem (or its end) in the log."""
    fields: dict[str, Any] = {
        "destination": destination,
        "endpoint": report.endpoint,
        "count": report.count,
    }
    if report.kind == "dead":
        fields.update(reason=report.cause, messageId=report.example, last=report.detail)
        fields["see"] = f"attentive-router dead-letters list --queue {shlex.quote(str(queue))}"
        log(logging.WARNING, "events dead-lettered", **fields)
        return
    fields.update(target=report.target, cause=report.cause)
    if report.since is not None:
        fields["since"] = _iso(report.since)
    if report.kind == "recovered":
        log(logging.WARNING, "delivery recovered: " + report.text(), **fields)
        return
    fields["last_error"] = report.detail
    log(logging.WARNING, "delivery failing: " + report.text(), **fields)


def _absolute(queue: Path | str) -> Path | str:
    """A queue file's absolute path (for the commands the logs suggest); a URL as it is."""
    return queue.resolve() if isinstance(queue, Path) else queue


async def _report_now_and_then(delivery: _Delivery, stop: asyncio.Event) -> None:
    """Log the delivery problems ``Health`` has due, a few lines a minute at most."""
    queue = _absolute(delivery.queue_path)
    while not stop.is_set():
        for report in delivery.health.reports(time.time()):
            _log_report(report, queue, delivery.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REPORT_CHECK)
    for report in delivery.health.reports(time.time()):
        _log_report(report, queue, delivery.name)


async def _prune_now_and_then(ingest: Ingest, delivery: _Delivery, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            forgotten = await ingest.call(delivery.store.prune, time.time())
        except QueueError as error:
            delivery.note(logging.ERROR, "could not prune the queue", {"error": str(error)})
        else:
            if forgotten:
                delivery.note(logging.INFO, "pruned finished events", {"events": forgotten})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PRUNE_EVERY)


class _Server(uvicorn.Server):
    """uvicorn, with the signals left to ``serve`` (which exits 0 after SIGTERM)."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self._announce = announce

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._announce()


def _mode(settings: ServeSettings) -> str:
    """What the server does with the events, for its first line."""
    routes = settings.routes()
    kafka = [route for route in routes if isinstance(route.queue, KafkaSettings)]
    if kafka:
        queues = ", ".join(route.queue.url for route in kafka)  # type: ignore[union-attr]
        return f"ingest only, into {queues}: deliver --follow workers deliver"
    delivering = [route for route in routes if route.sender is not None]
    if not delivering:
        return "ingest only"
    if not settings.destinations:
        return f"delivering to {delivering[0].sender.base_url}"  # type: ignore[union-attr]
    return "delivering to " + ", ".join(
        f"{route.name} at {route.sender.base_url}"  # type: ignore[union-attr]
        for route in delivering
    )


async def _start_intakes(deliveries: Sequence[_Delivery], stderr: IO[str]) -> bool:
    """Connect the Kafka producers; say why and return False when one cannot start."""
    for delivery in deliveries:
        if delivery.intake is None:
            continue
        try:
            await delivery.intake.start()
        except QueueError as error:
            print(f"attentive-router serve: {error}", file=stderr)
            for started in deliveries:
                if started.intake is not None:
                    await started.intake.stop()
            return False
    return True


async def _serve(
    settings: ServeSettings,
    deliveries: Sequence[_Delivery],
    sock: socket.socket,
    stdout: IO[str],
    stderr: IO[str],
) -> int:
    if not await _start_intakes(deliveries, stderr):
        return 2
    ingest = Ingest(deliveries, settings)
    console = None if settings.console_token is None else _console(settings, deliveries)
    app = create_app(ingest, settings.cors_origins, console)
    config = uvicorn.Config(
        app,
        access_log=False,
        lifespan="off",
        log_config=None,
        timeout_graceful_shutdown=max(1, math.ceil(settings.grace)),
        server_header=False,
        # Forwarded headers count only with --trust-proxy (see browser.request_base), not
        # whenever the peer is 127.0.0.1, as uvicorn would by default.
        proxy_headers=False,
    )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    mode = _mode(settings)

    def announce() -> None:
        print(f"attentive-router serving on {url} ({mode})", file=stdout, flush=True)
        log(
            logging.INFO,
            "serving",
            url=url,
            write_keys=sorted(set(settings.keys.values())),
            webhook_secrets=sorted(set(settings.webhook_secrets.values())),
            delivery=mode,
            queue=queue_text(settings.queue) if not settings.destinations else None,
            destinations={
                route.name: {"queue": queue_text(route.queue), "sources": sorted(route.sources)}
                for route in settings.routes()
            },
            cors_origins=list(settings.cors_origins),
            public_url=None
            if settings.public_url is None
            else f"{settings.public_url.protocol}://{settings.public_url.host}",
            trust_proxy=settings.trust_proxy,
            analytics_js=None
            if settings.analytics_js is None
            else str(settings.analytics_js.folder),
        )

    server = _Server(config, announce)
    stop = asyncio.Event()

    def _on_signal(signum: int) -> None:
        # Requests in flight and deliveries in flight get the same grace period, side by side.
        server.handle_exit(signum, None)
        stop.set()

    def _on_hangup() -> None:
        for delivery in deliveries:
            delivery.check.hangup.set()

    loop = asyncio.get_running_loop()
    signals = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signum)
        signals.append(signum)
    loop.add_signal_handler(signal.SIGHUP, _on_hangup)
    signals.append(signal.SIGHUP)
    tasks = []
    for delivery, route in zip(deliveries, settings.routes(), strict=True):
        if delivery.intake is not None:
            tasks.append(asyncio.create_task(delivery.intake.watch(stop)))
            continue
        tasks.append(asyncio.create_task(_prune_now_and_then(ingest, delivery, stop)))
        tasks.append(asyncio.create_task(delivery.check.watch_hangups(stop, delivery.note)))
        if route.sender is not None:
            tasks.append(asyncio.create_task(_deliver_forever(delivery, route.sender, stop)))
            tasks.append(asyncio.create_task(_report_now_and_then(delivery, stop)))
    try:
        await server.serve(sockets=[sock])
    finally:
        log(logging.INFO, "stopping: no new requests; finishing deliveries in flight")
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for delivery in deliveries:
            if delivery.intake is not None:
                await delivery.intake.stop()
        if console is not None:
            await asyncio.to_thread(console.close)
        for signum in signals:
            loop.remove_signal_handler(signum)
        ingest.close()
    log(
        logging.INFO,
        "stopped",
        requests=sum(ingest.metrics.ingest.requests.values()),
        events_received=sum(ingest.metrics.ingest.received.values()),
        delivered=sum(d.stats.outcomes[State.DELIVERED.label] for d in deliveries),
        attentive_requests=sum(d.stats.requests for d in deliveries),
    )
    return 0


def _console(settings: ServeSettings, deliveries: Sequence[_Delivery]) -> Console:
    """The operator console over every destination of this server."""
    shown = []
    for delivery, route in zip(deliveries, settings.routes(), strict=True):
        kafka = None
        if isinstance(route.queue, KafkaSettings):
            from attentive_router._queue.kafka.view import KafkaView  # noqa: PLC0415 - Kafka only

            kafka = KafkaView(route.queue, route.name)
        shown.append(
            Destination(
                route.name,
                route.config,
                queue=delivery.queue,
                kafka=kafka,
                journal=delivery.journal or Journal(),
                state=lambda d=delivery: d.state,  # type: ignore[misc]
                paused=lambda d=delivery: _paused_text(d),  # type: ignore[misc]
                wake=lambda d=delivery: d.sender.notify() if d.sender is not None else None,  # type: ignore[misc]
            )
        )
    token = settings.console_token or ""

    def origin_of(request: Request) -> str:
        base = request_base(
            request.headers, request.url.scheme, settings.public_url, settings.trust_proxy
        )
        return f"{base.protocol}://{base.host}"

    return Console(shown, settings.keys.values(), Guard(token), origin_of)


def _paused_text(delivery: _Delivery) -> str | None:
    paused = delivery.paused
    return None if paused is None else paused.explain(delivery.check.remedy)


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return None
    return uvloop.new_event_loop


def _open(settings: ServeSettings, route: DestinationSettings) -> SQLiteQueue:
    return SQLiteQueue(
        route.queue,  # type: ignore[arg-type] # a Kafka queue is never opened here
        dedupe_window=settings.dedupe_window,
        busy_timeout=settings.busy_timeout,
        checkpoint_every=CHECKPOINT_EVERY,
        destination=route.name if settings.destinations else None,
    )


def run_serve(settings: ServeSettings, stdout: IO[str], stderr: IO[str]) -> int:
    """Run ``serve`` until SIGINT or SIGTERM; return the exit status."""
    prog = "attentive-router serve"
    configure(settings.log_level, settings.log_format, stderr)
    sys.setswitchinterval(SWITCH_INTERVAL)
    deliveries: list[_Delivery] = []
    try:
        with contextlib.ExitStack() as stack:
            for route in settings.routes():
                if isinstance(route.queue, KafkaSettings):
                    deliveries.append(_kafka_delivery(settings, route, route.queue))
                    continue
                try:
                    queue = _open(settings, route)
                except QueueError as error:
                    print(f"{prog}: {error}", file=stderr)
                    return 2
                stack.callback(queue.close)
                for warning in queue.warnings:
                    log(logging.WARNING, warning, queue=str(route.queue), destination=route.name)
                if route.sender is not None:
                    stack.enter_context(delivery_lock(route.queue))
                delivery = _Delivery(
                    route.name,
                    queue,
                    route.queue,
                    KeyCheck(route.key_source, settings.key_retry),
                    delivering=route.sender is not None,
                    journal=None if settings.console_token is None else Journal(),
                )
                delivery.check.use_token = delivery.use_token
                if route.sender is not None:
                    delivery.check.token = route.sender.token
                deliveries.append(delivery)
            try:
                sock = _bind(settings.host, settings.port)
            except OSError as error:
                print(
                    f"{prog}: cannot listen on {settings.host}:{settings.port}: "
                    f"{error.strerror or error}",
                    file=stderr,
                )
                return 2
            stack.callback(sock.close)
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(_serve(settings, deliveries, sock, stdout, stderr))
    except QueueBusyError as error:
        print(f"{prog}: {error} (or run this server with --no-deliver)", file=stderr)
        return 2


def _kafka_delivery(
    settings: ServeSettings, route: DestinationSettings, queue: KafkaSettings
) -> _Delivery:
    """A destination whose events go to Kafka: this process produces, workers deliver."""
    log(
        logging.INFO,
        "the queue is Kafka: this server only ingests; the deliver --follow workers of the "
        "consumer group deliver",
        destination=route.name,
        queue=queue.url,
        group=queue.group,
    )
    return _Delivery(
        route.name,
        None,
        queue.url,
        KeyCheck(route.key_source, settings.key_retry),
        intake=KafkaIntake(queue, route.name, settings.busy_timeout),
    )
