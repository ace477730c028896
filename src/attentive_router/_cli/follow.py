"""``deliver --follow``: its options, their checks, and the run (``_delivery.follow``)."""

from __future__ import annotations

import argparse
import os
from typing import IO, TYPE_CHECKING

from attrs import evolve

from attentive_router._cli.numbers import non_negative, positive

if TYPE_CHECKING:
    from attentive_router._delivery.job import FollowUp
    from attentive_router._delivery.sender import SenderSettings
    from attentive_router._queue.sqlite import SQLiteQueue

PROG = "attentive-router"
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_GRACE = 5.0
KEY_REFUSED = 3
"""Exit status when Attentive refuses the API key, as for every delivery command."""

FOLLOW_EPILOG = """\
running as a service (--follow):
  deliver --follow delivers what is queued, then waits for more, which another process
  queues: `attentive-router serve --no-deliver` on the same --queue. It looks at the queue
  file every --poll-interval seconds and says on stderr what it settled, a line per burst
  (at most one a minute while events keep coming), and what fails. SIGTERM or Ctrl-C:
  requests in flight get --grace seconds, the rest stays queued, exit 0 (3 if Attentive
  refused the API key). While it runs, no other process delivers from the queue.

examples:
  attentive-router deliver
  attentive-router serve --no-deliver --write-key wk_live_123 --queue /var/lib/ar/queue.db
  attentive-router deliver --follow --queue /var/lib/ar/queue.db

"""


def add_follow_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--follow``, ``--poll-interval`` and ``--grace`` to ``deliver``."""
    group = parser.add_argument_group("running as a service")
    group.add_argument(
        "--follow",
        action="store_true",
        help="keep running: deliver events as other processes queue them, until SIGTERM",
    )
    group.add_argument(
        "--poll-interval",
        type=positive,
        metavar="S",
        help="with --follow, look for new events this often "
        f"(> 0; default: {DEFAULT_POLL_INTERVAL:g})",
    )
    group.add_argument(
        "--grace",
        type=non_negative,
        metavar="S",
        help="with --follow, on SIGTERM, time for requests in flight to finish "
        f"(>= 0; default: {DEFAULT_GRACE:g})",
    )


def follow_usage_error(args: argparse.Namespace) -> str | None:
    """Why the ``--follow`` options do not go together, or None when they do."""
    if getattr(args, "follow", False):
        if args.progress == "always":
            return "--progress always does not apply to --follow, which prints lines instead"
        return None
    given = [
        option
        for option, value in (("--poll-interval", "poll_interval"), ("--grace", "grace"))
        if getattr(args, value, None) is not None
    ]
    if given:
        return f"{' and '.join(given)} only apply with --follow"
    return None


def run_follow(
    args: argparse.Namespace,
    queue: SQLiteQueue,
    settings: SenderSettings,
    stderr: IO[str],
    hints: FollowUp,
) -> int:
    """Deliver until SIGTERM or SIGINT (exit 0), or a refused key (exit 3)."""
    import asyncio  # noqa: PLC0415

    from attentive_router._delivery.follow import follow  # noqa: PLC0415

    grace = DEFAULT_GRACE if args.grace is None else args.grace
    poll = DEFAULT_POLL_INTERVAL if args.poll_interval is None else args.poll_interval
    run = asyncio.run(
        follow(
            queue,
            evolve(settings, grace=grace),
            changes=queue.data_version,
            poll_interval=poll,
            out=stderr,
            where=f"{args.queue} (pid {os.getpid()})",
        )
    )
    print(run.render("deliver", hints), file=stderr)
    return KEY_REFUSED if run.paused is not None else 0
