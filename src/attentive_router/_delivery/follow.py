"""Delivering as a service: ``deliver --follow`` runs until it is stopped.

It delivers what is queued, then waits for more: another process (``serve --no-deliver`` on
the same queue file) may queue events at any time. SQLite tells no other process about a
commit, so the queue's ``data_version`` is read every ``poll_interval`` seconds (cheap, no
lock) and the sender is woken when it changes. Events due later (retries) wake it on time.

SIGTERM or Ctrl-C stops it like ``serve``: requests in flight get the sender's grace period,
the rest goes back to the queue unchanged. Finished events past the queue's retention are
pruned every hour, as ``serve`` does. What it does is said on a stream in a few lines:
one when it starts, one per burst of settled events (at most one a minute while events keep
coming), delivery problems as ``Health`` reports them, and a summary at the end. A failure of
the queue's storage is reported and delivery starts again a few seconds later. When Attentive
refuses the API key, the key is checked again as ``serve`` does (``KeyCheck``: every
``--key-retry-interval`` seconds, at once after SIGHUP, which reads ``--token-file`` again) and
delivery resumes by itself once it is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import IO

import httpx
from attrs import define, evolve, field, frozen

from attentive_router._delivery.health import Health
from attentive_router._delivery.job import Run, _nothing, _stop_on_signals, report_line
from attentive_router._delivery.keycheck import KeyCheck
from attentive_router._delivery.sender import (
    Paused,
    Sender,
    SenderSettings,
    Stats,
    make_client,
    scrub,
)
from attentive_router._queue.interface import FINAL_STATES, Queue, QueueError, State

SUMMARY_EVERY = 60.0
"""While events keep being settled, at most this many seconds between two summary lines."""
QUIET_GAP = 5.0
"""When delivery goes idle, a summary line if the last one is at least this old (seconds)."""
REPORT_CHECK = 1.0
"""Seconds between looks at what was settled and what ``Health`` has to report."""
RESTART_AFTER = 5.0
"""Seconds before delivery starts again after the queue's storage failed."""
PRUNE_EVERY = 3600.0
"""Seconds between two prunings of finished events past the queue's retention."""


@define
class _Current:
    """The sender at work (a new one after each storage failure) and what all of them did."""

    settings: SenderSettings
    stats: Stats = field(factory=Stats)
    health: Health = field(init=False)
    sender: Sender | None = None

    def __attrs_post_init__(self) -> None:
        self.health = Health(self.settings.base_url)

    def use_token(self, token: str) -> None:
        """Send with ``token`` from now on (read again on SIGHUP)."""
        self.settings = evolve(self.settings, token=token)
        if self.sender is not None:
            self.sender.use_token(token)

    def current_settings(self) -> SenderSettings:
        """The settings a new sender gets."""
        return self.settings

    def with_token(self, token: str) -> SenderSettings:
        """The settings, with the key the key check holds now (accepted again, or re-read)."""
        self.settings = evolve(self.settings, token=token)
        return self.settings

    async def started(self, sender: Sender) -> None:
        """A new sender: it counts into the run's totals and health."""
        sender.stats = self.stats
        sender.health = self.health
        self.sender = sender


