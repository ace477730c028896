"""Counting outcomes for the end-of-run summary of ``transform``."""

from __future__ import annotations

from collections import Counter

from attrs import define, field

from attentive_router._transform.outcome import OUTCOME_NAMES, Mapped, Outcome, Skipped


@define
class Tally:
    """Counts of outcomes by kind and reason, and of warnings by code."""

    outcomes: Counter[str] = field(factory=Counter)
    reasons: Counter[tuple[str, str]] = field(factory=Counter)
    warnings: Counter[str] = field(factory=Counter)
    endpoints: Counter[str] = field(factory=Counter)

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        kind = OUTCOME_NAMES[type(outcome)]
        self.outcomes[kind] += 1
        if isinstance(outcome, Mapped):
            # Plain loops: Counter.update's checks cost more than the one or two items counted.
            warnings, endpoints = self.warnings, self.endpoints
            for warning in outcome.warnings:
                warnings[warning.code] += 1
            for request in outcome.requests:
                endpoints[request.path] += 1
        else:
            self.reasons[kind, outcome.reason] += 1
            if isinstance(outcome, Skipped):
                self.warnings.update(warning.code for warning in outcome.warnings)

    def add_rejected(self, reason: str) -> None:
        """Count an input that was rejected before it reached the router."""
        self.outcomes["rejected"] += 1
        self.reasons["rejected", reason] += 1

    @property
    def total(self) -> int:
        """Number of events counted."""
        return sum(self.outcomes.values())

    def render(self, seconds: float | None = None) -> str:
        """A plain-text summary table (with the rate, when the run's duration is given)."""
        took = ""
        if seconds is not None and seconds > 0:
            took = f" in {seconds:,.1f} s ({self.total / seconds:,.0f} events/s)"
        lines = [f"{self.total:,} event(s){took}"]
        for kind in ("mapped", "skipped", "rejected"):
            lines.append(f"  {kind:<10}{self.outcomes[kind]:>10,}")
            for (of, reason), count in sorted(self.reasons.items()):
                if of == kind:
                    lines.append(f"    {reason:<30}{count:>10,}")
        if self.endpoints:
            lines.append("requests by endpoint")
            lines.extend(
                f"  {path:<44}{count:>10,}" for path, count in sorted(self.endpoints.items())
            )
        if self.warnings:
            lines.append("warnings (on mapped and skipped events)")
            lines.extend(
                f"  {code:<30}{count:>10,}" for code, count in sorted(self.warnings.items())
            )
        return "\n".join(lines)
