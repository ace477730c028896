"""The console of a ``serve`` on a Kafka queue, against a real broker (Tansu on 127.0.0.1).

On Kafka ``serve`` only ingests: the console lists the newest records of the events topic, the
delivery group's lag per partition, and the dead-letter topic, whose letters it replays.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.kafka_broker import running_broker

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._console.security import Guard
from attentive_router._queue.interface import Claim, Settlement, State
from attentive_router._queue.kafka.dead_letters import KafkaDeadLetters
from attentive_router._queue.kafka.settings import KafkaSettings, parse_url
from attentive_router._queue.kafka.topics import ensure_topics
from attentive_router._queue.kafka.work import KafkaWork
from attentive_router._sandbox.broker import Broker

TOKEN = "console-token-kafka-0000001"
WRITE_KEY = "wk_kafka_console"


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as started:
        yield started


@pytest.fixture(scope="module")
def queue(broker: Broker) -> KafkaSettings:
    settings = parse_url(broker.url(f"console{time.time_ns()}"))
    settings = settings.with_options(partitions=2, session_timeout=3.0)
    asyncio.run(ensure_topics(settings))
    return settings


@pytest.fixture(scope="module")
def server(queue: KafkaSettings) -> Iterator[ServeProcess]:
    args = ["--console-token", TOKEN]
    with ServeProcess(queue=queue.url, write_keys=(f"web={WRITE_KEY}",), args=args) as process:
        yield process


def _wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _dead_letters(queue: KafkaSettings) -> list[str]:
    letters = KafkaDeadLetters(queue)
    try:
        return [record.key for record in letters.records(State.DEAD)]
    finally:
        letters.close()


def _event(message_id: str, user: str) -> dict[str, object]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": message_id,
        "userId": user,
        "properties": {"product_id": "sku-1", "price": 5.0},
    }


def test_the_console_lists_the_events_topic_and_the_groups_lag(server: ServeProcess) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sent = [_event("kc-1", "ada"), _event("kc-2", "bob"), {"type": "track"}]
        answer = client.post("/v1/batch", json={"batch": sent}, auth=(WRITE_KEY, ""))
        assert answer.status_code == 200

        rows = client.get("/console/api/events", headers=bearer).json()["rows"]
        by_key = {row["key"]: row for row in rows}
        assert {"kc-1", "kc-2"} <= set(by_key)
        assert by_key["kc-1"]["outcome"] == "in_kafka"
        assert (by_key["kc-1"]["user"], by_key["kc-1"]["source"]) == ("ada", "web")
        rejected = [row for row in rows if row["outcome"] == "rejected"]
        assert len(rejected) == 1
        assert rejected[0]["reason"]
        only_bob = client.get("/console/api/events?q=bob", headers=bearer).json()["rows"]
        assert [row["key"] for row in only_bob] == ["kc-2"]
        page = client.get(by_key["kc-1"]["href"], headers=bearer)
        assert page.status_code == 200
        assert "In Kafka" in page.text
        assert "/v1/events/ecommerce/product-view" in page.text

        overview = client.get("/console/overview", headers=bearer)
        assert overview.status_code == 200
        lag = re.findall(
            r"<tr><td>(\d+)</td><td>([^<]*)</td><td>(\d+)</td><td>(\d+)</td></tr>", overview.text
        )
        assert [int(partition) for partition, *_ in lag] == [0, 1]
        assert sum(int(end) for _, _, end, _ in lag) == 3  # three records, none delivered yet
        assert sum(int(behind) for *_, behind in lag) == 3


def test_a_dead_letter_on_its_topic_is_replayed_from_the_console(
    server: ServeProcess, queue: KafkaSettings
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post(
            "/v1/batch", json={"batch": [_event("kd-1", "cy")]}, auth=(WRITE_KEY, "")
        )
        assert answer.status_code == 200
        # A worker gives up on kd-1: its dead letter is on the dead-letter topic.
        work = KafkaWork(queue)
        work.start()
        try:
            claims: dict[str, Claim] = {}

            def claimed() -> bool:  # the worker reads its partitions one by one
                claims.update((claim.key, claim) for claim in work.claim(2e9, 10))
                return "kd-1" in claims

            _wait_for(claimed)
            dead = Settlement(
                claims["kd-1"].id,
                State.DEAD,
                attempts=3,
                status=400,
                reason="permanent_error",
                message="Attentive answered 400; retrying cannot help",
            )
            work.settle([dead])
            work.release([c.id for key, c in claims.items() if key != "kd-1"])
        finally:
            work.close()

        letters = client.get("/console/dead-letters", headers=bearer)
        assert "permanent_error" in letters.text
        assert 'aria-label="pick kd-1"' in letters.text
        picks = re.findall(r'name="pick" value="([^"]+)"', letters.text)
        assert len(picks) == 1

        # Replaying needs the session and the form token, from this site.
        signed = client.post("/console/sign-in", data={"token": TOKEN})
        assert signed.status_code == 303
        form = {"form_token": Guard(TOKEN).form_token, "pick": picks[0]}
        refused = client.post(
            "/console/dead-letters/replay", data=form, headers={"Origin": "https://evil.example"}
        )
        assert refused.status_code == 403
        assert len(_dead_letters(queue)) == 1
        replayed = client.post("/console/dead-letters/replay", data=form)
        assert replayed.status_code == 303
        assert "replayed=1" in replayed.headers["location"]
    assert _dead_letters(queue) == []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        rows = client.get("/console/api/events?q=kd-1", headers=bearer).json()["rows"]
        assert len(rows) == 2  # the original record and its replay, back in the events topic
