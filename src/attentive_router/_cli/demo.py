"""``attentive-router demo``: the whole pipeline against a local sandbox, no account needed.

Starts the Attentive sandbox on a free loopback port (with a few injected failures, so that
retries show), sends the bundled sample events through queue, transform and delivery, then
prints the run's summary and some of the requests the sandbox accepted. Then it starts
``serve`` in front of the same sandbox and posts the samples to it as a Segment library would.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import IO, Any

import orjson

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._delivery.job import deliver
from attentive_router._delivery.progress import Progress
from attentive_router._delivery.retry import RetryPolicy
from attentive_router._delivery.sender import SenderSettings
from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess
from attentive_router._transform.reader import read_events

DEMO_FAULTS: dict[str, Any] = {
    "error_rate": 0.15,
    "error_statuses": [500, 503],
    "latency_ms": 20,
    "seed": 7,
}
"""Enough trouble to show retries at work, never enough to lose an event."""

_SHOWN_PATHS = (
    "/v1/events/ecommerce/purchase",
    "/v1/identity-resolution/user-identifiers",
    "/v1/events/custom",
)


def _samples() -> Path:
    return Path(
        str(resources.files("attentive_router._cli").joinpath("samples/sample-events.ndjson"))
    )


def run_demo(stdout: IO[str], stderr: IO[str]) -> int:
    """Run the demo; return the exit status of the delivery run."""
    samples = _samples()
    with (
        tempfile.TemporaryDirectory(prefix="attentive-demo-") as tmp,
        SandboxProcess(faults=DEMO_FAULTS) as sandbox,
    ):
        print(f"sandbox: {sandbox.url} (faults: {orjson.dumps(DEMO_FAULTS).decode()})", file=stdout)
        print(f"sending {samples.name} through queue, transform and delivery", file=stdout)
        queue = SQLiteQueue(Path(tmp) / "queue.db")
        settings = SenderSettings(
            base_url=sandbox.url,
            token=sandbox.token,
            policy=RetryPolicy(base=0.1, cap=1.0),
        )
        try:
            with samples.open("rb") as source:
                run = asyncio.run(
                    deliver(
                        queue,
                        settings,
                        source=source,
                        source_name="demo",
                        progress=Progress(stderr, "demo", stderr.isatty()),
                    )
                )
        finally:
            queue.close()
        stdout.write(run.render("demo") + "\n")
        accepted = sandbox.requests()
        print(f"\nthe sandbox accepted {len(accepted)} request(s); some of them:", file=stdout)
        for path in _SHOWN_PATHS:
            first = next((r for r in accepted if r["path"] == path), None)
            if first is not None:
                body = orjson.dumps(first["body"], option=orjson.OPT_INDENT_2).decode()
                print(f"\nPOST {path}\n{body}", file=stdout)
        sandbox.reset()
        _through_serve(samples, Path(tmp), sandbox, stdout)
    return run.exit_status


SETTLE_TIMEOUT = 60.0


def _through_serve(samples: Path, tmp: Path, sandbox: SandboxProcess, stdout: IO[str]) -> None:
    """Post the samples to ``serve`` as one Segment batch and show what became of them."""
    with samples.open("rb") as source:
        events = [item.event for item in read_events(source) if item.error is None]
    queue_path = tmp / "serve.db"
    with ServeProcess(
        queue=queue_path, sandbox=sandbox, write_keys=["demo=demo-write-key"]
    ) as serve:
        print(f"\nnow through HTTP: attentive-router serve on {serve.url}", file=stdout)
        answer = serve.post(
            "/v1/batch",
            content=orjson.dumps({"batch": events, "sentAt": None}),
            headers={"Content-Type": "application/json"},
            auth=("demo-write-key", ""),
        )
        print(
            f"POST /v1/batch ({len(events)} events): {answer.status_code} {answer.text}",
            file=stdout,
        )
        queue = SQLiteQueue(queue_path)
        try:
            deadline = time.monotonic() + SETTLE_TIMEOUT
            counts = queue.counts()
            while counts[State.QUEUED] + counts[State.IN_FLIGHT] and time.monotonic() < deadline:
                time.sleep(0.2)
                counts = queue.counts()
        finally:
            queue.close()
        shown = ", ".join(f"{counts[state]} {state.label}" for state in State if counts[state])
        print(f"the server's queue: {shown}", file=stdout)
        metrics = [
            line
            for line in serve.get("/metrics").text.splitlines()
            if line.startswith(("attentive_router_events_total", "attentive_router_queue_depth"))
        ]
        print("from its /metrics:", *metrics, sep="\n  ", file=stdout)
        print(f"the sandbox accepted {len(sandbox.requests())} request(s) from it", file=stdout)
