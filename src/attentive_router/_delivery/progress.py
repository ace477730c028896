"""A progress line on a terminal for long runs (``transform``, ``send``, ``deliver``)."""

from __future__ import annotations

import time
from typing import IO

from attrs import define, field


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

    def note(self, text: str) -> None:
        """Write ``text`` on a line of its own (above the progress line, which is redrawn)."""
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[2K")
            self._shown = 0.0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Clear the progress line."""
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
