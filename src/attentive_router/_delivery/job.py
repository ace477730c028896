"""Running delivery as a job: queue a file while sending, show progress, summarise the run.

This is where the commands ``send`` and ``deliver`` meet the sender. It owns the lock that
keeps one deliverer per queue file, and it turns Ctrl-C and SIGTERM into a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
from attrs import define, field, frozen

from attentive_router._delivery.health import Report
from attentive_router._delivery.progress import Progress
from attentive_router._delivery.sender import Paused, Sender, SenderSettings, Stats, make_client
from attentive_router._queue.files import open_private
from attentive_router._queue.intake import from_item
from attentive_router._queue.interface import NewEvent, Queue, State
from attentive_router._transform.reader import read_events

PUT_BATCH = 500
"""Events queued per transaction while reading a file."""


class QueueBusyError(Exception):
    """Another process is delivering from the same queue file."""


@contextlib.contextmanager
def delivery_lock(queue_path: Path) -> Iterator[None]:
    """Hold ``<queue>.lock`` so that only one process delivers from a queue file.

    The lock file is created owner-only, like the queue's own files.
    """
    lock_path = queue_path.with_name(queue_path.name + ".lock")
    handle = os.fdopen(open_private(lock_path, os.O_RDWR | os.O_APPEND), "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            msg = f"{queue_path} is being delivered from by {holder}; wait for it or stop it"
            raise QueueBusyError(msg) from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


@frozen
class FollowUp:
    """The commands a summary suggests, with the options needed to run them as printed.

    Attributes:
        deliver: The command that sends what is left (with the queue, the URL, ...).
        dead_letters: The command that lists the dead letters of the same queue.
        key: Where the API key is set, for the message of a refused key.
    """

    deliver: str = "attentive-router deliver"
    dead_letters: str = "attentive-router dead-letters list"
    key: str = "ATTENTIVE_API_TOKEN, --token or --token-file"


@define
class Run:
    """What one ``send`` or ``deliver`` run did."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    stats: Stats = field(factory=Stats)
    remaining: dict[State, int] = field(factory=dict)
    paused: Paused | None = None
    interrupted: bool = False
    seconds: float = 0.0

    def render(self, label: str, follow: FollowUp | None = None) -> str:
        """The end-of-run summary table; its hints are ``follow``'s commands."""
        follow = follow or FollowUp()
        stats = self.stats
        rate = f" ({stats.settled / self.seconds:,.0f} events/s)" if self.seconds > 0 else ""
        lines = [f"{label}: {stats.settled:,} event(s) settled in {self.seconds:,.1f} s{rate}"]
        if self.read:
            lines.append(
                f"  read {self.read:,}: {self.accepted:,} new, {self.duplicates:,} "
                "already queued before (not sent again)"
            )
        for state in (State.DELIVERED, State.SKIPPED, State.REJECTED, State.DEAD):
            lines.append(f"  {state.label:<16}{stats.outcomes[state.label]:>10,}")
            lines.extend(
                f"    {reason:<28}{count:>10,}"
                for (kind, reason), count in sorted(stats.reasons.items())
                if kind == state.label
            )
        waiting = self.remaining.get(State.QUEUED, 0) + self.remaining.get(State.IN_FLIGHT, 0)
        lines.append(f"  {'still queued':<16}{waiting:>10,}")
        lines.append(
            f"requests sent {stats.requests:,}; retries scheduled {stats.retries:,}; "
            f"throttled (429) {stats.throttled:,}"
        )
        if stats.endpoints:
            lines.append("answers by endpoint")
            for (path, status), count in sorted(stats.endpoints.items()):
                lines.append(f"  {path:<44}{status:>6}{count:>10,}")
                if status == "error":  # no answer: say why
                    lines.extend(
                        f"    {cause:<46}{number:>10,}"
                        for (where, cause), number in sorted(stats.causes.items())
                        if where == path
                    )
        if stats.warnings:
            lines.append("transform warnings (on delivered and skipped events)")
            lines.extend(
                f"  {code:<44}{count:>16,}" for code, count in sorted(stats.warnings.items())
            )
        dead = self.remaining.get(State.DEAD, 0)
        if dead:
            lines.append(f"{dead:,} dead letter(s) in the queue: `{follow.dead_letters}`")
        if self.paused is not None:
            remedy = f"Fix the key ({follow.key}), then run `{follow.deliver}`"
            lines.append(f"SENDING STOPPED: {self.paused.explain(remedy)}")
        elif self.interrupted:
            lines.append(f"interrupted: run `{follow.deliver}` to send the rest")
        return "\n".join(lines)

    @property
    def exit_status(self) -> int:
        """0 when all is settled and nothing was dead-lettered; see the commands' help."""
        if self.paused is not None:
            return 3
        if self.interrupted:
            return 130
        if self.stats.outcomes[State.DEAD.label]:
            return 1
        return 0


