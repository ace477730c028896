"""``deliver --follow``: its options, their checks, and the run (``_delivery.follow``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from attrs import evolve, frozen

from attentive_router._cli.numbers import at_least_one, non_negative, port, positive
from attentive_router._queue.interface import DEFAULT_DEDUPE_WINDOW
from attentive_router._queue.kafka.settings import (
    DEFAULT_MAX_AHEAD,
    DEFAULT_MAX_HELD,
    KafkaSettings,
)

if TYPE_CHECKING:
    from attentive_router._delivery.job import FollowUp, Run
    from attentive_router._delivery.keys import KeySource
    from attentive_router._delivery.sender import SenderSettings
    from attentive_router._queue.sqlite import SQLiteQueue

PROG = "attentive-router"
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_GRACE = 5.0
DEFAULT_KEY_RETRY = 300.0
KEY_REFUSED = 3
"""Exit status when Attentive refuses the API key, as for every delivery command."""

FOLLOW_EPILOG = """\
running as a service (--follow):
  deliver --follow delivers what is queued, then waits for more, which another process
  queues: `attentive-router serve --no-deliver` on the same --queue. It looks at the queue
  file every --poll-interval seconds and says on stderr what it settled, a line per burst
  (at most one a minute while events keep coming), and what fails. SIGTERM or Ctrl-C:
  requests in flight get --grace seconds, the rest stays queued, exit 0 (3 if Attentive
  refused the API key and it was not accepted again). While it runs, no other process
  delivers from the queue. When Attentive refuses the API key (401/403), sending pauses (the
  events stay queued), the key is checked again every --key-retry-interval seconds (GET /v1/me)
  and delivery resumes by itself once it is accepted; SIGHUP re-reads --token-file and checks
  at once. With a configuration file of several destinations and no --destination, every
  destination is followed, each from its own queue with its own key.

on a Kafka queue (--queue kafka://HOST:PORT/PREFIX, or the configuration file's):
  deliver --follow is one delivery worker of the consumer group PREFIX.delivery: run as many as
  the events topic has partitions, on any machines; each delivers the partitions the group gives
  it, commits offsets up to its oldest unsettled event, drops messageIds seen within
  --dedupe-window, and uses the share of the account's rate limits that its partitions are of
  all. --listen HOST:PORT answers /healthz and /metrics (lag per partition, oldest unsettled
  event). With several destinations in the file, run each one's workers with --destination NAME.

examples:
  attentive-router deliver
  attentive-router serve --no-deliver --write-key wk_live_123 --queue /var/lib/ar/queue.db
  attentive-router deliver --follow --queue /var/lib/ar/queue.db
  attentive-router deliver --follow --queue kafka://kafka-1:9092/shop --listen 0.0.0.0:9464

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
    group.add_argument(
        "--key-retry-interval",
        type=positive,
        metavar="S",
        help="with --follow, after Attentive refused the API key (401/403), check it again this "
        "often (GET /v1/me) and resume once it is accepted; SIGHUP re-reads --token-file and "
        f"checks at once (> 0; default: {DEFAULT_KEY_RETRY:g})",
    )
    workers = parser.add_argument_group("delivery workers (--follow on a kafka:// queue)")
    workers.add_argument(
        "--listen",
        type=listen_address,
        metavar="HOST:PORT",
        help="answer GET /healthz and GET /metrics there (partitions held, their lag, the "
        "oldest unsettled event's age, the brokers answering, delivery counts); port 0 picks "
        "a free one, said on stderr",
    )
    workers.add_argument(
        "--dedupe-window",
        type=non_negative,
        metavar="HOURS",
        help="an event whose messageId the group saw this recently is not delivered again "
        f"(>= 0; default: {DEFAULT_DEDUPE_WINDOW / 3600:g})",
    )
    workers.add_argument(
        "--max-held",
        type=at_least_one,
        metavar="N",
        help="events a worker holds before it stops fetching until delivery catches up "
        f"(default: {DEFAULT_MAX_HELD:,})",
    )
    workers.add_argument(
        "--max-ahead",
        type=at_least_one,
        metavar="N",
        help="events a worker reads in a partition past its oldest unsettled one (a retry, or "
        "an event waiting behind its user's) before that partition waits; what another worker "
        f"may send again if this one dies (default: {DEFAULT_MAX_AHEAD:,})",
    )


KAFKA_ONLY = (
    ("--listen", "listen"),
    ("--dedupe-window", "dedupe_window"),
    ("--max-held", "max_held"),
    ("--max-ahead", "max_ahead"),
)
"""The options of delivery workers, which only a Kafka queue has."""


def listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) for ``--listen``."""
    host, sep, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{value!r}: give HOST:PORT, e.g. 127.0.0.1:9464")
    return host, port(port_text)


def kafka_only_options(args: argparse.Namespace) -> str | None:
    """Why delivery-worker options cannot be used with a queue file, or None."""
    given = [flag for flag, dest in KAFKA_ONLY if getattr(args, dest, None) is not None]
    if not given:
        return None
    return (
        f"{' and '.join(given)} only apply to delivery workers of a Kafka queue "
        "(--queue kafka://HOST:PORT/PREFIX)"
    )


def follow_usage_error(args: argparse.Namespace) -> str | None:
    """Why the ``--follow`` options do not go together, or None when they do."""
    if getattr(args, "follow", False):
        if args.progress == "always":
            return "--progress always does not apply to --follow, which prints lines instead"
        if not isinstance(getattr(args, "queue", None), KafkaSettings):
            return kafka_only_options(args)
        return None
    given = [
        option
        for option, value in (
            ("--poll-interval", "poll_interval"),
            ("--grace", "grace"),
            ("--key-retry-interval", "key_retry_interval"),
            # send has a --dedupe-window of its own (applied as it queues).
            *(KAFKA_ONLY if args.command == "deliver" else ()),
        )
        if getattr(args, value, None) is not None
    ]
    if given:
        return f"{' and '.join(given)} only apply with --follow"
    return None


@frozen
class Followed:
    """One queue to follow: its destination's name (None without one), queue, sender, key."""

    name: str | None
    queue: SQLiteQueue
    settings: SenderSettings
    key_source: KeySource | None
    hints: FollowUp
    where: str


