"""``attentive-router config check|init``: validate and show a configuration file, or write one."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from attentive_router._cli.delivery import CONFIG_ENV, PROG, ConfigOptions
from attentive_router._cli.serve import add_serve_options
from attentive_router._delivery.defaults import DEFAULT_BASE_URL, DEFAULT_CONCURRENCY
from attentive_router._delivery.ratelimit import DEFAULT_RATE, DEFAULT_RATES, IDENTITY_PATH
from attentive_router._delivery.retry import RetryPolicy

if TYPE_CHECKING:
    from attentive_router._cli.resolve import Row

DEFAULT_FILE = "attentive-router.toml"
_POLICY = RetryPolicy()

EXAMPLE = f"""\
# attentive-router configuration: `attentive-router config check FILE` validates it and shows
# every value with where it comes from. Flags and environment variables override this file.
# No secret is written here: each Attentive API key is read from the environment variable
# that token_env names, or from the file token_file names. Relative paths are read from this
# file's folder. Keep this file private to its owner (chmod 600): it says where the keys are
# and where they are sent.

[queue]
# Events wait here on disk until Attentive has them (a destination may have its own).
path = "attentive-router.db"
# Or a Kafka queue, shared by several serve and deliver --follow processes (create its
# topics with `attentive-router kafka init --config FILE`):
# path = "kafka://broker-1:9092,broker-2:9092/shop"

# How to connect to the Kafka queues of this file (only with a kafka:// queue).
# [kafka]
# security_protocol = "SASL_SSL"      # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
# sasl_mechanism = "SCRAM-SHA-512"    # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
# sasl_username = "attentive-router"
# sasl_password_env = "KAFKA_PASSWORD"  # the variable that holds the password
# ssl_cafile = "kafka-ca.pem"         # default: the system's CA certificates
# partitions = 12                     # of PREFIX.events, made by kafka init
# replication_factor = 3              # 1 on a single broker
# session_timeout = 10                # seconds a silent worker keeps its partitions

[serve]
host = "127.0.0.1"         # 0.0.0.0 to listen on every interface
port = 8088
# cors_origins = ["https://shop.example"]          # origins browsers may post from
# public_url = "https://events.shop.example"       # where browsers reach serve (a proxy)
# trust_proxy = false                              # take X-Forwarded-Proto/-Host
# analytics_js = "node_modules/@segment/analytics-next/dist/umd"
dedupe_window = 24         # hours a messageId is remembered per write key
lock_timeout = 5           # seconds a write waits for the queue before answering 503
grace = 5                  # seconds given to work in flight on SIGTERM
key_retry_interval = 300   # seconds between checks of a refused API key
commit = "group"           # group: waiting requests share a transaction; per-request
log_level = "info"         # debug, info, warning, error
log_format = "json"        # json, text
# console_token_env = "ATTENTIVE_ROUTER_CONSOLE_TOKEN"  # the operator console's token (/console)

# Source name = the variable holding the shared secret of its Segment Webhooks destination.
[serve.webhook_secret_env]
# web = "SHOP_WEBHOOK_SECRET"

# Sources: the write keys clients send with, each routed to one destination.
[sources.web]
write_key = "wk_replace_me"      # write keys are public (every browser has them);
destination = "shop"             # write_key_env = "VARIABLE" reads one from the environment

# Destinations: Attentive accounts.
[destinations.shop]
token_env = "SHOP_ATTENTIVE_API_KEY"  # the variable that holds the API key
# token_file = "shop-attentive.key"   # or a file that holds it (re-read on SIGHUP)
base_url = "{DEFAULT_BASE_URL}"
timeout = 10                    # seconds per request
concurrency = {DEFAULT_CONCURRENCY}               # requests in flight at once
rate_limit = {DEFAULT_RATE:g}                # requests per second per endpoint
identity_rate_limit = {DEFAULT_RATES[IDENTITY_PATH]:g}        # ... to the Identity endpoint
max_attempts = {_POLICY.max_attempts}               # give up after this many tries
retry_window = {_POLICY.window / 3600:g}                # ... and this many hours
unnamed_track = "custom_event"  # track events no rule maps: "custom_event" or "skip"
stale_events = "send"           # events older than 12 hours: "send" (with a warning) or "skip"
strict_property_keys = false    # true: reject custom events with forbidden property keys
default_region = "US"           # region of phone numbers without a country code
builtin_aliases = true          # the common other spellings of the eCommerce event names

# Your event names for the events the rules map: "your name" = "mapped name".
[destinations.shop.aliases]
# "Added To Cart" = "Product Added"

# Which calls and events are sent: exact names or globs ("Debug *").
[destinations.shop.filter]
# allow_calls = ["identify", "track", "page"]
# deny_events = ["Debug *"]

