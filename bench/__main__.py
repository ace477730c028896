"""Throughput of the transform, its JSON floor and the rules interpreter, side by side.

Run with ``make bench`` (``python -m bench``). The contenders run over the same in-memory
NDJSON corpus in interleaved rounds, each round running every contender once over the whole
corpus in a rotated order, so that drift of the machine (thermal, other load) spreads over all
of them; the report gives each contender's median.

Contenders:
    pipeline: per line ``orjson.loads`` → ``route`` → ``to_record`` → ``orjson.dumps``, as the
        ``transform`` command does.
    floor: ``orjson.loads`` + ``orjson.dumps`` of the same lines, nothing else: the cost of
        JSON in and out, which no transform can avoid.
    interpreter: the pipeline with ``route(..., dispatch=interpreted_dispatch())``, the rules
        table interpreted at run time (``tests/rules_interpreter.py``) instead of compiled.
    transform only: the pipeline with a clock read between its stages; it reports the time of
        ``route`` + ``to_record`` alone, and explains where the pipeline's time goes.
    pipeline and floor, custom-heavy corpus: the same two over a corpus of mostly named custom
        events with many properties and products (``bench.corpus.CUSTOM_HEAVY_MIX``).

Whole processes (``bench/process.py``) follow: ``python -m attentive_router transform FILE``
against a process that only parses and re-serialises the same file, for both corpora.

Delivery (``bench/delivery.py``) and memory (``bench/rss.py``) follow: the sender draining a
queue into a sandbox that enforces Attentive's rate limits, the sender against a naive
one-request-at-a-time loop without limits, and the peak RSS of ``attentive-router send`` on a
1,000,000-event file. Ingest (``bench/ingest.py``) closes the run: ``attentive-router serve``
taking 100-event ``/v1/batch`` requests over 127.0.0.1, events/s stored durably and request
latency, beside the raw SQLite insert rate. Start-up (``bench/startup.py``) opens it: the
whole process of ``attentive-router transform`` on an empty file and of ``--help``, beside
``python -c pass`` and ``python -c "import orjson"``. Kafka (``bench/kafka.py``) follows ingest:
``serve`` into a Kafka queue beside ``serve`` into a queue file, one ingest process beside two,
and two ``deliver --follow`` workers draining a backlog for one key under its enforced limit
(on a local Tansu broker; said to be unavailable when it is not installed). ``--only
startup|transform|process|delivery|rss|ingest|kafka`` (comma-separated; ``drain`` and
``unthrottled`` name the two halves of ``delivery``) runs a part of the benchmark.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from collections.abc import Sequence

import orjson

from attentive_router import Context
from attentive_router._transform.router import DEFAULT_DISPATCH
from bench import delivery, ingest, instructions, kafka, process, rss, startup, system
from bench.corpus import DEFAULT_SEED, MIXES, RECEIVED_AT, generate
from bench.profiling import profile
from bench.transform import (
    Measurement,
    Runner,
    disagreements,
    floor,
    load_interpreter,
    mapping_calls,
    mappings_only,
    measure,
    outcome_counts,
    pipeline,
    transform_only,
)

PIPELINE_TO_FLOOR_TARGET = 2.0
"""The pipeline should take at most this many times the JSON floor's time."""

CUSTOM_HEAVY_TO_FLOOR_TARGET = 3.0
"""The same on the custom-heavy corpus (``bench.corpus.CUSTOM_HEAVY_MIX``)."""

INTERPRETER_TO_PIPELINE_TARGET = 3.0
"""The interpreter should take at least this many times the generated pipeline's time."""

QUICK_EVENTS = 2_000
QUICK_ROUNDS = 2

# -- reporting ----------------------------------------------------------------------------------


def _median(runs: list[Measurement], part: str | None = None) -> float:
    return statistics.median(run.seconds if part is None else run.parts[part] for run in runs)


def _verdict(ratio: float, target: float, at_most: bool) -> str:
    met = ratio <= target if at_most else ratio >= target
    return "PASS" if met else "MISS"


