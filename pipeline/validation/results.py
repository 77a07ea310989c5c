"""One check's outcome: which table, feature and dates it measured, the numbers, and the verdict."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable, Sequence

PASS, FAIL, SKIP, INFO = "pass", "fail", "skip", "info"

# Check kinds, in the order a report lists them.
COVERAGE = "coverage"
REGRESSION = "regression"
DUPLICATES = "duplicates"
BOUNDS = "impossible_values"
FLAGGED = "flagged_values"
IDENTITY = "identity"
CROSS_LAYER = "cross_layer"
GAPS = "gaps"
SAME_DATES = "same_dates"
DRIFT = "drift"  # a feature's null fraction or mean against its trailing window (validation.drift): never blocks a run
TABLE = "table"  # a table that could not be checked at all
ERROR = "check_error"
CHECK_ORDER = (TABLE, ERROR, GAPS, SAME_DATES, CROSS_LAYER, COVERAGE, REGRESSION, DRIFT, DUPLICATES, BOUNDS, IDENTITY, FLAGGED)


@dataclass
class Result:
    table: str  # full name of the table measured (the one lacking rows, for gaps and same_dates)
    check: str
    feature: str  # the column, rule or identity name; "" for whole-table checks
    scope: str  # "all", "season 2023-24", "month 2023-11", "range a..b", "gap", ...
    start_date: dt.date | None
    end_date: dt.date | None
    observed: float | None
    threshold: float | None
    status: str  # pass | fail | skip | info
    severity: str  # critical | warning (what a failure means)
    details: str = ""
    rows: int | None = None  # rows, keys or dates measured
    failing: int | None = None  # of which failing
    related: tuple[str, ...] = field(default_factory=tuple)  # other tables involved

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    @property
    def label(self) -> str:
        """"coverage usage_rate month 2024-01": which check, on what, over which dates."""
        return f"{self.check} {self.feature} {self.scope}".strip()

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, *self.related)

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "check": self.check,
            "feature": self.feature,
            "scope": self.scope,
            "start_date": self.start_date.isoformat() if self.start_date else None,
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "observed": self.observed,
            "threshold": self.threshold,
            "status": self.status,
            "passed": self.passed,
            "severity": self.severity,
            "rows": self.rows,
            "failing": self.failing,
            "related": list(self.related),
            "details": self.details,
        }


def failures(results: Iterable[Result], severity: str | None = None) -> list[Result]:
    return [r for r in results if r.status == FAIL and (severity is None or r.severity == severity)]


def exit_code(results: Sequence[Result]) -> int:
    """0: every check passed; 1: a critical check failed; 2: only warnings failed."""
    failed = failures(results)
    if any(r.severity == "critical" for r in failed):
        return 1
    return 2 if failed else 0
