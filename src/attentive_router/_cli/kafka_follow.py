"""``deliver --follow`` on a Kafka queue: a worker of the consumer group ``PREFIX.delivery``.

``deliver`` resolves the arguments as for a queue file (the destination, the API key, the
sender's settings) and hands them here; ``_delivery.workers`` does the work, and with
``--listen`` the worker answers ``/healthz`` and ``/metrics`` (``_ingest.worker_status``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import IO, TYPE_CHECKING

from attrs import evolve

from attentive_router._cli.follow import (
    DEFAULT_GRACE,
    DEFAULT_KEY_RETRY,
    KEY_REFUSED,
)
from attentive_router._cli.queue_address import quiet_client_logs
from attentive_router._queue.interface import DEFAULT_DEDUPE_WINDOW, QueueError
from attentive_router._queue.kafka.settings import (
    DEFAULT_MAX_AHEAD,
    DEFAULT_MAX_HELD,
    KafkaSettings,
)

if TYPE_CHECKING:
    from attentive_router._delivery.job import FollowUp, Run
    from attentive_router._delivery.keys import KeySource
    from attentive_router._delivery.sender import SenderSettings

PROG = "attentive-router"


def run_kafka_follow(  # noqa: PLR0913 - the pieces of one worker
    args: argparse.Namespace,
    settings: KafkaSettings,
    *,
    destination: str,
    sender: SenderSettings,
    key_source: KeySource,
    hints: FollowUp,
    stderr: IO[str],
) -> int:
    """Deliver the events of the Kafka queue ``settings`` as one worker of its group.

    Args:
        args: The resolved arguments of ``deliver --follow`` (``--grace``,
            ``--key-retry-interval``, ``--listen``, ``--dedupe-window``, ``--max-held``,
            ``--max-ahead``).
        settings: The Kafka queue, with the configuration file's ``[kafka]`` settings.
        destination: The destination whose events the worker delivers (its record keys).
        sender: How to send to Attentive.
        key_source: Where the API key came from (re-read on SIGHUP).
        hints: The commands the final report suggests.
        stderr: Where the worker reports.

    Returns:
        0 after SIGTERM or SIGINT, 3 when the key was still refused then, 2 when the brokers
        could not be reached at the start (or the topics are missing), or ``--listen``'s
        address could not be bound.
    """
    from attentive_router._delivery.keycheck import KeyCheck  # noqa: PLC0415
    from attentive_router._delivery.sender import Stats  # noqa: PLC0415
    from attentive_router._delivery.workers import follow_kafka  # noqa: PLC0415
    from attentive_router._ingest.worker_status import WorkerStatus, serve_status  # noqa: PLC0415

    quiet_client_logs()
    grace = DEFAULT_GRACE if args.grace is None else args.grace
    retry = DEFAULT_KEY_RETRY if args.key_retry_interval is None else args.key_retry_interval
    window = args.dedupe_window if args.dedupe_window is not None else DEFAULT_DEDUPE_WINDOW / 3600
    keys = KeyCheck(key_source, retry, program="deliver")
    stats = Stats()
    status = WorkerStatus(destination, stats, keys)
    label = "deliver" if destination == "default" else f"deliver {destination}"

    def note(level: int, text: str, fields: dict[str, object]) -> None:
        shown = ", ".join(f"{key}={value}" for key, value in fields.items())
        prefix = "warning: " if level >= logging.WARNING else ""
        print(
            f"{PROG} {label}: {prefix}{text}" + (f" ({shown})" if shown else ""),
            file=stderr,
            flush=True,
        )

    async def work() -> Run:
        stop = asyncio.Event()
        helpers = []
        if args.listen is not None:
            host, port = args.listen
            helpers.append(
                asyncio.create_task(
                    serve_status(
                        status,
                        host,
                        port,
                        stop,
                        lambda url: note(
                            logging.INFO, f"status on {url}/healthz and {url}/metrics", {}
                        ),
                    )
                )
            )
        try:
            return await follow_kafka(
                settings,
                evolve(sender, grace=grace),
                destination=destination,
                out=stderr,
                note=note,
                dedupe_window=window * 3600,
                max_held=args.max_held or DEFAULT_MAX_HELD,
                max_ahead=args.max_ahead or DEFAULT_MAX_AHEAD,
                keys=keys,
                stop=stop,
                started=lambda joined: setattr(status, "work", joined),
                stats=stats,
            )
        finally:
            stop.set()
            await asyncio.gather(*helpers, return_exceptions=True)

    try:
        run = asyncio.run(work())
    except QueueError as error:
        print(f"{PROG} deliver: {error}", file=stderr)
        return 2
    except OSError as error:
        print(f"{PROG} deliver: cannot listen on --listen: {error.strerror or error}", file=stderr)
        return 2
    print(run.render(label, hints), file=stderr)
    return KEY_REFUSED if run.paused is not None else 0
