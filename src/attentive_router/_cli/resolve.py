"""From the command line, the environment and the configuration file to one set of options.

Each option a configuration file can set is taken from, in this order: its flag, when given;
its environment variable, when it has one and it is set; the file; the default. ``resolve``
writes the result into the parsed arguments (so that the commands read ``args`` as they always
have) and notes where each value came from, which ``config check`` prints.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from attrs import evolve, field, frozen

from attentive_router._cli.config import (
    ConfigError,
    Destination,
    KafkaSection,
    LoadedConfig,
    Source,
    load,
    transform_config,
)
from attentive_router._cli.delivery import CONFIG_ENV, QUEUE_ENV, TOKEN_ENV
from attentive_router._cli.queue_address import parse_queue
from attentive_router._cli.serve import (
    CONSOLE_TOKEN_ENV,
    CORS_ENV,
    WEBHOOK_SECRETS_ENV,
    WRITE_KEYS_ENV,
)
from attentive_router._console.security import MIN_TOKEN
from attentive_router._queue.kafka.settings import KafkaSettings, KafkaUrlError
from attentive_router._transform.options import Config

Section = Literal["destination", "serve"]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@frozen
class Option:
    """An option both the command line and the file can set.

    Attributes:
        dest: Its name in the parsed arguments.
        flag: Its flag.
        section: Where the file holds it: a destination's table, or ``[serve]``.
        key: Its key in that table.
        env: The environment variable that sets it, if any, and how its text is read.
    """

    dest: str
    flag: str
    section: Section
    key: str
    env: str | None = None
    from_env: Callable[[str], Any] = str


DESTINATION_OPTIONS = (
    Option("base_url", "--base-url", "destination", "base_url"),
    Option("timeout", "--timeout", "destination", "timeout"),
    Option("concurrency", "--concurrency", "destination", "concurrency"),
    Option("rate", "--rate", "destination", "rate_limit"),
    Option("identity_rate", "--identity-rate", "destination", "identity_rate_limit"),
    Option("max_attempts", "--max-attempts", "destination", "max_attempts"),
    Option("retry_window", "--retry-window", "destination", "retry_window"),
    Option("unnamed_track", "--unnamed-track", "destination", "unnamed_track"),
    Option("stale_events", "--stale-events", "destination", "stale_events"),
    Option("strict_property_keys", "--strict-property-keys", "destination", "strict_property_keys"),
    Option("default_region", "--default-region", "destination", "default_region"),
)
MAPPING_KEYS = ("unnamed_track", "stale_events", "strict_property_keys", "default_region")
SERVE_OPTIONS = (
    Option("host", "--host", "serve", "host"),
    Option("port", "--port", "serve", "port"),
    Option("cors_origin", "--cors-origin", "serve", "cors_origins", CORS_ENV, _split),
    Option("public_url", "--public-url", "serve", "public_url"),
    Option("trust_proxy", "--trust-proxy", "serve", "trust_proxy"),
    Option("analytics_js", "--analytics-js", "serve", "analytics_js"),
    Option("dedupe_window", "--dedupe-window", "serve", "dedupe_window"),
    Option("lock_timeout", "--lock-timeout", "serve", "lock_timeout"),
    Option("grace", "--grace", "serve", "grace"),
    Option("key_retry_interval", "--key-retry-interval", "serve", "key_retry_interval"),
    Option("commit", "--commit", "serve", "commit"),
    Option("log_level", "--log-level", "serve", "log_level"),
    Option("log_format", "--log-format", "serve", "log_format"),
)
QUEUE_OPTION = Option("queue", "--queue", "destination", "queue", QUEUE_ENV, parse_queue)
MASK = "********"


@frozen
class Row:
    """One resolved value as ``config check`` shows it: key, value (secrets masked), origin."""

    key: str
    value: object
    origin: str


@frozen
class Resolution:
    """What ``resolve`` decided.

    Attributes:
        config: The configuration file, if any.
        destination: The destination the command works for, if the file has any.
        mapping: The destination's mapping options, resolved (flags over the file).
        rows: Every resolved value with its origin, for ``config check``.
        problems: What stops the command (an unset variable, a destination to choose).
        warnings: What the command does that the operator may not expect (printed first).
        each: With several destinations (``serve``, ``deliver``): each one's name, arguments
            resolved as with ``--destination NAME``, and transform options.
    """

    config: LoadedConfig | None
    destination: str | None
    mapping: Destination
    rows: list[Row] = field(factory=list)
    problems: list[str] = field(factory=list)
    warnings: list[str] = field(factory=list)
    each: list[tuple[str, argparse.Namespace, Config]] = field(factory=list)

    def transform_config(self) -> Config:
        """The transform options of the destination."""
        return transform_config(self.mapping)


def config_path(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Path, str] | None:
    """The configuration file named by ``--config`` or ``$ATTENTIVE_ROUTER_CONFIG``."""
    if getattr(args, "config", None):
        return Path(args.config), "flag --config"
    if environ.get(CONFIG_ENV, "").strip():
        return Path(environ[CONFIG_ENV].strip()), f"env ${CONFIG_ENV}"
    return None


def permission_warning(path: Path) -> str | None:
    """A warning when users other than the owner may read or write the file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    access = [word for word, bits in (("readable", 0o044), ("writable", 0o022)) if mode & bits] or [
        "accessible"
    ]
    return (
        f"warning: {path} is {' and '.join(access)} by other users (mode {mode:04o}): it names "
        f"the variables that hold the API keys and where they are sent; chmod 600 {path}"
    )


