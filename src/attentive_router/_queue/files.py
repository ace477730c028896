"""The queue's files hold shoppers' email addresses and phone numbers: they are kept private.

Files the router creates (the queue, and through it SQLite's ``-wal`` and ``-shm``, and the
lock file) are owner-only (0600) whatever the umask: the queue file is created with that mode
before SQLite opens it, and SQLite gives its ``-wal`` and ``-shm`` files the mode of the
database file. Files that exist already are left as they are; ``exposure`` says what is wrong
with them so that the commands can warn.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

PRIVATE = 0o600
"""Read and write for the owner, nothing for anyone else."""

SIDE_FILES = ("-wal", "-shm")
"""Suffixes of the files SQLite keeps next to a database in WAL mode."""


def create_private(path: Path) -> bool:
    """Create ``path`` empty and owner-only unless it exists; return whether it was created.

    Raises:
        OSError: The file could not be created (no such folder, no permission).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE)  # the umask may have taken bits away, never added: be exact
    finally:
        os.close(fd)
    return True


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags`` (plus ``O_CREAT``); a file it creates is owner-only."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return os.open(path, flags)
    try:
        os.fchmod(fd, PRIVATE)
    except OSError:
        os.close(fd)
        raise
    return fd


def tighten_side_files(path: Path) -> None:
    """Make SQLite's ``-wal`` and ``-shm`` files owner-only when the database file is.

    SQLite creates them with the database file's mode already; this also covers files left
    behind, with a looser mode, by an earlier version. Files of other users are left alone.
    """
    try:
        if path.stat().st_mode & 0o077:
            return
    except OSError:
        return
    for suffix in SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            info = side.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and info.st_mode & 0o077:
                side.chmod(PRIVATE)
        except OSError:
            continue


def exposure(path: Path) -> list[str]:
    """What lets other users read the queue at ``path`` or tamper with it, as warnings.

    A folder every user may write to lets them replace the queue's files or plant their own
    ``-wal``/``-shm`` next to it (a sticky bit does not prevent that); a queue file readable by
    its group or by everyone shows them its events.
    """
    found: list[str] = []
    folder = path.absolute().parent
    try:
        mode = stat.S_IMODE(folder.stat().st_mode)
    except OSError:
        mode = 0
    if mode & stat.S_IWOTH:
        found.append(
            f"the queue's folder {folder} is writable by every user (mode {mode:04o}): others "
            "can replace the queue's files; keep the queue in a folder only this user can write"
        )
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return found
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        who = "every user" if mode & stat.S_IROTH else "its group"
        found.append(
            f"the queue {path} is readable by {who} (mode {mode:04o}), and it holds email "
            f"addresses and phone numbers: `chmod 600 {shlex.quote(str(path))}*`"
        )
    return found
