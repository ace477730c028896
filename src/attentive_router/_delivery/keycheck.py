"""After Attentive refused the API key: check it again now and then, and read it again on SIGHUP.

``serve`` (one ``KeyCheck`` per destination) and ``deliver --follow`` share this: while sending
is paused the key is checked every ``retry`` seconds with ``GET /v1/me`` (at once after SIGHUP,
which also reads a changeable source, ``--token-file``, again), and sending resumes once
Attentive accepts it. What happens is told through a ``Note`` (a log line, a line on stderr).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping

import httpx
from attrs import define, field

from attentive_router._delivery.keys import PROBE_PATH, KeySource, KeySourceError, probe_key
from attentive_router._delivery.sender import Paused

Note = Callable[[int, str, Mapping[str, object]], None]
"""Says something: (logging level, the message, fields for a structured log line)."""


async def first(*events: asyncio.Event, seconds: float | None = None) -> None:
    """Wait until one of ``events`` is set (or ``seconds`` pass)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    _, others = await asyncio.wait(waiters, timeout=seconds, return_when="FIRST_COMPLETED")
    for waiter in others:
        waiter.cancel()
    await asyncio.gather(*others, return_exceptions=True)


@define
class KeyCheck:
    """One API key in use: where it comes from, and its re-checks while Attentive refuses it.

    Attributes:
        source: Where the key came from (None: not delivering).
        retry: Seconds between two checks of a refused key.
        token: The key in use (read again on SIGHUP).
        program: The command, as the operator would restart it (``serve``, ``deliver``).
        use_token: Called with a new key read on SIGHUP (the sender at work sends with it).
        paused: Attentive's refusal while sending is paused, else None.
        remedy: What the operator can do about ``paused``.
        next_check: When the key is checked next while paused (epoch seconds).
        recheck: Set (after SIGHUP) to check the key now.
        hangup: Set by SIGHUP.
    """

    source: KeySource | None
    retry: float
    token: str = field(default="", repr=False)
    program: str = "serve"
    use_token: Callable[[str], None] | None = None
    paused: Paused | None = None
    remedy: str = ""
    next_check: float | None = None
    recheck: asyncio.Event = field(factory=asyncio.Event)
    hangup: asyncio.Event = field(factory=asyncio.Event)

    def remedy_text(self) -> str:
        """What the operator can do once Attentive refused the key."""
        interval = f"{self.retry:g}"
        checks = (
            f"{self.program.capitalize()} checks the key again every {interval} s "
            f"(GET {PROBE_PATH}, --key-retry-interval) and resumes by itself, losing nothing"
        )
        source = self.source
        if source is None:
            return f"{checks}. To use another key, restart {self.program} with it"
        if source.changeable:
            return (
                f"{checks}. Fix the key in {source.describe()}, then `kill -HUP {os.getpid()}` "
                "to read it again and check at once"
            )
        return (
            f"{checks}. The key came from {source.describe()}, which cannot change while "
            f"{self.program} runs: to use another key, restart {self.program} with it "
            f"(--token-file PATH can be read again with `kill -HUP {os.getpid()}`)"
        )

    def reread(self, note: Note) -> None:
        """SIGHUP: read the key from its source again, and send with it from now on."""
        source = self.source
        if source is None:
            note(logging.INFO, "SIGHUP: nothing to read again (not delivering)", {})
            return
        if not source.changeable:
            note(
                logging.WARNING,
                f"SIGHUP: the API key came from {source.describe()}, which cannot change while "
                f"{self.program} runs; restart {self.program} to use another key "
                "(or use --token-file)",
                {"key_source": source.describe()},
            )
            return
        try:
            fresh = source.read()
        except KeySourceError as error:
            note(logging.ERROR, f"SIGHUP: {error}; still using the key read before", {})
            return
        changed = fresh.token != self.token
        note(
            logging.INFO,
            "SIGHUP: read the API key again",
            {"key_source": source.describe(), "changed": changed},
        )
        self.token = fresh.token
        if changed and self.use_token is not None:
            self.use_token(fresh.token)

    async def watch_hangups(self, stop: asyncio.Event, note: Note) -> None:
        """Every SIGHUP (``hangup``): read the key again; while paused, check it at once."""
        while True:
            await first(self.hangup, stop)
            if stop.is_set():
                return
            self.hangup.clear()
            self.reread(note)
            if self.paused is not None:
                self.recheck.set()

    async def pause(
        self,
        paused: Paused,
        client: httpx.AsyncClient,
        base_url: str,
        stop: asyncio.Event,
        note: Note,
    ) -> bool:
        """Sending stopped on ``paused``: say so, then check the key until it is accepted.

        True once Attentive accepts the key (``paused`` is cleared); False when stopping.
        """
        self.remedy = self.remedy_text()
        self.paused = paused
        note(
            logging.CRITICAL,
            "SENDING PAUSED: " + paused.explain(self.remedy),
            {"status": paused.status, "endpoint": paused.path},
        )
        accepted = await self._await_valid(client, base_url, stop, note)
        self.next_check = None
        if accepted:
            self.paused = None
            note(
                logging.WARNING,
                f"the API key is accepted again (GET {PROBE_PATH} answered 200): sending resumes",
                {},
            )
        return accepted

    async def _await_valid(
        self, client: httpx.AsyncClient, base_url: str, stop: asyncio.Event, note: Note
    ) -> bool:
        while not stop.is_set():
            self.next_check = time.time() + self.retry
            await first(stop, self.recheck, seconds=self.retry)
            if stop.is_set():
                break
            self.recheck.clear()
            status, answer = await probe_key(client, base_url, self.token)
            if status == 200:
                return True
            note(
                logging.WARNING,
                f"the API key is still refused: GET {PROBE_PATH} answered "
                f"{status or 'nothing'}; sending stays paused",
                {"answer": answer, "next_check_seconds": self.retry},
            )
        return False