def _ratio_line(
    label: str,
    runs: tuple[list[Measurement], list[Measurement]],
    target: float,
    *,
    at_most: bool,
) -> str:
    top, bottom = runs
    ratio = _median(top) / _median(bottom)
    per_round = [a.seconds / b.seconds for a, b in zip(top, bottom, strict=True)]
    sign = "<=" if at_most else ">="
    return (
        f"  {label:<32} {ratio:>6.2f}x   target {sign} {target:.1f}   "
        f"{_verdict(ratio, target, at_most)}   "
        f"(per round {min(per_round):.2f}-{max(per_round):.2f})"
    )


def report(
    results: dict[str, list[Measurement]],
    labels: dict[str, str],
    unavailable: str,
    size: int,
    events: int,
    *,
    custom_size: int | None = None,
) -> None:
    """Print the results table, the target ratios and the transform-only breakdown."""
    rounds = len(next(iter(results.values())))
    print()
    print("attentive-router transform throughput")
    print(
        f"corpus: {events:,} events, {size / 1e6:.1f} MB NDJSON "
        f"({size / events:,.0f} B/event on average)"
    )
    if custom_size is not None:
        print(
            f"custom-heavy corpus (a', b'): {events:,} events, {custom_size / 1e6:.1f} MB, "
            "90% named custom events with 5-15 properties and 1-4 products"
        )
    print(
        f"machine: {system.cores()} cores, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"orjson {orjson.__version__}"
    )
    print(f"rounds: {rounds}, interleaved, contender order rotated every round")
    print()
    header = f"  {'contender':<44} {'median events/s':>16} {'median s/run':>13} {'min-max s':>15}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for key, label in labels.items():
        runs = results.get(key)
        if runs is None:
            print(f"  {label:<44} {'unavailable':>16}   {unavailable}")
            continue
        seconds = _median(runs)
        spread = f"{min(r.seconds for r in runs):.3f}-{max(r.seconds for r in runs):.3f}"
        print(f"  {label:<44} {events / seconds:>16,.0f} {seconds:>13.3f} {spread:>15}")
    print()
    print("ratios (of median seconds per run)")
    pipe, base = results["pipeline"], results["floor"]
    print(
        _ratio_line("pipeline / floor time", (pipe, base), PIPELINE_TO_FLOOR_TARGET, at_most=True)
    )
    if "custom_pipeline" in results:
        print(
            _ratio_line(
                "custom-heavy pipeline / floor",
                (results["custom_pipeline"], results["custom_floor"]),
                CUSTOM_HEAVY_TO_FLOOR_TARGET,
                at_most=True,
            )
        )
    if "interpreter" in results:
        slow = results["interpreter"]
        print(
            _ratio_line(
                "interpreter / pipeline time",
                (slow, pipe),
                INTERPRETER_TO_PIPELINE_TARGET,
                at_most=False,
            )
        )
        print(
            _ratio_line(
                "interpreted / generated mappings",
                (results["interpreted_mappings"], results["generated_mappings"]),
                INTERPRETER_TO_PIPELINE_TARGET,
                at_most=False,
            )
        )
    else:
        print(
            f"  {'interpreter / pipeline time':<32} {'n/a':>7}   "
            f"target >= {INTERPRETER_TO_PIPELINE_TARGET:.1f}   MISS   (interpreter unavailable)"
        )
    only = results["transform"]
    total = _median(pipe)
    print()
    print("where the pipeline's time goes (stages clocked per event; medians over the rounds)")
    print(f"  {'stage':<34} {'seconds':>8} {'of pipeline':>12} {'µs/event':>9}")
    stages = (
        ("loads", "orjson.loads"),
        ("route", "route"),
        ("to_record", "to_record"),
        ("dumps", "orjson.dumps (of the record)"),
    )
    for part, label in stages:
        seconds = _median(only, part)
        print(
            f"  {label:<34} {seconds:>8.3f} {seconds / total:>12.1%} {seconds / events * 1e6:>9.2f}"
        )
    transform = _median(only)
    print(
        f"  {'transform only (route + to_record)':<34} {transform:>8.3f} "
        f"{transform / total:>12.1%} {transform / events * 1e6:>9.2f}"
    )
    print(
        f"  {'pipeline, for reference':<34} {total:>8.3f} {1:>12.1%} {total / events * 1e6:>9.2f}"
    )


