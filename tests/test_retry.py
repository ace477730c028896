"""Retry classes, backoff, give-up rule and Retry-After parsing (``_delivery.retry``).

The classes are the table in ``attentive-api-notes.md`` ("Rate limits and errors").
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from attentive_router._delivery.retry import RetryPolicy, Verdict, classify, parse_retry_after

NOW = datetime(2026, 1, 8, 13, 52, 50, tzinfo=UTC).timestamp()

RETRY_CLASSES: list[tuple[int | None, Verdict]] = [
    (200, Verdict.DELIVERED),
    (201, Verdict.DELIVERED),
    (202, Verdict.DELIVERED),  # Identity answers 202
    (204, Verdict.DELIVERED),
    (299, Verdict.DELIVERED),
    (None, Verdict.RETRY),  # transport error or timeout
    (408, Verdict.RETRY),
    (425, Verdict.RETRY),
    (429, Verdict.THROTTLED),
    (500, Verdict.RETRY),
    (502, Verdict.RETRY),
    (503, Verdict.RETRY),
    (504, Verdict.RETRY),
    (507, Verdict.RETRY),  # other 5xx
    (599, Verdict.RETRY),
    (501, Verdict.PERMANENT),
    (505, Verdict.PERMANENT),
    (400, Verdict.PERMANENT),
    (404, Verdict.PERMANENT),
    (409, Verdict.PERMANENT),
    (413, Verdict.PERMANENT),
    (422, Verdict.PERMANENT),
    (418, Verdict.PERMANENT),  # other 4xx
    (499, Verdict.PERMANENT),
    (401, Verdict.AUTH),
    (403, Verdict.AUTH),
]


@pytest.mark.parametrize(("status", "verdict"), RETRY_CLASSES, ids=str)
def test_classify_follows_the_retry_class_table(status: int | None, verdict: Verdict) -> None:
    assert classify(status) is verdict


class _Ceiling(random.Random):
    """A Random whose ``uniform`` always returns its upper bound, exposing the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        assert a == 0.0
        return b


def test_the_backoff_ceiling_doubles_from_base_then_stays_at_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=300.0)
    ceilings = [policy.backoff(n, _Ceiling()) for n in range(1, 13)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0, 300.0]
    other = RetryPolicy(base=10.0, cap=45.0)
    assert [other.backoff(n, _Ceiling()) for n in range(1, 5)] == [10.0, 20.0, 40.0, 45.0]


@pytest.mark.parametrize("attempt", [0, -3])
def test_the_backoff_before_any_failure_uses_the_base(attempt: int) -> None:
    assert RetryPolicy(base=2.0).backoff(attempt, _Ceiling()) == 2.0


@pytest.mark.parametrize("attempt", [64, 1_000, 10**9, 10**100])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    policy = RetryPolicy(base=1.0, cap=300.0)
    assert policy.backoff(attempt, _Ceiling()) == 300.0
    seeded = random.Random(attempt)  # noqa: S311 - jitter, not security
    assert 0.0 <= policy.backoff(attempt, seeded) <= 300.0


def test_backoff_is_full_jitter_below_the_ceiling() -> None:
    policy = RetryPolicy(base=1.0, cap=300.0)
    rng = random.Random(20260108)  # noqa: S311 - jitter, not security
    for attempt in range(1, 15):
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        waits = [policy.backoff(attempt, rng) for _ in range(400)]
        assert all(0.0 <= w <= ceiling for w in waits)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(waits) < 0.05 * ceiling
        assert max(waits) > 0.95 * ceiling


def test_backoff_is_reproducible_with_a_seeded_random() -> None:
    policy = RetryPolicy()
    first = [policy.backoff(n, random.Random(7)) for n in range(1, 20)]  # noqa: S311
    again = [policy.backoff(n, random.Random(7)) for n in range(1, 20)]  # noqa: S311
    assert first == again