def run_follow(args: argparse.Namespace, followed: Sequence[Followed], stderr: IO[str]) -> int:
    """Deliver until SIGTERM or SIGINT (exit 0; 3 when a key is still refused then).

    Several destinations are followed side by side, each with its own sender and key checks;
    each gets its summary, and the exit status is the worst of them.
    """
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from attentive_router._delivery.follow import follow  # noqa: PLC0415
    from attentive_router._delivery.job import _stop_on_signals  # noqa: PLC0415
    from attentive_router._delivery.keycheck import KeyCheck  # noqa: PLC0415

    grace = DEFAULT_GRACE if args.grace is None else args.grace
    poll = DEFAULT_POLL_INTERVAL if args.poll_interval is None else args.poll_interval
    retry = DEFAULT_KEY_RETRY if args.key_retry_interval is None else args.key_retry_interval
    checks = [KeyCheck(item.key_source, retry, program="deliver") for item in followed]

    async def every() -> list[Run]:
        stop = asyncio.Event()
        restore = _stop_on_signals(stop)
        loop = asyncio.get_running_loop()

        def hangup() -> None:
            for check in checks:
                check.hangup.set()

        loop.add_signal_handler(signal.SIGHUP, hangup)
        try:
            return await asyncio.gather(
                *(
                    follow(
                        item.queue,
                        evolve(item.settings, grace=grace),
                        changes=item.queue.data_version,
                        poll_interval=poll,
                        out=stderr,
                        label="deliver" if item.name is None else f"deliver {item.name}",
                        where=item.where,
                        stop=stop,
                        keys=check,
                        signals=False,
                    )
                    for item, check in zip(followed, checks, strict=True)
                )
            )
        finally:
            restore()
            loop.remove_signal_handler(signal.SIGHUP)

    runs = asyncio.run(every())
    for item, run in zip(followed, runs, strict=True):
        label = "deliver" if item.name is None else f"deliver {item.name}"
        print(run.render(label, item.hints), file=stderr)
    return KEY_REFUSED if any(run.paused is not None for run in runs) else 0
