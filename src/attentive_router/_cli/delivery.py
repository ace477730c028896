"""The delivery commands: ``send``, ``deliver``, ``dead-letters`` and ``check``.

Argument parsing and printing only; the work is done by the delivery stage (``_delivery``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson
from attrs import frozen

from attentive_router._cli.follow import (
    FOLLOW_EPILOG,
    Followed,
    add_follow_options,
    follow_usage_error,
    run_follow,
)
from attentive_router._cli.numbers import at_least_one, non_negative, positive
from attentive_router._cli.queue_address import queue_argument, queue_text, quiet_client_logs
from attentive_router._delivery.defaults import DEFAULT_BASE_URL, DEFAULT_CONCURRENCY
from attentive_router._delivery.progress import Progress, progress_wanted
from attentive_router._delivery.ratelimit import DEFAULT_RATE, DEFAULT_RATES, IDENTITY_PATH
from attentive_router._delivery.retry import RetryPolicy
from attentive_router._queue.interface import DEFAULT_DEDUPE_WINDOW, QueueError, State
from attentive_router._queue.kafka.settings import KafkaSettings
from attentive_router._transform.options import Config

# The HTTP clients, the sender and SQLite are imported by the commands that use them: every
# command builds this parser, and `transform` or `--help` need none of them.
if TYPE_CHECKING:
    from attentive_router._delivery.job import FollowUp, Run
    from attentive_router._delivery.keys import KeySource
    from attentive_router._delivery.sender import SenderSettings
    from attentive_router._queue.interface import Record
    from attentive_router._queue.sqlite import SQLiteQueue

PROG = "attentive-router"
TOKEN_ENV = "ATTENTIVE_API_TOKEN"  # noqa: S105 - the name of the variable, not a key
QUEUE_ENV = "ATTENTIVE_ROUTER_QUEUE"
CONFIG_ENV = "ATTENTIVE_ROUTER_CONFIG"
DEFAULT_QUEUE = "attentive-router.db"

EXIT_CODES = """\
exit status:
  0  every event was delivered, skipped or rejected
  1  some events were dead-lettered (see `attentive-router dead-letters list`)
  2  bad usage, or the input or the queue could not be opened
  3  Attentive refused the API key (401/403): sending stopped, the events stay queued
  130  interrupted (Ctrl-C): run `attentive-router deliver` to send the rest
"""

SEND_EPILOG = f"""\
Each event is queued on disk before it is sent, so nothing is lost if the run stops:
`attentive-router deliver` sends what is left. Events are recognised by their messageId
(or their content when they have none): sending the same file again sends nothing twice.

examples:
  export {TOKEN_ENV}=...
  attentive-router send events.ndjson
  attentive-router send --queue /var/lib/attentive-router/queue.db batch.json
  attentive-router send --base-url http://127.0.0.1:8788 --token sandbox-token events.ndjson

{EXIT_CODES}"""

DEAD_LETTERS_EPILOG = """\
examples:
  attentive-router dead-letters list
  attentive-router dead-letters show 42           # or a messageId
  attentive-router dead-letters replay 42 evt-1 && attentive-router deliver
  attentive-router dead-letters replay --all
  attentive-router dead-letters list --queue kafka://broker-1:9092,broker-2:9092/shop