@given(
    attempt=st.integers(min_value=-10, max_value=10**6),
    base=st.floats(min_value=0.001, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=10_000.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_never_negative_nor_above_its_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    policy = RetryPolicy(base=base, cap=cap)
    wait = policy.backoff(attempt, random.Random(seed))  # noqa: S311 - jitter
    assert 0.0 <= wait <= min(cap, base * 2.0 ** min(max(attempt - 1, 0), 60))


def test_giving_up_needs_both_the_attempts_and_the_window() -> None:
    policy = RetryPolicy(max_attempts=10, window=4 * 3600.0)
    first = NOW
    assert not policy.exhausted(9, first, first + 100 * 3600)  # window long past, attempts left
    assert not policy.exhausted(1_000, first, first + 4 * 3600 - 1)  # attempts used, window not
    assert not policy.exhausted(9, first, first + 4 * 3600 - 1)
    assert policy.exhausted(10, first, first + 4 * 3600)
    assert policy.exhausted(11, first, first + 5 * 3600)


def test_the_default_policy_gives_up_after_ten_attempts_and_four_hours() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.window) == (10, 4 * 3600.0)
    assert policy.window < 12 * 3600  # inside Attentive's journey horizon
    assert not policy.exhausted(10, NOW, NOW + 4 * 3600 - 1)
    assert policy.exhausted(10, NOW, NOW + 4 * 3600)


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [(0.0, 0.0), (30.0, 30.0), (599.5, 599.5), (600.0, 600.0), (86_400.0, 600.0), (-5.0, 0.0)],
)
def test_wait_for_caps_retry_after(retry_after: float, wait: float) -> None:
    assert RetryPolicy().wait_for(retry_after) == wait


def test_wait_for_uses_the_configured_cap() -> None:
    assert RetryPolicy(retry_after_cap=60.0).wait_for(3600.0) == 60.0
    assert RetryPolicy(retry_after_cap=60.0).wait_for(float("inf")) == 60.0


@pytest.mark.parametrize(
    ("header", "seconds"), [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0), ("007", 7.0)]
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_as_a_future_http_date() -> None:
    moment = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90)
    header = format_datetime(moment, usegmt=True)  # e.g. "Thu, 08 Jan 2026 13:54:20 GMT"
    assert parse_retry_after(header, NOW) == pytest.approx(90.0)


def test_retry_after_as_an_http_date_with_an_offset_or_none() -> None:
    moment = datetime.fromtimestamp(NOW + 60, UTC)
    with_offset = moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    without_zone = moment.strftime("%a, %d %b %Y %H:%M:%S")  # read as UTC
    assert parse_retry_after(with_offset, NOW) == pytest.approx(60.0)
    assert parse_retry_after(without_zone, NOW) == pytest.approx(60.0)


@pytest.mark.parametrize(
    "header", ["Wed, 21 Oct 2015 07:28:00 GMT", format_datetime(datetime.fromtimestamp(NOW, UTC))]
)
def test_retry_after_as_a_past_or_present_http_date_is_zero(header: str) -> None:
    assert parse_retry_after(header, NOW) == 0.0


@pytest.mark.parametrize(
    "header",
    ["", "   ", "soon", "1.5", "-5", "+5", "5 seconds", "Wed, 99 Oct 2015 07:28:00 GMT", "²", "١٢"],
)
def test_unreadable_retry_after_is_none(header: str) -> None:
    assert parse_retry_after(header, NOW) is None


def test_absent_retry_after_is_none() -> None:
    assert parse_retry_after(None, NOW) is None


@given(header=st.text())
@example(header="²")  # a digit to str.isdigit, but not to float
@example(header="Mon, 01 Jan 0001 00:00:00 +0100")
@example(header="Fri, 31 Dec 9999 23:59:59 -2359")
@example(header="9" * 400)
def test_parse_retry_after_never_raises(header: str) -> None:
    # Header values come from the network (httpx decodes unknown bytes as Latin-1).
    wait = parse_retry_after(header, NOW)
    assert wait is None or wait >= 0.0
