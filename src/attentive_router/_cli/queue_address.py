"""What ``--queue``, ``$ATTENTIVE_ROUTER_QUEUE`` and the configuration file's queues name.

A queue is a SQLite file (a path) or a Kafka queue (``kafka://HOST:PORT[,HOST:PORT…]/PREFIX``).
The text is read before it becomes a ``Path``: ``Path("kafka://h:1/p")`` would fold the ``//``
away. A Kafka address becomes ``KafkaSettings``, which the commands branch on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attentive_router._queue.kafka.settings import (
    KafkaSettings,
    KafkaUrlError,
    is_kafka,
    parse_url,
    queue_text,
)

__all__ = ["QueueAddress", "parse_queue", "queue_argument", "queue_identity", "queue_text"]

QueueAddress = Path | KafkaSettings
"""A resolved queue: a SQLite file, or a Kafka queue."""


def parse_queue(text: str) -> QueueAddress:
    """``text`` as a queue: ``KafkaSettings`` for a ``kafka://`` address, else a ``Path``.

    Raises:
        KafkaUrlError: A ``kafka://`` address that cannot be used (the message says why).
    """
    if is_kafka(text.strip()):
        return parse_url(text.strip())
    return Path(text)


def queue_argument(text: str) -> QueueAddress:
    """The argparse ``type`` of ``--queue``: a bad Kafka address is a usage error.

    Raises:
        argparse.ArgumentTypeError: A ``kafka://`` address that cannot be used.
    """
    try:
        return parse_queue(text)
    except KafkaUrlError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def queue_identity(queue: QueueAddress | None) -> object:
    """What makes two queues the same one: a file's path, a Kafka queue's brokers and prefix."""
    if isinstance(queue, KafkaSettings):
        return ("kafka", tuple(sorted(queue.bootstrap)), queue.prefix)
    return queue


def quiet_client_logs() -> None:
    """Keep the Kafka client's own log lines off stderr: a command reports its failures itself.

    (Without a handler, Python prints the client's errors, such as each refused connection.)
    """
    import logging  # noqa: PLC0415

    logger = logging.getLogger("aiokafka")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