def _pick(
    args: argparse.Namespace,
    given: set[str],
    option: Option,
    in_file: object,
    environ: Mapping[str, str],
) -> tuple[object, str]:
    if option.dest in given:
        return getattr(args, option.dest), f"flag {option.flag}"
    if option.env and environ.get(option.env, "").strip():
        return option.from_env(environ[option.env].strip()), f"env ${option.env}"
    if in_file is not None:
        return in_file, "file"
    return getattr(args, option.dest), "default"


def choose_destination(
    args: argparse.Namespace, loaded: LoadedConfig | None, *, every: bool = False
) -> tuple[list[str], list[str]]:
    """(the destinations the command works for, problems).

    ``--destination``, else the file's only one; ``every`` (``config check``) takes them all.
    """
    wanted = getattr(args, "destination", None)
    if loaded is None:
        if wanted:
            return [], [
                f"--destination {wanted}: no configuration file (--config FILE or ${CONFIG_ENV})"
            ]
        return [], []
    names = sorted(loaded.file.destinations)
    if wanted:
        if wanted not in names:
            known = ", ".join(names) or "none"
            return [], [f"--destination {wanted}: {loaded.path} has no such destination ({known})"]
        return [wanted], []
    if len(names) <= 1 or every or args.command in EVERY_DESTINATION:
        return names, []
    choose = f"{loaded.path} has {len(names)} destinations ({', '.join(names)}): choose one"
    why = " (a file of events is for one Attentive account)" if args.command == "send" else ""
    if args.command in {"events", "dead-letters"}:
        why = " (whose queue to read), or name the queue file with --queue PATH"
    return [], [f"{choose} with --destination NAME{why}"]


EVERY_DESTINATION = frozenset({"serve", "deliver"})
"""Commands that work for every destination of the file when none is chosen."""


def one_key_for_all(args: argparse.Namespace, given: set[str], names: list[str]) -> str | None:
    """Why ``--token`` or ``--token-file`` cannot serve several destinations at once."""
    flags = [
        flag
        for dest, flag in (("token", "--token"), ("token_file", "--token-file"))
        if dest in given and getattr(args, dest, None)
    ]
    if len(names) > 1 and "queue" in given:
        return (
            f"--queue with {len(names)} destinations ({', '.join(names)}) would put every "
            "account's events in one queue: each destination keeps its own (its queue in the "
            "file), or choose one with --destination NAME"
        )
    if len(names) <= 1 or not flags:
        return None
    return (
        f"{' and '.join(flags)} with {len(names)} destinations ({', '.join(names)}) would send "
        "every account's events with one API key: give each destination its own token_env or "
        "token_file in the file, or choose one with --destination NAME"
    )


def global_token_warning(
    loaded: LoadedConfig | None, names: list[str], environ: Mapping[str, str]
) -> str | None:
    """A warning when ``$ATTENTIVE_API_TOKEN`` is set but destinations name their own key."""
    if loaded is None or not environ.get(TOKEN_ENV, "").strip():
        return None
    own = []
    for name in names:
        destination = loaded.file.destinations[name]
        if destination.token_env is not None:
            own.append(f"{name} (${destination.token_env})")
        elif destination.token_file is not None:
            own.append(f"{name} ({destination.token_file})")
    if not own:
        return None
    return (
        f"warning: ${TOKEN_ENV} is set, but {', '.join(own)} name their own key with "
        f"token_env or token_file: they send with that key, not ${TOKEN_ENV} (which serves "
        "only destinations without either); unset it to silence this warning"
    )


