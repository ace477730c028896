"""Creating and checking a Kafka queue's topics (``attentive-router kafka init``)."""

from __future__ import annotations

from attrs import frozen

from attentive_router._queue.interface import QueueError
from attentive_router._queue.kafka.settings import KafkaSettings

TOPIC_EXISTS = 36
"""Kafka's error code TOPIC_ALREADY_EXISTS."""


@frozen
class TopicState:
    """One topic as ``ensure_topics`` left it.

    Attributes:
        name: The topic.
        created: True when this call created it, False when it was there already.
        partitions: Its number of partitions.
        problem: What is wrong with a topic that was there (e.g. too few partitions), or None.
    """

    name: str
    created: bool
    partitions: int
    problem: str | None = None


async def ensure_topics(
    settings: KafkaSettings, *, create: bool = True, wait: float = 15.0
) -> list[TopicState]:
    """Create the queue's topics that are missing (unless ``create`` is False), check the rest.

    The events topic gets ``settings.partitions`` partitions; the dead-letter topic gets one
    (dead letters are few, and one partition gives them one order) and is compacted, so that a
    replayed dead letter's tombstone removes it. Both get ``settings.replication_factor``.

    Raises:
        QueueError: The brokers could not be reached, or refused to create a topic.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: PLC0415 - Kafka only
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    wanted = {
        settings.events_topic: (settings.partitions, {}),
        settings.dead_letter_topic: (1, {"cleanup.policy": "compact"}),
    }
    admin = AIOKafkaAdminClient(**settings.client_options(), request_timeout_ms=int(wait * 1000))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        states: list[TopicState] = []
        missing = [name for name in wanted if name not in existing]
        if missing and create:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        wanted[name][0],
                        settings.replication_factor,
                        topic_configs=wanted[name][1],
                    )
                    for name in missing
                ]
            )
            for error in response.topic_errors:
                name, code, message = error[0], error[1], error[2] if len(error) > 2 else ""
                if code not in {0, TOPIC_EXISTS}:
                    raise QueueError(f"the broker would not create {name}: error {code} {message}")
        # Only the topics that are there: asking a broker about a missing topic may create it
        # (auto.create.topics.enable), which a check must not do.
        there = [name for name in wanted if name in existing or (create and name in missing)]
        described = await admin.describe_topics(there) if there else []
        partitions = {
            item["topic"]: len(item["partitions"]) for item in described if not item["error_code"]
        }
        for name, (count, _configs) in wanted.items():
            if name not in partitions:
                states.append(
                    TopicState(
                        name,
                        created=False,
                        partitions=0,
                        problem="missing: run `attentive-router kafka init`",
                    )
                )
                continue
            problem = None
            if name == settings.events_topic and partitions[name] < count and name not in missing:
                problem = (
                    f"{partitions[name]} partitions: at most {partitions[name]} delivery workers "
                    f"can share the work (asked for {count})"
                )
            states.append(
                TopicState(
                    name,
                    created=name in missing and create,
                    partitions=partitions[name],
                    problem=problem,
                )
            )
    except KafkaError as error:
        raise QueueError(f"Kafka at {','.join(settings.bootstrap)}: {error}") from error
    finally:
        await admin.close()
    return states
