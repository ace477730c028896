"""Peak resident memory of ``attentive-router send`` on a large NDJSON file.

The file (default 1,000,000 events, ``bench/delivery_corpus.py``) is streamed to a temporary
directory, then ``python -m attentive_router send FILE --queue DB --base-url URL --token TOKEN
--progress never`` runs as a subprocess against a sandbox without rate limits. The sender
still paces itself at 150 requests/s per endpoint, so delivering a million events takes far
longer than a benchmark may: this process samples the child's ``VmRSS``/``VmHWM`` from
``/proc`` a few times a second, the queue's row count (a separate ``SQLiteQueue`` on the same
file) and the sandbox's count of accepted requests, and measures how long the sender takes
per event. When the whole run would exceed the time budget, the child is stopped with SIGINT
(its clean stop) once the whole file is queued and delivery has gone on until the budget.
The peak is the last ``VmHWM`` read before the child exits (``VmHWM`` starts afresh at
``exec``; ``ru_maxrss`` does not: on Linux it keeps the high-water mark of the forking parent,
this benchmark process, so it is not used).

A tiny run of the same command first gives the baseline (interpreter and imports), so that
what the large file adds is visible.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess
from bench import delivery_corpus, system

RSS_EVENTS = 1_000_000
BASELINE_EVENTS = 100
BUDGET = 240.0
"""Seconds a run may take before it is stopped (once the file is fully queued)."""
PEAK_TARGET_MB = 150.0
AFTER_QUEUED = 10.0
"""Seconds of delivery, at least, between the file being fully queued and the stop."""
ESTIMATE_AFTER = 10.0
"""Seconds of the run after which the time per event is measured and the stop planned."""
POLL = 0.2
STOP_TIMEOUT = 60.0

_MB = 1024.0  # KiB per MiB


@dataclass
class Sample:
    """The child at one moment: seconds since start, memory, queue rows, accepted requests."""

    at: float
    rss_kib: int
    hwm_kib: int
    queued: int
    requests: int


@dataclass
class SendRun:
    """One run of ``send``."""

    label: str
    events: int
    file_bytes: int
    seconds: float = 0.0
    exit_status: int | None = None
    peak_kib: int = 0
    samples: list[Sample] = field(default_factory=list)
    queued: int = 0
    delivered: int = 0
    requests: int = 0
    queued_at: float | None = None
    per_event: float | None = None
    estimated_at: float = 0.0
    estimated_requests: int = 0
    stopped_at: float | None = None
    queue_bytes: int = 0
    wal_bytes: int = 0
    summary: str = ""

    @property
    def peak_mb(self) -> float:
        """Peak RSS in MiB."""
        return self.peak_kib / _MB


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Child:
    """The ``send`` subprocess: started, watched, stopped and reaped (with its rusage)."""

    def __init__(self, command: list[str], directory: Path) -> None:
        self.stderr_path = directory / "send.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        self.status: int | None = None
        self._execed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def reap(self, block: bool = False) -> bool:
        """True once the child has exited (its status and peak RSS are then known)."""
        if self.status is not None:
            return True
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        self.status = os.waitstatus_to_exitcode(status)
        self.process.returncode = self.status
        return True

    def execed(self) -> bool:
        """True once the child runs the command (before, /proc shows a copy of this process)."""
        if not self._execed:
            try:
                cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
            except OSError:
                return False
            self._execed = b"attentive_router" in cmdline
        return self._execed

    def interrupt(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds, then kill."""
        deadline = time.monotonic() + timeout
        while not self.reap():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.reap(block=True)
                return
            time.sleep(0.05)

    def ensure_stopped(self) -> None:
        """Whatever happened: SIGINT, a grace period, then SIGKILL."""
        if self.status is None:
            self.interrupt()
            self.wait(STOP_TIMEOUT / 4)