def _destination_rows(
    args: argparse.Namespace,
    given: set[str],
    loaded: LoadedConfig | None,
    name: str | None,
    environ: Mapping[str, str],
) -> tuple[Destination, dict[str, object], list[Row], list[str]]:
    """A destination's options resolved: (mapping options, values by dest, rows, problems)."""
    destination = (
        Destination() if loaded is None or name is None else loaded.file.destinations[name]
    )
    where = "destination" if name is None else f"destinations.{name}"
    values: dict[str, object] = {}
    rows: list[Row] = []
    problems: list[str] = []
    if hasattr(args, "queue"):
        in_file = None if loaded is None else loaded.destination_queue(name)
        try:
            value, origin = _pick(args, given, QUEUE_OPTION, in_file, environ)
        except KafkaUrlError as error:
            raise ConfigError(f"${QUEUE_ENV}", [str(error)]) from None
        if isinstance(value, KafkaSettings) and loaded is not None:
            value = loaded.with_kafka(value)  # the file's [kafka] table, for --queue too
        if isinstance(value, KafkaSettings):
            problems += [f"kafka: {problem}" for problem in value.problems(dict(environ))]
        values["queue"] = value
        shown = value.url if isinstance(value, KafkaSettings) else str(value)
        rows.append(Row(f"{where}.queue", shown, origin))
    if hasattr(args, "token"):
        # serve on a Kafka queue only ingests: its delivery workers need the key, it does not.
        ingest_only = getattr(args, "no_deliver", False) or (
            args.command == "serve" and isinstance(values.get("queue"), KafkaSettings)
        )
        needed = problems if not ingest_only else []
        rows.append(_token_row(args, given, destination, where, environ, needed))
    mapping: dict[str, object] = {}
    for option in DESTINATION_OPTIONS:
        if not hasattr(args, option.dest):
            continue
        value, origin = _pick(args, given, option, getattr(destination, option.key), environ)
        if option.dest == "default_region" and isinstance(value, str):
            value = value.upper()
        values[option.dest] = value
        rows.append(Row(f"{where}.{option.key}", value, origin))
        if option.key in MAPPING_KEYS:
            mapping[option.key] = value
    unset = Destination()
    for key in ("aliases", "builtin_aliases", "filter", "consent"):
        value = getattr(destination, key)
        origin = "default" if value == getattr(unset, key) else "file"
        if key == "builtin_aliases" and value is None:
            value = True
        rows.append(Row(f"{where}.{key}", value, origin))
    resolved = evolve(destination, **mapping)  # type: ignore[arg-type] # values checked above
    return resolved, values, rows, problems


def _token_row(  # noqa: PLR0913, PLR0917 - the pieces of one decision
    args: argparse.Namespace,
    given: set[str],
    destination: Destination,
    where: str,
    environ: Mapping[str, str],
    problems: list[str],
) -> Row:
    key = f"{where}.token"
    if "token" in given and args.token and args.token.strip():
        return Row(key, MASK, "flag --token")
    if "token_file" in given and args.token_file is not None:
        return Row(key, MASK, f"file {args.token_file} (flag --token-file)")
    # A destination's own token_env or token_file wins over $ATTENTIVE_API_TOKEN: one global
    # key must not send an account's shoppers with another account's key.
    if destination.token_file is not None:
        # Imported here: the key source brings the HTTP client, which resolving needs no more.
        from attentive_router._delivery.keys import KeySource, KeySourceError  # noqa: PLC0415

        try:
            KeySource.from_file(destination.token_file)
        except KeySourceError as error:
            problems.append(f"{where}.token_file: {error}")
            return Row(key, "(not readable)", f"file {destination.token_file} (token_file)")
        return Row(key, MASK, f"file {destination.token_file} (token_file)")
    if destination.token_env is None and environ.get(TOKEN_ENV, "").strip():
        return Row(key, MASK, f"env ${TOKEN_ENV}")
    if destination.token_env is not None:
        if environ.get(destination.token_env, "").strip():
            return Row(key, MASK, f"env ${destination.token_env}")
        problems.append(
            f"{where}.token_env: ${destination.token_env} is not set: export it with the "
            "destination's Attentive API key"
        )
        return Row(key, "(not set)", f"env ${destination.token_env}")
    return Row(key, "(none)", f"none: set token_env, token_file, ${TOKEN_ENV} or --token")


