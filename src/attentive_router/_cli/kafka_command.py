"""``attentive-router kafka init``: create (or, with ``--check``, check) a Kafka queue's topics."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from attentive_router._cli.delivery import CONFIG_ENV, PROG, QUEUE_ENV, config_file_options
from attentive_router._cli.numbers import at_least_one
from attentive_router._cli.queue_address import queue_argument, quiet_client_logs
from attentive_router._queue.kafka.settings import DEFAULT_PARTITIONS, KafkaSettings

if TYPE_CHECKING:
    from attentive_router._cli.config import LoadedConfig
    from attentive_router._queue.kafka.topics import TopicState

UNREACHABLE = 1
"""Exit status when the brokers cannot be reached, or (``--check``) a topic is missing."""
WAIT = 15.0
"""Seconds to wait for the brokers before giving up."""

KAFKA_EPILOG = f"""\
A Kafka queue (--queue kafka://HOST:PORT[,HOST:PORT...]/PREFIX) is the topics PREFIX.events
(every accepted event; its partitions are the most delivery workers that can share the work)
and PREFIX.dead-letters (one partition, compacted), and the consumer group PREFIX.delivery of
the workers (deliver --follow). `kafka init` creates the topics that are missing and checks
the others; it never changes or deletes a topic. The connection settings (TLS, SASL) come from
the configuration file's [kafka] table, as do the default partitions and replication factor.

examples:
  attentive-router kafka init --queue kafka://127.0.0.1:9092/shop
  attentive-router kafka init --queue kafka://b1:9092,b2:9092,b3:9092/shop --partitions 24 \\
      --replication-factor 3
  attentive-router kafka init --config deploy.toml              # every Kafka queue of the file
  attentive-router kafka init --config deploy.toml --destination shop --check

output: one line per topic:
  created shop.events (12 partitions, replication 1)
  exists shop.dead-letters (1 partition)
  missing shop.events: run `attentive-router kafka init` (with --check)

exit status:
  0  every topic exists (created now or before); with --check: and none has a problem
  1  the brokers could not be reached or refused a topic; with --check: a topic is missing
     or has a problem (e.g. fewer partitions than asked)
  2  bad usage: no Kafka queue named (--queue, --config or ${QUEUE_ENV}), a bad address, or
     a configuration file with problems
"""


def add_kafka_parser(commands: Any) -> None:
    """Add ``kafka init`` to ``commands``."""
    kafka = commands.add_parser(
        "kafka",
        help="create the topics of a Kafka queue (kafka://...)",
        description="Manage the topics of a Kafka queue.",
        epilog=KAFKA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="create the queue's topics that are missing, and check the others",
        description="Create the topics PREFIX.events and PREFIX.dead-letters of a Kafka queue "
        "when they are missing, and check the ones that exist; print one line per topic.",
        epilog=KAFKA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument(
        "--queue",
        type=queue_argument,
        metavar="URL",
        help="the Kafka queue: kafka://HOST:PORT[,HOST:PORT...]/PREFIX (default: the "
        f"configuration file's Kafka queues, else ${QUEUE_ENV})",
    )
    init.add_argument(
        "--partitions",
        type=at_least_one,
        metavar="N",
        help="partitions of PREFIX.events, >= 1: the most delivery workers that can share "
        f"the work (default: [kafka] partitions, else {DEFAULT_PARTITIONS})",
    )
    init.add_argument(
        "--replication-factor",
        type=at_least_one,
        metavar="N",
        help="replicas of each partition, >= 1 (3 on a production cluster; default: [kafka] "
        "replication_factor, else 1)",
    )
    init.add_argument(
        "--check",
        action="store_true",
        help="only check that the topics exist as asked: create nothing (exit 1 if not)",
    )
    config_file_options(init)


def _queues(
    args: argparse.Namespace, environ: Mapping[str, str], stderr: IO[str]
) -> list[KafkaSettings] | None:
    """The Kafka queues to work on, with the file's settings; None (said why) on a problem."""
    from attentive_router._cli.config import ConfigError  # noqa: PLC0415
    from attentive_router._cli.queue_address import parse_queue  # noqa: PLC0415
    from attentive_router._cli.resolve import load_config  # noqa: PLC0415
    from attentive_router._queue.kafka.settings import KafkaUrlError  # noqa: PLC0415

    prog = f"{PROG} kafka init"
    try:
        loaded, _ = load_config(args, environ)
    except ConfigError as error:
        print(f"{PROG}: {error}", file=stderr)
        return None
    if args.queue is not None:
        if not isinstance(args.queue, KafkaSettings):
            print(f"{prog}: --queue {args.queue}: not a kafka:// address", file=stderr)
            return None
        if args.destination:
            print(f"{prog}: --queue and --destination: give one of them", file=stderr)
            return None
        queues = [args.queue if loaded is None else _with_file(args.queue, loaded)]
    elif loaded is not None:
        from_file = _file_queues(args, loaded, prog, stderr)
        if from_file is None:
            return None
        queues = from_file
    elif args.destination:
        print(
            f"{prog}: --destination {args.destination}: no configuration file "
            f"(--config FILE or ${CONFIG_ENV})",
            file=stderr,
        )
        return None
    else:
        text = environ.get(QUEUE_ENV, "").strip()
        try:
            queue = parse_queue(text) if text else None
        except KafkaUrlError as error:
            print(f"{prog}: ${QUEUE_ENV}: {error}", file=stderr)
            return None
        if not isinstance(queue, KafkaSettings):
            print(
                f"{prog}: name the Kafka queue: --queue kafka://HOST:PORT/PREFIX, or --config "
                f"FILE (its Kafka queues), or set ${QUEUE_ENV} to a kafka:// address",
                file=stderr,
            )
            return None
        queues = [queue]
    return [_sized(queue, args) for queue in queues]


def _with_file(queue: KafkaSettings, loaded: LoadedConfig) -> KafkaSettings:
    found = loaded.with_kafka(queue)
    assert isinstance(found, KafkaSettings)
    return found


def _file_queues(
    args: argparse.Namespace, loaded: LoadedConfig, prog: str, stderr: IO[str]
) -> list[KafkaSettings] | None:
    """The Kafka queue of ``--destination``, else every one of the file."""
    if args.destination:
        if args.destination not in loaded.file.destinations:
            known = ", ".join(sorted(loaded.file.destinations)) or "none"
            print(
                f"{prog}: --destination {args.destination}: {loaded.path} has no such "
                f"destination ({known})",
                file=stderr,
            )
            return None
        queue = loaded.destination_queue(args.destination)
        if not isinstance(queue, KafkaSettings):
            print(
                f"{prog}: destinations.{args.destination} of {loaded.path} has no Kafka queue "
                f"(its queue: {queue or 'the default file'})",
                file=stderr,
            )
            return None
        return [queue]
    queues = loaded.kafka_queues()
    if not queues:
        print(
            f"{prog}: {loaded.path} names no Kafka queue ([queue] path or a destination's "
            'queue = "kafka://HOST:PORT/PREFIX")',
            file=stderr,
        )
        return None
    return queues


def _sized(queue: KafkaSettings, args: argparse.Namespace) -> KafkaSettings:
    """The queue with ``--partitions`` and ``--replication-factor`` when they are given."""
    return queue.with_options(
        partitions=args.partitions, replication_factor=args.replication_factor
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _line(state: TopicState, queue: KafkaSettings) -> str:
    """``created shop.events (12 partitions, replication 1)``, ``exists ...``, ``missing ...``."""
    if state.created:
        return (
            f"created {state.name} ({_plural(state.partitions, 'partition')}, "
            f"replication {queue.replication_factor})"
        )
    if state.partitions == 0:
        return f"missing {state.name}: run `attentive-router kafka init`"
    problem = f"; {state.problem}" if state.problem else ""
    return f"exists {state.name} ({_plural(state.partitions, 'partition')}){problem}"


def run_kafka(
    args: argparse.Namespace,
    stdout: IO[str],
    stderr: IO[str],
    environ: Mapping[str, str] | None = None,
) -> int:
    """``kafka init [--check]``: exit 0, 1 (unreachable, or a topic missing with --check) or 2."""
    import asyncio  # noqa: PLC0415

    from attentive_router._queue.interface import QueueError  # noqa: PLC0415

    environ = os.environ if environ is None else environ
    prog = f"{PROG} kafka init"
    queues = _queues(args, environ, stderr)
    if queues is None:
        return 2
    problems = [
        f"{prog}: {queue.url}: {problem}"
        for queue in queues
        for problem in queue.problems(dict(environ))
    ]
    if problems:
        print("\n".join(problems), file=stderr)
        return 2
    quiet_client_logs()
    status = 0
    for queue in queues:
        try:
            states = asyncio.run(_ensure(queue, create=not args.check))
        except (QueueError, OSError, TimeoutError) as error:
            print(
                f"{prog}: cannot reach Kafka at {','.join(queue.bootstrap)} ({queue.url}): "
                f"{error}; check the address (--queue, [queue] path or a destination's queue) "
                "and the [kafka] security settings (security_protocol, sasl_*, ssl_cafile)",
                file=stderr,
            )
            status = UNREACHABLE
            continue
        for state in states:
            print(_line(state, queue), file=stdout)
            if state.partitions == 0 or (args.check and state.problem):
                status = UNREACHABLE
    return status


async def _ensure(queue: KafkaSettings, *, create: bool) -> list[TopicState]:
    """``ensure_topics``, given up on after a bounded time (a broker that never answers).

    Raises:
        QueueError: The brokers could not be reached or refused a topic.
        TimeoutError: They did not answer in time.
    """
    import asyncio  # noqa: PLC0415

    from attentive_router._queue.kafka.topics import ensure_topics  # noqa: PLC0415

    try:
        return await asyncio.wait_for(ensure_topics(queue, create=create, wait=WAIT), WAIT * 2)
    except TimeoutError:
        raise TimeoutError(f"no answer within {WAIT * 2:g} s") from None
