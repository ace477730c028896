"""The server's ``/metrics``: Prometheus text exposition of ingest, delivery and the queue.

Counters are kept as plain numbers where the work happens (``IngestCounts`` here, the sender's
``Stats``) and turned into metric families when scraped, together with a snapshot of the queue.
Every delivery and queue metric, and every count of events, carries a ``destination`` label:
the Attentive account (each with its own queue, sender and key) the events are for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator

from attrs import define, field, frozen
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from attentive_router._delivery.sender import Stats
from attentive_router._queue.group import CommitStats
from attentive_router._queue.interface import State
from attentive_router._queue.kafka.work import PartitionLag

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_P = "attentive_router_"


@define
class IngestCounts:
    """What the ingest endpoints saw since the server started."""

    requests: Counter[tuple[str, int]] = field(factory=Counter)
    received: Counter[tuple[str, str]] = field(factory=Counter)
    """Events by (source, destination)."""
    duplicates: Counter[tuple[str, str]] = field(factory=Counter)
    """Duplicates by (source, destination)."""
    rejected: Counter[tuple[str, str]] = field(factory=Counter)
    """Events rejected at ingest by (destination, reason)."""
    browser: Counter[str] = field(factory=Counter)
    """What browsers asked besides events: settings served, 404s, refused origins, ..."""


@frozen
class QueueSnapshot:
    """The queue as read at scrape time (``None`` when it could not be read)."""

    counts: dict[State, int] | None
    oldest_queued_age: float | None


@frozen
class KafkaSnapshot:
    """A destination's Kafka queue as this process sees it at scrape time.

    Attributes:
        reachable: Whether the brokers answered the last check.
        partitions: The partitions a delivery worker holds (none for ``serve``).
        oldest_unsettled_age: Seconds since the oldest event held and not settled was
            received (a worker), else None.
        duplicates: Events a worker dropped as already seen within the window.
        worker: True for a delivery worker, False for an ingest node.
    """

    reachable: bool
    partitions: tuple[PartitionLag, ...] = ()
    oldest_unsettled_age: float | None = None
    duplicates: int = 0
    worker: bool = False


_COMMIT_OUTCOMES = ("committed", "failed")


@frozen
class DestinationCounts:
    """A destination and its sender's ``stats`` (None with ``--no-deliver``)."""

    name: str
    stats: Stats | None