async def follow(  # noqa: PLR0913 - optional parts are keyword-only
    queue: Queue,
    settings: SenderSettings,
    *,
    changes: Callable[[], int],
    poll_interval: float,
    out: IO[str],
    label: str = "deliver",
    where: str = "the queue",
    client: httpx.AsyncClient | None = None,
    stop: asyncio.Event | None = None,
    keys: KeyCheck | None = None,
    signals: bool = True,
    looking: str | None = None,
    stats: Stats | None = None,
) -> Run:
    """Deliver from ``queue`` until ``stop`` (or SIGTERM, SIGINT), or a refused API key.

    Args:
        queue: The queue; this process must hold its delivery lock.
        settings: How to deliver (``grace`` is the time requests in flight get at a stop).
        changes: Returns a number that changes when the queue file was written to
            (``SQLiteQueue.data_version``); it is called every ``poll_interval`` seconds.
        poll_interval: Seconds between two calls of ``changes``.
        out: Where the lines about the work go (a command's stderr).
        label: The command's name in those lines.
        where: The queue's name in the first line.
        client: The HTTP client (default: one made for ``settings``).
        stop: Set it to stop, as SIGTERM does.
        keys: The key's re-checks after a refusal (SIGHUP sets its ``hangup``); None: a
            refused key ends the run.
        signals: Handle SIGINT, SIGTERM (and SIGHUP for ``keys``) here; False leaves them
            to the caller (several followers side by side).
        looking: How new events are found, for the first line (default: the polling).
        stats: Where to count what is settled while running (default: a new ``Stats``).

    Returns:
        The run: what was settled, what is left, and ``paused`` when the key was refused
        (and not accepted again before the stop).
        ``interrupted`` stays False: being stopped is how a follower ends.
    """
    started = time.monotonic()
    stop = stop or asyncio.Event()
    restore = _stop_on_signals(stop) if signals else _nothing
    http = client or make_client(settings)
    current = _Current(evolve(settings, idle_wait=None))  # the watcher wakes the sender
    if stats is not None:
        current.stats = stats

    def say(text: str) -> None:
        print(f"attentive-router {label}: {text}", file=out, flush=True)

    def note(level: int, text: str, _fields: Mapping[str, object]) -> None:
        say(f"warning: {text}" if level in {logging.WARNING, logging.ERROR} else text)

    looking = looking or f"looking every {poll_interval:g} s"
    say(
        f"following {where}: delivering what is queued, then what is queued next "
        f"({looking}); SIGTERM or Ctrl-C stops"
    )
    done = asyncio.Event()
    helpers = [
        asyncio.create_task(_watch(changes, poll_interval, current, stop)),
        asyncio.create_task(_report(queue, current, say, label=label, out=out, done=done)),
        asyncio.create_task(_prune_now_and_then(queue, stop)),
    ]
    hangup = _nothing
    if keys is not None:
        keys.token = settings.token
        keys.use_token = current.use_token
        helpers.append(asyncio.create_task(keys.watch_hangups(stop, note)))
        if signals:
            hangup = _hangup_sets(keys.hangup)
    run = Run()
    try:
        run.paused = await keep_delivering(
            queue,
            http,
            current.current_settings if keys is None else lambda: current.with_token(keys.token),
            stop,
            Hooks(
                started=current.started,
                failed=lambda error, wait: say(
                    f"warning: the queue failed: {scrub(str(error), current.settings.token)}; "
                    f"starting again in {wait:g} s (events in flight are sent again)"
                ),
            ),
            keys=keys,
            note=note,
        )
    finally:
        stop.set()
        done.set()
        await asyncio.gather(*helpers, return_exceptions=True)
        restore()
        hangup()
        if client is None:
            await http.aclose()
    run.stats = current.stats
    try:
        run.remaining = await asyncio.to_thread(queue.counts)
    except QueueError as error:
        say(f"warning: cannot count what is left: {scrub(str(error), settings.token)}")
    run.seconds = time.monotonic() - started
    return run