# Send only events whose consent allows this category.
[destinations.shop.consent]
# category = "marketing"
# missing = "send"              # no consent information: "send" or "skip"
"""

CONFIG_EPILOG = """\
examples:
  attentive-router config init deploy.toml && chmod 600 deploy.toml
  attentive-router config check deploy.toml
  ATTENTIVE_ROUTER_CONFIG=deploy.toml attentive-router config check --destination brand_a

check prints each value as `key = value  # origin`, the origin being the file, an environment
variable, a flag or the default; API keys and webhook secrets are masked.

exit status:
  0  the file is valid (check), or was written (init)
  2  the file has problems (each is listed with its key path), a variable it names is not
     set, or (init) the file exists already: it is never overwritten
"""


def add_config_parser(commands: Any, config_options: ConfigOptions) -> None:
    """Add ``config check`` and ``config init`` to ``commands``."""
    config = commands.add_parser(
        "config",
        help="check a configuration file and show where each value comes from, or write one",
        description="The configuration file (TOML) names the queue, the serve options, the "
        "sources (write keys) and the destinations (Attentive accounts).",
        epilog=CONFIG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate the file and print the resolved configuration with origins",
        description="Validate FILE and print every value serve, send and deliver would use, "
        "with its origin; the options of serve may be given to see how they override it.",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help=f"the file (default: ${CONFIG_ENV})")
    add_serve_options(check, config_options)
    init = actions.add_parser("init", help="write a commented example file")
    init.add_argument(
        "file",
        nargs="?",
        default=DEFAULT_FILE,
        metavar="FILE|-",
        help=f"where to write it, - for stdout (default: {DEFAULT_FILE}; never overwritten)",
    )


def run_config(
    args: argparse.Namespace,
    given: set[str],
    stdout: IO[str],
    stderr: IO[str],
    environ: Mapping[str, str] | None = None,
) -> int:
    """``config check`` and ``config init``."""
    from attentive_router._cli.config import ConfigError  # noqa: PLC0415
    from attentive_router._cli.resolve import permission_warning, resolve  # noqa: PLC0415

    if args.action == "init":
        return _init(args.file, stdout, stderr)
    environ = os.environ if environ is None else environ
    if args.file is not None:
        args.config = args.file
        given = given | {"config"}
    if not args.config and not environ.get(CONFIG_ENV, "").strip():
        print(f"{PROG}: config check: name the file, or set ${CONFIG_ENV}", file=stderr)
        return 2
    try:
        resolution = resolve(args, given, environ, every=True)
    except ConfigError as error:
        print(f"{PROG}: {error}", file=stderr)
        return 2
    loaded = resolution.config
    assert loaded is not None
    warning = permission_warning(loaded.path)
    if warning:
        print(f"{PROG}: {warning}", file=stderr)
    for warning in resolution.warnings:
        print(f"{PROG}: {warning}", file=stderr)
    origin = "flag --config" if "config" in given else f"env ${CONFIG_ENV}"
    print(f"# {loaded.path} ({origin})", file=stdout)
    _print_rows(resolution.rows, stdout)
    destinations = sorted(loaded.file.destinations)
    if len(destinations) > 1 and not args.destination:
        print(
            f"# serve and deliver: {len(destinations)} destinations, each delivered by its own "
            "sender from its own queue with its own key (--destination NAME: only that one)",
            file=stdout,
        )
    if resolution.problems:
        for problem in resolution.problems:
            print(f"{PROG}: {problem}", file=stderr)
        return 2
    print(f"{loaded.path}: valid", file=stderr)
    return 0


def _print_rows(rows: list[Row], stdout: IO[str]) -> None:
    lines = [(f"{row.key} = {toml_value(row.value)}", row.origin) for row in rows]
    width = max((len(line) for line, _ in lines), default=0)
    for line, origin in lines:
        print(f"{line:<{width}}  # {origin}", file=stdout)


def toml_value(value: object) -> str:
    """A value written as TOML (inline tables for the filter and consent sections)."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str | Path):
        text = str(value)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if attrs.has(type(value)):
        fields = {
            f.name: getattr(value, f.name)
            for f in attrs.fields(type(value))  # type: ignore[arg-type] # attrs.has checked it
            if getattr(value, f.name) not in (None, ())
        }
        return toml_value(fields)
    return str(value)


def _toml_key(key: object) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else toml_value(text)


def _init(file: str, stdout: IO[str], stderr: IO[str]) -> int:
    if file == "-":
        stdout.write(EXAMPLE)
        return 0
    path = Path(file)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(
            f"{PROG}: {path} exists: not overwritten (remove it, or name another file)", file=stderr
        )
        return 2
    except OSError as error:
        print(f"{PROG}: cannot write {path}: {error.strerror or error}", file=stderr)
        return 2
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(EXAMPLE)
    print(
        f"wrote {path}: set the API key's variable, edit the sources and destinations, then "
        f"run `attentive-router config check {path}`",
        file=stdout,
    )
    return 0
