"""Fault injection for the local Attentive sandbox: what can go wrong, and when it does.

``Faults`` says which failures to provoke (all off by default); ``FaultInjector`` decides, for
each request the sandbox receives, whether it is answered normally, delayed, answered with an
injected status, left hanging, or cut off mid-response. Decisions come from a seeded random
generator and from per-``externalEventId`` scripts, so a scenario can be replayed exactly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import attrs
from attrs import field, frozen

Step: TypeAlias = int | Literal["timeout", "reset"]
"""One scripted answer: a status (200 or 202 means "process normally"), or a transport fault."""

NORMAL_STATUSES = frozenset({200, 202})
"""Scripted statuses that mean "process the request normally"."""


class FaultsError(ValueError):
    """A faults document is not valid; the message names the offending key."""


@frozen(kw_only=True)
class Faults:
    """The failures the sandbox provokes; every one is off by default.

    Attributes:
        latency_ms: Delay added before every answer, in milliseconds.
        latency_jitter_ms: Up to this many more milliseconds, drawn at random per request.
        error_rate: Share of requests (0 to 1) answered with one of ``error_statuses``.
        error_statuses: Statuses injected errors are drawn from.
        timeout_rate: Share of requests left hanging ``hang_seconds`` before being processed.
        hang_seconds: How long a "timeout" request hangs.
        reset_rate: Share of requests whose response is cut off, dropping the connection.
        retry_after: Value of the ``Retry-After`` header on 429 answers (none when ``None``).
        scripts: ``externalEventId`` to the answers of its 1st, 2nd, ... request; once the
            list is used up, requests are processed normally.
        status_for_all: Answer every request with this status (destination down, bad key).
        seed: Seed of the random generator, for reproducible runs.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    reset_rate: float = 0.0
    retry_after: str | None = None
    scripts: Mapping[str, tuple[Step, ...]] = field(factory=dict, hash=False)
    status_for_all: int | None = None
    seed: int | None = None

    @classmethod
    def from_json(cls, data: object) -> Faults:
        """Build faults from a JSON object; raise ``FaultsError`` naming any bad key."""
        if not isinstance(data, dict):
            raise FaultsError(f"faults must be a JSON object, got {_kind(data)}")
        unknown = sorted(set(data) - set(_PARSERS))
        if unknown:
            raise FaultsError(
                f"unknown fault key(s): {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(_PARSERS)}"
            )
        values = {key: _PARSERS[key](key, value) for key, value in data.items()}
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object form, which ``from_json`` reads back."""
        document = attrs.asdict(self, recurse=False)
        document["error_statuses"] = list(self.error_statuses)
        document["scripts"] = {key: list(steps) for key, steps in self.scripts.items()}
        return document


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _number(key: str, value: object, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultsError(f"{key}: expected a number, got {_kind(value)}")
    if value < 0 or (high is not None and value > high):
        bound = f"between 0 and {high:g}" if high is not None else "0 or more"
        raise FaultsError(f"{key}: expected a number {bound}, got {value!r}")
    return float(value)


def _rate(key: str, value: object) -> float:
    return _number(key, value, 1.0)


def _duration(key: str, value: object) -> float:
    return _number(key, value)


def _status(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise FaultsError(f"{key}: expected an HTTP status (100 to 599), got {value!r}")
    return value


def _statuses(key: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise FaultsError(f"{key}: expected a non-empty list of HTTP statuses, got {value!r}")
    return tuple(_status(f"{key}[{index}]", item) for index, item in enumerate(value))


def _optional_status(key: str, value: object) -> int | None:
    return None if value is None else _status(key, value)


def _retry_after(key: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FaultsError(f"{key}: expected a string (seconds or an HTTP date), got {value!r}")
    text = str(value).strip()
    if not text or not text.isprintable():
        raise FaultsError(f"{key}: expected a non-empty printable header value, got {value!r}")
    return text


def _step(key: str, value: object) -> Step:
    if value in ("timeout", "reset"):
        return "timeout" if value == "timeout" else "reset"
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    raise FaultsError(f'{key}: expected an HTTP status, "timeout" or "reset", got {value!r}')


def _scripts(key: str, value: object) -> dict[str, tuple[Step, ...]]:
    if not isinstance(value, dict):
        raise FaultsError(f"{key}: expected an object of externalEventId to steps")
    scripts: dict[str, tuple[Step, ...]] = {}
    for event_id, steps in value.items():
        if not isinstance(steps, list):
            raise FaultsError(f"{key}[{event_id!r}]: expected a list of steps, got {steps!r}")
        scripts[event_id] = tuple(
            _step(f"{key}[{event_id!r}][{index}]", step) for index, step in enumerate(steps)
        )
    return scripts


def _seed(key: str, value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise FaultsError(f"{key}: expected an integer or null, got {value!r}")


_PARSERS: dict[str, Any] = {
    "latency_ms": _duration,
    "latency_jitter_ms": _duration,
    "error_rate": _rate,
    "error_statuses": _statuses,
    "timeout_rate": _rate,
    "hang_seconds": _duration,
    "reset_rate": _rate,
    "retry_after": _retry_after,
    "scripts": _scripts,
    "status_for_all": _optional_status,
    "seed": _seed,
}


FaultKind = Literal["status_for_all", "script", "error", "timeout", "reset"]


@frozen
class Decision:
    """What to do with one request.

    Attributes:
        delay: Seconds to wait before going on (latency, plus the hang of a timeout).
        status: Answer with this status at once, without processing the request.
        reset: Process the request, then cut its response off and drop the connection.
        fault: Which fault was injected, if any.
    """

    delay: float = 0.0
    status: int | None = None
    reset: bool = False
    fault: FaultKind | None = None


class FaultInjector:
    """Decides the fate of each request from the current faults; not thread-safe."""

    def __init__(self, faults: Faults) -> None:
        """Start injecting ``faults``, with fresh script progress and generator."""
        self.faults = faults
        self._random = random.Random(faults.seed)  # noqa: S311 - fault injection, not secrets
        self._progress: dict[str, int] = {}

    def decide(self, body: object) -> Decision:
        """Return the decision for a request whose parsed JSON body is ``body``."""
        faults = self.faults
        delay = faults.latency_ms / 1000
        if faults.latency_jitter_ms:
            delay += self._random.uniform(0, faults.latency_jitter_ms) / 1000
        if faults.status_for_all is not None:
            return Decision(delay, status=faults.status_for_all, fault="status_for_all")
        step = self._script_step(body)
        if step is not None:
            if step == "timeout":
                return Decision(delay + faults.hang_seconds, fault="timeout")
            if step == "reset":
                return Decision(delay, reset=True, fault="reset")
            if step in NORMAL_STATUSES:
                return Decision(delay)
            return Decision(delay, status=step, fault="script")
        if faults.error_rate and self._random.random() < faults.error_rate:
            return Decision(delay, status=self._random.choice(faults.error_statuses), fault="error")
        if faults.timeout_rate and self._random.random() < faults.timeout_rate:
            return Decision(delay + faults.hang_seconds, fault="timeout")
        if faults.reset_rate and self._random.random() < faults.reset_rate:
            return Decision(delay, reset=True, fault="reset")
        return Decision(delay)

    def _script_step(self, body: object) -> Step | None:
        if not self.faults.scripts or not isinstance(body, dict):
            return None
        event_id = body.get("externalEventId")
        if not isinstance(event_id, str) or event_id not in self.faults.scripts:
            return None
        steps = self.faults.scripts[event_id]
        index = self._progress.get(event_id, 0)
        self._progress[event_id] = index + 1
        return steps[index] if index < len(steps) else None
