"""Kafka queues on the command line, through the real ``attentive-router`` command.

``--queue kafka://...`` (and ``$ATTENTIVE_ROUTER_QUEUE``, the file's queues) is read before it
becomes a path: a bad address exits 2 saying which part is wrong. The file's ``[kafka]`` table
is checked like its other tables and shown by ``config check`` (the password only masked).
``kafka init`` creates and checks the topics on a real broker (Tansu); ``dead-letters`` lists,
shows and replays the dead-letter topic; the commands that cannot work on a Kafka queue exit 2
saying what to use instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.command import ROUTER_VARIABLES, run_command
from tests.kafka_broker import Broker, free_port, running_broker

from attentive_router._queue.interface import Record, State
from attentive_router._queue.kafka.codec import dead_letter_value, read_event, record_key

CLEAN = (*ROUTER_VARIABLES, "KAFKA_PASSWORD")
PASSWORD = "kafka-secret-password"


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return run_command(*args, env=env, cwd=cwd, drop=CLEAN, timeout=60)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as started:
        yield started


# --- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("kafka://127.0.0.1:9092/", "name the topics' prefix after the brokers"),
        ("kafka://127.0.0.1:99999/shop", "'99999' is not a port (1-65535)"),
        ("kafka://user:pw@127.0.0.1/shop", "no user or password in the address"),
        ("kafka://127.0.0.1/shop?security=SSL", "the address takes no ?query"),
        ("kafka://127.0.0.1/shop events", "may only hold letters, digits"),
        ("kafka://,h2/shop", "a broker address is empty"),
    ],
)
def test_a_bad_address_is_a_usage_error_naming_the_wrong_part(address: str, message: str) -> None:
    result = cli("dead-letters", "list", "--queue", address)
    assert result.returncode == 2
    assert f"argument --queue: {address}" in result.stderr
    assert message in result.stderr


def test_a_bad_address_in_the_environment_is_a_usage_error() -> None:
    result = cli("events", "list", env={"ATTENTIVE_ROUTER_QUEUE": "kafka://h:0/shop"})
    assert result.returncode == 2
    assert "'0' is not a port (1-65535)" in result.stderr


def test_a_bad_address_in_the_file_is_reported_with_its_key(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        '[queue]\npath = "kafka://h:1/"\n[destinations.shop]\nqueue = "kafka://a@h/shop"\n',
    )
    result = cli("config", "check", str(config))
    assert result.returncode == 2
    assert "  queue.path: kafka://h:1/: name the topics' prefix" in result.stderr
    assert "  destinations.shop.queue: kafka://a@h/shop: no user or password" in result.stderr


def test_a_file_path_is_still_a_file(tmp_path: Path) -> None:
    """A queue file is read as before: nothing to list, no Kafka involved."""
    result = cli("dead-letters", "list", "--queue", str(tmp_path / "none.db"))
    assert result.returncode == 2
    assert f"no queue at {tmp_path / 'none.db'}" in result.stderr


# --- the [kafka] table -----------------------------------------------------------------------

KAFKA_FILE = """\
[kafka]
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "router"
sasl_password_env = "KAFKA_PASSWORD"
ssl_cafile = "ca.pem"
partitions = 24
replication_factor = 3

[destinations.shop]
token_env = "SHOP_KEY"
queue = "kafka://b2:9093,b1:9092/shop"
"""


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """``config check``'s lines: key -> (value, origin)."""
    found = {}
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        setting, _, origin = line.partition("  # ")
        key, _, value = setting.partition(" = ")
        found[key.strip()] = (value.strip(), origin.strip())
    return found