@define
class Metrics:
    """Everything ``/metrics`` reports, for each of ``destinations``."""

    destinations: list[DestinationCounts] = field(factory=list)
    ingest: IngestCounts = field(factory=IngestCounts)
    commits: CommitStats = field(factory=CommitStats)
    registry: CollectorRegistry = field(factory=lambda: CollectorRegistry(auto_describe=True))
    latency: Histogram = field(init=False)
    commit_requests: Histogram = field(init=False)
    commit_events: Histogram = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.latency = Histogram(
            _P + "ingest_request_seconds",
            "Time to answer an ingest request (body read, checks, durable write).",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.commit_requests = Histogram(
            _P + "queue_commit_requests",
            "Ingest requests stored by one queue transaction (group commit shares one "
            "transaction among the requests waiting for it).",
            ["destination"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.commit_events = Histogram(
            _P + "queue_commit_events",
            "Events offered to one queue transaction (duplicates included).",
            ["destination"],
            registry=self.registry,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
        )
        self.commits.observe = self._observe_commit

    def _observe_commit(self, requests: int, events: int, ok: bool, destination: str) -> None:
        if ok:
            self.commit_requests.labels(destination).observe(requests)
            self.commit_events.labels(destination).observe(events)

    def render(
        self,
        snapshots: dict[str, QueueSnapshot],
        paused: Collection[str] = (),
        kafka: dict[str, KafkaSnapshot] | None = None,
    ) -> bytes:
        """The exposition text.

        ``snapshots`` are the queue files by destination, ``paused`` the destinations whose
        sending is paused (their key refused), ``kafka`` the Kafka queues by destination.
        """
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self, snapshots, paused, kafka or {}))
        return generate_latest(self.registry) + generate_latest(registry)


class _Families(Collector):
    def __init__(
        self,
        metrics: Metrics,
        snapshots: dict[str, QueueSnapshot],
        paused: Collection[str],
        kafka: dict[str, KafkaSnapshot],
    ) -> None:
        self.metrics = metrics
        self.snapshots = snapshots
        self.paused = paused
        self.kafka = kafka

    def collect(self) -> Iterator[Metric]:
        ingest = self.metrics.ingest
        requests = CounterMetricFamily(
            _P + "ingest_requests",
            "Requests to the ingest endpoints, by endpoint and answer status.",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in sorted(ingest.requests.items()):
            requests.add_metric([endpoint, str(status)], count)
        yield requests
        yield _by_source(
            "events_received",
            "Events in accepted ingest requests, by write key and destination.",
            ingest.received,
        )
        yield _by_source(
            "events_duplicate",
            "Received events already queued within the dedupe window (not stored again), by "
            "write key and destination.",
            ingest.duplicates,
        )
        browser = CounterMetricFamily(
            _P + "browser_requests",
            "Requests of browsers besides events (settings, analytics_js, bundles, "
            "telemetry_dropped, settings_unknown_key, not_found, origin_refused).",
            labels=["kind"],
        )
        for kind, count in sorted(ingest.browser.items()):
            browser.add_metric([kind], count)
        yield browser
        commits = CounterMetricFamily(
            _P + "queue_commits",
            "Queue transactions of ingest requests, by outcome (committed, failed: the "
            "requests it held were answered 503).",
            labels=["destination", "outcome"],
        )
        counted = dict.fromkeys(
            ((d.name, outcome) for d in self.metrics.destinations for outcome in _COMMIT_OUTCOMES),
            0,
        )
        counted.update(self.metrics.commits.by_destination)
        for (destination, outcome), count in sorted(counted.items()):
            commits.add_metric([destination, outcome], count)
        yield commits
        yield from self._outcomes()
        yield from self._queue()
        if self.kafka:
            yield from self._kafka()

    def _kafka(self) -> Iterator[Metric]:
        up = _family("kafka_up", "1 when the Kafka brokers answered the last check (every 5 s).")
        assigned = _family(
            "kafka_partitions_assigned", "Partitions of the events topic this worker holds."
        )
        lag = GaugeMetricFamily(
            _P + "kafka_partition_lag",
            "Events of a partition not yet settled by the consumer group (the broker's high "
            "watermark minus the committed offset), by destination and partition.",
            labels=["destination", "partition"],
        )
        held = GaugeMetricFamily(
            _P + "kafka_partition_held",
            "Events of a partition this worker holds unsettled (queued, waiting for a retry "
            "or in flight), by destination and partition.",
            labels=["destination", "partition"],
        )
        age = _family(
            "kafka_oldest_unsettled_age_seconds",
            "Age of the oldest event this worker holds unsettled (0 when none).",
        )
        duplicates = _family(
            "kafka_duplicates",
            "Events not delivered because their messageId was seen within the window.",
            counter=True,
        )
        for name, snapshot in sorted(self.kafka.items()):
            up.add_metric([name], float(snapshot.reachable))
            if not snapshot.worker:
                continue
            assigned.add_metric([name], len(snapshot.partitions))
            for partition in snapshot.partitions:
                if partition.lag is not None:
                    lag.add_metric([name, str(partition.partition)], partition.lag)
                held.add_metric([name, str(partition.partition)], partition.held)
            age.add_metric([name], snapshot.oldest_unsettled_age or 0.0)
            duplicates.add_metric([name], snapshot.duplicates)
        yield up
        if any(snapshot.worker for snapshot in self.kafka.values()):
            yield from (assigned, lag, held, age, duplicates)

    def _outcomes(self) -> Iterator[Metric]:
        outcomes = CounterMetricFamily(
            _P + "events",
            "Events that reached an outcome in this process, by outcome, reason and destination "
            "(rejected at ingest, or settled by delivery).",
            labels=["outcome", "reason", "destination"],
        )
        totals: Counter[tuple[str, str, str]] = Counter()
        for (destination, reason), count in self.metrics.ingest.rejected.items():
            totals[State.REJECTED.label, reason, destination] += count
        delivering = [(d.name, d.stats) for d in self.metrics.destinations if d.stats is not None]
        for name, stats in delivering:
            for label, count in stats.outcomes.items():
                with_reason = sum(n for (kind, _), n in stats.reasons.items() if kind == label)
                if count > with_reason:
                    totals[label, "", name] += count - with_reason
            for (label, reason), count in stats.reasons.items():
                totals[label, reason, name] += count
        for labels, count in sorted(totals.items()):
            outcomes.add_metric(list(labels), count)
        yield outcomes
        if not delivering:
            return
        answers = CounterMetricFamily(
            _P + "attentive_requests",
            "Requests sent to Attentive, by endpoint, answer status (or transport error) and "
            "destination.",
            labels=["endpoint", "status", "destination"],
        )
        errors = CounterMetricFamily(
            _P + "attentive_request_errors",
            "Requests to Attentive that got no answer, by endpoint, cause (connection "
            "refused, timeout, connection reset, unknown host, TLS error, connection error) "
            "and destination.",
            labels=["endpoint", "cause", "destination"],
        )
        retries = _family("retries", "Retries scheduled after a failed attempt.", counter=True)
        throttled = _family("throttled", "Answers 429 from Attentive.", counter=True)
        paused = _family(
            "delivery_paused", "1 when Attentive refused the API key and sending stopped."
        )
        for name, stats in delivering:
            for (path, status), count in sorted(stats.endpoints.items()):
                answers.add_metric([path, status, name], count)
            for (path, cause), count in sorted(stats.causes.items()):
                errors.add_metric([path, cause, name], count)
            retries.add_metric([name], stats.retries)
            throttled.add_metric([name], stats.throttled)
            paused.add_metric([name], 1.0 if name in self.paused else 0.0)
        yield from (answers, errors, retries, throttled, paused)

    def _queue(self) -> Iterator[Metric]:
        up = _family("queue_up", "1 when the queue could be read for this scrape.")
        states = GaugeMetricFamily(
            _P + "queue_events",
            "Events in the queue file, by state and destination.",
            labels=["state", "destination"],
        )
        depth = _family("queue_depth", "Events waiting to be delivered (queued or in flight).")
        dead = _family("dead_letters", "Dead-lettered events in the queue.")
        age = _family(
            "oldest_queued_age_seconds",
            "Age of the oldest event still waiting to be delivered (0 when none).",
        )
        for name, snapshot in sorted(self.snapshots.items()):
            counts = snapshot.counts
            up.add_metric([name], float(counts is not None))
            if counts is None:
                continue
            for state in State:
                states.add_metric([state.label, name], counts[state])
            depth.add_metric([name], counts[State.QUEUED] + counts[State.IN_FLIGHT])
            dead.add_metric([name], counts[State.DEAD])
            age.add_metric([name], snapshot.oldest_queued_age or 0.0)
        yield from (up, states, depth, dead, age)


def _family(
    name: str, documentation: str, *, counter: bool = False
) -> CounterMetricFamily | GaugeMetricFamily:
    """A metric family with one sample per destination."""
    kind = CounterMetricFamily if counter else GaugeMetricFamily
    return kind(_P + name, documentation + " By destination.", labels=["destination"])


def _by_source(name: str, documentation: str, counts: Counter[tuple[str, str]]) -> Metric:
    family = CounterMetricFamily(_P + name, documentation, labels=["source", "destination"])
    for (source, destination), count in sorted(counts.items()):
        family.add_metric([source, destination], count)
    return family