# -- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--events", type=int, metavar="N", help="corpus size (default 100000)")
    parser.add_argument("--rounds", type=int, metavar="R", help="interleaved rounds (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_EVENTS} events, {QUICK_ROUNDS} rounds unless given",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="corpus seed")
    parser.add_argument(
        "--mix",
        choices=sorted(MIXES),
        default="default",
        help="the corpus --profile uses (default %(default)s)",
    )
    parser.add_argument(
        "--instructions",
        type=int,
        nargs="?",
        const=2_000,
        metavar="N",
        help="instead of timing, count instructions per event under callgrind over N events "
        "(default 2000): ratios that machine noise cannot move (needs valgrind)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=20_000,
        metavar="N",
        help="instead of measuring, profile the pipeline over N events (default 20000): "
        "route and to_record time per event kind, and the top functions under cProfile",
    )
    parser.add_argument(
        "--only",
        type=_parts,
        metavar="PARTS",
        help="run only these parts, comma-separated: startup, transform, process, delivery "
        "(= drain,unthrottled), drain, unthrottled, rss, ingest, kafka (default: all)",
    )
    parser.add_argument(
        "--startup-runs",
        type=int,
        metavar="R",
        help=f"runs of each command in the start-up part (default {startup.RUNS}; "
        f"--quick {QUICK_STARTUP_RUNS})",
    )
    group = parser.add_argument_group("whole process")
    group.add_argument(
        "--process-events",
        type=int,
        metavar="N",
        help=f"events per file of the whole-process runs (default {process.PROCESS_EVENTS:,}; "
        f"--quick {QUICK_PROCESS_EVENTS:,})",
    )
    group.add_argument(
        "--process-rounds",
        type=int,
        metavar="R",
        help=f"interleaved rounds of the whole-process runs (default {process.ROUNDS}; --quick 1)",
    )
    group = parser.add_argument_group("delivery and memory")
    group.add_argument(
        "--drain-events",
        type=int,
        metavar="N",
        help=f"events drained under enforced limits (default {delivery.DRAIN_EVENTS:,}; "
        f"--quick {QUICK_DRAIN_EVENTS})",
    )
    group.add_argument(
        "--unthrottled-events",
        type=int,
        metavar="K",
        help=f"events per unthrottled run (default {delivery.UNTHROTTLED_EVENTS:,}; "
        f"--quick {QUICK_UNTHROTTLED_EVENTS})",
    )
    group.add_argument(
        "--delivery-rounds",
        type=int,
        metavar="R",
        help=f"interleaved rounds of the unthrottled runs (default {delivery.ROUNDS}; --quick 1)",
    )
    group.add_argument(
        "--rss-events",
        type=int,
        metavar="N",
        help=f"events in the file sent for the peak RSS (default {rss.RSS_EVENTS:,}; "
        f"--quick {QUICK_RSS_EVENTS:,})",
    )
    group.add_argument(
        "--rss-budget",
        type=float,
        default=rss.BUDGET,
        metavar="S",
        help="seconds the send run may take; a longer one is stopped with SIGINT once the file "
        "is queued (default %(default)g)",
    )
    group = parser.add_argument_group("ingest")
    group.add_argument(
        "--ingest-events",
        type=int,
        metavar="N",
        help=f"events posted per server run (default {ingest.EVENTS:,}; "
        f"--quick {QUICK_INGEST_EVENTS:,})",
    )
    group.add_argument(
        "--ingest-rounds",
        type=int,
        metavar="R",
        help=f"interleaved rounds (default {ingest.ROUNDS}; --quick 1)",
    )
    group.add_argument(
        "--ingest-batch",
        type=int,
        default=ingest.BATCH,
        metavar="N",
        help="events per /v1/batch request (default %(default)s; 1 is how analytics.js "
        "sends, where a transaction per request costs most)",
    )
    group.add_argument(
        "--ingest-connections",
        type=_counts,
        metavar="C[,C...]",
        help="connection counts of the load generator; the first is judged against the targets "
        f"(default {','.join(map(str, ingest.CONNECTIONS))}; "
        f"--quick {','.join(map(str, QUICK_INGEST_CONNECTIONS))})",
    )
    group = parser.add_argument_group("kafka")
    group.add_argument(
        "--kafka-events",
        type=int,
        metavar="N",
        help=f"events posted per server run (default {kafka.EVENTS:,}; "
        f"--quick {QUICK_KAFKA_EVENTS:,})",
    )
    group.add_argument(
        "--kafka-rounds",
        type=int,
        metavar="R",
        help=f"interleaved rounds of the ingest runs (default {kafka.ROUNDS}; --quick 1)",
    )
    group.add_argument(
        "--kafka-rate",
        type=int,
        metavar="R",
        help="requests/s the sandbox enforces on /v1/events/custom in the drain, and each "
        f"worker's --rate (default {kafka.DRAIN_RATE}; --quick {QUICK_KAFKA_RATE})",
    )
    group.add_argument(
        "--kafka-window",
        type=float,
        metavar="S",
        help="seconds of the drain measured once both workers hold their partitions "
        f"(default {kafka.DRAIN_WINDOW:g}; --quick {QUICK_KAFKA_WINDOW:g})",
    )
    return parser