def test_config_check_shows_the_kafka_settings_and_never_the_password(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not read by config check\n")
    config = write(tmp_path / "c.toml", KAFKA_FILE)
    result = cli(
        "config",
        "check",
        str(config),
        env={"KAFKA_PASSWORD": PASSWORD, "SHOP_KEY": "shop-key"},
    )
    assert result.returncode == 0, result.stderr
    shown = rows(result.stdout)
    assert shown["destinations.shop.queue"] == ('"kafka://b2:9093,b1:9092/shop"', "file")
    assert shown["kafka.security_protocol"] == ('"SASL_SSL"', "file")
    assert shown["kafka.sasl_mechanism"] == ('"SCRAM-SHA-512"', "file")
    assert shown["kafka.sasl_username"] == ('"router"', "file")
    assert shown["kafka.sasl_password_env"] == ('"********"', "env $KAFKA_PASSWORD")
    assert shown["kafka.ssl_cafile"] == (f'"{tmp_path / "ca.pem"}"', "file")
    assert shown["kafka.partitions"] == ("24", "file")
    assert shown["kafka.replication_factor"] == ("3", "file")
    assert PASSWORD not in result.stdout + result.stderr


def test_config_check_shows_the_defaults_of_a_kafka_queue(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[queue]\npath = "kafka://127.0.0.1/shop"\n')
    result = cli("config", "check", str(config), "--write-key", "wk")
    assert result.returncode == 0, result.stderr
    shown = rows(result.stdout)
    assert shown["destination.queue"] == ('"kafka://127.0.0.1:9092/shop"', "file")
    assert shown["kafka.security_protocol"] == ('"PLAINTEXT"', "default")
    assert shown["kafka.partitions"] == ("12", "default")
    assert shown["kafka.replication_factor"] == ("1", "default")


def test_a_file_without_kafka_shows_no_kafka_settings(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", '[queue]\npath = "q.db"\n')
    result = cli("config", "check", str(config), "--write-key", "wk")
    assert result.returncode == 0, result.stderr
    assert "kafka." not in result.stdout


def test_an_unset_password_variable_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("")
    config = write(tmp_path / "c.toml", KAFKA_FILE)
    result = cli("config", "check", str(config), env={"SHOP_KEY": "shop-key"})
    assert result.returncode == 2
    assert rows(result.stdout)["kafka.sasl_password_env"] == ('"(not set)"', "env $KAFKA_PASSWORD")
    assert "kafka: $KAFKA_PASSWORD (the SASL password) is not set" in result.stderr
    # The commands that use the queue refuse to start the same way.
    listing = cli("dead-letters", "list", "--config", str(config), env={"SHOP_KEY": "k"})
    assert listing.returncode == 2
    assert "$KAFKA_PASSWORD (the SASL password) is not set" in listing.stderr


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('security_protocol = "TLS"', 'kafka.security_protocol: expected one of "PLAINTEXT"'),
        (
            'security_protocol = "SASL_SSL"\nsasl_mechanism = "GSSAPI"',
            'kafka.sasl_mechanism: expected one of "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"',
        ),
        ("partitions = 0", "kafka.partitions: expected a whole number >= 1, got 0"),
        ('replication_factor = "3"', "kafka.replication_factor: expected a whole number >= 1"),
        (
            'sasl_password = "x"',
            "kafka.sasl_password: unknown key (did you mean sasl_password_env?)",
        ),
        ('sasl_password_env = "not a name"', "kafka.sasl_password_env: expected the name of"),
        ("ssl_cafile = 1", "kafka.ssl_cafile: expected a non-empty string, got 1"),
        (
            'security_protocol = "SASL_PLAINTEXT"\nsasl_password_env = "P"',
            "kafka: security_protocol SASL_PLAINTEXT needs sasl_mechanism and sasl_username",
        ),
        (
            'security_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\nsasl_username = "u"',
            "kafka: a SASL protocol needs sasl_password_env",
        ),
        (
            'sasl_mechanism = "PLAIN"\nsasl_username = "u"',
            "kafka: sasl settings are only used with SASL_PLAINTEXT or SASL_SSL, not PLAINTEXT",
        ),
        ('ssl_cafile = "missing.pem"', "kafka.ssl_cafile: "),
    ],
)
def test_each_kind_of_mistake_in_the_kafka_table(tmp_path: Path, table: str, message: str) -> None:
    config = write(
        tmp_path / "c.toml", f'[queue]\npath = "kafka://127.0.0.1/shop"\n[kafka]\n{table}\n'
    )
    result = cli("config", "check", str(config), "--write-key", "wk")
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


def test_two_destinations_may_not_share_a_kafka_queue(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        '[destinations.a]\nqueue = "kafka://h1:9092,h2:9092/shop"\n'
        '[destinations.b]\nqueue = "kafka://h2,h1/shop"\n'
        '[destinations.c]\nqueue = "kafka://h1,h2/other"\n',
    )
    result = cli("config", "check", str(config))
    assert result.returncode == 2
    assert "a and b share the queue kafka://h1:9092,h2:9092/shop" in result.stderr
    assert " c " not in result.stderr


# --- kafka init ------------------------------------------------------------------------------


async def _describe(broker: Broker, topics: list[str]) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        found = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {item["topic"]: len(item["partitions"]) for item in found if not item["error_code"]}


async def _topics(broker: Broker) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_kafka_init_creates_the_topics_then_finds_them(broker: Broker) -> None:
    url = broker.url("init1")
    created = cli("kafka", "init", "--queue", url, "--partitions", "3")
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == [
        "created init1.events (3 partitions, replication 1)",
        "created init1.dead-letters (1 partition, replication 1)",
    ]
    described = asyncio.run(_describe(broker, ["init1.events", "init1.dead-letters"]))
    assert described == {"init1.events": 3, "init1.dead-letters": 1}
    again = cli("kafka", "init", "--queue", url, "--partitions", "3")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "exists init1.events (3 partitions)",
        "exists init1.dead-letters (1 partition)",
    ]
    checked = cli("kafka", "init", "--queue", url, "--check", "--partitions", "6")
    assert checked.returncode == 1
    assert "exists init1.events (3 partitions); 3 partitions: at most 3" in checked.stdout