class _Watch:
    """What is known of one ``send`` run as it goes, and when to stop it."""

    def __init__(
        self, run: SendRun, sandbox: SandboxProcess, queue_path: Path, budget: float
    ) -> None:
        self.run = run
        self.sandbox = sandbox
        self.queue_path = queue_path
        self.budget = budget
        self.reader: SQLiteQueue | None = None
        self.hwm = 0
        self.next_count = 0.0
        self.looks = 0
        self.stop_planned: bool | None = None

    def look(self, now: float, child: _Child) -> None:
        """Read the child's memory; every second, the queue's rows and the accepted requests."""
        run = self.run
        memory = system.memory_kib(child.pid) if child.execed() else None
        if memory is not None:
            self.hwm = max(self.hwm, memory[1])
        if now < self.next_count:
            return
        self.next_count = now + 1.0
        self.looks += 1
        if self.reader is None and self.queue_path.exists():
            self.reader = SQLiteQueue(self.queue_path)
        # Counting the rows scans the table: every other second only, until all are there.
        if run.queued_at is None and self.reader is not None and self.looks % 2:
            run.queued = sum(self.reader.counts().values())
            if run.queued >= run.events:
                run.queued_at = now
        run.requests = int(self.sandbox.stats()["accepted"])
        if memory is not None:
            run.samples.append(Sample(now, *memory, run.queued, run.requests))

    def plan(self, now: float) -> None:
        """Once, after ``ESTIMATE_AFTER`` s: the time per event so far, and whether to stop."""
        run = self.run
        if self.stop_planned is not None or now < ESTIMATE_AFTER or run.requests == 0:
            return
        run.per_event, run.estimated_at = now / run.requests, now
        run.estimated_requests = run.requests
        self.stop_planned = run.per_event * run.events > self.budget
        if self.stop_planned:
            _progress(
                f"  {run.per_event * 1e3:.2f} ms per event so far: the whole file would take "
                f"~{run.per_event * run.events:,.0f} s; stopping after about "
                f"{self.budget:,.0f} s, once it is all queued"
            )

    def due(self, now: float) -> bool:
        """Time to stop: over the budget with the file queued (or far over it in any case).

        Planned stops come at the budget; when the estimate fitted, half as much again is
        allowed before the run is stopped all the same.
        """
        if self.run.stopped_at is not None:
            return False
        limit = self.budget if self.stop_planned else 1.5 * self.budget
        queued = self.run.queued_at
        queued_for = now - queued if queued is not None else -1.0
        return (now >= limit and queued_for >= AFTER_QUEUED) or now >= 3 * self.budget

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def run_send(
    sandbox: SandboxProcess,
    label: str,
    source: Path,
    events: int,
    directory: Path,
    *,
    budget: float,
) -> SendRun:
    """Run ``send`` on ``source`` (``events`` events) and watch it; see the module docstring."""
    queue_path = directory / f"queue-{label}.db"
    command = [
        *(sys.executable, "-m", "attentive_router", "send", str(source)),
        *("--queue", str(queue_path), "--base-url", sandbox.url, "--token", sandbox.token),
        *("--progress", "never"),
    ]
    sandbox.reset()
    run = SendRun(label, events, source.stat().st_size)
    watch = _Watch(run, sandbox, queue_path, budget)
    started = time.monotonic()
    child = _Child(command, directory)
    try:
        while not child.reap():
            now = time.monotonic() - started
            watch.look(now, child)
            watch.plan(now)
            if watch.due(now):
                run.stopped_at = now
                child.interrupt()
                _progress(f"  SIGINT after {now:,.0f} s")
            if run.stopped_at is not None and now > run.stopped_at + STOP_TIMEOUT:
                child.wait(0)
            time.sleep(POLL)
    finally:
        child.ensure_stopped()
        watch.close()
    run.seconds = time.monotonic() - started
    run.exit_status = child.status
    run.peak_kib = watch.hwm
    run.requests = int(sandbox.stats()["accepted"])
    final = SQLiteQueue(queue_path)
    try:
        counts = final.counts()
    finally:
        final.close()
    run.queued = sum(counts.values())
    run.delivered = counts[State.DELIVERED]
    run.queue_bytes = queue_path.stat().st_size
    wal = queue_path.with_name(queue_path.name + "-wal")
    run.wal_bytes = wal.stat().st_size if wal.exists() else 0
    run.summary = child.stderr_path.read_text(errors="replace")
    return run


@dataclass
class RssResult:
    """The baseline run and the large run."""

    baseline: SendRun
    large: SendRun
    budget: float
    generated_seconds: float


