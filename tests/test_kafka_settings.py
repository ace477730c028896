"""``kafka://`` addresses and the Kafka connection settings: reading, checking, client options."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from attentive_router._cli.queue_address import parse_queue, queue_identity, queue_text
from attentive_router._queue.kafka.settings import KafkaSettings, KafkaUrlError, parse_url


@pytest.mark.parametrize(
    ("text", "bootstrap", "prefix"),
    [
        ("kafka://127.0.0.1:9092/shop", ("127.0.0.1:9092",), "shop"),
        ("kafka://broker/shop", ("broker:9092",), "shop"),
        ("kafka://b1:9093,b2/shop.eu-1_a", ("b1:9093", "b2:9092"), "shop.eu-1_a"),
        ("kafka://[::1]:19092/shop/", ("[::1]:19092",), "shop"),
        ("kafka://[::1]/shop", ("[::1]:9092",), "shop"),
    ],
)
def test_parse_url_reads_brokers_and_prefix(
    text: str, bootstrap: tuple[str, ...], prefix: str
) -> None:
    settings = parse_url(text)
    assert settings.bootstrap == bootstrap
    assert settings.prefix == prefix
    assert settings.events_topic == f"{prefix}.events"
    assert settings.dead_letter_topic == f"{prefix}.dead-letters"
    assert settings.group == f"{prefix}.delivery"
    assert parse_url(settings.url) == settings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://h/shop", "does not start with kafka://"),
        ("kafka://h", "name the topics' prefix"),
        ("kafka://h:1/a b", "may only hold letters"),
        ("kafka://h:x/p", "'x' is not a port"),
        ("kafka://h:0/p", "'0' is not a port"),
        ("kafka://u:p@h/p", "no user or password"),
        ("kafka://h/p#x", "no ?query or #fragment"),
        ("kafka://h_1/p", "'h_1' is not a host name"),
        ("kafka://h,,g/p", "a broker address is empty"),
    ],
)
def test_parse_url_says_which_part_is_wrong(text: str, message: str) -> None:
    with pytest.raises(KafkaUrlError) as raised:
        parse_url(text)
    assert message in str(raised.value)


def test_a_queue_text_is_read_before_it_becomes_a_path() -> None:
    assert parse_queue("kafka://h:1/p") == parse_url("kafka://h:1/p")
    assert parse_queue("queue.db") == Path("queue.db")
    assert queue_text(parse_queue("kafka://h:1/p")) == "kafka://h:1/p"
    assert queue_text(Path("/var/q.db")) == "/var/q.db"
    assert queue_identity(parse_url("kafka://a,b/p")) == queue_identity(parse_url("kafka://b,a/p"))
    assert queue_identity(parse_url("kafka://a/p")) != queue_identity(parse_url("kafka://a/q"))


def test_with_options_keeps_what_is_not_given() -> None:
    settings = parse_url("kafka://h/p").with_options(
        security_protocol="SASL_SSL", sasl_username="u", partitions=None
    )
    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_username == "u"
    assert settings.partitions == 12
    assert settings.url == "kafka://h:9092/p"  # the address never carries the settings


def _sasl(**more: object) -> KafkaSettings:
    return parse_url("kafka://h/p").with_options(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="router",
        sasl_password_env="KAFKA_PW",
        **more,
    )


def test_problems() -> None:
    assert parse_url("kafka://h/p").problems({}) == []
    assert _sasl().problems({"KAFKA_PW": "pw"}) == []
    assert _sasl().problems({}) == ["$KAFKA_PW (the SASL password) is not set"]
    missing = parse_url("kafka://h/p").with_options(security_protocol="SASL_PLAINTEXT")
    assert missing.problems({}) == [
        "security_protocol SASL_PLAINTEXT needs sasl_mechanism and sasl_username",
        "a SASL protocol needs sasl_password_env: the variable with the password",
    ]
    stray = parse_url("kafka://h/p").with_options(sasl_username="u")
    assert stray.problems({}) == [
        "sasl settings are only used with SASL_PLAINTEXT or SASL_SSL, not PLAINTEXT"
    ]
    no_file = parse_url("kafka://h/p").with_options(ssl_cafile="/nonexistent/ca.pem")
    assert no_file.problems({}) == ["ssl_cafile /nonexistent/ca.pem is not a readable file"]
    sizes = parse_url("kafka://h/p").with_options(partitions=0, replication_factor=0)
    assert sizes.problems({}) == [
        "partitions must be at least 1",
        "replication_factor must be at least 1",
    ]


def test_client_options() -> None:
    plain = parse_url("kafka://a:1,b:2/p").client_options({})
    assert plain == {
        "bootstrap_servers": ["a:1", "b:2"],
        "security_protocol": "PLAINTEXT",
        "client_id": "attentive-router",
    }
    secure = _sasl().client_options({"KAFKA_PW": "pw"})
    assert secure["security_protocol"] == "SASL_SSL"
    assert isinstance(secure["ssl_context"], ssl.SSLContext)
    assert secure["sasl_mechanism"] == "SCRAM-SHA-256"
    assert secure["sasl_plain_username"] == "router"
    assert secure["sasl_plain_password"] == "pw"
    tls = parse_url("kafka://a/p").with_options(security_protocol="SSL").client_options({})
    assert isinstance(tls["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in tls
