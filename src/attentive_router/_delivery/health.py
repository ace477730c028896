"""Whether delivery is working, per endpoint: what fails, since when, and what to tell the operator.

The sender records every answer it gets (``success``, ``failure``) and every event it
dead-letters (``dead``). ``Health`` keeps, per endpoint, the run of failed answers since the
last success, and turns them into ``Report`` lines at a bounded rate: one line per endpoint and
cause when the endpoint starts failing, then a summary line every ``every`` seconds while it
keeps failing, and one line when it answers again. Dead letters are reported the same way, per
endpoint and reason. Whoever runs the sender prints the reports where the operator looks (the
server's log, a command's stderr); ``failing`` is what ``/healthz`` and the progress line show.

All times come from the caller, so that the schedule can be tested with any clock.
"""

from __future__ import annotations

import socket
import ssl
from collections import Counter
from typing import Literal

import httpx
from attrs import define, field, frozen

FAILING_AFTER = 3
"""Failed answers in a row (no success between them) after which an endpoint is failing."""
REPORT_EVERY = 60.0
"""Seconds between two summary lines about the same endpoint (or dead letters)."""

CONNECTION_REFUSED = "connection refused"
TIMEOUT = "timeout"
CONNECTION_RESET = "connection reset"
UNKNOWN_HOST = "unknown host"
TLS_ERROR = "TLS error"
CONNECTION_ERROR = "connection error"

_NOTHING_THERE = frozenset({CONNECTION_REFUSED, UNKNOWN_HOST, TLS_ERROR})
"""Causes that suggest a wrong address rather than a struggling server."""
_RESET_NAMES = frozenset(
    {"ServerDisconnectedError", "ClientPayloadError", "RemoteProtocolError", "ReadError"}
)


def transport_cause(error: BaseException) -> str:
    """The cause of a request that got no answer, named for an operator.

    The HTTP transport may wrap the operating system's error in a broader class (a refused
    connection surfaces as ``httpx.ConnectTimeout``), so the whole chain of causes is read.
    """
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for kind, cause in (
        (ConnectionRefusedError, CONNECTION_REFUSED),
        (socket.gaierror, UNKNOWN_HOST),
        (ssl.SSLError, TLS_ERROR),
        (ConnectionResetError, CONNECTION_RESET),
        (BrokenPipeError, CONNECTION_RESET),
    ):
        if any(isinstance(link, kind) for link in chain):
            return cause
    if any(type(link).__name__ in _RESET_NAMES for link in chain):
        return CONNECTION_RESET
    if any(isinstance(link, TimeoutError | httpx.TimeoutException) for link in chain):
        return TIMEOUT
    return CONNECTION_ERROR


def status_cause(status: int) -> str:
    """The cause of a failed answer with a status."""
    return f"HTTP {status}"


@frozen
class Problem:
    """An endpoint that is failing now.

    Attributes:
        endpoint: The API path.
        target: The URL requests go to.
        cause: The cause of the latest failed answer.
        detail: What the latest failure said (the error, or the start of the response).
        since: When the run of failures began.
        failures: Failed answers in a row since then.
    """

    endpoint: str
    target: str
    cause: str
    detail: str
    since: float
    failures: int

    def text(self) -> str:
        """One line: ``POST <target>: <cause> (<n> failed answers in a row)``."""
        return f"POST {self.target}: {self.cause} ({self.failures:,} failed request(s) in a row)"


@frozen
class Report:
    """A line for the operator.

    Attributes:
        kind: ``failing`` (an endpoint fails: ``count`` answers with ``cause`` since the last
            report), ``recovered`` (it answers again after ``count`` failures), or ``dead``
            (``count`` events were dead-lettered with reason ``cause``).
        endpoint: The API path (``-`` for an event that never reached one).
        target: The URL of the endpoint.
        cause: The cause of the failures, or the reason of the dead letters.
        count: How many since the last report about the same thing.
        detail: The latest error text, response or dead letter message.
        since: When the endpoint started failing (``failing``, ``recovered``).
        example: The messageId of one of the dead letters.
    """

    kind: Literal["failing", "recovered", "dead"]
    endpoint: str
    target: str
    cause: str
    count: int
    detail: str = ""
    since: float | None = None
    example: str | None = None

    def text(self) -> str:
        """The report as one sentence."""
        if self.kind == "failing":
            check = " (is --base-url right?)" if self.cause in _NOTHING_THERE else ""
            return (
                f"POST {self.target}: {self.cause}{check}: {self.count:,} failed request(s) "
                f"since the last report; the events stay queued and are retried. "
                f"Last: {self.detail}"
            )
        if self.kind == "recovered":
            return f"POST {self.target} answers again after {self.count:,} failed request(s)"
        where = "" if self.endpoint == "-" else f" at POST {self.target}"
        example = f" (e.g. messageId {self.example})" if self.example else ""
        return f"{self.count:,} event(s) dead-lettered{where}: {self.cause}{example}: {self.detail}"