PARTS = ("startup", "transform", "process", "drain", "unthrottled", "rss", "ingest", "kafka")
QUICK_STARTUP_RUNS = 3
QUICK_DRAIN_EVENTS = 300
QUICK_UNTHROTTLED_EVENTS = 200
QUICK_RSS_EVENTS = 2_000
QUICK_INGEST_EVENTS = 2_000
QUICK_INGEST_CONNECTIONS = (8,)
QUICK_PROCESS_EVENTS = 2_000
QUICK_KAFKA_EVENTS = 1_000
QUICK_KAFKA_RATE = 20
QUICK_KAFKA_WINDOW = 3.0


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        msg = f"expected connection counts such as 8 or 8,1,16, not {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not counts or min(counts) < 1 or len(set(counts)) < len(counts):
        msg = f"connection counts must be positive and distinct, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return counts


def _parts(text: str) -> frozenset[str]:
    chosen: set[str] = set()
    for name in (part.strip() for part in text.split(",")):
        if name == "delivery":
            chosen |= {"drain", "unthrottled"}
        elif name in PARTS:
            chosen.add(name)
        else:
            msg = f"unknown part {name!r}: choose from delivery, {', '.join(PARTS)}"
            raise argparse.ArgumentTypeError(msg)
    return frozenset(chosen)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit status."""
    args = _parser().parse_args(argv)
    events = args.events or (QUICK_EVENTS if args.quick else 100_000)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else 5)
    drain_events = args.drain_events or (
        QUICK_DRAIN_EVENTS if args.quick else delivery.DRAIN_EVENTS
    )
    unthrottled_events = args.unthrottled_events or (
        QUICK_UNTHROTTLED_EVENTS if args.quick else delivery.UNTHROTTLED_EVENTS
    )
    delivery_rounds = args.delivery_rounds or (1 if args.quick else delivery.ROUNDS)
    rss_events = args.rss_events or (QUICK_RSS_EVENTS if args.quick else rss.RSS_EVENTS)
    ingest_events = args.ingest_events or (QUICK_INGEST_EVENTS if args.quick else ingest.EVENTS)
    ingest_rounds = args.ingest_rounds or (1 if args.quick else ingest.ROUNDS)
    startup_runs = args.startup_runs or (QUICK_STARTUP_RUNS if args.quick else startup.RUNS)
    connections = args.ingest_connections or (
        QUICK_INGEST_CONNECTIONS if args.quick else ingest.CONNECTIONS
    )
    process_events = args.process_events or (
        QUICK_PROCESS_EVENTS if args.quick else process.PROCESS_EVENTS
    )
    process_rounds = args.process_rounds or (1 if args.quick else process.ROUNDS)
    kafka_events = args.kafka_events or (QUICK_KAFKA_EVENTS if args.quick else kafka.EVENTS)
    kafka_rounds = args.kafka_rounds or (1 if args.quick else kafka.ROUNDS)
    kafka_rate = args.kafka_rate or (QUICK_KAFKA_RATE if args.quick else kafka.DRAIN_RATE)
    kafka_window = args.kafka_window or (QUICK_KAFKA_WINDOW if args.quick else kafka.DRAIN_WINDOW)
    sizes = (
        *(
            events,
            rounds,
            process_events,
            process_rounds,
            drain_events,
            unthrottled_events,
            delivery_rounds,
            rss_events,
        ),
        *(ingest_events, ingest_rounds, args.ingest_batch, startup_runs),
        *(kafka_events, kafka_rounds, kafka_rate),
    )
    if min(sizes) < 1 or args.rss_budget <= 0 or kafka_window <= 0:
        print("python -m bench: sizes, rounds and the budget must be positive", file=sys.stderr)
        return 2
    if args.instructions is not None:
        return instructions.report(args.instructions, args.seed)
    if args.profile is not None:
        ctx = Context(RECEIVED_AT)
        lines = generate(args.profile, args.seed, mix=args.mix)
        outcome_counts(lines, ctx)  # warm the caches as the measured runs have them
        profile(lines, ctx)
        return 0
    parts = args.only or frozenset(PARTS)
    status = 0
    if "startup" in parts:
        startup.run(startup_runs)
    if "transform" in parts:
        status = run_transform(events, rounds, args.seed)
    if "process" in parts:
        process.run(process_events, process_rounds, args.seed)
    delivery_parts = parts & {"drain", "unthrottled"}
    if delivery_parts:
        delivery.run_all(
            set(delivery_parts), drain_events, unthrottled_events, delivery_rounds, args.seed
        )
    if "rss" in parts:
        rss.report(rss.measure(rss_events, args.rss_budget, args.seed))
    if "ingest" in parts:
        status = (
            ingest.run(ingest_events, ingest_rounds, connections, args.seed, args.ingest_batch)
            or status
        )
    if "kafka" in parts:
        status = (
            kafka.run(kafka_events, kafka_rounds, args.seed, kafka_rate, kafka_window) or status
        )
    return status


def run_transform(events: int, rounds: int, seed: int) -> int:
    """The transform benchmark: measure, print the report; 1 when the interpreter is missing."""
    ctx = Context(RECEIVED_AT)
    print(f"generating {events:,} events (seed {seed})...", file=sys.stderr, flush=True)
    lines = generate(events, seed)
    custom = generate(events, seed, mix="custom-heavy")
    size = sum(map(len, lines))
    dispatch, unavailable = load_interpreter()

    counts = outcome_counts(lines, ctx)
    outcome_counts(custom, ctx)  # warm the caches for this corpus too
    contenders: dict[str, Runner] = {
        "pipeline": lambda corpus: pipeline(corpus, ctx),
        "floor": floor,
        "transform": lambda corpus: transform_only(corpus, ctx),
        "custom_pipeline": lambda _: pipeline(custom, ctx),
        "custom_floor": lambda _: floor(custom),
    }
    labels = {
        "pipeline": "(a) pipeline: loads, route, to_record, dumps",
        "floor": "(b) floor: orjson loads + dumps only",
        "custom_pipeline": "(a') pipeline, custom-heavy corpus",
        "custom_floor": "(b') floor, custom-heavy corpus",
        "interpreter": "(c) interpreter pipeline (rules_interpreter)",
        "transform": "    transform only: route + to_record",
        "generated_mappings": "(d) generated mapping functions only",
        "interpreted_mappings": "(e) interpreted mapping functions only",
    }
    checked = 0
    differing = 0
    if dispatch is not None:
        interpreted = dispatch
        contenders["interpreter"] = lambda corpus: pipeline(corpus, ctx, interpreted)
        sample = lines[: min(len(lines), 5_000)]
        checked, differing = len(sample), disagreements(sample, ctx, interpreted)
        generated_calls = mapping_calls(lines, ctx, DEFAULT_DISPATCH)
        interpreted_calls = mapping_calls(lines, ctx, interpreted)
        contenders["generated_mappings"] = lambda _: mappings_only(generated_calls, ctx)
        contenders["interpreted_mappings"] = lambda _: mappings_only(interpreted_calls, ctx)
    print(f"measuring {rounds} rounds...", file=sys.stderr, flush=True)
    results = measure(contenders, lines, rounds)

    report(results, labels, unavailable, size, events, custom_size=sum(map(len, custom)))
    print()
    print("outcomes of the corpus")
    for name, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {name:<40} {count:>8,}  {count / events:>6.1%}")
    if dispatch is None:
        print(f"\ninterpreter unavailable: {unavailable}")
        return 1
    agreement = "agree" if not differing else f"DISAGREE on {differing:,}"
    print(
        f"\ninterpreter and generated transforms {agreement} "
        f"({checked:,} events compared as JSON values, key order aside)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
