"""``deliver --follow`` on a Kafka queue: a worker of the consumer group ``PREFIX.delivery``.

``deliver`` resolves the arguments as for a queue file (the destination, the API key, the
sender's settings) and hands them here. The worker itself is not part of this build: the
command says so and exits 2.
"""

from __future__ import annotations

import argparse
from typing import IO, TYPE_CHECKING

from attentive_router._queue.kafka.settings import KafkaSettings

if TYPE_CHECKING:
    from attentive_router._delivery.job import FollowUp
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
        args: The resolved arguments of ``deliver --follow`` (``--grace``, ``--poll-interval``,
            ``--key-retry-interval``).
        settings: The Kafka queue, with the configuration file's ``[kafka]`` settings.
        destination: The destination whose events the worker delivers (its record keys).
        sender: How to send to Attentive.
        key_source: Where the API key came from (re-read on SIGHUP).
        hints: The commands the final report suggests.
        stderr: Where the worker reports.

    Returns:
        The exit status: 2, as there is no Kafka worker in this build.
    """
    del args, destination, sender, key_source, hints  # what the worker takes
    print(
        f"{PROG} deliver: deliver --follow on a Kafka queue: not available in this build "
        f"({settings.url})",
        file=stderr,
    )
    return 2
