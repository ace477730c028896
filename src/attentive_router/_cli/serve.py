"""The ``serve`` command: argument parsing; the server itself is ``_ingest.server``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from attrs import evolve

from attentive_router._cli.delivery import (
    PROG,
    TOKEN_ENV,
    _delivery_options,
    _key_source,
    _queue_option,
    _settings,
    _target_options,
    config_file_options,
)
from attentive_router._cli.numbers import non_negative, port, positive
from attentive_router._queue.interface import COMMIT_MODES, DEFAULT_DEDUPE_WINDOW
from attentive_router._queue.kafka.settings import KafkaSettings
from attentive_router._transform.options import Config

if TYPE_CHECKING:
    from attentive_router._ingest.server import DestinationSettings

WRITE_KEYS_ENV = "ATTENTIVE_ROUTER_WRITE_KEYS"
WEBHOOK_SECRETS_ENV = "ATTENTIVE_ROUTER_WEBHOOK_SECRETS"
CORS_ENV = "ATTENTIVE_ROUTER_CORS_ORIGINS"
CONSOLE_TOKEN_ENV = "ATTENTIVE_ROUTER_CONSOLE_TOKEN"  # noqa: S105 - a variable's name

SERVE_EPILOG = f"""\
endpoints (Segment's HTTP Tracking API and Webhooks destination):
  POST /v1/batch  /v1/import  /v1/b                   what server libraries send
  POST /v1/track  /v1/page  /v1/identify  /v1/screen  /v1/group  /v1/alias
  POST /v1/t  /v1/p  /v1/i  /v1/s  /v1/g  /v1/a        what analytics.js sends
  GET  /v1/projects/WRITE_KEY/settings               what analytics.js loads first
  POST /v1/m                                          its telemetry (accepted, dropped)
  GET  /analytics.js/v1/WRITE_KEY/analytics.min.js    the library itself (--analytics-js)
  POST /v1/webhook   Segment's Webhooks destination: one event or an array of up to 4,000
  GET  /healthz   GET /metrics (Prometheus)
  GET  /console   the operator console, with --console-token (else 404)

The write key is the user name of HTTP Basic auth, or "writeKey" in the body. On /v1/webhook an
X-Signature header (HMAC-SHA1 of the body with a --webhook-secret) authenticates instead; a
wrong one gets 401. 200 means the events are on disk; a bad item in a batch is stored as
rejected with its reason (listed in the answer); 400/415 name what is wrong with the request;
503 means the queue could not be written: send again.

examples:
  export {WRITE_KEYS_ENV}=shop=wk_live_123        # NAME=KEY or KEY, comma-separated
  export {WEBHOOK_SECRETS_ENV}=shop=...           # NAME=SECRET: Segment's shared secret
  export {TOKEN_ENV}=...
  attentive-router serve --port 8088
  attentive-router serve --write-key wk_test --no-deliver --cors-origin https://shop.example
  attentive-router serve --write-key wk_test --base-url http://127.0.0.1:8788 --token sandbox-token

Logs are JSON lines on stderr, with email addresses and phone numbers blanked out. Delivery
problems are logged too: an endpoint failing (connection refused, timeouts, 5xx: a line when it
starts, then one a minute), dead letters with their reason, a refused API key. While Attentive
refuses the key, serve checks it every --key-retry-interval seconds and resumes by itself;
SIGHUP re-reads --token-file and checks at once.
SIGTERM or Ctrl-C: stop accepting, let requests and deliveries in flight finish (--grace),
leave the rest queued, exit 0. `attentive-router deliver` or the next `serve` sends the rest.

On a Kafka queue (--queue kafka://HOST:PORT/PREFIX, or the configuration file's) serve only
ingests and needs no API key: each request's events are written to PREFIX.events with acks=all
before its 200 (503 with Retry-After when the brokers do not acknowledge within --lock-timeout);
any number of serve processes can share the topics; `deliver --follow` workers deliver. /healthz
says whether the brokers answer. `attentive-router kafka init` creates the topics.

exit status: 0 after SIGTERM or Ctrl-C; 2 for bad usage (a numeric option out of range names
the range), a queue that cannot be opened or is delivered from by another process, or an
address it cannot listen on.
"""

ConfigOptions = Callable[[argparse.ArgumentParser], None]


def add_serve_parser(commands: Any, config_options: ConfigOptions) -> None:
    """Add ``serve`` to ``commands``."""
    serve = commands.add_parser(
        "serve",
        help="accept events from Segment-compatible libraries over HTTP and deliver them",
        description="Run a Segment-compatible ingest server: point analytics.js, "
        "segment-analytics-python or rudder-sdk-python at it unchanged. Events are queued on "
        "disk before the client gets its 200, and delivered to Attentive by the same process.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_options(serve, config_options)


def add_serve_options(serve: argparse.ArgumentParser, config_options: ConfigOptions) -> None:
    """The options of ``serve`` (``config check`` takes them too)."""
    group = serve.add_argument_group("ingest")
    group.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)",
    )
    group.add_argument(
        "--port",
        type=port,
        default=8088,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    group.add_argument(
        "--write-key",
        action="append",
        default=[],
        metavar="[NAME=]KEY",
        help=f"a write key clients may use, repeatable (default: ${WRITE_KEYS_ENV}, "
        "comma-separated); NAME labels its events in the queue and the metrics",
    )
    group.add_argument(
        "--webhook-secret",
        action="append",
        default=[],
        metavar="NAME=SECRET",
        help="the shared secret of a Segment Webhooks destination posting to /v1/webhook, "
        "repeatable; NAME is the name of a write key, whose events these are (default: "
        f"${WEBHOOK_SECRETS_ENV}, comma-separated; prefer it: command lines are visible to "
        "other users)",
    )
    group.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help=f"an origin browsers may post from, e.g. https://shop.example, or * (repeatable; "
        f"default: ${CORS_ENV}, comma-separated; none: no CORS)",
    )
    browser = serve.add_argument_group("browsers (analytics.js)")
    browser.add_argument(
        "--public-url",
        metavar="URL",
        help="where browsers reach this server, e.g. https://events.shop.example, when it "
        "sits behind a proxy; the settings analytics.js loads point it there (default: the "
        "scheme and Host of each request)",
    )
    browser.add_argument(
        "--trust-proxy",
        action="store_true",
        help="take the scheme and host from X-Forwarded-Proto and X-Forwarded-Host (only "
        "behind a proxy that sets them)",
    )
    browser.add_argument(
        "--analytics-js",
        metavar="DIR",
        type=Path,
        help="host analytics.js from DIR, the dist/umd folder of the npm package "
        "@segment/analytics-next, at /analytics.js/v1/WRITE_KEY/analytics.min.js",
    )
    group.add_argument(
        "--no-deliver",
        action="store_true",
        help="only accept and queue events; deliver them with another process",
    )
    group.add_argument(
        "--dedupe-window",
        type=non_negative,
        default=DEFAULT_DEDUPE_WINDOW / 3600,
        metavar="HOURS",
        help="a messageId seen this recently from the same write key is not queued again "
        "(>= 0; default: %(default)s)",
    )
    group.add_argument(
        "--lock-timeout",
        type=non_negative,
        default=5.0,
        metavar="S",
        help="how long a write waits for another process holding the queue before the "
        "client gets 503 (>= 0; default: %(default)s)",
    )
    group.add_argument(
        "--commit",
        choices=COMMIT_MODES,
        default="group",
        help="group: requests that arrive while the queue is writing share its next "
        "transaction (and fsync), each answered once that transaction is on disk; "
        "per-request: one transaction per request (default: %(default)s)",
    )
    group.add_argument(
        "--grace",
        type=non_negative,
        default=5.0,
        metavar="S",
        help="on SIGTERM, time for requests and deliveries in flight to finish "
        "(>= 0; default: %(default)s)",
    )
    group.add_argument(
        "--key-retry-interval",
        type=positive,
        default=300.0,
        metavar="S",
        help="after Attentive refused the API key (401/403), check it again this often "
        "(GET /v1/me) and resume once it is accepted; SIGHUP re-reads --token-file and checks "
        "at once (> 0; default: %(default)s)",
    )
    group.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="(default: %(default)s; info logs one line per request)",
    )
    group.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="log lines on stderr (default: %(default)s)",
    )
    console = serve.add_argument_group("operator console (/console in a browser)")
    console.add_argument(
        "--console-token",
        metavar="TOKEN",
        help="turn the console on: people sign in with TOKEN (at least 16 characters, not a "
        f"write key); it shows every event, so give it to operators only (default: "
        f"${CONSOLE_TOKEN_ENV}; prefer it: command lines are visible to other users; "
        "without either, /console answers 404)",
    )
    _queue_option(serve)
    _target_options(serve)
    _delivery_options(serve, progress=False)
    config_options(serve)
    config_file_options(serve)


def _split(values: list[str], env: str) -> list[str]:
    if not values:
        values = os.environ.get(env, "").split(",")
    return [value.strip() for value in values if value.strip()]


def run_serve_command(
    args: argparse.Namespace, config: Config, stdout: IO[str], stderr: IO[str]
) -> int:
    """``serve``: check the options, then run the server."""
    from attentive_router._console.security import (  # noqa: PLC0415
        ConsoleTokenError,
        check_token,
    )
    from attentive_router._ingest.browser import (  # noqa: PLC0415
        AnalyticsJs,
        AnalyticsJsError,
        PublicUrlError,
        parse_public_url,
    )
    from attentive_router._ingest.server import (  # noqa: PLC0415 - the server's imports are heavy
        ServeConfigError,
        ServeSettings,
        parse_webhook_secrets,
        parse_write_key,
        run_serve,
    )

    prog = f"{PROG} serve"
    try:
        keys = dict(parse_write_key(value) for value in _split(args.write_key, WRITE_KEYS_ENV))
    except ServeConfigError as error:
        print(f"{prog}: {error}", file=stderr)
        return 2
    if not keys:
        print(
            f"{prog}: no write key: pass --write-key KEY (or NAME=KEY) or set {WRITE_KEYS_ENV}",
            file=stderr,
        )
        return 2
    try:
        names = set(keys.values())
        secrets = parse_webhook_secrets(_split(args.webhook_secret, WEBHOOK_SECRETS_ENV), names)
    except ServeConfigError as error:
        print(f"{prog}: {error}", file=stderr)
        return 2
    console_token = (args.console_token or os.environ.get(CONSOLE_TOKEN_ENV, "")).strip() or None
    if console_token is not None:
        try:
            check_token(console_token, keys)
        except ConsoleTokenError as error:
            print(f"{prog}: --console-token: {error}", file=stderr)
            return 2
    try:
        public_url = None if args.public_url is None else parse_public_url(args.public_url)
        analytics_js = None if args.analytics_js is None else AnalyticsJs(args.analytics_js)
    except (PublicUrlError, AnalyticsJsError) as error:
        print(f"{prog}: {error}", file=stderr)
        return 2
    sender = None
    key_source = None
    destinations = []
    each = getattr(args, "each_destination", [])
    in_use = getattr(args, "config_in_use", None)
    if not each and in_use is not None and in_use[1] is not None:
        # One destination of the file: its name is recorded with its events all the same.
        each = [(in_use[1], args, config)]
    if each:
        for name, resolved, mapping in each:
            own = {parse_write_key(value)[1] for value in resolved.write_key}
            route = _destination(args, name, resolved, mapping, own, stderr)
            if route is None:
                return 2
            destinations.append(route)
    elif not args.no_deliver and not isinstance(args.queue, KafkaSettings):
        # On a Kafka queue serve only ingests: the deliver --follow workers need the key.
        key_source = _key_source(args, stderr)
        if key_source is None:
            print(f"{prog}: (or run with --no-deliver to only queue events)", file=stderr)
            return 2
        sender = evolve(_settings(args, key_source.token, config), grace=args.grace)
    settings = ServeSettings(
        keys=keys,
        queue=args.queue,
        sender=sender,
        host=args.host,
        port=args.port,
        cors_origins=_split(args.cors_origin, CORS_ENV),
        dedupe_window=args.dedupe_window * 3600,
        busy_timeout=args.lock_timeout,
        grace=args.grace,
        log_level=args.log_level,
        log_format=args.log_format,
        public_url=public_url,
        trust_proxy=args.trust_proxy,
        analytics_js=analytics_js,
        webhook_secrets=secrets,
        key_source=key_source,
        key_retry=args.key_retry_interval,
        destinations=destinations,
        commit=args.commit,
        config=config,
        console_token=console_token,
    )
    return run_serve(settings, stdout, stderr)


def _destination(  # noqa: PLR0913, PLR0917 - the pieces of one destination
    args: argparse.Namespace,
    name: str,
    resolved: argparse.Namespace,
    config: Config,
    sources: set[str],
    stderr: IO[str],
) -> DestinationSettings | None:
    """One destination of the file: its queue, sender and key (None, said why, without a key)."""
    from attentive_router._ingest.server import DestinationSettings  # noqa: PLC0415

    if args.no_deliver or isinstance(resolved.queue, KafkaSettings):
        return DestinationSettings(name, resolved.queue, None, frozenset(sources), config=config)
    key_source = _key_source(resolved, stderr)
    if key_source is None:
        print(
            f"{PROG} serve: destination {name}: no API key (or run with --no-deliver to only "
            "queue events)",
            file=stderr,
        )
        return None
    sender = evolve(_settings(resolved, key_source.token, config), grace=args.grace)
    return DestinationSettings(
        name, resolved.queue, sender, frozenset(sources), key_source, config=config
    )
