"""Where a Kafka queue lives and how to reach it: ``kafka://HOST:PORT[,HOST:PORT…]/PREFIX``.

A Kafka queue is three topics under one prefix, the way a SQLite queue is one file:

- ``PREFIX.events``: every accepted event, keyed by destination and user, so that one user's
  events stay in one partition and in order;
- ``PREFIX.dead-letters``: the events delivery gave up on, with the request, the last answer,
  the attempts and the reason (the same content as a SQLite queue's dead letters); replaying
  one writes the event back to ``PREFIX.events`` and a tombstone here;
- the consumer group ``PREFIX.delivery``: the delivery workers, sharing the partitions.

The security settings (TLS, SASL) come from the configuration file's ``[kafka]`` table; the
password is named by an environment variable, never written in the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from attrs import evolve, frozen

SCHEME = "kafka://"
DEFAULT_PORT = 9092
DEFAULT_PARTITIONS = 12
"""Partitions of the events topic made by ``kafka init``: the most delivery workers that can
share one destination's events (more workers than partitions leaves some idle)."""

DEFAULT_MAX_HELD = 10_000
"""Events a delivery worker holds before it stops fetching (back-pressure)."""
DEFAULT_MAX_AHEAD = 1_000
"""Events a worker reads in a partition past its oldest unsettled event before it waits: the
most a successor repeats of that partition when the worker dies (beside what was in flight)."""
DEFAULT_SESSION_TIMEOUT = 10.0
"""Seconds: how long a worker that stopped answering keeps its partitions (Kafka's
``session.timeout.ms``); a worker that stops cleanly hands them over at once."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SECURITY_PROTOCOLS: tuple[SecurityProtocol, ...] = (
    "PLAINTEXT",
    "SSL",
    "SASL_PLAINTEXT",
    "SASL_SSL",
)
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_MECHANISMS: tuple[SaslMechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,200}")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+")


class KafkaUrlError(ValueError):
    """A ``kafka://`` address that cannot be used; the message says what is wrong."""