def _hangup_sets(event: asyncio.Event) -> Callable[[], None]:
    """Set ``event`` on SIGHUP; return a function that removes the handler."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, event.set)
    except (NotImplementedError, RuntimeError, ValueError):
        return _nothing

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove


@frozen
class Hooks:
    """What the caller of ``keep_delivering`` is told, and when.

    Attributes:
        started: Each new sender, before it runs (to share counts, health and state with it).
        failed: The queue's storage failed; delivery starts again after ``RESTART_AFTER``.
        paused: Attentive refused the key; the key is being checked again.
    """

    started: Callable[[Sender], Awaitable[None]]
    failed: Callable[[QueueError, float], None]
    paused: Callable[[], None] = _nothing


async def keep_delivering(  # noqa: PLR0913 - the loop's parts, keyword-only where optional
    queue: Queue,
    http: httpx.AsyncClient,
    settings: Callable[[], SenderSettings],
    stop: asyncio.Event,
    hooks: Hooks,
    *,
    keys: KeyCheck | None = None,
    note: Callable[[int, str, Mapping[str, object]], None] | None = None,
) -> Paused | None:
    """Run senders one after the other until a stop, or a refused key not accepted again.

    The loop of ``deliver --follow`` and of ``serve``'s delivery: a sender made with
    ``settings()`` (read again for each one, as the key may have changed) puts back what a
    crash left in flight, forgets what is past the retention, and delivers until stopped. After
    a failure of the queue's storage another starts ``RESTART_AFTER`` seconds later; after a
    refused key, once ``keys`` finds it accepted again.

    Returns:
        The refusal still in force when it ended, if any.
    """
    while not stop.is_set():
        sender = Sender(queue, http, settings())
        await hooks.started(sender)
        try:
            await sender.call(queue.recover)
            await sender.call(queue.prune, time.time())
            await sender.run(stop=stop, forever=True)
        except QueueError as error:
            hooks.failed(error, RESTART_AFTER)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_AFTER)
            continue
        if sender.paused is not None:
            if keys is None or note is None:
                return sender.paused
            hooks.paused()
            if not await keys.pause(sender.paused, http, settings().base_url, stop, note):
                return sender.paused
    return None


async def _watch(
    changes: Callable[[], int], interval: float, current: _Current, stop: asyncio.Event
) -> None:
    """Wake the sender whenever the queue file changed (new events from another process)."""
    seen: int | None = None
    while not stop.is_set():
        try:
            version = await asyncio.to_thread(changes)
        except QueueError:
            version = None  # the sender meets the failure too, and says so
        if version is not None and version != seen:
            seen = version
            if current.sender is not None:
                current.sender.notify()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _prune_now_and_then(queue: Queue, stop: asyncio.Event) -> None:
    """Forget finished events past the retention while running for days (as ``serve`` does)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PRUNE_EVERY)
        if stop.is_set():
            return
        with contextlib.suppress(QueueError):  # the sender meets a failure too, and says so
            await asyncio.to_thread(queue.prune, time.time())


async def _report(  # noqa: PLR0913 - the follower's parts, one by one
    queue: Queue,
    current: _Current,
    say: Callable[[str], None],
    *,
    label: str,
    out: IO[str],
    done: asyncio.Event,
) -> None:
    """Say what ``Health`` reports, and a line per burst of settled events, until ``done``."""
    said = Counter[str]()
    last_line = float("-inf")
    while True:
        for report in current.health.reports(time.time()):
            print(report_line(label, report), file=out, flush=True)
        stats = current.stats
        now = time.monotonic()
        new = stats.settled - sum(said[state.label] for state in FINAL_STATES)
        idle = current.sender is None or current.sender.in_flight == 0
        due = (idle and now - last_line >= QUIET_GAP) or now - last_line >= SUMMARY_EVERY
        if new and (due or done.is_set()):
            try:
                counts = await asyncio.to_thread(queue.counts)
            except QueueError:
                counts = {}
            say(_summary(stats, said, new, counts))
            said = Counter({state.label: stats.outcomes[state.label] for state in FINAL_STATES})
            last_line = now
        if done.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), REPORT_CHECK)


def _summary(stats: Stats, said: Counter[str], new: int, counts: dict[State, int]) -> str:
    """``12 event(s) settled (delivered 11, dead_lettered 1); 3 queued; 4,203 since start``."""
    parts = []
    for state in (State.DELIVERED, State.SKIPPED, State.REJECTED, State.DEAD):
        number = stats.outcomes[state.label] - said[state.label]
        if number:
            parts.append(f"{state.label} {number:,}")
    waiting = counts.get(State.QUEUED, 0) + counts.get(State.IN_FLIGHT, 0)
    queued = f"{waiting:,} still queued" if counts else "still queued: unknown"
    return (
        f"{new:,} event(s) settled ({', '.join(parts)}); {queued}; "
        f"{stats.settled:,} settled since start"
    )