On a Kafka queue, the dead letters are the records of the topic PREFIX.dead-letters (an id is
a record's offset there); a replay writes the events back to PREFIX.events, where the delivery
workers (deliver --follow) send them, and removes them from the dead letters.

exit status:
  0  done; replay: every event named is queued again (now, or by an earlier replay)
  1  show: no such event; replay: an event named is missing or not a dead letter (each
     is listed with why; the others named were still queued again)
  2  bad usage, or no queue at --queue (nothing is created)
"""

CHECK_EPILOG = """\
exit status:
  0  the API key is valid
  1  Attentive answered something else (a 404 usually means a wrong --base-url)
  2  bad usage (no API key)
  3  Attentive refused the API key (401/403), as `send` reports it
  4  Attentive could not be reached (connection refused, name not found, TLS error, timeout)
"""

KEY_REFUSED = 3
"""Exit status of ``send``, ``deliver`` and ``check`` when Attentive refuses the API key."""
CHECK_UNREACHABLE = 4
"""Exit status of ``check`` when Attentive cannot be reached."""

ConfigOptions = Callable[[argparse.ArgumentParser], None]


def config_file_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--destination``: the configuration file, and which account in it."""
    group = parser.add_argument_group("configuration file")
    group.add_argument(
        "--config",
        metavar="FILE",
        help=f"a TOML configuration file (default: ${CONFIG_ENV}); flags and environment "
        "variables override it; see `attentive-router config init`",
    )
    group.add_argument(
        "--destination",
        metavar="NAME",
        help="the destination (Attentive account) of the file to work for: its key, URL, "
        "queue, limits and mapping options (default: the file's only one)",
    )


def _queue_option(parser: argparse.ArgumentParser) -> None:
    # The default is text, read by ``type`` like a flag's: a bad kafka:// address in the
    # variable is a usage error too.
    parser.add_argument(
        "--queue",
        type=queue_argument,
        default=os.environ.get(QUEUE_ENV, DEFAULT_QUEUE),
        metavar="PATH|URL",
        help="the queue: a file, or a Kafka queue kafka://HOST:PORT[,HOST:PORT...]/PREFIX "
        f"(default: ${QUEUE_ENV} or ./{DEFAULT_QUEUE})",
    )


def _target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Attentive")
    group.add_argument(
        "--token", help=f"API key (default: ${TOKEN_ENV}); it is never printed or stored"
    )
    group.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="read the API key from this file instead (serve reads it again on SIGHUP)",
    )
    group.add_argument(
        "--base-url",
        default=DEFAULT_BASE_URL,
        metavar="URL",
        help="API root (default: %(default)s; a sandbox's URL for trials)",
    )
    group.add_argument(
        "--timeout",
        type=positive,
        default=10.0,
        metavar="S",
        help="per-request timeout, > 0 (default: 10)",
    )


