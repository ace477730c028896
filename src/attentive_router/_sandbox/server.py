"""The local Attentive sandbox: an Attentive-compatible HTTP server for demos and tests.

It serves the v1 endpoints the router sends to, over real sockets on the loopback interface
only. Each ``POST`` goes through the checks Attentive makes, in this order: the bearer token
(401), injected faults (see ``faults``), the per-endpoint rate limit (429, a token
bucket refilled at the limit per second), a JSON object body (400) and the project's JSON
Schema of that endpoint's body (400, naming each offending field). A request that passes is
recorded, with the key it carried and when it arrived, and answered 200 (202 for Identity).

``GET /v1/me`` checks the token and names a made-up application; of the faults, only
``status_for_all`` applies to it.

The sandbox may accept several keys, one per account: as at Attentive, each key has its own
rate limit per endpoint, and the records and counts say which key each request carried.

A "timeout" fault holds the request for ``hang_seconds`` and then processes it, and a "reset"
fault processes it and then cuts the response off: like the real service, the request may
have been delivered although the client saw a failure. Records say which fault they went
through.

The admin API under ``/_sandbox/`` (no authentication) lists the accepted requests, counts
the answers, and reads, replaces and resets the faults.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import IO, Any

import orjson
import uvicorn
from attrs import field, frozen
from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from attentive_router._sandbox.faults import FaultInjector, FaultKind, Faults, FaultsError
from attentive_router._transform.json_form import body_schema

DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - a local test double's key
"""The API key the sandbox accepts unless told otherwise."""

TOKEN_ENV = "ATTENTIVE_SANDBOX_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Environment variable read for the token when ``--token`` is not given."""

DEFAULT_PORT = 8788
LOOPBACK_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
"""Hosts the sandbox may bind to, and the address each binds."""


@frozen
class Endpoint:
    """One Attentive endpoint: the schema title of its body and its success status."""

    title: str
    status: int = 200


ENDPOINTS: dict[str, Endpoint] = {
    "/v1/events/ecommerce/product-view": Endpoint("ProductViewRequest"),
    "/v1/events/ecommerce/add-to-cart": Endpoint("AddToCartRequest"),
    "/v1/events/ecommerce/purchase": Endpoint("PurchaseRequest"),
    "/v1/events/custom": Endpoint("CustomEventsRequest"),
    "/v1/identity-resolution/user-identifiers": Endpoint("IdentifyRequest", 202),
    "/v1/attributes/custom": Endpoint("CustomAttributesRequest"),
}
"""The ``POST`` endpoints the sandbox serves, by path."""

DEFAULT_RATE_LIMITS: dict[str, int] = {
    path: 10 if path.startswith("/v1/identity-resolution/") else 150 for path in ENDPOINTS
}
"""Attentive's documented limits: 150 requests per second per endpoint, Identity 10."""

ME = {
    "applicationName": "Attentive Sandbox",
    "companyName": "Sandbox Outfitters",
    "attentiveDomainName": "sandbox-outfitters",
}
_INCOMPLETE_RESPONSE = "ASGI callable returned without completing response."


class SandboxConfigError(ValueError):
    """A sandbox option is not valid; the message says which and why."""


@frozen(kw_only=True)
class SandboxSettings:
    """What a sandbox starts with; ``POST /_sandbox/reset`` goes back to it.

    Attributes:
        token: The bearer token requests must carry.
        more_tokens: Further tokens accepted, each an account with its own rate buckets.
        faults: The faults in effect at start.
        rate_limits: Requests per second per path; ``None`` turns rate limiting off.
        record: File each accepted request is appended to, as one NDJSON line.
    """

    token: str = DEFAULT_TOKEN
    more_tokens: tuple[str, ...] = ()
    faults: Faults = field(factory=Faults)
    rate_limits: Mapping[str, int] | None = field(factory=lambda: dict(DEFAULT_RATE_LIMITS))
    record: Path | None = None


class _Bucket:
    """A token bucket: ``limit`` tokens at most, refilled at ``limit`` per second."""

    __slots__ = ("limit", "tokens", "updated")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tokens = float(limit)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.limit, self.tokens + (now - self.updated) * self.limit)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(int(self.tokens)),
        }


@frozen
class _Arrival:
    """Who sent a request that got past the key check (``key``), when, and its fault."""

    key: str
    received_at: str
    fault: FaultKind | None


