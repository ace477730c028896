"""The ``attentive-router`` command line.

This is the edge of the program: it reads files and the clock, builds the ``Context`` and
writes results. The transform itself stays pure.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

import orjson

from attentive_router._cli.config_command import add_config_parser, run_config
from attentive_router._cli.delivery import (
    add_parsers,
    config_file_options,
    run_check,
    run_dead_letters,
    run_delivery,
)
from attentive_router._cli.events import add_events_parser, run_events
from attentive_router._cli.kafka_command import add_kafka_parser, run_kafka
from attentive_router._cli.numbers import port
from attentive_router._cli.serve import add_serve_parser, run_serve_command
from attentive_router._cli.streams import guarded, silence
from attentive_router._cli.summary import Tally
from attentive_router._delivery.progress import Progress, progress_wanted
from attentive_router._transform.options import Config, Context
from attentive_router._transform.reader import Item, read_events

if TYPE_CHECKING:
    from attentive_router._cli.resolve import Resolution
    from attentive_router._transform.json_form import to_record
    from attentive_router._transform.models import JSONObject
    from attentive_router._transform.router import route
else:
    # The mappings and the JSON converter load with the first event: the other commands,
    # --help and `transform` of an empty input never need them. Each stand-in puts the real
    # functions in its place, so that later events call them directly.

    def route(event: object, ctx: Context) -> object:
        """Load the transform, then route ``event``."""
        _load_transform()
        return route(event, ctx)

    def to_record(outcome: object, event: object) -> object:
        """Load the transform, then make the record of ``outcome``."""
        _load_transform()
        return to_record(outcome, event)


PROG = "attentive-router"

TRANSFORM_EPILOG = """\
output: one JSON line per input event, in input order:
  {"messageId": "...", "outcome": "mapped", "requests": [{"method": "POST", "path": "/v1/...",
   "body": {...}}], "warnings": [{"code": "...", "message": "..."}]}
  {"messageId": "...", "outcome": "skipped", "reason": "no_identifier", "message": "..."}
  {"messageId": "...", "outcome": "rejected", "reason": "invalid_timestamp", "message": "..."}
every record also names its input: "line" (from 1), and "index" (from 0) for an event
inside a JSON array or a batch envelope

examples:
  attentive-router transform events.ndjson > requests.ndjson
  cat batch.json | attentive-router transform --summary - > /dev/null
  attentive-router transform --received-at 2026-01-08T14:00:00Z --default-region GB events.ndjson

exit status:
  0  every event was read and has its outcome line (rejected events included), or the
     reader of the output went away (`| head`): a closed pipe ends the command quietly
  2  bad usage, an unreadable input, or an output that cannot be written (e.g. a full disk)
"""


def _timestamp(value: str) -> datetime:
    from attentive_router._transform.expressions import parse_timestamp  # noqa: PLC0415

    moment = parse_timestamp(value)
    if moment is None:
        msg = f"{value!r} is not an ISO 8601 timestamp"
        raise argparse.ArgumentTypeError(msg)
    return moment


def _config_options(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    group = parser.add_argument_group("mapping options")
    group.add_argument(
        "--unnamed-track",
        choices=("custom_event", "skip"),
        default=defaults.unnamed_track,
        help="track events no mapping table names: send as custom events, or skip "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--stale-events",
        choices=("send", "skip"),
        default=defaults.stale_events,
        help="events older than 12 hours at receipt: send with a warning, or skip "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--strict-property-keys",
        action="store_true",
        help="reject custom events whose property keys hold forbidden characters "
        "(default: drop those keys with a warning)",
    )
    group.add_argument(
        "--default-region",
        default=defaults.default_region,
        metavar="CC",
        help="region for phone numbers without a country code (default: %(default)s)",
    )


SANDBOX_EPILOG = """\
faults (JSON object; every key optional, all off by default):
  latency_ms, latency_jitter_ms      delay every answer
  error_rate, error_statuses         answer a share of requests with one of these statuses
  timeout_rate, hang_seconds         hold a share of requests that long, then process them
  reset_rate                         process, then cut the response off mid-body
  retry_after                        Retry-After value on 429 answers, e.g. "2"
  scripts                            {"<externalEventId>": [500, 503, "timeout", "reset", 200]}
  status_for_all                     answer every request with this status, e.g. 401 or 503
  seed                               seed of the random draws, for reproducible runs

