"""Reading a partition from one offset to another with a consumer outside the group.

The end of a partition is taken from the fetch answers' high watermark rather than from a
ListOffsets request: it is what the broker has acknowledged, and it is what every broker
(including Tansu, the test broker) reports consistently.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

FETCH_WAIT_MS = 200


async def read_range(
    consumer: Any, topic_partition: Any, start: int | None, stop: int | None, wait: float = 15.0
) -> AsyncIterator[Any]:
    """The records of ``topic_partition`` from ``start`` (None: the beginning) up to ``stop``.

    ``stop`` is an offset not included; None reads up to the partition's end as it was when
    the reading began. ``consumer`` is a started ``AIOKafkaConsumer`` without a group; the
    partition is assigned to it alone. Gives up quietly after ``wait`` seconds without
    progress (a broker that does not answer is reported by the caller's other requests).
    """
    consumer.assign([topic_partition])
    if start is None:
        await consumer.seek_to_beginning(topic_partition)
    else:
        consumer.seek(topic_partition, start)
    if stop is not None and start is not None and start >= stop:
        return
    end = stop
    quiet_since = time.monotonic()
    while True:
        batch = await consumer.getmany(topic_partition, timeout_ms=FETCH_WAIT_MS)
        records = batch.get(topic_partition, [])
        if end is None:
            end = consumer.highwater(topic_partition)
        for record in records:
            if end is not None and record.offset >= end:
                return
            yield record
        position = await consumer.position(topic_partition)
        if end is not None and position >= end:
            return
        if records:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > wait:
            return
