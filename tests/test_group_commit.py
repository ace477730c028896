"""Group commit in ``serve``: requests that wait together share one transaction.

Every test runs ``attentive-router serve`` as a real process on 127.0.0.1 (``ServeProcess``)
with clients posting over HTTP. To make requests wait together on purpose, another connection
holds the queue file's write lock (``BEGIN EXCLUSIVE``): the commit under way waits for it,
and the requests that arrive meanwhile queue up for the next commit. ``/metrics`` shows how
many commits there were and how many requests each held (what an operator sees too).

Passing means:

- requests waiting together are stored by one commit (``--commit group``), or by one each
  (``--commit per-request``), and each is answered only after its commit;
- a messageId repeated in two requests of one group is stored once, and each request's counts
  (stored, duplicates, rejected) are those of separate commits;
- a commit that fails answers 503 to exactly the requests it held; requests in the commits
  before and after it get 200 and their events are delivered, each once;
- ``kill -9`` while group commits run loses no acknowledged event and stores each request
  whole or not at all.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import State
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.test_serve_faults import (  # noqa: E402
    DELIVERY_ARGS,
    KEY,
    NO_ANSWER,
    SOURCE,
    WRITE_KEY,
    BatchSenders,
    arrivals,
    integrity,
    log_lines,
    read_rows,
    stored_of,
    track,
    wait_for_delivery,
    wait_until,
    write_lock,
)

BATCH = "/v1/batch"
SETTLE = 1.0
"""Seconds given to requests already sent to reach the server and wait for their commit."""


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample of the /metrics text (0 when absent)."""
    head = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(head):
            return float(line.removeprefix(head))
    return 0.0


class Commits:
    """The commit figures of /metrics at one moment."""

    def __init__(self, serve: ServeProcess) -> None:
        response = serve.get("/metrics")
        assert response.status_code == 200, response.text
        text = response.text
        self.committed = metric(
            text,
            "attentive_router_queue_commits_total",
            'destination="default",outcome="committed"',
        )
        self.failed = metric(
            text, "attentive_router_queue_commits_total", 'destination="default",outcome="failed"'
        )
        histogram = "attentive_router_queue_commit_requests"
        default = 'destination="default"'
        self.requests = metric(text, histogram + "_sum", default)
        self.count = metric(text, histogram + "_count", default)
        self.alone = metric(text, histogram + "_bucket", default + ',le="1.0"')
        self.up_to_four = metric(text, histogram + "_bucket", default + ',le="4.0"')
        self.duplicates = metric(
            text,
            "attentive_router_events_duplicate_total",
            f'destination="default",source="{SOURCE}"',
        )


def body_of(events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"batch": events})


def batch(prefix: str, size: int, user: str) -> tuple[list[str], bytes]:
    ids = [f"{prefix}-{i:03d}" for i in range(size)]
    return ids, body_of([track(i, user, {"n": n}) for n, i in enumerate(ids)])


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    at: float
    """When it came (``time.monotonic()``)."""
    retry_after: str | None


def post(url: str, body: bytes) -> Answer:
    """POST a batch on a connection of its own."""
    response = httpx.post(
        url + BATCH,
        content=body,
        headers={"Content-Type": "application/json"},
        auth=(KEY, ""),
        timeout=30,
        trust_env=False,
    )
    retry_after = response.headers.get("Retry-After")
    return Answer(response.status_code, response.json(), time.monotonic(), retry_after)