def measure(events: int, budget: float, seed: int) -> RssResult:
    """Generate the files, run ``send`` on the tiny one and then on the large one."""
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as name:
        directory = Path(name)
        small = directory / "baseline.ndjson"
        delivery_corpus.write_ndjson(small, BASELINE_EVENTS, seed + 11)
        large = directory / "events.ndjson"
        _progress(f"rss: writing {events:,} events to {large}...")
        started = time.perf_counter()
        delivery_corpus.write_ndjson(large, events, seed)
        generated = time.perf_counter() - started
        size = large.stat().st_size
        _progress(f"  {size / 1e6:,.1f} MB in {generated:.1f} s")
        with SandboxProcess(no_rate_limits=True) as sandbox:
            _progress(f"rss: baseline run of send on {BASELINE_EVENTS} events...")
            baseline = run_send(
                sandbox, "baseline", small, BASELINE_EVENTS, directory, budget=budget
            )
            _progress(f"rss: send on {events:,} events (budget {budget:,.0f} s)...")
            large_run = run_send(sandbox, "large", large, events, directory, budget=budget)
    return RssResult(baseline, large_run, budget, generated)


# -- reporting ----------------------------------------------------------------------------------


def _timeline(run: SendRun, rows: int = 10) -> list[Sample]:
    samples = run.samples
    if len(samples) <= rows:
        return samples
    step = (len(samples) - 1) / (rows - 1)
    return [samples[round(index * step)] for index in range(rows)]


def report(result: RssResult) -> None:
    """Both runs, the memory over time, and the verdict on the peak."""
    base, large = result.baseline, result.large
    print()
    print("attentive-router send: peak resident memory (RSS)")
    print(system.machine())
    print(
        "command: python -m attentive_router send FILE --queue DB --base-url URL --token TOKEN "
        "--progress never"
    )
    print(
        "target: a sandbox without rate limits; the sender paces itself at 150 requests/s per "
        "endpoint (four endpoints)"
    )
    print()
    header = (
        f"  {'run':<10} {'events':>10} {'file MB':>8} {'queued':>10} {'delivered':>10} "
        f"{'elapsed s':>10} {'exit':>5} {'peak RSS MB':>12}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for run in (base, large):
        print(
            f"  {run.label:<10} {run.events:>10,} {run.file_bytes / 1e6:>8.1f} {run.queued:>10,} "
            f"{run.delivered:>10,} {run.seconds:>10.1f} {run.exit_status!s:>5} "
            f"{run.peak_mb:>12.1f}"
        )
    print()
    print(
        f"  file written (streamed) in {result.generated_seconds:.1f} s; queue file at the end "
        f"{large.queue_bytes / 1e6:,.1f} MB, its WAL {large.wal_bytes / 1e6:,.1f} MB"
    )
    if large.queued_at is not None:
        print(
            f"  whole file queued by {large.queued_at:,.1f} s "
            f"({large.events / max(large.queued_at, 1e-9):,.0f} events/s while delivering)"
        )
    else:
        print(f"  the file was NOT fully queued: {large.queued:,} of {large.events:,} rows")
    if large.per_event is not None:
        print(
            f"  time per event: {large.per_event * 1e3:.2f} ms ({large.estimated_requests:,} "
            f"requests accepted in the first {large.estimated_at:.0f} s), so the "
            "whole file would take "
            f"~{large.per_event * large.events:,.0f} s against a budget of {result.budget:,.0f} s"
        )
    if large.stopped_at is not None:
        print(
            f"  stopped with SIGINT after {large.stopped_at:,.1f} s; "
            f"{large.delivered:,} events delivered before the stop "
            f"({large.delivered / large.stopped_at:,.0f}/s over the run), "
            f"{large.queued - large.delivered:,} left queued for `deliver`"
        )
    else:
        print(f"  ran to the end: {large.delivered:,} events delivered")
    print(
        f"  peak RSS: baseline {base.peak_mb:.1f} MB, large file {large.peak_mb:.1f} MB "
        f"(+{large.peak_mb - base.peak_mb:.1f} MB)"
    )
    print()
    print("  memory over the large run (sampled)")
    print(
        f"    {'at s':>7} {'RSS MB':>8} {'peak MB':>8} {'rows queued':>12} "
        f"{'requests accepted':>18}"
    )
    for sample in _timeline(large):
        print(
            f"    {sample.at:>7.1f} {sample.rss_kib / _MB:>8.1f} {sample.hwm_kib / _MB:>8.1f} "
            f"{sample.queued:>12,} {sample.requests:>18,}"
        )
    met = large.peak_mb < PEAK_TARGET_MB
    print()
    print(
        f"  {'peak RSS of send':<32} {large.peak_mb:>7.1f} MB   target < {PEAK_TARGET_MB:.0f} MB"
        f"   {'PASS' if met else 'MISS'}   "
        f"({large.events:,}-event file; baseline {base.peak_mb:.1f} MB)"
    )
