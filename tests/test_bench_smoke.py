"""The benchmark runs end to end on a small corpus (no timing is asserted here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_reports_every_contender_and_ratio() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--events", "300", "--rounds", "1"],
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
        "(c) interpreter pipeline",
        "(d) generated mapping functions only",
        "(e) interpreted mapping functions only",
    )
    for contender in contenders:
        assert re.search(rf"{re.escape(contender)}.*\s[\d,]+\s+\d+\.\d+\s", out), contender
    ratios = (
        "pipeline / floor time",
        "interpreter / pipeline time",
        "interpreted / generated mappings",
    )
    for ratio in ratios:
        assert re.search(rf"{re.escape(ratio)}\s+\d+\.\d+x .*(PASS|MISS)", out), ratio
    assert "transform only" in out
    assert "300 events" in out
    assert "cores" in out