def _delivery_options(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    policy = RetryPolicy()
    group = parser.add_argument_group("delivery")
    group.add_argument(
        "--concurrency",
        type=at_least_one,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="requests in flight at once, >= 1 (default: %(default)s)",
    )
    group.add_argument(
        "--rate",
        type=positive,
        default=DEFAULT_RATE,
        metavar="PER_S",
        help="requests per second per endpoint, > 0 (default: %(default)s, Attentive's limit)",
    )
    group.add_argument(
        "--identity-rate",
        type=positive,
        default=DEFAULT_RATES[IDENTITY_PATH],
        metavar="PER_S",
        help="requests per second to the Identity endpoint, > 0 (default: %(default)s)",
    )
    group.add_argument(
        "--max-attempts",
        type=at_least_one,
        default=policy.max_attempts,
        metavar="N",
        help="give up on an event only after this many attempts (>= 1) ... (default: %(default)s)",
    )
    group.add_argument(
        "--retry-window",
        type=non_negative,
        default=policy.window / 3600,
        metavar="HOURS",
        help="... and this long after its first attempt (>= 0; default: %(default)s)",
    )
    if progress:
        group.add_argument(
            "--progress",
            choices=("auto", "always", "never"),
            default="auto",
            help="progress bar on stderr (default: auto, when stderr is a terminal)",
        )


def add_parsers(commands: Any, config_options: ConfigOptions) -> None:
    """Add ``send``, ``deliver``, ``dead-letters`` and ``check`` to ``commands``."""
    raw = argparse.RawDescriptionHelpFormatter
    send = commands.add_parser(
        "send",
        help="queue a file of events and deliver them to Attentive",
        description="Transform and deliver Segment events (NDJSON, a JSON array or batch "
        "envelopes)\nto Attentive, with retries, rate limits and dead letters.",
        epilog=SEND_EPILOG,
        formatter_class=raw,
    )
    send.add_argument("file", metavar="FILE|-", help="input file, or - for stdin")
    send.add_argument(
        "--source",
        default="default",
        help="deduplication scope: messageIds repeat only within one source (default: default)",
    )
    send.add_argument(
        "--dedupe-window",
        type=non_negative,
        default=DEFAULT_DEDUPE_WINDOW / 3600,
        metavar="HOURS",
        help="an event whose messageId was queued this recently is not queued again "
        "(>= 0; default: %(default)s)",
    )
    for add in (_queue_option, _target_options, _delivery_options, config_options):
        add(send)
    config_file_options(send)

    again = commands.add_parser(
        "deliver",
        help="deliver what is queued (after an interruption, a crash or a replay)",
        description="Deliver every queued event, then stop (or, with --follow, keep delivering "
        "what is queued next). Events left in flight by a crash are sent again.",
        epilog=FOLLOW_EPILOG + EXIT_CODES,
        formatter_class=raw,
    )
    for add in (_queue_option, _target_options, _delivery_options, config_options):
        add(again)
    add_follow_options(again)
    config_file_options(again)

    dead = commands.add_parser(
        "dead-letters",
        help="list, show and replay events that could not be delivered",
        description="Dead letters keep the event, the request, Attentive's last answer, the "
        "attempts and the reason.",
        epilog=DEAD_LETTERS_EPILOG,
        formatter_class=raw,
    )
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one line per dead letter")
    listing.add_argument(
        "--limit",
        type=at_least_one,
        default=100,
        metavar="N",
        help="at most this many, >= 1 (default 100; the count of the rest goes to stderr)",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="everything about one dead letter, as JSON")
    show.add_argument("which", metavar="ID|MESSAGE_ID")
    replay = actions.add_parser(
        "replay",
        help="queue dead letters again (then run deliver)",
        description="Queue the dead letters named (by id or messageId, as `show` takes them), "
        "or all of them, again with fresh attempt counts; says for each what it did or why not.",
    )
    replay.add_argument(
        "which", nargs="*", metavar="ID|MESSAGE_ID", help="the dead letters to queue again"
    )
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    for parser in (listing, show, replay):
        _queue_option(parser)
        config_file_options(parser)

    check = commands.add_parser(
        "check",
        help="check the API key with GET /v1/me",
        description="Ask Attentive whether the API key is valid (GET /v1/me). Exit 0 when it is.",
        epilog=CHECK_EPILOG,
        formatter_class=raw,
    )
    _target_options(check)


def _key_source(args: argparse.Namespace, stderr: IO[str]) -> KeySource | None:
    """The API key and where it came from.

    --token, else --token-file, else the destination's token_env, else $TOKEN_ENV.
    """
    from attentive_router._delivery.keys import KeySource, KeySourceError  # noqa: PLC0415

    if args.token and args.token.strip():
        return KeySource("option", "--token", args.token.strip())
    if args.token_file is not None:
        try:
            return KeySource.from_file(args.token_file)
        except KeySourceError as error:
            print(f"{PROG}: {error}", file=stderr)
            return None
    token_env = getattr(args, "token_env", None)
    if token_env is None:
        # Only without a destination's own token_env: one global key must not send an
        # account's events with another account's key.
        token = os.environ.get(TOKEN_ENV, "")
        if token.strip():
            return KeySource("environment", TOKEN_ENV, token.strip())
        print(f"{PROG}: no API key: set {TOKEN_ENV} or pass --token", file=stderr)
        return None
    token = os.environ.get(token_env, "")
    if not token.strip():
        print(
            f"{PROG}: no API key: ${token_env} is not set (the destination's token_env in "
            "the configuration file); export it or pass --token",
            file=stderr,
        )
        return None
    return KeySource("environment", token_env, token.strip())


def _token(args: argparse.Namespace, stderr: IO[str]) -> str | None:
    source = _key_source(args, stderr)
    return None if source is None else source.token


def follow_up(args: argparse.Namespace, config: Config) -> FollowUp:
    """The commands that act on this run's queue, target and mapping options, as hints.

    ``deliver`` carries ``--queue``, ``--base-url``, ``--token-file`` and the mapping options
    when they are not the defaults; ``dead-letters list`` carries ``--queue``.
    """
    from attentive_router._delivery.job import FollowUp  # noqa: PLC0415

    in_use = getattr(args, "config_in_use", None)
    # With a configuration file, the file says the rest: only the flags given are carried.
    given: set[str] | None = None if in_use is None else in_use[2]

    def differs(dest: str, default: object) -> bool:
        return getattr(args, dest) != default if given is None else dest in given

    queue = ["--queue", queue_text(args.queue)] if differs("queue", Path(DEFAULT_QUEUE)) else []
    own_queue = [] if args.queue == Path(DEFAULT_QUEUE) else ["--queue", queue_text(args.queue)]
    target = ["--base-url", args.base_url] if differs("base_url", DEFAULT_BASE_URL) else []
    if args.token_file is not None and not args.token and (given is None or "token_file" in given):
        target += ["--token-file", str(args.token_file)]
    defaults = Config()
    mapping = []
    if differs("unnamed_track", defaults.unnamed_track):
        mapping += ["--unnamed-track", config.unnamed_track]
    if differs("stale_events", defaults.stale_events):
        mapping += ["--stale-events", config.stale_events]
    if config.strict_property_keys and differs("strict_property_keys", False):  # noqa: FBT003
        mapping.append("--strict-property-keys")
    if differs("default_region", defaults.default_region):
        mapping += ["--default-region", config.default_region]
    chosen: list[str] = []
    if in_use is not None:
        path, destination, _ = in_use
        chosen = ["--config", str(path)]
        if args.destination or destination is not None:
            chosen += ["--destination", args.destination or destination]
    token_env = getattr(args, "token_env", None)
    key = FollowUp.key
    if token_env is not None:
        key = f"${token_env}, named by the configuration file"
    elif given is not None and "token_file" not in given and args.token_file is not None:
        key = f"the file {args.token_file}, named by the configuration file"
    return FollowUp(
        key=key,
        deliver=shlex.join([PROG, "deliver", *chosen, *queue, *target, *mapping]),
        # dead-letters does not read the configuration file: it is told where the queue is.
        dead_letters=shlex.join([PROG, "dead-letters", "list", *own_queue]),
    )


def _settings(args: argparse.Namespace, token: str, config: Config) -> SenderSettings:
    from attentive_router._delivery.sender import SenderSettings  # noqa: PLC0415

    return SenderSettings(
        base_url=args.base_url,
        token=token,
        concurrency=args.concurrency,
        rate=args.rate,
        rates={IDENTITY_PATH: args.identity_rate},
        policy=RetryPolicy(max_attempts=args.max_attempts, window=args.retry_window * 3600),
        config=config,
        timeout=args.timeout,
    )


def run_delivery(
    args: argparse.Namespace, config: Config, stdin: IO[bytes], stderr: IO[str]
) -> int:
    """``send`` and ``deliver``."""
    import asyncio  # noqa: PLC0415

    from attentive_router._delivery.job import (  # noqa: PLC0415
        QueueBusyError,
        deliver,
        delivery_lock,
    )
    from attentive_router._delivery.sender import scrub  # noqa: PLC0415
    from attentive_router._queue.sqlite import SQLiteQueue  # noqa: PLC0415

    problem = follow_usage_error(args)
    if problem is not None:
        print(f"{PROG} {args.command}: {problem}", file=stderr)
        return 2
    if getattr(args, "each_destination", []):
        return _deliver_each(args, args.each_destination, stderr)
    if isinstance(args.queue, KafkaSettings):
        return _on_kafka(args, config, stderr)
    if args.command != "send" and _missing_queue(args.queue, stderr):
        return 2
    key_source = _key_source(args, stderr)
    if key_source is None:
        return 2
    token = key_source.token
    settings = _settings(args, token, config)
    name = _destination_name(args)
    source: IO[bytes] | None = None
    try:
        if args.command == "send":
            source = stdin if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115
        window = _dedupe_window(args)
        queue = SQLiteQueue(args.queue, dedupe_window=window, destination=name)
    except OSError as error:
        print(f"{PROG}: cannot read {args.file}: {error.strerror or error}", file=stderr)
        return 2
    except QueueError as error:
        print(f"{PROG}: {error}", file=stderr)
        if source is not None and source is not stdin:
            source.close()
        return 2
    for warning in queue.warnings:
        print(f"{PROG}: warning: {warning}", file=stderr)
    _say_foreign(queue, stderr)
    show = progress_wanted(args.progress, stderr)
    try:
        with delivery_lock(args.queue):
            if getattr(args, "follow", False):
                where = f"{args.queue} (pid {os.getpid()})"
                hints = follow_up(args, config)
                followed = Followed(name, queue, settings, key_source, hints, where)
                return run_follow(args, [followed], stderr)
            run = asyncio.run(
                deliver(
                    queue,
                    settings,
                    source=source,
                    source_name=getattr(args, "source", "default"),
                    progress=Progress(stderr, args.command, show),
                )
            )
    except QueueBusyError as error:
        print(f"{PROG}: {error}", file=stderr)
        return 2
    except (OSError, QueueError) as error:
        print(f"{PROG}: {scrub(str(error), token)}", file=stderr)
        return 2
    finally:
        queue.close()
        if source is not None and source is not stdin:
            source.close()
    print(run.render(args.command, follow_up(args, config)), file=stderr)
    return run.exit_status


KAFKA_INSTEAD = {
    "send": "send queues a file and delivers it in one process; on a Kafka queue, "
    "`attentive-router serve` takes the events in and `attentive-router deliver --follow` "
    "workers deliver them (post the events to serve, or send the file with a queue file: "
    "--queue PATH)",
    "deliver": "a Kafka queue has no end to deliver up to: run `attentive-router deliver "
    "--follow` workers (as many as the events topic has partitions), which deliver what it "
    "holds and what comes next",
    "events": "a Kafka queue keeps no record of each event beyond its dead letters: see the "
    "delivery workers' logs and serve's /metrics, or `attentive-router dead-letters list` "
    "with the same --queue",
}
"""What to use instead of each command that does not work on a Kafka queue."""


def refuse_kafka(command: str, queue: KafkaSettings, stderr: IO[str]) -> int:
    """Say that ``command`` does not work on the Kafka ``queue``, and what to use; return 2."""
    name = "deliver without --follow" if command == "deliver" else command
    name = "events list" if command == "events" else name
    print(
        f"{PROG} {command}: {name} does not work on a Kafka queue ({queue.url}): "
        f"{KAFKA_INSTEAD[command]}",
        file=stderr,
    )
    return 2


def _on_kafka(args: argparse.Namespace, config: Config, stderr: IO[str]) -> int:
    """``send`` or ``deliver`` on a Kafka queue: only ``deliver --follow`` works there."""
    if args.command == "send" or not getattr(args, "follow", False):
        return refuse_kafka(args.command, args.queue, stderr)
    from attentive_router._cli.kafka_follow import run_kafka_follow  # noqa: PLC0415

    # Resolved as for a queue file: the destination, the API key, the sender's settings.
    key_source = _key_source(args, stderr)
    if key_source is None:
        return 2
    return run_kafka_follow(
        args,
        args.queue,
        destination=_destination_name(args) or "default",
        sender=_settings(args, key_source.token, config),
        key_source=key_source,
        hints=follow_up(args, config),
        stderr=stderr,
    )


def _dedupe_window(args: argparse.Namespace) -> float:
    """``send``'s window in seconds (``deliver`` has one only for Kafka workers)."""
    hours = getattr(args, "dedupe_window", None)
    return DEFAULT_DEDUPE_WINDOW if hours is None else float(hours) * 3600


def _destination_name(args: argparse.Namespace) -> str | None:
    """The destination of the configuration file the command works for, if any."""
    in_use = getattr(args, "config_in_use", None)
    return None if in_use is None else in_use[1]


def _say_foreign(queue: SQLiteQueue, stderr: IO[str]) -> None:
    """Say so when the queue holds events recorded for other destinations (never sent here)."""
    try:
        foreign = queue.foreign()
    except QueueError:
        return  # the delivery meets the failure too, and says so
    if not foreign:
        return
    named = ", ".join(f"{count:,} for {name!r}" for name, count in foreign.items())
    print(
        f"{PROG}: warning: the queue {queue.path} of destination {queue.destination!r} holds "
        f"events recorded for other destinations ({named}): they are not sent with "
        f"{queue.destination!r}'s key and stay queued. Point each destination at its own queue "
        "file again in the configuration file, or deliver them with --destination NAME "
        f"--queue {queue.path} for the destination they name",
        file=stderr,
    )


@frozen
class _Opened:
    """One destination ready to deliver: its arguments, transform options, queue and key."""

    name: str
    args: argparse.Namespace
    config: Config
    queue: SQLiteQueue
    key_source: KeySource

    @property
    def settings(self) -> SenderSettings:
        return _settings(self.args, self.key_source.token, self.config)


def _deliver_each(
    args: argparse.Namespace, each: list[tuple[str, argparse.Namespace, Config]], stderr: IO[str]
) -> int:
    """``deliver`` for every destination of the file: each from its own queue, with its key."""
    import asyncio  # noqa: PLC0415

    from attentive_router._delivery.job import QueueBusyError, delivery_lock  # noqa: PLC0415
    from attentive_router._delivery.sender import scrub  # noqa: PLC0415
    from attentive_router._queue.sqlite import SQLiteQueue  # noqa: PLC0415

    follow = getattr(args, "follow", False)
    on_kafka = [name for name, resolved, _ in each if isinstance(resolved.queue, KafkaSettings)]
    if on_kafka and not follow:
        queue = next(r.queue for name, r, _ in each if name == on_kafka[0])
        return refuse_kafka(args.command, queue, stderr)
    if on_kafka:
        print(
            f"{PROG} deliver --follow: {', '.join(on_kafka)} of {len(each)} destinations use a "
            "Kafka queue: run the workers of one destination at a time "
            "(deliver --follow --destination NAME)",
            file=stderr,
        )
        return 2
    opened: list[_Opened] = []
    try:
        with contextlib.ExitStack() as stack:
            for name, resolved, config in each:
                if not resolved.queue.exists():
                    if follow:
                        print(f"{PROG} deliver: destination {name}:", file=stderr)
                        _missing_queue(resolved.queue, stderr)
                        return 2
                    print(
                        f"{PROG} deliver: destination {name}: nothing to deliver "
                        f"(no queue at {resolved.queue})",
                        file=stderr,
                    )
                    continue
                key_source = _key_source(resolved, stderr)
                if key_source is None:
                    print(f"{PROG} deliver: destination {name}: no API key", file=stderr)
                    return 2
                try:
                    queue = SQLiteQueue(resolved.queue, destination=name)
                except QueueError as error:
                    print(f"{PROG}: {error}", file=stderr)
                    return 2
                stack.callback(queue.close)
                for warning in queue.warnings:
                    print(f"{PROG}: warning: {warning}", file=stderr)
                _say_foreign(queue, stderr)
                stack.enter_context(delivery_lock(resolved.queue))
                opened.append(_Opened(name, resolved, config, queue, key_source))
            if follow:
                return run_follow(
                    args,
                    [
                        Followed(
                            item.name,
                            item.queue,
                            item.settings,
                            item.key_source,
                            follow_up(item.args, item.config),
                            f"{item.args.queue} (pid {os.getpid()})",
                        )
                        for item in opened
                    ],
                    stderr,
                )
            runs = asyncio.run(_deliver_all(opened, stderr))
    except QueueBusyError as error:
        print(f"{PROG}: {error}", file=stderr)
        return 2
    except (OSError, QueueError) as error:
        text = str(error)
        for item in opened:
            text = scrub(text, item.key_source.token)
        print(f"{PROG}: {text}", file=stderr)
        return 2
    for item, run in zip(opened, runs, strict=True):
        print(run.render(f"deliver {item.name}", follow_up(item.args, item.config)), file=stderr)
    print(total_line(runs), file=stderr)
    return worst_status(runs)


async def _deliver_all(opened: list[_Opened], stderr: IO[str]) -> list[Run]:
    """Every destination's queue delivered side by side; Ctrl-C or SIGTERM stops them all."""
    import asyncio  # noqa: PLC0415

    from attentive_router._delivery.job import _stop_on_signals, deliver  # noqa: PLC0415

    stop = asyncio.Event()
    restore = _stop_on_signals(stop)
    try:
        return await asyncio.gather(
            *(
                deliver(
                    item.queue,
                    item.settings,
                    progress=Progress(stderr, "deliver", enabled=False),
                    stop=stop,
                    signals=False,
                )
                for item in opened
            )
        )
    finally:
        restore()


def total_line(runs: list[Run]) -> str:
    """``deliver: 2 destination(s): 40 event(s) settled (delivered 39, ...); 0 still queued``."""
    parts = []
    for state in (State.DELIVERED, State.SKIPPED, State.REJECTED, State.DEAD):
        number = sum(run.stats.outcomes[state.label] for run in runs)
        parts.append(f"{state.label} {number:,}")
    settled = sum(run.stats.settled for run in runs)
    waiting = sum(
        run.remaining.get(State.QUEUED, 0) + run.remaining.get(State.IN_FLIGHT, 0) for run in runs
    )
    return (
        f"deliver: {len(runs)} destination(s) in all: {settled:,} event(s) settled "
        f"({', '.join(parts)}); {waiting:,} still queued"
    )


def worst_status(runs: list[Run]) -> int:
    """The exit status of several runs: a refused key first, then Ctrl-C, then dead letters."""
    statuses = {run.exit_status for run in runs}
    return next((status for status in (KEY_REFUSED, 130, 1) if status in statuses), 0)


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_when(value: float | None) -> str | None:
    """A time for JSON output: ``null`` when there is none, like every other empty field."""
    return None if value is None else _when(value)


def _record_json(record: Record) -> dict[str, Any]:
    def loads(data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return data.decode("utf-8", "replace")

    return {
        "id": record.id,
        "messageId": record.key,
        "source": record.source,
        "destination": record.destination,
        "state": record.state.label,
        "reason": record.reason,
        "message": record.message,
        "attempts": record.attempts,
        "throttled": record.throttles,
        "receivedAt": _json_when(record.received_at),
        "firstAttemptAt": _json_when(record.first_attempt_at),
        "lastAttemptAt": _json_when(record.last_attempt_at),
        "lastStatus": record.status,
        "lastResponse": record.response,
        "request": loads(record.request),
        "requestsDelivered": record.done,
        "event": loads(record.event),
    }


def _missing_queue(path: Path, stderr: IO[str]) -> bool:
    """Say so when there is no queue file at ``path`` (only ``send`` and ``serve`` create one)."""
    if path.exists():
        return False
    print(
        f"{PROG}: no queue at {path} (nothing was created): check --queue or ${QUEUE_ENV}; "
        "`attentive-router send` creates a queue",
        file=stderr,
    )
    return True


def _open_existing_queue(path: Path, stderr: IO[str]) -> SQLiteQueue | None:
    """The queue at ``path`` for a command that reads it; None (said why) when it cannot be."""
    from attentive_router._queue.sqlite import SQLiteQueue  # noqa: PLC0415

    if _missing_queue(path, stderr):
        return None
    try:
        return SQLiteQueue(path)
    except QueueError as error:
        print(f"{PROG}: {error}", file=stderr)
        return None


class DeadLetterStore(Protocol):
    """Where ``dead-letters`` reads and replays: a SQLite queue, or a Kafka queue's topic."""

    def records(self, state: State | None = None, limit: int = 100, after: int = 0) -> list[Record]:
        """Events (dead letters) in id order."""

    def record(self, id_or_key: int | str) -> Record | None:
        """One event by id or messageId."""

    def replay(self, ids: Iterable[int] | None, now: float) -> int:
        """Queue dead letters again; return how many."""

    def counts(self) -> dict[State, int]:
        """The number of events in each state."""

    def close(self) -> None:
        """Let go of the queue."""


def _open_dead_letters(args: argparse.Namespace, stderr: IO[str]) -> DeadLetterStore | None:
    """The dead letters of ``--queue``; None (said why) when the queue cannot be opened."""
    if isinstance(args.queue, KafkaSettings):
        from attentive_router._queue.kafka.dead_letters import KafkaDeadLetters  # noqa: PLC0415

        quiet_client_logs()
        return KafkaDeadLetters(args.queue, destination=_destination_name(args) or "default")
    return _open_existing_queue(args.queue, stderr)


def run_dead_letters(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """``dead-letters list|show|replay`` (of a SQLite queue, or of a Kafka queue's topic)."""
    queue = _open_dead_letters(args, stderr)
    if queue is None:
        return 2
    try:
        if args.action == "list":
            return _list(queue, args, stdout, stderr)
        if args.action == "show":
            record = _find(queue, args.which)
            if record is None:
                print(f"{PROG}: no event {args.which!r} in {queue_text(args.queue)}", file=stderr)
                return 1
            stdout.write(orjson.dumps(_record_json(record), option=orjson.OPT_INDENT_2).decode())
            stdout.write("\n")
            return 0
        return _replay(queue, args, stdout, stderr)
    except QueueError as error:
        print(f"{PROG}: {error}", file=stderr)
        return 2
    finally:
        queue.close()


def _find(queue: DeadLetterStore, which: str) -> Record | None:
    """The event ``which`` names: an id, else (or when no event has that id) a messageId."""
    record = queue.record(int(which)) if which.isdigit() else None
    return queue.record(which) if record is None else record


def _replay(
    queue: DeadLetterStore, args: argparse.Namespace, stdout: IO[str], stderr: IO[str]
) -> int:
    if args.all == bool(args.which):
        print(f"{PROG}: name the dead letters to replay, or pass --all (not both)", file=stderr)
        return 2
    now = time.time()
    where = queue_text(args.queue)
    # A Kafka queue's replay writes the events back to its events topic, where the workers
    # (deliver --follow) that run all the time find them; a file's waits for `deliver`.
    tail = "; run `attentive-router deliver`"
    if isinstance(args.queue, KafkaSettings):
        tail = (
            f" (written back to {args.queue.events_topic}): the delivery workers "
            "(deliver --follow) send them"
        )
    if args.all:
        count = queue.replay(None, now)
        if count:
            print(f"{count:,} dead letter(s) queued again{tail}", file=stdout)
        else:
            print(f"0 dead letter(s) queued again: there are none in {where}", file=stdout)
        return 0
    count, status = 0, 0
    replayed: set[int] = set()
    for which in args.which:
        record = _find(queue, which)
        if record is None:
            missing = f"no such event in {where}"
            if isinstance(args.queue, KafkaSettings):  # the topic lists dead letters only
                missing = (
                    f"no dead letter {which} in {args.queue.dead_letter_topic} (replayed "
                    "already, or never dead-lettered)"
                )
            print(f"{PROG}: {which}: not replayed: {missing}", file=stderr)
            status = 1
            continue
        name = f"{which} (id {record.id})" if which != str(record.id) else which
        if record.state is State.DEAD and queue.replay([record.id], now):
            replayed.add(record.id)
            count += 1
            print(f"{name}: queued again", file=stdout)
            continue
        record = queue.record(record.id) or record  # another process may have replayed it
        if record.id in replayed or _replayed_before(record):
            print(
                f"{name}: already queued again, waiting for `attentive-router deliver`", file=stdout
            )
        elif record.state in {State.QUEUED, State.IN_FLIGHT}:
            print(f"{name}: not a dead letter: it is {record.state.label}", file=stdout)
        else:
            print(
                f"{PROG}: {name}: not replayed: not a dead letter: it is {record.state.label}"
                f"{f' ({record.reason})' if record.reason else ''}",
                file=stderr,
            )
            status = 1
    print(f"{count:,} dead letter(s) queued again{tail if count else ''}", file=stdout)
    return status


def _replayed_before(record: Record) -> bool:
    """Whether a queued event looks replayed: answered before, yet no attempt since."""
    return (
        record.state is State.QUEUED
        and record.attempts == 0
        and record.first_attempt_at is None
        and record.last_attempt_at is not None
        and record.status not in {401, 403}
    )


def _list(
    queue: DeadLetterStore, args: argparse.Namespace, stdout: IO[str], stderr: IO[str]
) -> int:
    records = queue.records(State.DEAD, limit=args.limit)
    more = queue.counts().get(State.DEAD, 0) - len(records) if len(records) == args.limit else 0
    if more > 0:
        print(f"{PROG}: {more:,} more dead letter(s) not shown: raise --limit", file=stderr)
    if args.json:
        for record in records:
            stdout.write(orjson.dumps(_record_json(record)).decode() + "\n")
        return 0
    if not records:
        print("no dead letters", file=stdout)
        return 0
    # The destination column only for a queue that records destinations (a configuration file).
    width = max((len(r.destination) for r in records if r.destination), default=0)
    column = f"{'DESTINATION':<{max(width, 11)}}  " if width else ""
    print(
        f"{'ID':>8}  {'LAST ATTEMPT':<20}  {'STATUS':>6}  {'TRIES':>5}  {'REASON':<18}  "
        f"{column}ENDPOINT / MESSAGE ID",
        file=stdout,
    )
    for r in records:
        where = f"{r.destination or '-':<{max(width, 11)}}  " if width else ""
        print(
            f"{r.id:>8}  {_when(r.last_attempt_at):<20}  {r.status or '-':>6}  {r.attempts:>5}  "
            f"{r.reason or '-':<18}  {where}{r.endpoint or '-'}  {r.key}",
            file=stdout,
        )
    return 0


def run_check(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """``check``: GET /v1/me with the key."""
    import httpx  # noqa: PLC0415

    from attentive_router._delivery.sender import USER_AGENT, scrub  # noqa: PLC0415

    token = _token(args, stderr)
    if token is None:
        return 2
    url = args.base_url.rstrip("/") + "/v1/me"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    try:
        response = httpx.get(url, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as error:
        print(f"{PROG}: cannot reach {url}: {scrub(str(error), token)}", file=stderr)
        return CHECK_UNREACHABLE
    body = scrub(response.text[:500], token)
    if response.status_code == 200:
        print(f"the API key is valid ({url}): {body}", file=stdout)
        return 0
    print(f"{PROG}: {url} answered {response.status_code}: {body}", file=stderr)
    return KEY_REFUSED if response.status_code in {401, 403} else 1
