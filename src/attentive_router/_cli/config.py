"""The configuration file: its format, reading it, and every error in it at once.

A TOML file (read with ``tomllib``) names the queue (a file, or a Kafka queue with the
``[kafka]`` table's connection settings), the ``serve`` options, the sources (write
keys, each routed to one destination) and the destinations (Attentive accounts: where their
key is, their limits, retries and mapping options). It is parsed into the attrs classes below
with cattrs; every leaf value has a hook that says what it expected, so that a file with
several mistakes gets them all reported, each with its key path::

    destinations.brand_a.rate_limit: expected a number > 0, got "fast"
    destinations.brand_a.rate_limt: unknown key (did you mean rate_limit?)

Secrets never sit in the file: an Attentive key is named by the environment variable that
holds it (``token_env``) or by the file that holds it (``token_file``, read again on SIGHUP).
A field left out of the file is ``None`` here, so that the command line can tell a value from
the file from a default (see ``_cli.resolve``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NewType, get_args, get_origin

import attrs
from attrs import field, frozen

from attentive_router._cli.queue_address import QueueAddress, parse_queue, queue_identity
from attentive_router._queue.kafka.settings import (
    KafkaSettings,
    SaslMechanism,
    SecurityProtocol,
)
from attentive_router._transform.generated.event_names import MAPPED_EVENT_NAMES
from attentive_router._transform.options import Config
from attentive_router._transform.options import EventFilter as TransformFilter

if TYPE_CHECKING:
    from cattrs import Converter

# cattrs (and libphonenumber, for regions) load only when a file is read: every command
# resolves its options here, most of them without a configuration file.

SEGMENT_CALLS = ("identify", "track", "page", "screen", "group", "alias")
"""The call types of the Segment spec (a filter names some of them)."""
MAPPED_EVENTS = tuple(sorted(MAPPED_EVENT_NAMES))
"""The track event names the rules table maps: the targets an alias may name."""

Positive = NewType("Positive", float)
NonNegative = NewType("NonNegative", float)
Count = NewType("Count", int)
Port = NewType("Port", int)
EnvName = NewType("EnvName", str)
Name = NewType("Name", str)
Text = NewType("Text", str)
Url = NewType("Url", str)
Region = NewType("Region", str)
CallType = NewType("CallType", str)
Pattern = NewType("Pattern", str)
AliasTarget = NewType("AliasTarget", str)
WriteKey = NewType("WriteKey", str)
Secret = NewType("Secret", str)

MAX_PORT = 65535
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@frozen
class QueueSection:
    """``[queue]``: the queue file (read from the file's folder when relative), or kafka://."""

    path: Path | KafkaSettings | None = None


@frozen
class KafkaSection:
    """``[kafka]``: how to connect to every Kafka queue of the file, and its topics' sizes.

    The SASL password is never written here: ``sasl_password_env`` names the variable that
    holds it.
    """

    security_protocol: SecurityProtocol | None = None
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: Text | None = None
    sasl_password_env: EnvName | None = None
    ssl_cafile: Path | None = None
    partitions: Count | None = None
    replication_factor: Count | None = None
    session_timeout: Positive | None = None

    def options(self) -> dict[str, object]:
        """The keyword arguments of ``KafkaSettings.with_options`` (None: not in the file)."""
        return {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password_env": self.sasl_password_env,
            "ssl_cafile": None if self.ssl_cafile is None else str(self.ssl_cafile),
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "session_timeout": self.session_timeout,
        }


@frozen
class ServeSection:
    """``[serve]``: the options of ``attentive-router serve`` (hours and seconds as there)."""

    host: Text | None = None
    port: Port | None = None
    cors_origins: tuple[Text, ...] | None = None
    public_url: Url | None = None
    trust_proxy: bool | None = None
    analytics_js: Path | None = None
    webhook_secret_env: dict[str, EnvName] = field(factory=dict)
    """Source name -> the variable holding its Segment Webhooks destination's shared secret."""
    console_token_env: EnvName | None = None
    """The variable holding the operator console's token (no console when not given)."""
    dedupe_window: NonNegative | None = None
    lock_timeout: NonNegative | None = None
    grace: NonNegative | None = None
    key_retry_interval: Positive | None = None
    commit: Literal["group", "per-request"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    log_format: Literal["json", "text"] | None = None


@frozen
class Source:
    """``[sources.NAME]``: a write key clients use, and the destination of its events."""

    destination: Name
    write_key: WriteKey | None = None
    write_key_env: EnvName | None = None


@frozen
class EventFilter:
    """``[destinations.NAME.filter]``: which calls and events are sent (exact names or globs)."""

    allow_calls: tuple[CallType, ...] = ()
    deny_calls: tuple[CallType, ...] = ()
    allow_events: tuple[Pattern, ...] = ()
    deny_events: tuple[Pattern, ...] = ()


@frozen
class Consent:
    """``[destinations.NAME.consent]``: the consent category events need, and when it is absent."""

    category: Text | None = None
    missing: Literal["send", "skip"] = "send"


@frozen
class Destination:
    """``[destinations.NAME]``: an Attentive account, its limits and its mapping options."""

    token_env: EnvName | None = None
    token_file: Path | None = None
    base_url: Url | None = None
    timeout: Positive | None = None
    queue: Path | KafkaSettings | None = None
    concurrency: Count | None = None
    rate_limit: Positive | None = None
    identity_rate_limit: Positive | None = None
    max_attempts: Count | None = None
    retry_window: NonNegative | None = None
    unnamed_track: Literal["custom_event", "skip"] | None = None
    stale_events: Literal["send", "skip"] | None = None
    strict_property_keys: bool | None = None
    default_region: Region | None = None
    aliases: dict[Text, AliasTarget] = field(factory=dict)
    builtin_aliases: bool | None = None
    filter: EventFilter = EventFilter()
    consent: Consent = Consent()


@frozen
class FileConfig:
    """A whole configuration file, as written (no environment read, no defaults filled)."""

    queue: QueueSection = QueueSection()
    serve: ServeSection = ServeSection()
    sources: dict[str, Source] = field(factory=dict)
    destinations: dict[str, Destination] = field(factory=dict)
    kafka: KafkaSection = KafkaSection()


@frozen
class LoadedConfig:
    """A configuration file read and checked: where it is, and what it says."""

    path: Path
    file: FileConfig

    def destination_queue(self, name: str | None) -> QueueAddress | None:
        """The queue of destination ``name`` (None: none chosen): its own, else ``[queue] path``.

        A Kafka queue comes with the ``[kafka]`` table's settings.
        """
        own = None if name is None else self.file.destinations[name].queue
        return self.with_kafka(own or self.file.queue.path)

    def with_kafka(self, queue: QueueAddress | None) -> QueueAddress | None:
        """``queue`` with the ``[kafka]`` table's settings when it is a Kafka queue."""
        if isinstance(queue, KafkaSettings):
            return queue.with_options(**self.file.kafka.options())
        return queue

    def kafka_queues(self) -> list[KafkaSettings]:
        """Every Kafka queue the file names (each once), with the ``[kafka]`` table's settings."""
        found: dict[object, KafkaSettings] = {}
        for queue in (
            self.file.queue.path,
            *(d.queue for d in self.file.destinations.values()),
        ):
            if isinstance(queue, KafkaSettings):
                found.setdefault(
                    queue_identity(queue), queue.with_options(**self.file.kafka.options())
                )
        return list(found.values())


class ConfigError(Exception):
    """A configuration file that cannot be used; ``problems`` lists every mistake found."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        """Hold the problems found in ``path``."""
        self.path = str(path)
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        """The message: one problem on the first line, else one per line below it."""
        if len(self.problems) == 1:
            return f"{self.path}: {self.problems[0]}"
        lines = [f"{self.path}: {len(self.problems)} problems:"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


# --- the values ----------------------------------------------------------------------------


def shown(value: object) -> str:
    """A value as TOML writes it, for a message ("fast", 3, true, a table, a list)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


class _BadValueError(ValueError):
    """A value of the wrong kind; the message says what was expected and what was found."""

    def __init__(self, expected: str, value: object) -> None:
        super().__init__(f"expected {expected}, got {shown(value)}")


def _number(value: object, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _BadValueError(expected, value)
    return float(value)


def _positive(value: object, _: object) -> float:
    expected = "a number > 0"
    if _number(value, expected) <= 0:
        raise _BadValueError(expected, value)
    return float(value)  # type: ignore[arg-type] # checked by _number


def _non_negative(value: object, _: object) -> float:
    expected = "a number >= 0"
    if _number(value, expected) < 0:
        raise _BadValueError(expected, value)
    return float(value)  # type: ignore[arg-type] # checked by _number


def _count(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadValueError("a whole number >= 1", value)
    return value


def _port(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PORT:
        raise _BadValueError(f"a port number from 0 to {MAX_PORT}", value)
    return value


def _string(value: object, expected: str = "a string") -> str:
    if not isinstance(value, str):
        raise _BadValueError(expected, value)
    return value


def _text(value: object, _: object) -> str:
    text = _string(value, "a non-empty string")
    if not text.strip():
        raise _BadValueError("a non-empty string", value)
    return text


def _matching(pattern: re.Pattern[str], expected: str) -> Callable[[object, object], str]:
    """A structure hook: a string that ``pattern`` matches whole, else ``expected`` is said."""

    def check(value: object, _: object) -> str:
        text = _string(value, expected)
        if not pattern.fullmatch(text):
            raise _BadValueError(expected, value)
        return text

    return check


_env_name = _matching(_ENV_NAME, "the name of an environment variable (letters, digits, _)")
_name = _matching(_NAME, "a name of letters, digits, '-', '_', '.'")
_url = _matching(re.compile(r"https?://[^\s/]+(/\S*)?"), "an http:// or https:// URL")


def _region(value: object, _: object) -> str:
    expected = 'a region code such as "US" or "GB"'
    region = _string(value, expected).upper()
    import phonenumbers  # noqa: PLC0415

    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise _BadValueError(expected, value)
    return region


def _call_type(value: object, _: object) -> str:
    expected = "a Segment call type (" + ", ".join(SEGMENT_CALLS) + ")"
    call = _string(value, expected)
    if call not in SEGMENT_CALLS:
        raise _BadValueError(expected, value)
    return call


def _pattern(value: object, _: object) -> str:
    return _text(value, _)


def _alias_target(value: object, _: object) -> str:
    expected = "an event name the rules map (" + ", ".join(MAPPED_EVENTS) + ")"
    target = _string(value, expected)
    if target not in MAPPED_EVENTS:
        raise _BadValueError(expected, value)
    return target


def _write_key(value: object, _: object) -> str:
    expected = "a write key: printable, without spaces or ':'"
    key = _string(value, expected)
    if not key or not key.isprintable() or any(c.isspace() or c == ":" for c in key):
        raise _BadValueError(expected, value)
    return key


def _bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise _BadValueError("true or false", value)
    return value


def _path(value: object, _: object) -> Path:
    return Path(_text(value, _))


def _queue(value: object, _: object) -> QueueAddress:
    """A queue file, or a ``kafka://`` address (``KafkaUrlError``, a ValueError, says why)."""
    return parse_queue(_text(value, _))


def _literal(type_: Any) -> Callable[[object, object], str]:
    choices = get_args(type_)
    expected = "one of " + ", ".join(shown(choice) for choice in choices)

    def structure(value: object, _: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _BadValueError(expected, value)
        return value

    return structure


def _origin(type_: Any) -> object:
    return get_origin(type_)


@cache
def _converter() -> Converter:
    from cattrs import Converter  # noqa: PLC0415
    from cattrs.errors import IterableValidationError, IterableValidationNote  # noqa: PLC0415
    from cattrs.gen import make_dict_structure_fn  # noqa: PLC0415

    converter = Converter(forbid_extra_keys=True)
    hooks: Mapping[Any, Callable[[object, object], object]] = {
        Positive: _positive,
        NonNegative: _non_negative,
        Count: _count,
        Port: _port,
        EnvName: _env_name,
        Name: _name,
        Text: _text,
        Url: _url,
        Region: _region,
        CallType: _call_type,
        Pattern: _pattern,
        AliasTarget: _alias_target,
        WriteKey: _write_key,
        bool: _bool,
        Path: _path,
    }
    for type_, hook in hooks.items():
        converter.register_structure_hook(type_, hook)
    converter.register_structure_hook_factory(lambda t: _origin(t) is Literal, _literal)
    converter.register_structure_hook_factory(lambda t: t == _QUEUE_FIELD, lambda _: _queue)

    def table(cl: Any) -> Callable[[object, object], object]:
        generated = make_dict_structure_fn(cl, converter, _cattrs_forbid_extra_keys=True)

        def structure(value: object, type_: object) -> object:
            if not isinstance(value, dict):
                raise _BadValueError("a table", value)
            return generated(value, type_)

        return structure

    converter.register_structure_hook_factory(attrs.has, table)

    def tuple_of(type_: Any) -> Callable[[object, object], tuple[object, ...]]:
        item = get_args(type_)[0]

        def structure(value: object, _: object) -> tuple[object, ...]:
            if not isinstance(value, list):
                raise _BadValueError("a list", value)
            items, errors = [], []
            for index, each in enumerate(value):
                try:
                    items.append(converter.structure(each, item))
                except Exception as error:  # noqa: BLE001 - every item's mistake is reported
                    error.add_note(IterableValidationNote(f"@ index {index}", index, item))
                    errors.append(error)
            if errors:
                raise IterableValidationError("a list", errors, type_)
            return tuple(items)

        return structure

    converter.register_structure_hook_factory(lambda t: _origin(t) is tuple, tuple_of)

    def dict_of(type_: Any) -> Callable[[object, object], dict[str, object]]:
        key_type, value_type = get_args(type_)

        def structure(value: object, _: object) -> dict[str, object]:
            if not isinstance(value, dict):
                raise _BadValueError("a table", value)
            items, errors = {}, []
            for key, each in value.items():
                try:
                    # Sources, destinations and the sources of webhook secrets have names.
                    converter.structure(key, Name if value_type in _NAMED else key_type)
                    items[key] = converter.structure(each, value_type)
                except Exception as error:  # noqa: BLE001 - every entry's mistake is reported
                    error.add_note(IterableValidationNote(f"@ key {key!r}", key, value_type))
                    errors.append(error)
            if errors:
                raise IterableValidationError("a table", errors, type_)
            return items

        return structure

    converter.register_structure_hook_factory(lambda t: _origin(t) is dict, dict_of)
    return converter


_NAMED = (Source, Destination, EnvName)
_QUEUE_FIELD = Path | KafkaSettings | None


# --- the messages ----------------------------------------------------------------------------


def _key(path: str, key: object) -> str:
    part = str(key)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", part):
        part = shown(part)
    return f"{path}.{part}" if path else part


def _problems(error: BaseException, path: str) -> Iterator[tuple[str, str]]:
    """(key path, message) for every mistake in ``error``, a cattrs exception tree."""
    from cattrs.errors import (  # noqa: PLC0415
        ClassValidationError,
        ForbiddenExtraKeysError,
        IterableValidationError,
    )

    if isinstance(error, ClassValidationError | IterableValidationError):
        for sub in error.exceptions:
            yield from _problems(sub, _noted(sub, path))
    elif isinstance(error, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(error.cl)]
        for extra in sorted(error.extra_fields):
            close = difflib.get_close_matches(extra, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
            yield _key(path, extra), f"unknown key{hint}"
    elif isinstance(error, KeyError):
        yield path, "missing: this key is required"
    elif isinstance(error, ValueError):
        yield path, str(error)
    else:  # pragma: no cover - every hook raises one of the above
        yield path, f"cannot be read: {error}"


def _noted(error: BaseException, path: str) -> str:
    from cattrs.errors import AttributeValidationNote, IterableValidationNote  # noqa: PLC0415

    for note in getattr(error, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            return _key(path, note.name)
        if isinstance(note, IterableValidationNote):
            if isinstance(note.index, int):
                return f"{path}[{note.index}]"
            return _key(path, note.index)
    return path


def _cross_checks(config: FileConfig) -> Iterator[tuple[str, str]]:
    """Mistakes between keys: a source routed nowhere, a write key given twice, ..."""
    names = sorted(config.destinations)
    keys: dict[str, str] = {}
    for name, source in config.sources.items():
        where = _key("sources", name)
        if source.destination not in config.destinations:
            known = ", ".join(names) or "none: add a [destinations.NAME] table"
            yield f"{where}.destination", f"no destination {shown(source.destination)} ({known})"
        if (source.write_key is None) == (source.write_key_env is None):
            yield where, "give write_key or write_key_env (one of them)"
        if source.write_key is not None:
            other = keys.setdefault(source.write_key, name)
            if other != name:
                yield f"{where}.write_key", f"the same write key as sources.{other}"
    for name in config.serve.webhook_secret_env:
        if name not in config.sources:
            yield _key("serve.webhook_secret_env", name), f"no source {shown(name)} in [sources]"
    for name, destination in config.destinations.items():
        where = _key("destinations", name)
        both = set(destination.filter.allow_calls) & set(destination.filter.deny_calls)
        if both:
            yield f"{where}.filter", f"calls both allowed and denied: {', '.join(sorted(both))}"
        if destination.token_env is not None and destination.token_file is not None:
            yield where, "give token_env or token_file, not both (where the API key is)"
        if destination.consent.category is None and destination.consent != Consent():
            yield f"{where}.consent.category", "missing: the consent category to look for"
    if len(config.destinations) > 1:
        yield from _shared_queues(config)
    yield from _kafka_checks(config.kafka)


def _kafka_checks(section: KafkaSection) -> Iterator[tuple[str, str]]:
    """Mistakes in ``[kafka]`` that the file alone shows (its variable and its CA file aside)."""
    options = {**section.options(), "ssl_cafile": None}
    placeholder = KafkaSettings(bootstrap=("localhost:9092",), prefix="check")
    settings = placeholder.with_options(**options)
    # The password's variable is looked at where the queue is used, as API keys are.
    environ = {str(section.sasl_password_env): "set"} if section.sasl_password_env else {}
    for problem in settings.problems(environ):
        yield "kafka", problem


def _shared_queues(config: FileConfig) -> Iterator[tuple[str, str]]:
    """Several destinations on one queue: the delivery of one would send the other's events."""
    by_queue: dict[object, list[str]] = {}
    shown_as: dict[object, str] = {}
    for name, destination in config.destinations.items():
        queue = destination.queue or config.queue.path
        identity = queue_identity(queue)
        by_queue.setdefault(identity, []).append(name)
        if queue is not None:
            shown_as.setdefault(
                identity, queue.url if isinstance(queue, KafkaSettings) else str(queue)
            )
    for identity, sharing in by_queue.items():
        if len(sharing) > 1:
            where = ", ".join(f"destinations.{name}.queue" for name in sharing)
            what = "the default queue" if identity is None else f"the queue {shown_as[identity]}"
            yield (
                where,
                (
                    f"{' and '.join(sharing)} share {what}: give each destination its own "
                    "queue (a process delivers everything in its queue to one Attentive account)"
                ),
            )


def parse(data: object, path: Path | str = "<config>") -> FileConfig:
    """Structure TOML data into a ``FileConfig``; ``ConfigError`` lists every mistake."""
    from cattrs.errors import ClassValidationError, IterableValidationError  # noqa: PLC0415

    try:
        config = _converter().structure(data, FileConfig)
    except (ClassValidationError, IterableValidationError, ValueError) as error:
        raise ConfigError(
            path, [f"{where or '(top)'}: {what}" for where, what in _problems(error, "")]
        ) from None
    problems = [f"{where}: {what}" for where, what in _cross_checks(config)]
    if problems:
        raise ConfigError(path, problems)
    return config


def load(path: Path) -> LoadedConfig:
    """Read and check the configuration file at ``path``.

    Relative paths in it are made relative to its folder.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(path, [f"cannot be read: {error.strerror or error}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["cannot be read: not UTF-8 text"]) from None
    import tomllib  # noqa: PLC0415

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [f"not valid TOML: {error}"]) from None
    config = _anchored(parse(data, path), path.parent)
    cafile = config.kafka.ssl_cafile
    if cafile is not None and not cafile.is_file():
        raise ConfigError(
            path, [f"kafka.ssl_cafile: {cafile} is not a readable file (the brokers' CA bundle)"]
        )
    return LoadedConfig(path, config)


def _anchored(config: FileConfig, folder: Path) -> FileConfig:
    def anchor(path: Path | None) -> Path | None:
        return None if path is None or path.is_absolute() else folder / path

    def keep(path: Path | None, anchored: Path | None) -> Path | None:
        return anchored if anchored is not None else path

    def queue(queue: QueueAddress | None) -> QueueAddress | None:
        return queue if isinstance(queue, KafkaSettings) else keep(queue, anchor(queue))

    return attrs.evolve(
        config,
        queue=QueueSection(queue(config.queue.path)),
        kafka=attrs.evolve(
            config.kafka, ssl_cafile=keep(config.kafka.ssl_cafile, anchor(config.kafka.ssl_cafile))
        ),
        serve=attrs.evolve(
            config.serve,
            analytics_js=keep(config.serve.analytics_js, anchor(config.serve.analytics_js)),
        ),
        destinations={
            name: attrs.evolve(
                d,
                queue=queue(d.queue),
                token_file=keep(d.token_file, anchor(d.token_file)),
            )
            for name, d in config.destinations.items()
        },
    )


# --- from a destination to the transform's options -------------------------------------------


def transform_config(destination: Destination) -> Config:
    """The transform ``Config`` of a destination: the one place its mapping options become one.

    ``destination`` holds the values already resolved (flags over environment over file); a
    field left ``None`` takes ``Config``'s default.
    """
    defaults = Config()
    return Config(
        unnamed_track=destination.unnamed_track or defaults.unnamed_track,
        stale_events=destination.stale_events or defaults.stale_events,
        strict_property_keys=bool(destination.strict_property_keys),
        default_region=(destination.default_region or defaults.default_region).upper(),
        aliases={str(name): str(target) for name, target in destination.aliases.items()},
        builtin_aliases=(
            defaults.builtin_aliases
            if destination.builtin_aliases is None
            else destination.builtin_aliases
        ),
        filters=TransformFilter(
            allow_calls=tuple(destination.filter.allow_calls),
            deny_calls=tuple(destination.filter.deny_calls),
            allow_events=tuple(destination.filter.allow_events),
            deny_events=tuple(destination.filter.deny_events),
        ),
        consent_category=destination.consent.category,
        consent_missing=destination.consent.missing,
    )