def test_kafka_init_check_on_a_missing_prefix_creates_nothing(broker: Broker) -> None:
    result = cli("kafka", "init", "--queue", broker.url("never"), "--check")
    assert result.returncode == 1
    assert "missing never.events: run `attentive-router kafka init`" in result.stdout
    assert "missing never.dead-letters" in result.stdout
    assert not {"never.events", "never.dead-letters"} & asyncio.run(_topics(broker))


def test_kafka_init_takes_every_kafka_queue_of_the_file(broker: Broker, tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        f'[kafka]\npartitions = 2\n[destinations.a]\nqueue = "{broker.url("file-a")}"\n'
        f'[destinations.b]\nqueue = "{broker.url("file-b")}"\n'
        '[destinations.c]\nqueue = "c.db"\n',
    )
    result = cli("kafka", "init", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "created file-a.events (2 partitions, replication 1)" in result.stdout
    assert "created file-b.events (2 partitions, replication 1)" in result.stdout
    described = asyncio.run(_describe(broker, ["file-a.events", "file-b.events"]))
    assert described == {"file-a.events": 2, "file-b.events": 2}
    one = cli("kafka", "init", "--config", str(config), "--destination", "a", "--check")
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == [
        "exists file-a.events (2 partitions)",
        "exists file-a.dead-letters (1 partition)",
    ]
    not_kafka = cli("kafka", "init", "--config", str(config), "--destination", "c")
    assert not_kafka.returncode == 2
    assert "destinations.c" in not_kafka.stderr
    assert "has no Kafka queue" in not_kafka.stderr


def test_kafka_init_without_a_kafka_queue_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("kafka", "init")
    assert result.returncode == 2
    assert "name the Kafka queue: --queue kafka://HOST:PORT/PREFIX" in result.stderr
    path = cli("kafka", "init", "--queue", str(tmp_path / "q.db"))
    assert path.returncode == 2
    assert "not a kafka:// address" in path.stderr
    zero = cli("kafka", "init", "--queue", "kafka://h/p", "--partitions", "0")
    assert zero.returncode == 2
    assert "argument --partitions" in zero.stderr


def test_kafka_init_on_an_unreachable_broker_exits_1_saying_where() -> None:
    port = free_port()
    result = cli("kafka", "init", "--queue", f"kafka://127.0.0.1:{port}/shop")  # timeout=60
    assert result.returncode == 1
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in result.stderr
    assert "check the address" in result.stderr
    assert "security settings" in result.stderr
    assert result.stdout == ""


def test_kafka_init_help_has_examples() -> None:
    result = cli("kafka", "init", "--help")
    assert result.returncode == 0
    assert "attentive-router kafka init --queue kafka://" in result.stdout
    assert "exit status:" in result.stdout


# --- dead letters ----------------------------------------------------------------------------


def _dead_letter() -> Record:
    return Record(
        id=0,
        key="evt-dead-1",
        source="web",
        user="user-7",
        state=State.DEAD,
        event=b'{"type":"track","event":"Order Completed","messageId":"evt-dead-1"}',
        received_at=1_767_000_000.0,
        attempts=3,
        throttles=0,
        done=0,
        first_attempt_at=1_767_000_001.0,
        last_attempt_at=1_767_000_100.0,
        next_attempt_at=None,
        status=400,
        response='{"error":"bad"}',
        reason="http_400",
        message="Attentive answered 400",
        endpoint="/v1/events/custom",
        request=b'{"type":"Order Completed"}',
        destination="shop",
    )


async def _produce(broker: Broker, topic: str, key: bytes, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415

    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, enable_idempotence=False, acks="all"
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def _events(broker: Broker, topic: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415

    from attentive_router._queue.kafka.reading import read_range  # noqa: PLC0415

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"no metadata for {topic}"
        for number in sorted(partitions):
            part = TopicPartition(topic, number)
            found += [record async for record in read_range(consumer, part, None, None, 3.0)]
    finally:
        await consumer.stop()
    return found


def test_dead_letters_list_show_replay_on_kafka(broker: Broker) -> None:
    url = broker.url("dead")
    assert cli("kafka", "init", "--queue", url, "--partitions", "2").returncode == 0
    letter = _dead_letter()
    asyncio.run(_produce(broker, "dead.dead-letters", b"0:5", dead_letter_value(letter)))

    listing = cli("dead-letters", "list", "--queue", url)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "LAST", "ATTEMPT"]
    assert "DESTINATION" in lines[0]
    assert lines[1].split() == [
        "1",
        "2025-12-29T09:21:40Z",
        "400",
        "3",
        "http_400",
        "shop",
        "/v1/events/custom",
        "evt-dead-1",
    ]
    as_json = cli("dead-letters", "list", "--queue", url, "--json")
    assert [orjson.loads(line)["messageId"] for line in as_json.stdout.splitlines()] == [
        "evt-dead-1"
    ]

    shown = cli("dead-letters", "show", "evt-dead-1", "--queue", url)
    assert shown.returncode == 0, shown.stderr
    record = orjson.loads(shown.stdout)
    assert record["id"] == 1
    assert record["state"] == "dead_lettered"
    assert record["lastStatus"] == 400
    assert record["event"]["messageId"] == "evt-dead-1"
    missing = cli("dead-letters", "show", "nope", "--queue", url)
    assert missing.returncode == 1
    assert f"no event 'nope' in {url}" in missing.stderr

    replayed = cli("dead-letters", "replay", "1", "--queue", url)
    assert replayed.returncode == 0, replayed.stderr
    assert "1: queued again" in replayed.stdout
    assert (
        "1 dead letter(s) queued again (written back to dead.events): the delivery workers "
        "(deliver --follow) send them" in replayed.stdout
    )
    assert "run `attentive-router deliver`" not in replayed.stdout

    events = asyncio.run(_events(broker, "dead.events"))
    assert len(events) == 1
    event = read_event(events[0].value, events[0].headers, events[0].timestamp)
    assert events[0].key == record_key("shop", "user-7")
    assert event.replayed
    assert event.key == "evt-dead-1"
    assert event.event == letter.event

    after = cli("dead-letters", "list", "--queue", url)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "no dead letters"
    again = cli("dead-letters", "replay", "--all", "--queue", url)
    assert again.returncode == 0
    assert f"0 dead letter(s) queued again: there are none in {url}" in again.stdout
    twice = cli("dead-letters", "replay", "1", "--queue", url)
    assert twice.returncode == 1
    assert "no dead letter 1 in dead.dead-letters (replayed already" in twice.stderr


def test_dead_letters_on_an_unreachable_broker_exit_2_saying_where() -> None:
    port = free_port()
    result = cli("dead-letters", "list", "--queue", f"kafka://127.0.0.1:{port}/shop")
    assert result.returncode == 2
    assert f"Kafka at 127.0.0.1:{port}" in result.stderr


# --- what does not work on Kafka -------------------------------------------------------------


def test_send_deliver_and_events_list_refuse_a_kafka_queue(tmp_path: Path) -> None:
    url = "kafka://127.0.0.1:9/shop"  # never reached: each refuses before connecting
    (tmp_path / "e.ndjson").write_text("")
    send = cli("send", "--queue", url, "--token", "t", str(tmp_path / "e.ndjson"))
    assert send.returncode == 2
    assert f"send does not work on a Kafka queue ({url})" in send.stderr
    assert "`attentive-router serve` takes the events in" in send.stderr
    deliver = cli("deliver", "--queue", url, "--token", "t")
    assert deliver.returncode == 2
    assert "deliver without --follow does not work on a Kafka queue" in deliver.stderr
    assert "a Kafka queue has no end" in deliver.stderr
    assert "deliver --follow` workers" in deliver.stderr
    events = cli("events", "list", "--queue", url)
    assert events.returncode == 2
    assert "events list does not work on a Kafka queue" in events.stderr
    assert "dead-letters list" in events.stderr
    assert "/metrics" in events.stderr


def test_deliver_follow_on_kafka_needs_its_key_and_says_when_no_broker_answers(
    tmp_path: Path,
) -> None:
    config = write(
        tmp_path / "c.toml",
        '[destinations.shop]\ntoken_env = "SHOP_KEY"\nqueue = "kafka://127.0.0.1:9/shop"\n',
    )
    no_key = cli("deliver", "--follow", "--config", str(config))
    assert no_key.returncode == 2
    assert "$SHOP_KEY is not set" in no_key.stderr
    result = cli("deliver", "--follow", "--config", str(config), env={"SHOP_KEY": "k"})
    assert result.returncode == 2
    assert "Kafka at 127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    refused = cli("deliver", "--config", str(config), env={"SHOP_KEY": "k"})
    assert refused.returncode == 2
    assert "deliver without --follow does not work on a Kafka queue" in refused.stderr


def test_the_workers_options_are_refused_with_a_queue_file(tmp_path: Path) -> None:
    queue = tmp_path / "q.db"
    for option in (["--listen", "127.0.0.1:0"], ["--dedupe-window", "1"], ["--max-held", "5"]):
        result = cli("deliver", "--follow", "--queue", str(queue), "--token", "t", *option)
        assert result.returncode == 2
        assert f"{option[0]} only apply to delivery workers of a Kafka queue" in result.stderr
        without = cli("deliver", "--queue", str(queue), "--token", "t", *option)
        assert without.returncode == 2
        assert "only apply with --follow" in without.stderr
