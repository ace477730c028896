"""What a sender tells an observer about its work (the console keeps it to show people).

An observer hears every answer Attentive gives (or the failure to get one) and every verdict
written to the queue. It is called on the sender's event loop and must return at once: no I/O.
"""

from __future__ import annotations

from typing import Protocol

from attentive_router._queue.interface import Settlement


class Observer(Protocol):
    """Told about each request sent and each verdict recorded."""

    def answered(  # noqa: PLR0913, PLR0917 - one request's facts, each named
        self,
        event_id: int,
        path: str,
        body: bytes,
        status: int | None,
        text: str,
        sent_at: float,
        elapsed: float,
    ) -> None:
        """One request of the event ``event_id`` got ``status`` (None: no answer) and ``text``."""
        ...

    def settled(self, settlement: Settlement) -> None:
        """A verdict was written to the queue (a retry is one, with state ``QUEUED``)."""
        ...