@frozen
class KafkaSettings:
    """A Kafka queue: its brokers, its topics' prefix, and how to connect.

    Attributes:
        bootstrap: ``HOST:PORT`` of the brokers to ask first.
        prefix: Every topic and the consumer group are named after it.
        security_protocol: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``.
        sasl_mechanism: With a SASL protocol: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
        sasl_username: The SASL user.
        sasl_password_env: The environment variable that holds the SASL password.
        ssl_cafile: The CA certificates to check the brokers' certificates with (default: the
            system's).
        partitions: Partitions of the events topic when ``kafka init`` creates it.
        replication_factor: Replicas of each partition when ``kafka init`` creates the topics
            (3 on a production cluster; 1 on a single broker).
        session_timeout: Seconds without a heartbeat after which the group gives a stopped
            worker's partitions to the others.
    """

    bootstrap: tuple[str, ...]
    prefix: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password_env: str | None = None
    ssl_cafile: str | None = None
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = 1
    session_timeout: float = DEFAULT_SESSION_TIMEOUT

    @property
    def events_topic(self) -> str:
        """The topic every accepted event is written to."""
        return f"{self.prefix}.events"

    @property
    def dead_letter_topic(self) -> str:
        """The topic of dead letters (and the tombstones of replayed ones)."""
        return f"{self.prefix}.dead-letters"

    @property
    def group(self) -> str:
        """The consumer group of the delivery workers."""
        return f"{self.prefix}.delivery"

    @property
    def url(self) -> str:
        """The queue's address, as ``--queue`` takes it (never carries a secret)."""
        return f"{SCHEME}{','.join(self.bootstrap)}/{self.prefix}"

    def with_options(self, **options: Any) -> KafkaSettings:
        """These settings with the given values instead (None: unchanged), e.g. ``[kafka]``'s."""
        return evolve(self, **{k: v for k, v in options.items() if v is not None})

    def problems(self, environ: dict[str, str] | None = None) -> list[str]:
        """What keeps these settings from connecting, in words (empty when nothing does)."""
        environ = dict(os.environ) if environ is None else environ
        found = []
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or self.sasl_username is None):
            found.append(
                f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username"
            )
        if sasl and not self.sasl_password_env:
            found.append("a SASL protocol needs sasl_password_env: the variable with the password")
        elif sasl and self.sasl_password_env and not environ.get(self.sasl_password_env):
            found.append(f"${self.sasl_password_env} (the SASL password) is not set")
        if not sasl and (self.sasl_mechanism or self.sasl_username):
            found.append(
                f"sasl settings are only used with SASL_PLAINTEXT or SASL_SSL, not "
                f"{self.security_protocol}"
            )
        if self.ssl_cafile and not Path(self.ssl_cafile).is_file():
            found.append(f"ssl_cafile {self.ssl_cafile} is not a readable file")
        if self.partitions < 1:
            found.append("partitions must be at least 1")
        if self.replication_factor < 1:
            found.append("replication_factor must be at least 1")
        if not 1.0 <= self.session_timeout <= 3600.0:
            found.append("session_timeout must be between 1 and 3600 seconds")
        return found

    def client_options(self, environ: dict[str, str] | None = None) -> dict[str, Any]:
        """The keyword arguments every aiokafka client of this queue takes."""
        environ = dict(os.environ) if environ is None else environ
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap),
            "security_protocol": self.security_protocol,
            "client_id": "attentive-router",
        }
        if self.security_protocol in {"SSL", "SASL_SSL"}:
            import ssl  # noqa: PLC0415 - only a TLS connection needs it (and it is slow to load)

            options["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = environ.get(self.sasl_password_env or "", "")
        return options


def queue_text(queue: Path | KafkaSettings) -> str:
    """A queue as ``--queue`` takes it, for messages and logs (a Kafka address has no secret)."""
    return queue.url if isinstance(queue, KafkaSettings) else str(queue)


def is_kafka(text: str) -> bool:
    """Whether ``text`` names a Kafka queue rather than a file."""
    return text.startswith(SCHEME)


def parse_url(text: str) -> KafkaSettings:
    """Read ``kafka://HOST[:PORT][,HOST[:PORT]…]/PREFIX``.

    Raises:
        KafkaUrlError: The address is not of that form; the message says which part is wrong.
    """
    if not is_kafka(text):
        raise KafkaUrlError(f"{text!r} does not start with {SCHEME}")
    rest = text[len(SCHEME) :]
    hosts, _, prefix = rest.partition("/")
    prefix = unquote(prefix.strip("/"))
    if urlsplit(text).query or urlsplit(text).fragment:
        raise KafkaUrlError(
            f"{text}: the address takes no ?query or #fragment; security settings go in the "
            "configuration file's [kafka] table"
        )
    if not prefix:
        raise KafkaUrlError(
            f"{text}: name the topics' prefix after the brokers, "
            f"e.g. kafka://{hosts or 'HOST'}/shop"
        )
    if not _PREFIX.fullmatch(prefix):
        raise KafkaUrlError(
            f"{text}: the prefix {prefix!r} may only hold letters, digits, '.', '_' and '-' "
            "(Kafka's topic name characters)"
        )
    bootstrap = []
    for part in hosts.split(","):
        host, port = _host_port(part.strip(), text)
        bootstrap.append(f"{host}:{port}")
    return KafkaSettings(bootstrap=tuple(bootstrap), prefix=prefix)


def _host_port(part: str, text: str) -> tuple[str, int]:
    if "@" in part:
        raise KafkaUrlError(
            f"{text}: no user or password in the address; name the password's variable with "
            "sasl_password_env in the [kafka] table"
        )
    if not part:
        raise KafkaUrlError(f"{text}: a broker address is empty (kafka://HOST:PORT/PREFIX)")
    host, port_text = part, ""
    if part.startswith("["):
        host, _, after = part.partition("]")
        host += "]"
        port_text = after.removeprefix(":")
    elif ":" in part:
        host, _, port_text = part.rpartition(":")
    if not _HOST.fullmatch(host):
        raise KafkaUrlError(f"{text}: {host!r} is not a host name or address")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise KafkaUrlError(f"{text}: {port_text!r} is not a port (1-65535)")
    return host, int(port_text)