class Posts:
    """Requests posted from threads, each on its own connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = ThreadPoolExecutor(16)

    def send(self, body: bytes) -> Future[Answer]:
        return self.pool.submit(post, self.url, body)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def statuses(futures: list[Future[Answer]]) -> list[int]:
    return [future.result(30).status for future in futures]


def storage_unavailable(answer: Answer) -> bool:
    """The 503 of a failed write, as the server always answers it."""
    return (
        answer.status == 503
        and answer.retry_after == "5"
        and answer.body
        == {
            "success": False,
            "code": "storage_unavailable",
            "message": "the events could not be stored; send them again",
        }
    )


@pytest.mark.parametrize("commit", ["group", "per-request"])
def test_requests_waiting_for_a_commit_share_the_next_one(tmp_path: Path, commit: str) -> None:
    queue = tmp_path / "queue.db"
    args = ["--commit", commit, "--lock-timeout", "20"]
    first_ids, first = batch("share-first", 10, "share-u0")
    bodies = [batch(f"share-{k}", 20, f"share-u{k + 1}") for k in range(6)]
    with ServeProcess(queue=queue, write_keys=[WRITE_KEY], args=args) as serve:
        warm_ids, warm = batch("share-warm", 5, "share-uw")
        assert serve.post(BATCH, content=warm, auth=(KEY, "")).status_code == 200
        before = Commits(serve)
        posts = Posts(serve.url)
        try:
            with write_lock(queue):
                held = posts.send(first)  # its commit starts and waits for the lock
                time.sleep(SETTLE)
                waiting = [posts.send(body) for _, body in bodies]
                time.sleep(SETTLE)
                assert not held.done()
                assert not any(future.done() for future in waiting)
                released = time.monotonic()
            answers = [future.result(30) for future in [held, *waiting]]
        finally:
            posts.close()
        assert [answer.status for answer in answers] == [200] * 7
        assert all(answer.at > released for answer in answers), "answered before its commit"
        after = Commits(serve)
        assert serve.stop() == 0
    assert after.failed == before.failed == 0
    assert after.requests - before.requests == 7
    if commit == "group":
        # The first request alone, then the six that waited for it, together.
        assert after.committed - before.committed == 2
        assert after.alone - before.alone == 1
        assert after.up_to_four - before.up_to_four == 1
    else:
        assert after.committed - before.committed == 7
        assert after.alone - before.alone == 7
    rows = read_rows(queue)
    expected = warm_ids + first_ids + [i for ids, _ in bodies for i in ids]
    assert sorted(row.key for row in rows) == sorted(expected)
    assert {row.state for row in rows} == {State.QUEUED}
    # Each request's events are stored together, in the order the requests came.
    keys = [row.key for row in rows]
    assert keys[: len(warm_ids) + len(first_ids)] == warm_ids + first_ids
    for ids, _ in bodies:
        start = keys.index(ids[0])
        assert keys[start : start + len(ids)] == ids


def test_a_messageid_repeated_within_a_group_is_a_duplicate_as_if_committed_apart(
    tmp_path: Path,
) -> None:
    queue = tmp_path / "queue.db"
    args = ["--commit", "group", "--lock-timeout", "20", "--log-level", "info"]
    _, first = batch("dup-first", 3, "dup-u0")
    one = body_of(
        [
            track("dup-a", "dup-u1", {"from": "one"}),
            track("dup-shared", "dup-u1", {"from": "one"}),
            {**track("dup-bad", "dup-u1", {"from": "one"}), "timestamp": "yesterday"},
        ]
    )
    two = body_of(
        [
            track("dup-shared", "dup-u2", {"from": "two"}),
            track("dup-b", "dup-u2", {"from": "two"}),
        ]
    )
    with ServeProcess(queue=queue, write_keys=[WRITE_KEY], args=args) as serve:
        before = Commits(serve)
        posts = Posts(serve.url)
        try:
            with write_lock(queue):
                held = posts.send(first)
                time.sleep(SETTLE)
                first_of_group = posts.send(one)
                time.sleep(SETTLE / 2)  # so that "one" is ahead of "two" in the group
                second_of_group = posts.send(two)
                time.sleep(SETTLE)
            answers = [f.result(30) for f in (held, first_of_group, second_of_group)]
        finally:
            posts.close()
        after = Commits(serve)
        stderr = serve.stderr()
        assert serve.stop() == 0
    assert [answer.status for answer in answers] == [200, 200, 200]
    a1, a2 = answers[1].body, answers[2].body
    assert after.committed - before.committed == 2  # "one" and "two" shared a commit
    assert after.requests - before.requests == 3
    assert after.duplicates - before.duplicates == 1
    assert [r["index"] for r in a1["rejected"]] == [2]
    assert "rejected" not in a2
    lines = [line for line in log_lines(stderr) if line.get("message") == "ingest"]
    counts = {line["events"]: (line["stored"], line["duplicates"]) for line in lines}
    assert counts == {3: (3, 0), 2: (1, 1)}, lines
    stored = read_rows(queue)
    rejected = [row for row in stored if row.state is State.REJECTED]
    assert len(rejected) == 1
    assert b"dup-bad" in rejected[0].event
    rows = {row.key: row for row in stored if row.state is State.QUEUED}
    first_ids = ["dup-first-000", "dup-first-001", "dup-first-002"]
    assert sorted(rows) == sorted([*first_ids, "dup-a", "dup-shared", "dup-b"])
    assert orjson.loads(rows["dup-shared"].event)["properties"] == {"from": "one"}
    assert rows["dup-shared"].id < rejected[0].id < rows["dup-b"].id


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with SandboxProcess(no_rate_limits=True) as server:
        yield server


def test_a_failing_commit_answers_503_to_exactly_the_requests_it_held(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """The lock is held past --lock-timeout for two commits, then let go during a third.

    Commit 1 holds A alone; B1-B3 arrive while it waits and make commit 2; C1-C3 are sent once
    A got its 503, while commit 2 waits, and make commit 3; the lock goes once the Bs got
    their 503s. So A and the Bs get 503 and nothing of them is stored; the Cs get 200 and are
    delivered; sent again, A and the Bs get 200 and everything is delivered once.
    """
    sandbox.reset()
    queue = tmp_path / "queue.db"
    args = ["--commit", "group", "--lock-timeout", "2", *DELIVERY_ARGS]
    warm_ids, warm = batch("fail-warm", 10, "fail-uw")
    a_ids, a = batch("fail-a", 10, "fail-ua")
    bs = [batch(f"fail-b{k}", 10, f"fail-ub{k}") for k in range(3)]
    cs = [batch(f"fail-c{k}", 10, f"fail-uc{k}") for k in range(3)]
    with ServeProcess(queue=queue, sandbox=sandbox, write_keys=[WRITE_KEY], args=args) as serve:
        assert serve.post(BATCH, content=warm, auth=(KEY, "")).status_code == 200
        wait_for_delivery(queue, len(warm_ids), 30)
        before = Commits(serve)
        posts = Posts(serve.url)
        try:
            with write_lock(queue) as db:
                held = posts.send(a)
                time.sleep(SETTLE)
                second = [posts.send(body) for _, body in bs]
                assert storage_unavailable(held.result(30))
                third = [posts.send(body) for _, body in cs]
                assert all(storage_unavailable(future.result(30)) for future in second)
                refused = [*a_ids, *(i for ids, _ in bs for i in ids)]
                assert stored_of(db, refused) == 0
            assert statuses(third) == [200, 200, 200]
        finally:
            posts.close()
        after = Commits(serve)
        assert after.failed - before.failed == 2
        assert after.committed - before.committed == 1
        assert after.count - before.count == 1  # the histogram counts stored commits only
        assert after.requests - before.requests == 3
        c_ids = [i for ids, _ in cs for i in ids]
        wait_for_delivery(queue, len(warm_ids) + len(c_ids), 30)
        # Sent again once the storage is back: taken, and stored once.
        for body in [a, *(body for _, body in bs)]:
            assert serve.post(BATCH, content=body, auth=(KEY, "")).status_code == 200
        expected = [*warm_ids, *c_ids, *refused]
        wait_for_delivery(queue, len(expected), 30)
        stderr = serve.stderr()
        assert serve.stop() == 0
    errors = [line for line in log_lines(stderr) if line.get("status") == 503]
    assert len(errors) == 4
    assert all("locked" in line.get("error", "") for line in errors), errors
    assert integrity(queue) == "ok"
    rows = read_rows(queue)
    assert sorted(row.key for row in rows) == sorted(expected)
    assert {row.state for row in rows} == {State.DELIVERED}
    bodies = arrivals(sandbox)
    assert sorted(bodies) == sorted(expected)
    assert all(len(copies) == 1 for copies in bodies.values())


GROUP_SEEDS = range(3)
"""Even seeds run ``--no-deliver``; odd ones deliver to the sandbox while ingesting."""


def grouped(serve: ServeProcess) -> Callable[[], bool]:
    """True once some commit has held more than one request."""

    def check() -> bool:
        commits = Commits(serve)
        return commits.count - commits.alone >= 3

    return check


@pytest.mark.parametrize("seed", GROUP_SEEDS)
def test_kill_9_during_group_commits_keeps_every_acknowledged_event(
    sandbox: SandboxProcess, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(f"group-kill-{seed}")  # noqa: S311 - test schedule, not secrets
    delivering = seed % 2 == 1
    box = sandbox if delivering else None
    if box is not None:
        box.reset()
        box.set_faults({"latency_ms": 20, "latency_jitter_ms": 30}, seed=seed)
    queue = tmp_path / "queue.db"
    prefix = f"gk{seed}"
    args = ["--commit", "group", *(DELIVERY_ARGS if delivering else ())]
    load = BatchSenders(
        "",
        prefix=prefix,
        seed=prefix,
        senders=8,
        sizes=lambda r: r.randint(300, 600) if r.random() < 0.1 else r.randint(20, 100),
        pause=(0.0, 0.005),
    )
    with ServeProcess(queue=queue, sandbox=box, write_keys=[WRITE_KEY], args=args) as serve:
        load.url = serve.url
        with load:
            wait_until(grouped(serve), 20, "commits holding several requests")
            time.sleep(rng.uniform(0.1, 0.8))
            assert serve.kill() == -signal.SIGKILL
            load.stop()
    posts = load.posts
    assert {p.status for p in posts} <= {200, None}, Counter(p.status for p in posts)
    assert {p.error for p in posts if p.status is None} <= NO_ANSWER
    assert integrity(queue) == "ok"
    rows = read_rows(queue)
    stored = Counter(row.key for row in rows)
    assert max(stored.values()) == 1
    acknowledged = load.acknowledged()
    missing = sorted(acknowledged - set(stored))
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    for each in posts:
        kept = sum(i in stored for i in each.ids)
        assert kept in {0, len(each.ids)}, f"{kept} of {len(each.ids)} events of a request"

    # A restart takes what was not acknowledged again; nothing is stored twice.
    sent = load.sent()
    with ServeProcess(queue=queue, sandbox=box, write_keys=[WRITE_KEY], args=args) as again:
        for each in posts:
            if each.status is None:
                response = again.post(BATCH, content=each.body, auth=(KEY, ""))
                assert response.status_code == 200, response.text
        if delivering:
            wait_for_delivery(queue, len(sent), 60)
        assert again.stop() == 0
    rows = read_rows(queue)
    assert sorted(row.key for row in rows) == sorted(sent)
    if box is not None:
        bodies = arrivals(box)
        assert set(bodies) == sent
        assert all(len(copies) <= 2 for copies in bodies.values())
    print(
        f"\nseed {seed} ({'delivering' if delivering else 'ingest only'}): {len(posts)} requests "
        f"({sum(p.status is None for p in posts)} unanswered), {len(acknowledged)} events "
        f"acknowledged, {len(stored)} stored at the kill, {len(sent)} after the restart"
    )
