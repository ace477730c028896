"""What the benchmarks read about the machine and about processes (Linux ``/proc``)."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cores() -> str:
    """Logical cores, and how many this process may use when that differs."""
    logical = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return f"{logical}"
    return f"{logical}" if usable == logical else f"{logical} ({usable} usable by this process)"


def machine() -> str:
    """One line: cores, architecture, Python."""
    return (
        f"machine: {cores()} cores, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (NaN when unknown)."""
    if pid is None:
        return math.nan
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    # Fields after the command name (which may hold spaces) start at field 3 ("state").
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_kib(pid: int) -> tuple[int, int] | None:
    """``(VmRSS, VmHWM)`` of process ``pid`` in KiB: resident now, and its peak so far.

    None when the process is gone (or is a zombie, whose memory is already freed).
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            values[name] = int(rest.split()[0])
    if len(values) < 2:
        return None
    return values["VmRSS"], values["VmHWM"]


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (NaN when unknown)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return math.nan
    # cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy.
    fields = [int(value) for value in first.split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / _TICKS