class _Invalid:
    """A body that is not JSON, with the parser's message."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class _CutOffResponse(Response):
    """A response that announces its full length, sends half its body and drops the connection.

    Returning from the ASGI call with the response incomplete makes the server close the
    connection; clients see a protocol error rather than a response.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response.body, response.status_code, dict(response.headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        part = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": part, "more_body": True})


def _json(content: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, "application/json")


def _error(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return _json({"error": error, "message": message}, status, headers)


@cache
def _validator(title: str) -> Any:
    return Draft202012Validator(body_schema(title))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sandbox:
    """The sandbox's state (records, counts, faults, rate buckets) and its request handlers."""

    def __init__(self, settings: SandboxSettings) -> None:
        """Start from ``settings``; open the record file if there is one."""
        self.settings = settings
        self._record_file = settings.record.open("ab") if settings.record else None
        self._tokens = [t.encode() for t in (settings.token, *settings.more_tokens)]
        self._stopping = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        """Clear records, counts, script progress and buckets; restore the startup faults."""
        self.injector = FaultInjector(self.settings.faults)
        self.records: list[dict[str, Any]] = []
        self.received: dict[str, Counter[str]] = {}
        self.by_key: dict[str, Counter[str]] = {}
        self.injected: Counter[str] = Counter()
        self.total = 0
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def close(self) -> None:
        """Close the record file."""
        if self._record_file is not None:
            self._record_file.close()

    def stats(self) -> dict[str, Any]:
        """Counts of the answers: per path and status, per key and status, accepted, total, ...

        ``keys`` counts the answers to the ``POST`` requests that carried an accepted key.
        """
        return {
            "received": {path: dict(counts) for path, counts in self.received.items()},
            "keys": {key: dict(counts) for key, counts in self.by_key.items()},
            "accepted": len(self.records),
            "total": self.total,
            "injected": dict(self.injected),
        }

    def _key(self, request: Request) -> str | None:
        """The accepted key the request carries as its bearer token, else ``None``."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        given = credential.strip().encode()
        if scheme.lower() != "bearer":
            return None
        # Compared with every key, so that the time taken does not say which one matched.
        matches = [secrets.compare_digest(given, token) for token in self._tokens]
        return given.decode() if any(matches) else None

    def _bucket(self, key: str, path: str) -> _Bucket | None:
        """The rate bucket of ``key`` at ``path`` (each key has its own), if ``path`` has one."""
        limit = (self.settings.rate_limits or {}).get(path)
        if limit is None:
            return None
        return self._buckets.setdefault((key, path), _Bucket(limit))

    def _count(self, path: str, status: str, key: str | None = None) -> None:
        self.received.setdefault(path, Counter())[status] += 1
        if key is not None:
            self.by_key.setdefault(key, Counter())[status] += 1
        self.total += 1

    def event_handler(
        self, path: str, endpoint: Endpoint
    ) -> Callable[[Request], Awaitable[Response]]:
        """Return the handler of ``POST path``."""

        async def handle(request: Request) -> Response:
            key = self._key(request)
            response = await self._event(request, path, endpoint, key)
            cut = isinstance(response, _CutOffResponse)
            self._count(path, "reset" if cut else str(response.status_code), key)
            return response

        return handle

    async def _event(
        self, request: Request, path: str, endpoint: Endpoint, key: str | None
    ) -> Response:
        received_at = _now()
        if key is None:
            return _error(401, "unauthorized", "missing or invalid bearer token")
        raw = await request.body()
        body: object
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            body = _Invalid(str(error))
        decision = self.injector.decide(body)
        if decision.fault is not None:
            self.injected[decision.fault] += 1
        if decision.delay and await self._stopped_during(decision.delay):
            return _error(503, "stopping", "the sandbox is shutting down")
        if decision.status is not None:
            return self._injected(key, path, decision.status)
        arrival = _Arrival(key, received_at, decision.fault)
        response = self._process(path, endpoint, body, arrival)
        return _CutOffResponse(response) if decision.reset else response

    async def _stopped_during(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    def stop_waiting(self) -> None:
        """End every delay and hang at once: the server is shutting down."""
        self._stopping.set()

    def _injected(self, key: str, path: str, status: int) -> Response:
        headers: dict[str, str] = {}
        if status == 429:
            bucket = self._bucket(key, path)
            limit = bucket.limit if bucket else DEFAULT_RATE_LIMITS.get(path, 150)
            headers = {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": "0"}
            if self.injector.faults.retry_after is not None:
                headers["retry-after"] = self.injector.faults.retry_after
        return _json({"error": "injected", "status": status}, status, headers)

    def _process(self, path: str, endpoint: Endpoint, body: object, arrival: _Arrival) -> Response:
        headers: dict[str, str] = {}
        bucket = self._bucket(arrival.key, path)
        if bucket is not None:
            allowed = bucket.take()
            headers = bucket.headers()
            if not allowed:
                if self.injector.faults.retry_after is not None:
                    headers["retry-after"] = self.injector.faults.retry_after
                message = f"more than {bucket.limit} requests per second to {path}"
                return _error(429, "rate_limited", message, headers)
        if isinstance(body, _Invalid):
            return _error(400, "invalid_json", f"body is not valid JSON: {body.message}", headers)
        if not isinstance(body, dict):
            kind = type(body).__name__ if body is not None else "null"
            return _error(400, "invalid_body", f"body must be a JSON object, got {kind}", headers)
        errors = sorted(
            (
                f"{e.json_path}: {e.message[:300]}"
                for e in _validator(endpoint.title).iter_errors(body)
            ),
        )
        if errors:
            message = f"body is not a valid {endpoint.title}: " + "; ".join(errors)
            return _json(
                {"error": "invalid_body", "message": message, "errors": errors}, 400, headers
            )
        record = {
            "seq": len(self.records) + 1,
            "path": path,
            "body": body,
            "received_at": arrival.received_at,
            "fault": arrival.fault,
            "token": arrival.key,
        }
        self.records.append(record)
        if self._record_file is not None:
            self._record_file.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            self._record_file.flush()
        return _json({"status": "accepted", "seq": record["seq"]}, endpoint.status, headers)

    async def me(self, request: Request) -> Response:
        """``GET /v1/me``: the application the token belongs to."""
        if self._key(request) is None:
            return _error(401, "unauthorized", "missing or invalid bearer token")
        status = self.injector.faults.status_for_all
        if status is not None:
            return _json({"error": "injected", "status": status}, status)
        return _json(ME)

    async def not_found(self, request: Request) -> Response:
        """Any other path: 404, or 405 for a known path with another method."""
        path = request.url.path
        if path in ENDPOINTS or path == "/v1/me":
            response = _error(405, "method_not_allowed", f"{request.method} {path} is not served")
        else:
            response = _error(404, "not_found", f"no endpoint at {path}")
        if request.method == "POST":
            self._count(path, str(response.status_code))
        return response

    def _selected(self, request: Request) -> list[dict[str, Any]]:
        path = request.query_params.get("path")
        token = request.query_params.get("token")
        return [
            r
            for r in self.records
            if (path is None or r["path"] == path) and (token is None or r["token"] == token)
        ]

    async def requests_json(self, request: Request) -> Response:
        """``GET /_sandbox/requests?path=...&token=...``: the accepted requests, in order."""
        return _json(self._selected(request))

    async def requests_ndjson(self, request: Request) -> Response:
        """``GET /_sandbox/requests.ndjson?path=...``: the same, one JSON line each."""
        lines = b"".join(
            orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in self._selected(request)
        )
        return Response(lines, 200, media_type="application/x-ndjson")

    async def stats_json(self, _request: Request) -> Response:
        """``GET /_sandbox/stats``."""
        return _json(self.stats())

    async def faults_json(self, request: Request) -> Response:
        """``GET /_sandbox/faults``; ``PUT`` replaces them and restarts the scripts."""
        if request.method == "PUT":
            try:
                faults = Faults.from_json(orjson.loads(await request.body()))
            except (orjson.JSONDecodeError, FaultsError) as error:
                return _error(400, "invalid_faults", str(error))
            self.injector = FaultInjector(faults)
        return _json(self.injector.faults.to_json())

    async def reset_json(self, _request: Request) -> Response:
        """``POST /_sandbox/reset``."""
        self.reset()
        return _json({"status": "reset"})


def create_app(settings: SandboxSettings) -> Starlette:
    """Return the sandbox's ASGI application; its ``Sandbox`` is ``app.state.sandbox``."""
    sandbox = Sandbox(settings)
    routes = [Route(p, sandbox.event_handler(p, e), methods=["POST"]) for p, e in ENDPOINTS.items()]
    routes += [
        Route("/v1/me", sandbox.me, methods=["GET"]),
        Route("/_sandbox/requests", sandbox.requests_json, methods=["GET"]),
        Route("/_sandbox/requests.ndjson", sandbox.requests_ndjson, methods=["GET"]),
        Route("/_sandbox/stats", sandbox.stats_json, methods=["GET"]),
        Route("/_sandbox/faults", sandbox.faults_json, methods=["GET", "PUT"]),
        Route("/_sandbox/reset", sandbox.reset_json, methods=["POST"]),
        Route("/{rest:path}", sandbox.not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


def parse_faults(text: str) -> Faults:
    """Read ``--faults``: a JSON object, or ``@FILE`` holding one."""
    source = "--faults"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as error:
            raise SandboxConfigError(f"cannot read {source}: {error.strerror or error}") from error
    try:
        return Faults.from_json(orjson.loads(text))
    except orjson.JSONDecodeError as error:
        raise SandboxConfigError(f"{source}: not valid JSON ({error})") from error
    except FaultsError as error:
        raise SandboxConfigError(f"{source}: {error}") from error


def parse_rate_limits(values: Sequence[str]) -> dict[str, int]:
    """Apply ``--rate-limit PATH=N`` options to Attentive's default limits."""
    limits = dict(DEFAULT_RATE_LIMITS)
    for value in values:
        path, _, number = value.partition("=")
        if path not in ENDPOINTS:
            known = ", ".join(ENDPOINTS)
            raise SandboxConfigError(f"--rate-limit {value!r}: PATH must be one of {known}")
        if not number.isdigit() or int(number) < 1:
            raise SandboxConfigError(f"--rate-limit {value!r}: N must be a whole number, 1 or more")
        limits[path] = int(number)
    return limits


class _QuietCutOffs(logging.Filter):
    """Drop the server's complaint about the responses the sandbox cuts off on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _INCOMPLETE_RESPONSE


class _Server(uvicorn.Server):
    """A uvicorn server that prints its URL once it accepts connections, and ends hangs on exit."""

    def __init__(
        self, config: uvicorn.Config, sandbox: Sandbox, announcement: str, stdout: IO[str]
    ) -> None:
        super().__init__(config)
        self._sandbox = sandbox
        self._announcement = announcement
        self._stdout = stdout

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self._announcement, file=self._stdout, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._sandbox.stop_waiting()
        await super().shutdown(sockets)


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def _loopback_address(host: str) -> str:
    address = LOOPBACK_HOSTS.get(host)
    if address is None:
        raise SandboxConfigError(
            f"refusing to listen on {host!r}: the sandbox binds to the loopback interface "
            f"only ({', '.join(LOOPBACK_HOSTS)})"
        )
    return address


def _tokens(given: Sequence[str]) -> list[str]:
    tokens = list(dict.fromkeys(given)) or [os.environ.get(TOKEN_ENV) or DEFAULT_TOKEN]
    for token in tokens:
        if not token or not token.isprintable() or any(c.isspace() for c in token):
            raise SandboxConfigError("a token must be printable and hold no spaces")
    return tokens


def run(  # noqa: PLR0913 - one keyword per command-line option
    *,
    host: str,
    port: int,
    tokens: Sequence[str],
    faults: str | None,
    rate_limits: Sequence[str],
    no_rate_limits: bool,
    record: str | None,
    access_log: bool,
    stdout: IO[str],
    stderr: IO[str],
) -> int:
    """Run ``attentive-router sandbox`` until SIGINT or SIGTERM; return the exit status."""
    prog = "attentive-router sandbox"
    try:
        address = _loopback_address(host)
        if not 0 <= port <= 65535:
            raise SandboxConfigError(f"--port {port}: expected 0 to 65535")  # noqa: TRY301
        accepted = _tokens(tokens)
        settings = SandboxSettings(
            token=accepted[0],
            more_tokens=tuple(accepted[1:]),
            faults=parse_faults(faults) if faults else Faults(),
            rate_limits=None if no_rate_limits else parse_rate_limits(rate_limits),
            record=Path(record) if record else None,
        )
        app = create_app(settings)
    except SandboxConfigError as error:
        print(f"{prog}: {error}", file=stderr)
        return 2
    except OSError as error:
        print(f"{prog}: cannot open {record}: {error.strerror or error}", file=stderr)
        return 2
    sandbox: Sandbox = app.state.sandbox
    try:
        sock = _bind(address, port)
    except OSError as error:
        sandbox.close()
        print(f"{prog}: cannot listen on {host}:{port}: {error.strerror or error}", file=stderr)
        return 2
    shown = f"[{address}]" if ":" in address else address
    url = f"http://{shown}:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        app, log_level="warning", access_log=access_log, lifespan="off", timeout_graceful_shutdown=1
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietCutOffs())
    keys = f"token: {accepted[0]}" if len(accepted) == 1 else f"tokens: {', '.join(accepted)}"
    server = _Server(config, sandbox, f"attentive sandbox listening on {url} ({keys})", stdout)
    # SIGTERM stops the server as SIGINT does; uvicorn re-raises the signal once it has shut
    # down, which then ends here as KeyboardInterrupt rather than killing the process.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        sandbox.close()
    return 0
