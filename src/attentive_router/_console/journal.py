"""What the console remembers of delivery, in memory: answers per event and counts per minute.

The queue keeps each event's outcome and its last failed request. The journal adds, for the
most recent events this process delivered, every request sent and every answer, and for the
last hour, per destination and endpoint, how many requests were delivered, retried, throttled
(429) and dead-lettered. It is fed by the senders (``_delivery.observe``) and bounded.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from attrs import frozen

from attentive_router._queue.interface import Settlement, State

EVENTS_KEPT = 5_000
"""Events whose answers are remembered (the oldest are forgotten first)."""

ANSWERS_KEPT = 20
"""Answers remembered per event (the latest)."""

BODY_KEPT = 4_096
"""Characters of an answer's body remembered."""

BYTES_KEPT = 16 * 1024 * 1024
"""Characters of request and answer bodies remembered in all (the oldest events go first)."""

MINUTES = 60
"""Minutes of counts kept for the overview."""

KINDS = ("delivered", "retried", "throttled", "dead_lettered")
"""What the overview counts, per minute, destination and endpoint."""

NO_ENDPOINT = "(none)"
"""The endpoint of a dead letter whose event never got as far as a request (transform error)."""


@frozen
class Answer:
    """One request of an event and what came back.

    Attributes:
        path: The Attentive endpoint.
        body: The request body as sent (JSON text).
        status: The HTTP status, or None when no answer came (the text says why).
        text: The answer's body (or the transport error), cut to ``BODY_KEPT`` characters.
        sent_at: When the request was sent (seconds since the epoch).
        elapsed: Seconds until the answer.
    """

    path: str
    body: str
    status: int | None
    text: str
    sent_at: float
    elapsed: float


class Journal:
    """Recent answers and per-minute counts of one destination (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self._answers: OrderedDict[int, deque[Answer]] = OrderedDict()
        self._size = 0
        self._minutes: dict[str, dict[int, Counter[str]]] = {}

    def answered(  # noqa: PLR0913, PLR0917 - the observer's signature
        self,
        event_id: int,
        path: str,
        body: bytes,
        status: int | None,
        text: str,
        sent_at: float,
        elapsed: float,
    ) -> None:
        """Remember one answer; count a delivered request."""
        answers = self._answers.get(event_id)
        if answers is None:
            answers = self._answers[event_id] = deque()
        else:
            self._answers.move_to_end(event_id)
        answer = Answer(
            path, body.decode("utf-8", "replace"), status, text[:BODY_KEPT], sent_at, elapsed
        )
        answers.append(answer)
        self._size += _size(answer)
        if len(answers) > ANSWERS_KEPT:
            self._size -= _size(answers.popleft())
        while self._answers and (len(self._answers) > EVENTS_KEPT or self._size > BYTES_KEPT):
            _, forgotten = self._answers.popitem(last=False)
            self._size -= sum(_size(old) for old in forgotten)
        if status is not None and 200 <= status < 300:
            self._add(path, "delivered", sent_at + elapsed)

    def settled(self, settlement: Settlement) -> None:
        """Count a retry, a throttled answer or a dead letter."""
        when = settlement.last_attempt_at or self.clock()
        endpoint = settlement.endpoint or NO_ENDPOINT
        if settlement.state is State.DEAD:
            self._add(endpoint, "dead_lettered", when)
        elif settlement.state is State.QUEUED and settlement.endpoint is not None:
            kind = "throttled" if settlement.status == 429 else "retried"
            if settlement.status not in (401, 403):  # a refused key pauses; it is not a retry
                self._add(endpoint, kind, when)

    def answers(self, event_id: int) -> tuple[Answer, ...]:
        """The remembered answers of one event, oldest first."""
        return tuple(self._answers.get(event_id, ()))

    def _add(self, endpoint: str, kind: str, when: float) -> None:
        minute = int(when // 60)
        counts = self._minutes.setdefault(endpoint, {})
        counts.setdefault(minute, Counter())[kind] += 1
        oldest = minute - MINUTES
        for old in [m for m in counts if m <= oldest]:
            del counts[old]

    def series(self, now: float | None = None) -> dict[str, dict[str, list[int]]]:
        """Per endpoint, per kind: the counts of the last ``MINUTES`` minutes, oldest first."""
        current = int((self.clock() if now is None else now) // 60)
        first = current - MINUTES + 1
        shown: dict[str, dict[str, list[int]]] = {}
        for endpoint in sorted(self._minutes):
            counts = self._minutes[endpoint]
            rows = {kind: [0] * MINUTES for kind in KINDS}
            for minute, counter in counts.items():
                if first <= minute <= current:
                    for kind in KINDS:
                        rows[kind][minute - first] += counter[kind]
            if any(any(row) for row in rows.values()):
                shown[endpoint] = rows
        return shown

    def totals(self, now: float | None = None) -> dict[str, Counter[str]]:
        """Per endpoint, the last hour's counts summed."""
        return {
            endpoint: Counter({kind: sum(values) for kind, values in rows.items()})
            for endpoint, rows in self.series(now).items()
        }


def _size(answer: Answer) -> int:
    return len(answer.body) + len(answer.text)
