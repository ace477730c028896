"""The server's ``/metrics``: Prometheus text exposition of ingest, delivery and the queue.

Counters are kept as plain numbers where the work happens (``IngestCounts`` here, the sender's
``Stats``) and turned into metric families when scraped, together with a snapshot of the queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from attrs import define, field, frozen
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from attentive_router._delivery.sender import Stats
from attentive_router._queue.group import CommitStats
from attentive_router._queue.interface import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_P = "attentive_router_"


@define
class IngestCounts:
    """What the ingest endpoints saw since the server started."""

    requests: Counter[tuple[str, int]] = field(factory=Counter)
    received: Counter[str] = field(factory=Counter)
    duplicates: Counter[str] = field(factory=Counter)
    rejected: Counter[str] = field(factory=Counter)
    browser: Counter[str] = field(factory=Counter)
    """What browsers asked besides events: settings served, 404s, refused origins, ..."""


@frozen
class QueueSnapshot:
    """The queue as read at scrape time (``None`` when it could not be read)."""

    counts: dict[State, int] | None
    oldest_queued_age: float | None


@define
class Metrics:
    """Everything ``/metrics`` reports; ``stats`` is the sender's (absent with ``--no-deliver``)."""

    ingest: IngestCounts = field(factory=IngestCounts)
    stats: Stats | None = None
    paused: bool = False
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
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.commit_events = Histogram(
            _P + "queue_commit_events",
            "Events offered to one queue transaction (duplicates included).",
            registry=self.registry,
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000),
        )
        self.commits.observe = self._observe_commit

    def _observe_commit(self, requests: int, events: int, ok: bool) -> None:
        if ok:
            self.commit_requests.observe(requests)
            self.commit_events.observe(events)

    def render(self, snapshot: QueueSnapshot) -> bytes:
        """The exposition text, with ``snapshot`` as the queue's state."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self, snapshot))
        return generate_latest(self.registry) + generate_latest(registry)


class _Families(Collector):
    def __init__(self, metrics: Metrics, snapshot: QueueSnapshot) -> None:
        self.metrics = metrics
        self.snapshot = snapshot

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
            "events_received", "Events in accepted ingest requests, by write key.", ingest.received
        )
        yield _by_source(
            "events_duplicate",
            "Received events already queued within the dedupe window (not stored again).",
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
            labels=["outcome"],
        )
        for outcome, count in sorted(self.metrics.commits.commits.items()):
            commits.add_metric([outcome], count)
        yield commits
        yield from self._outcomes()
        yield from self._queue()

    def _outcomes(self) -> Iterator[Metric]:
        stats = self.metrics.stats
        outcomes = CounterMetricFamily(
            _P + "events",
            "Events that reached an outcome in this process, by outcome and reason "
            "(rejected at ingest, or settled by delivery).",
            labels=["outcome", "reason"],
        )
        totals: Counter[tuple[str, str]] = Counter()
        for reason, count in self.metrics.ingest.rejected.items():
            totals[State.REJECTED.label, reason] += count
        if stats is not None:
            for label, count in stats.outcomes.items():
                with_reason = sum(n for (kind, _), n in stats.reasons.items() if kind == label)
                if count > with_reason:
                    totals[label, ""] += count - with_reason
            for key, count in stats.reasons.items():
                totals[key] += count
        for (label, reason), count in sorted(totals.items()):
            outcomes.add_metric([label, reason], count)
        yield outcomes
        if stats is None:
            return
        answers = CounterMetricFamily(
            _P + "attentive_requests",
            "Requests sent to Attentive, by endpoint and answer status (or transport error).",
            labels=["endpoint", "status"],
        )
        for (path, status), count in sorted(stats.endpoints.items()):
            answers.add_metric([path, status], count)
        yield answers
        errors = CounterMetricFamily(
            _P + "attentive_request_errors",
            "Requests to Attentive that got no answer, by endpoint and cause (connection "
            "refused, timeout, connection reset, unknown host, TLS error, connection error).",
            labels=["endpoint", "cause"],
        )
        for (path, cause), count in sorted(stats.causes.items()):
            errors.add_metric([path, cause], count)
        yield errors
        yield _counter("retries", "Retries scheduled after a failed attempt.", stats.retries)
        yield _counter("throttled", "Answers 429 from Attentive.", stats.throttled)
        yield _gauge(
            "delivery_paused",
            "1 when Attentive refused the API key and sending stopped.",
            1.0 if self.metrics.paused else 0.0,
        )

    def _queue(self) -> Iterator[Metric]:
        counts = self.snapshot.counts
        yield _gauge(
            "queue_up", "1 when the queue could be read for this scrape.", float(counts is not None)
        )
        if counts is None:
            return
        states = GaugeMetricFamily(
            _P + "queue_events", "Events in the queue file, by state.", labels=["state"]
        )
        for state in State:
            states.add_metric([state.label], counts[state])
        yield states
        yield _gauge(
            "queue_depth",
            "Events waiting to be delivered (queued or in flight).",
            counts[State.QUEUED] + counts[State.IN_FLIGHT],
        )
        yield _gauge("dead_letters", "Dead-lettered events in the queue.", counts[State.DEAD])
        yield _gauge(
            "oldest_queued_age_seconds",
            "Age of the oldest event still waiting to be delivered (0 when none).",
            self.snapshot.oldest_queued_age or 0.0,
        )


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(_P + name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(_P + name, documentation, value=value)


def _by_source(name: str, documentation: str, counts: Counter[str]) -> Metric:
    family = CounterMetricFamily(_P + name, documentation, labels=["source"])
    for source, count in sorted(counts.items()):
        family.add_metric([source], count)
    return family
