"""Counting outcomes for the end-of-run summary, and a progress line for long runs."""

from __future__ import annotations

import time
from collections import Counter
from typing import IO

from attrs import define, field

from attentive_router._json import OUTCOME_NAMES
from attentive_router._outcome import Mapped, Outcome


@define
class Tally:
    """Counts of outcomes by kind and reason, and of warnings by code."""

    outcomes: Counter[str] = field(factory=Counter)
    reasons: Counter[tuple[str, str]] = field(factory=Counter)
    warnings: Counter[str] = field(factory=Counter)
    endpoints: Counter[str] = field(factory=Counter)

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        kind = OUTCOME_NAMES[type(outcome)]
        self.outcomes[kind] += 1
        if isinstance(outcome, Mapped):
            self.warnings.update(warning.code for warning in outcome.warnings)
            self.endpoints.update(request.path for request in outcome.requests)
        else:
            self.reasons[kind, outcome.reason] += 1

    def add_rejected(self, reason: str) -> None:
        """Count an input that was rejected before it reached the router."""
        self.outcomes["rejected"] += 1
        self.reasons["rejected", reason] += 1

    @property
    def total(self) -> int:
        """Number of events counted."""
        return sum(self.outcomes.values())

    def render(self, seconds: float | None = None) -> str:
        """A plain-text summary table (with the rate, when the run's duration is given)."""
        took = ""
        if seconds is not None and seconds > 0:
            took = f" in {seconds:,.1f} s ({self.total / seconds:,.0f} events/s)"
        lines = [f"{self.total:,} event(s){took}"]
        for kind in ("mapped", "skipped", "rejected"):
            lines.append(f"  {kind:<10}{self.outcomes[kind]:>10,}")
            for (of, reason), count in sorted(self.reasons.items()):
                if of == kind:
                    lines.append(f"    {reason:<30}{count:>10,}")
        if self.endpoints:
            lines.append("requests by endpoint")
            lines.extend(
                f"  {path:<44}{count:>10,}" for path, count in sorted(self.endpoints.items())
            )
        if self.warnings:
            lines.append("warnings (events were still sent)")
            lines.extend(
                f"  {code:<30}{count:>10,}" for code, count in sorted(self.warnings.items())
            )
        return "\n".join(lines)


def progress_wanted(choice: str, stream: IO[str]) -> bool:
    """Whether to draw progress for ``--progress always|never|auto`` (auto: on a terminal)."""
    return choice == "always" or (choice == "auto" and stream.isatty())


@define
class Progress:
    """A one-line progress display on a terminal, refreshed at most a few times a second."""

    stream: IO[str]
    label: str
    enabled: bool
    interval: float = 0.25
    _started: float = field(factory=time.monotonic)
    _shown: float = 0.0

    def due(self) -> float | None:
        """Seconds since the start when a redraw is due now (and taken), else None."""
        if not self.enabled:
            return None
        now = time.monotonic()
        if now - self._shown < self.interval:
            return None
        self._shown = now
        return max(now - self._started, 1e-9)

    def show(self, text: str) -> None:
        """Redraw the line: the label, then ``text``."""
        self.stream.write(f"\r{self.label}{text}  ")
        self.stream.flush()

    def update(
        self, done: int, total_bytes: int | None = None, read_bytes: int | None = None
    ) -> None:
        """Show ``done`` events so far (and the share of the input read, when known)."""
        elapsed = self.due()
        if elapsed is None:
            return
        share = ""
        if total_bytes and read_bytes is not None:
            fraction = min(read_bytes / total_bytes, 1.0)
            eta = elapsed * (1 - fraction) / fraction if fraction else 0.0
            share = f" {fraction:6.1%}  ETA {eta:5.0f}s"
        self.show(f": {done:,} events  {done / elapsed:,.0f}/s{share}")

    def close(self) -> None:
        """Clear the progress line."""
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