def kafka_rows(loaded: LoadedConfig, environ: Mapping[str, str]) -> list[Row]:
    """The ``[kafka]`` table's values with their origin, when the file has a Kafka queue or it.

    The password is never shown: only whether its variable is set.
    """
    section = loaded.file.kafka
    if section == KafkaSection() and not loaded.kafka_queues():
        return []
    defaults = KafkaSettings(bootstrap=(), prefix="")
    rows = []
    for key, value in section.options().items():
        if key == "sasl_password_env":
            continue
        if value is None:
            rows.append(Row(f"kafka.{key}", getattr(defaults, key), "default"))
        else:
            rows.append(Row(f"kafka.{key}", value, "file"))
    env = section.sasl_password_env
    if env is None:
        rows.insert(3, Row("kafka.sasl_password_env", None, "default"))
    else:
        shown = MASK if environ.get(env, "") else "(not set)"
        rows.insert(3, Row("kafka.sasl_password_env", shown, f"env ${env}"))
    return rows


def _serve_rows(
    args: argparse.Namespace,
    given: set[str],
    loaded: LoadedConfig | None,
    environ: Mapping[str, str],
) -> tuple[dict[str, object], list[Row]]:
    values: dict[str, object] = {}
    rows: list[Row] = []
    section = None if loaded is None else loaded.file.serve
    for option in SERVE_OPTIONS:
        if not hasattr(args, option.dest):
            continue
        in_file = None if section is None else getattr(section, option.key)
        if option.dest == "cors_origin" and in_file is not None:
            in_file = list(in_file)
        value, origin = _pick(args, given, option, in_file, environ)
        values[option.dest] = value
        rows.append(Row(f"serve.{option.key}", value, origin))
    return values, rows


def _sources(
    loaded: LoadedConfig, destinations: list[str], environ: Mapping[str, str]
) -> Iterator[tuple[str, Source, str | None, str]]:
    """(name, source, key or None when its variable is unset, origin) of ``destinations``."""
    for name, source in sorted(loaded.file.sources.items()):
        if source.destination not in destinations:
            continue
        if source.write_key is not None:
            yield name, source, source.write_key, "file"
        else:
            env = str(source.write_key_env)
            yield name, source, environ.get(env, "").strip() or None, f"env ${env}"


def _ingest_rows(  # noqa: PLR0913, PLR0917 - the pieces of one decision
    args: argparse.Namespace,
    given: set[str],
    loaded: LoadedConfig | None,
    destinations: list[str],
    environ: Mapping[str, str],
    problems: list[str],
) -> tuple[list[str] | None, list[str] | None, list[Row]]:
    """(write keys, webhook secrets, rows): None where the flags or the environment decide."""
    rows: list[Row] = []
    keys: list[str] | None = None
    if "write_key" in given:
        rows.append(Row("sources", f"{len(args.write_key)} write key(s)", "flag --write-key"))
    elif environ.get(WRITE_KEYS_ENV, "").strip():
        rows.append(Row("sources", "write keys", f"env ${WRITE_KEYS_ENV}"))
    elif loaded is not None:
        keys = []
        for name, source, key, origin in _sources(loaded, destinations, environ):
            if key is None:
                problems.append(f"sources.{name}.write_key_env: {origin[4:]} is not set")
            else:
                keys.append(f"{name}={key}")
            shown = {
                "write_key": key if source.write_key is not None else MASK if key else "(not set)",
                "destination": source.destination,
            }
            rows.append(Row(f"sources.{name}", shown, origin))
    secrets: list[str] | None = None
    if "webhook_secret" in given:
        rows.append(Row("serve.webhook_secret_env", MASK, "flag --webhook-secret"))
    elif environ.get(WEBHOOK_SECRETS_ENV, "").strip():
        rows.append(Row("serve.webhook_secret_env", MASK, f"env ${WEBHOOK_SECRETS_ENV}"))
    elif loaded is not None:
        secrets = []
        selected = {name for name, *_ in _sources(loaded, destinations, environ)}
        for name, env in sorted(loaded.file.serve.webhook_secret_env.items()):
            if name not in selected:
                continue
            secret = environ.get(env, "").strip()
            if not secret:
                problems.append(f"serve.webhook_secret_env.{name}: ${env} is not set")
            else:
                secrets.append(f"{name}={secret}")
            rows.append(
                Row(
                    f"serve.webhook_secret_env.{name}",
                    MASK if secret else "(not set)",
                    f"env ${env}",
                )
            )
    return keys, secrets, rows