@define
class _Endpoint:
    """The run of failed answers of one endpoint since its last success."""

    failures: int = 0
    since: float = 0.0
    cause: str = ""
    detail: str = ""
    reported: dict[str, float] = field(factory=dict)
    """Cause -> when it was last reported."""
    pending: Counter[str] = field(factory=Counter)
    details: dict[str, str] = field(factory=dict)


@define
class _Dead:
    """Dead letters of one endpoint and reason not yet reported."""

    count: int = 0
    detail: str = ""
    example: str | None = None
    reported_at: float | None = None


@define
class Health:
    """The state of delivery per endpoint, and the reports due about it.

    Attributes:
        base_url: Attentive's API root, to name the target of failing requests.
        every: Seconds between two summary lines about the same thing.
        failing_after: Failed answers in a row that make an endpoint failing.
    """

    base_url: str
    every: float = REPORT_EVERY
    failing_after: int = FAILING_AFTER
    _endpoints: dict[str, _Endpoint] = field(factory=dict)
    _dead: dict[tuple[str, str], _Dead] = field(factory=dict)
    _due: list[Report] = field(factory=list)

    def target(self, endpoint: str) -> str:
        """The URL of ``endpoint``."""
        return self.base_url.rstrip("/") + endpoint

    def success(self, endpoint: str) -> None:
        """``endpoint`` accepted a request: a run of failures ends."""
        state = self._endpoints.pop(endpoint, None)
        if state is not None and state.reported:
            self._due.append(
                Report(
                    "recovered",
                    endpoint,
                    self.target(endpoint),
                    state.cause,
                    state.failures,
                    since=state.since,
                )
            )

    def failure(self, endpoint: str, cause: str, detail: str, now: float) -> None:
        """``endpoint`` failed to accept a request (no answer, 5xx, or a refusal)."""
        state = self._endpoints.get(endpoint)
        if state is None:
            state = self._endpoints[endpoint] = _Endpoint(since=now)
        state.failures += 1
        state.cause, state.detail = cause, detail
        state.pending[cause] += 1
        state.details[cause] = detail

    def dead(self, endpoint: str | None, reason: str, detail: str, key: str | None) -> None:
        """An event was dead-lettered with ``reason`` (reported by ``reports``)."""
        entry = self._dead.setdefault((endpoint or "-", reason), _Dead())
        entry.count += 1
        entry.detail = detail
        if entry.example is None:
            entry.example = key

    def failing(self) -> list[Problem]:
        """The endpoints failing now, the longest-failing first."""
        problems = [
            Problem(path, self.target(path), state.cause, state.detail, state.since, state.failures)
            for path, state in self._endpoints.items()
            if state.failures >= self.failing_after
        ]
        return sorted(problems, key=lambda problem: (problem.since, problem.endpoint))

    def reports(self, now: float) -> list[Report]:
        """The reports due at ``now``; each is handed out once."""
        due, self._due = self._due, []
        for path, state in self._endpoints.items():
            if state.failures < self.failing_after:
                continue
            for cause, count in sorted(state.pending.items()):
                last = state.reported.get(cause)
                if last is not None and now - last < self.every:
                    continue
                due.append(
                    Report(
                        "failing",
                        path,
                        self.target(path),
                        cause,
                        count,
                        state.details[cause],
                        since=state.since,
                    )
                )
                del state.pending[cause]
                state.reported[cause] = now
        for (path, reason), entry in sorted(self._dead.items()):
            if not entry.count:
                continue
            if entry.reported_at is not None and now - entry.reported_at < self.every:
                continue
            due.append(
                Report(
                    "dead",
                    path,
                    self.target(path),
                    reason,
                    entry.count,
                    entry.detail,
                    example=entry.example,
                )
            )
            entry.count, entry.example, entry.reported_at = 0, None, now
        return due