admin API (no token): GET /_sandbox/requests[.ndjson][?path=...][&token=...] (each request
  with the token it carried and when it arrived), GET /_sandbox/stats (answers by path and
  status, and by token and status),
  GET|PUT /_sandbox/faults, POST /_sandbox/reset

examples:
  attentive-router sandbox
  attentive-router sandbox --port 0 --token my-token --record requests.ndjson
  attentive-router sandbox --token brand-a-key --token brand-b-key --rate-limit /v1/events/custom=5
  attentive-router sandbox --faults '{"error_rate": 0.1, "latency_ms": 50, "seed": 1}'
  attentive-router sandbox --faults @faults.json --rate-limit /v1/events/custom=5
  curl -X PUT localhost:8788/_sandbox/faults -d '{"status_for_all": 503}'

exit status: 0 after SIGINT or SIGTERM; 2 for bad usage or an address it cannot listen on.
"""


def _add_sandbox_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help="run a local Attentive-compatible API server (for demos and tests)",
        description="Serve Attentive's v1 event, identity and attribute endpoints on the\n"
        "loopback interface: bearer-token check, per-endpoint rate limits, validation of\n"
        "every body against the project's JSON Schema, fault injection, and a record of\n"
        "every accepted request. Stops cleanly on SIGINT or SIGTERM.",
        epilog=SANDBOX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sandbox.add_argument(
        "--host",
        default="127.0.0.1",
        help="127.0.0.1, localhost or ::1; nothing else (default: %(default)s)",
    )
    sandbox.add_argument(
        "--port",
        type=port,
        default=8788,
        help="port, 0 for any free one, up to 65535 (default: %(default)s)",
    )
    sandbox.add_argument(
        "--token",
        action="append",
        default=[],
        help="bearer token to accept (default: $ATTENTIVE_SANDBOX_TOKEN, else sandbox-token); "
        "repeatable: each token is an account with its own rate limits",
    )
    sandbox.add_argument("--faults", metavar="JSON|@FILE", help="faults to inject from the start")
    limits = sandbox.add_mutually_exclusive_group()
    limits.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="PATH=N",
        help="requests per second for one endpoint (default: 150, Identity 10); repeatable",
    )
    limits.add_argument("--no-rate-limits", action="store_true", help="turn rate limiting off")
    sandbox.add_argument(
        "--record", metavar="FILE", help="append every accepted request to FILE as NDJSON"
    )
    sandbox.add_argument("--access-log", action="store_true", help="log every request to stdout")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the whole command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Map Segment-spec analytics events (identify, page, track with the eCommerce "
        "v2 names) to Attentive's REST API requests, and deliver them: queued on disk, sent "
        "within Attentive's rate limits, retried, and dead-lettered with a reason when they "
        "cannot be delivered.",
        epilog="start with: attentive-router demo (no Attentive account needed); "
        "attentive-router COMMAND --help for each command and its exit status. Exit status 2 "
        "is bad usage for every command (a numeric option out of range names the range). A "
        "closed output pipe (`| head`) is a normal end: transform, dead-letters, check and "
        "demo stop quietly with 0; send, deliver, serve and sandbox drop the rest of their "
        "report and finish their work.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    transform = commands.add_parser(
        "transform",
        help="map events to Attentive requests and print one outcome line per event",
        description="Read Segment events (NDJSON, a JSON array, or Segment batch envelopes)\n"
        "and print what each becomes: the Attentive requests, or why it is skipped or\n"
        "rejected. Sends nothing.",
        epilog=TRANSFORM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    transform.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="input (default: stdin)"
    )
    transform.add_argument(
        "--received-at",
        type=_timestamp,
        metavar="ISO",
        help="receipt time used for events without a timestamp and for the stale check "
        "(default: now)",
    )
    transform.add_argument(
        "--summary", action="store_true", help="print counts per outcome and reason to stderr"
    )
    transform.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress line on stderr (default: auto, when stderr is a terminal)",
    )
    _config_options(transform)
    config_file_options(transform)
    _add_sandbox_parser(commands)
    add_parsers(commands, _config_options)
    add_events_parser(commands)
    add_serve_parser(commands, _config_options)
    add_config_parser(commands, _config_options)
    add_kafka_parser(commands)
    commands.add_parser(
        "demo",
        help="send the bundled sample events to a local sandbox and show what arrived",
        description="Start the Attentive sandbox on a free loopback port (with some injected "
        "failures), send the bundled sample events through queue, transform and delivery, "
        "and print the summary and some of the requests the sandbox accepted. No Attentive "
        "account is needed.",
        epilog="exit status: as `send`'s: 0 when every sample was delivered, skipped or "
        "rejected, 1 when some were dead-lettered.",
    )
    return parser


QUEUE_READERS = frozenset({"events", "dead-letters"})
"""Commands that read a queue: a destination of the configuration file says which."""


def _queue_chosen(args: argparse.Namespace, given: set[str], stderr: IO[str]) -> bool:
    """The queue of the destination chosen in the configuration file, unless --queue names one.

    False, after saying why, when the file cannot be used or names no one destination.
    """
    if "queue" in given and "destination" not in given:
        return True
    return _resolved(args, given, stderr) is not None


def given_options(argv: Sequence[str] | None) -> set[str]:
    """The destinations (``dest``) of the options the command line gives, defaults aside."""
    parser = build_parser()
    _suppress_defaults(parser)
    return set(vars(parser.parse_args(argv)))


def _suppress_defaults(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public walk
        action.default = argparse.SUPPRESS
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                _suppress_defaults(sub)


def _resolved(
    args: argparse.Namespace, given: set[str], stderr: IO[str]
) -> tuple[Resolution, Config] | None:
    """The options resolved (environment, configuration file) and the transform options.

    None, after saying why, when they cannot be used.
    """
    # The configuration file's classes load for the commands that resolve options, not --help.
    from attentive_router._cli.config import ConfigError  # noqa: PLC0415
    from attentive_router._cli.resolve import resolve  # noqa: PLC0415

    try:
        resolution = resolve(args, given)
    except ConfigError as error:
        print(f"{PROG}: {error}", file=stderr)
        return None
    for warning in resolution.warnings:
        print(f"{PROG}: {warning}", file=stderr)
    if resolution.problems:
        for problem in resolution.problems:
            print(f"{PROG}: {problem}", file=stderr)
        return None
    try:
        return resolution, resolution.transform_config()
    except ValueError as error:
        print(f"{PROG}: {error}", file=stderr)
        return None


def transform(
    args: argparse.Namespace,
    stdin: IO[bytes],
    stdout: IO[bytes],
    stderr: IO[str],
    given: set[str] | None = None,
) -> int:
    """Run ``transform``; return the exit status."""
    resolved = _resolved(args, set() if given is None else given, stderr)
    if resolved is None:
        return 2
    _, config = resolved
    ctx = Context(args.received_at or datetime.now(UTC), config)
    try:
        source = stdin if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115 - closed below
    except OSError as error:
        print(f"{PROG}: cannot read {args.file}: {error.strerror or error}", file=stderr)
        return 2
    size = None if args.file == "-" else os.fstat(source.fileno()).st_size
    progress = Progress(stderr, "transform", progress_wanted(args.progress, stderr))
    tally = Tally()
    started = time.monotonic()

    def emit(record: JSONObject) -> None:
        try:
            stdout.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        except OSError as error:
            raise _OutputError(error.errno, error.strerror) from error

    shown = progress.enabled  # the progress line, and the position it shows, only on a terminal
    try:
        for done, item in enumerate(read_events(source), 1):
            emit(_record(item, ctx, tally))
            if shown:
                progress.update(done, size, source.tell() if size else None)
        try:
            stdout.flush()
        except OSError as error:
            raise _OutputError(error.errno, error.strerror) from error
    except _OutputError as error:
        progress.close()
        silence(stdout)
        if error.errno == errno.EPIPE:
            return 0  # the reader went away (`| head`): a normal end
        print(f"{PROG}: cannot write the output: {error.strerror or error}", file=stderr)
        return 2
    except OSError as error:
        progress.close()
        print(f"{PROG}: cannot read {args.file}: {error.strerror or error}", file=stderr)
        return 2
    finally:
        if source is not stdin:
            source.close()
    progress.close()
    if args.summary:
        print(tally.render(time.monotonic() - started), file=stderr)
    return 0


def _load_transform() -> None:
    """Put the real ``route`` and ``to_record``, which ``_record`` calls, in this module."""
    from attentive_router._transform.json_form import to_record  # noqa: PLC0415
    from attentive_router._transform.router import route  # noqa: PLC0415

    globals().update(route=route, to_record=to_record)


def _record(item: Item, ctx: Context, tally: Tally) -> JSONObject:
    """The output record of one input item, with its position in the input."""
    if item.error is not None:
        tally.add_rejected("invalid_json")
        record: JSONObject = {
            "messageId": None,
            "outcome": "rejected",
            "reason": "invalid_json",
            "message": item.error,
        }
    else:
        outcome = route(item.event, ctx)
        tally.add(outcome)
        record = to_record(outcome, item.event)
    record["line"] = item.line
    if item.index is not None:
        record["index"] = item.index
    return record


class _OutputError(OSError):
    """Writing the output failed (as opposed to reading the input)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attentive-router`` console script."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # here rather than at exit, where a closed pipe is an error
    except BrokenPipeError:
        # The reader of the output went away (`| head`): a normal end of the command.
        silence(sys.stdout)
        silence(sys.stderr)
        return 0


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in {"transform", "send", "deliver", "serve", "config", *QUEUE_READERS}:
        given = given_options(argv)
    if args.command == "transform":
        return transform(args, sys.stdin.buffer, sys.stdout.buffer, sys.stderr, given)
    if args.command == "config":
        return run_config(args, given, sys.stdout, sys.stderr)
    if args.command == "kafka":
        return run_kafka(args, sys.stdout, sys.stderr)
    if args.command in {"send", "deliver"}:
        resolved = _resolved(args, given, sys.stderr)
        if resolved is None:
            return 2
        return run_delivery(args, resolved[1], sys.stdin.buffer, guarded(sys.stderr))
    if args.command == "serve":
        resolved = _resolved(args, given, sys.stderr)
        if resolved is None:
            return 2
        loaded = resolved[0].config
        from attentive_router._cli.resolve import permission_warning  # noqa: PLC0415

        warning = None if loaded is None else permission_warning(loaded.path)
        if warning:
            print(f"{PROG}: {warning}", file=sys.stderr)
        return run_serve_command(args, resolved[1], guarded(sys.stdout), guarded(sys.stderr))
    if args.command in QUEUE_READERS and not _queue_chosen(args, given, sys.stderr):
        return 2
    if args.command == "dead-letters":
        return run_dead_letters(args, sys.stdout, sys.stderr)
    if args.command == "events":
        return run_events(args, sys.stdout, sys.stderr)
    if args.command == "check":
        return run_check(args, sys.stdout, sys.stderr)
    if args.command == "demo":
        from attentive_router._cli.demo import run_demo  # noqa: PLC0415 - starts a server

        return run_demo(sys.stdout, sys.stderr)
    if args.command == "sandbox":
        # Imported here: the server's dependencies stay off the path of the other commands.
        from attentive_router._sandbox.server import run  # noqa: PLC0415

        return run(
            host=args.host,
            port=args.port,
            tokens=args.token,
            faults=args.faults,
            rate_limits=args.rate_limit,
            no_rate_limits=args.no_rate_limits,
            record=args.record,
            access_log=args.access_log,
            stdout=guarded(sys.stdout),
            stderr=guarded(sys.stderr),
        )
    return 2  # pragma: no cover - argparse rejects unknown commands