def draw_progress(line: Progress, sender: Sender, total: int) -> None:
    """Redraw ``line`` (when due): events settled of ``total``, rate, retries, ETA.

    While an endpoint is failing, the cause and the target take the ETA's place.
    """
    elapsed = line.due()
    if elapsed is None:
        return
    done = sender.stats.settled
    rate = done / elapsed
    width = 24
    share = min(done / total, 1.0) if total else 0.0
    bar = "#" * int(share * width)
    eta = f"ETA {(total - done) / rate:,.0f}s" if rate > 0 and total > done else ""
    failing = sender.health.failing()
    if failing:
        first = failing[0]
        more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
        eta = f"FAILING: {first.cause} at {first.target}, {first.failures:,} in a row{more}"
    line.show(
        f" [{bar:<{width}}] {done:,}/{total:,} {rate:,.0f}/s retries {sender.stats.retries:,} {eta}"
    )


def report_line(label: str, report: Report) -> str:
    """A report as a line on a command's stderr."""
    kind = "" if report.kind == "recovered" else "warning: "
    return f"attentive-router {label}: {kind}{report.text()}"


async def _tick(progress: Progress, sender: Sender, total: Callable[[], int]) -> None:
    while True:
        for report in sender.health.reports(time.time()):
            progress.note(report_line(progress.label, report))
        draw_progress(progress, sender, total())
        await asyncio.sleep(progress.interval)


def _nothing() -> None:
    """Nothing to restore."""


def _stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Set ``stop`` on SIGINT/SIGTERM; return a function that restores the handlers."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue

    def restore() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return restore


async def deliver(  # noqa: PLR0913 - optional parts are keyword-only
    queue: Queue,
    settings: SenderSettings,
    *,
    source: IO[bytes] | None = None,
    source_name: str = "default",
    progress: Progress | None = None,
    client: httpx.AsyncClient | None = None,
    stop: asyncio.Event | None = None,
    signals: bool = True,
) -> Run:
    """Queue ``source`` (when given) while delivering everything queued; return the run.

    Events left in flight by a crash are queued again first. Ctrl-C or SIGTERM (or ``stop``)
    ends the run cleanly: what is in flight gets a grace period, the rest stays queued.
    ``signals=False`` leaves SIGINT and SIGTERM to the caller (several runs side by side).
    """
    started = time.monotonic()
    run = Run()
    stop = stop or asyncio.Event()
    restore = _stop_on_signals(stop) if signals else _nothing
    http = client or make_client(settings)
    sender = Sender(queue, http, settings)
    halt = asyncio.Event()
    input_done = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await sender.call(queue.recover)
        await sender.call(queue.prune, time.time())
        queued_before = (await sender.call(queue.counts))[State.QUEUED]
        if source is None:
            input_done.set()
        else:
            reader = asyncio.create_task(_read(source, source_name, sender, run, halt))
            reader.add_done_callback(lambda _: input_done.set())
            tasks.append(reader)
        if progress is not None:
            total = lambda: queued_before + run.accepted  # noqa: E731 - read at every redraw
            tasks.append(asyncio.create_task(_tick(progress, sender, total)))
        await sender.run(input_done=input_done, stop=stop)
        run.interrupted = stop.is_set()
    finally:
        halt.set()
        for task in tasks[1:] if source is not None else tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if progress is not None:
            for report in sender.health.reports(time.time()):  # what the last tick missed
                progress.note(report_line(progress.label, report))
            progress.close()
        restore()
        if client is None:
            await http.aclose()
    if source is not None:
        tasks[0].result()  # a read error surfaces here
    run.stats = sender.stats
    run.paused = sender.paused
    run.remaining = await sender.call(queue.counts)
    run.seconds = time.monotonic() - started
    return run


async def _read(
    source: IO[bytes], name: str, sender: Sender, run: Run, halt: asyncio.Event
) -> None:
    """Queue every event of ``source``, ``PUT_BATCH`` per transaction, until ``halt``."""
    batch: list[NewEvent] = []
    for item in read_events(source):
        if halt.is_set():
            return
        batch.append(from_item(item, time.time(), name))
        if len(batch) >= PUT_BATCH:
            await _put(batch, sender, run)
            batch = []
    if batch:
        await _put(batch, sender, run)


async def _put(batch: list[NewEvent], sender: Sender, run: Run) -> None:
    result = await sender.call(sender.queue.put, batch, time.time())
    run.read += len(batch)
    run.accepted += result.accepted
    run.duplicates += result.duplicates
    for reason in result.rejected:
        sender.stats.outcomes[State.REJECTED.label] += 1
        sender.stats.reasons[State.REJECTED.label, reason] += 1
    sender.notify()