def _console_rows(
    args: argparse.Namespace,
    given: set[str],
    loaded: LoadedConfig | None,
    environ: Mapping[str, str],
    problems: list[str],
) -> list[Row]:
    """Where the console token comes from; one from the file's variable goes into ``args``."""
    key = "serve.console_token_env"
    if "console_token" in given:
        token, origin = args.console_token, "flag --console-token"
    elif environ.get(CONSOLE_TOKEN_ENV, "").strip():
        token, origin = environ[CONSOLE_TOKEN_ENV], f"env ${CONSOLE_TOKEN_ENV}"
    else:
        env = None if loaded is None else loaded.file.serve.console_token_env
        if env is None:
            return []
        token, origin = environ.get(str(env), ""), f"env ${env}"
        if not token.strip():
            problems.append(f"{key}: ${env} is not set")
            return [Row(key, "(not set)", origin)]
        args.console_token = token.strip()
    short = len(token.strip()) < MIN_TOKEN
    if short:
        problems.append(
            f"{key}: the console token ({origin}) is shorter than {MIN_TOKEN} characters"
        )
    return [Row(key, MASK, origin)]


def load_config(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[LoadedConfig | None, str | None]:
    """The configuration file named by the arguments or the environment, and how.

    ``ConfigError`` when it cannot be read or is wrong.
    """
    named = config_path(args, environ)
    if named is None:
        return None, None
    path, origin = named
    return load(path), origin


def resolve(
    args: argparse.Namespace,
    given: set[str],
    environ: Mapping[str, str] | None = None,
    *,
    every: bool = False,
) -> Resolution:
    """Resolve ``args`` against the environment and the configuration file.

    The values are written into ``args``; the result says what was decided and where each
    value came from. ``ConfigError`` for a file that cannot be used.
    """
    environ = os.environ if environ is None else environ
    loaded, _ = load_config(args, environ)
    chosen, problems = choose_destination(args, loaded, every=every)
    found: list[str] = []
    rows: list[Row] = []
    mapping = Destination()
    first = True
    original = argparse.Namespace(**vars(args))  # the defaults, for every destination
    for name in chosen or [None]:  # type: ignore[list-item] # None: no destination in a file
        resolved, values, more, trouble = _destination_rows(original, given, loaded, name, environ)
        rows += more
        found += trouble
        if first:
            mapping = resolved
            for dest, value in values.items():
                setattr(args, dest, value)
            first = False
    if chosen and loaded is not None and not every:
        destination = loaded.file.destinations[chosen[0]]
        if not {"token", "token_file"} & given:
            args.token_env = destination.token_env
            if destination.token_file is not None:
                args.token_file = destination.token_file
    destination_rows, rows = rows, []
    if hasattr(args, "write_key"):
        values, more = _serve_rows(args, given, loaded, environ)
        rows += more
        for dest, value in values.items():
            setattr(args, dest, value)
        keys, secrets, more = _ingest_rows(args, given, loaded, chosen, environ, found)
        rows += more
        if keys is not None:
            args.write_key = keys
        if secrets is not None:
            args.webhook_secret = secrets
        rows += _console_rows(args, given, loaded, environ, found)
    rows += destination_rows
    if loaded is not None:
        rows += kafka_rows(loaded, environ)
    warnings: list[str] = []
    each: list[tuple[str, argparse.Namespace, Config]] = []
    if loaded is not None:
        problems += [f"{loaded.path}: {problem}" for problem in dict.fromkeys(found)]
        args.config_in_use = (loaded.path, chosen[0] if len(chosen) == 1 else None, given)
        if hasattr(args, "token"):
            warning = global_token_warning(loaded, chosen, environ)
            warnings += [f"{loaded.path}: {warning}"] if warning else []
            several = one_key_for_all(args, given, chosen)
            problems += [several] if several and not every else []
        if len(chosen) > 1 and not every and not problems:
            each = _each(original, given, environ, chosen, problems)
        args.each_destination = each
    return Resolution(
        loaded,
        chosen[0] if len(chosen) == 1 else None,
        mapping,
        rows,
        problems,
        warnings,
        each,
    )


def _each(
    original: argparse.Namespace,
    given: set[str],
    environ: Mapping[str, str],
    names: list[str],
    problems: list[str],
) -> list[tuple[str, argparse.Namespace, Config]]:
    """Each destination resolved as with ``--destination NAME`` (its problems added)."""
    each = []
    for name in names:
        args = argparse.Namespace(**vars(original))
        args.destination = name
        resolution = resolve(args, given, environ)
        problems += [p for p in resolution.problems if p not in problems]
        try:
            each.append((name, args, resolution.transform_config()))
        except ValueError as error:
            problems.append(f"destinations.{name}: {error}")
    return each
