"""Test-only fault injection, read from the environment so that it reaches Ray workers:
``NBA_PIPELINE_FAULTS="table@YYYY-MM-DD:action[,...]"`` with action ``fail``, ``sleep=SECONDS``,
``transient=N`` (raise a transient error on the first N attempts) or ``wait_for=PATH`` (hold the
shard until PATH exists, having created ``PATH.waiting``: a test decides when the run goes on,
instead of guessing a sleep)."""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.runner.errors import TransientError

WAIT_FOR_LIMIT_SECONDS = 600
FAULTS_ENV = "NBA_PIPELINE_FAULTS"


@dataclass(frozen=True)
class Fault:
    table: str
    day: dt.date
    action: str

    def apply(self, attempt: int) -> None:
        kind, _, arg = self.action.partition("=")
        if kind == "fail":
            raise RuntimeError(f"injected failure for {self.table} on {self.day} ({FAULTS_ENV})")
        if kind == "sleep":
            time.sleep(float(arg))
        elif kind == "wait_for":
            Path(f"{arg}.waiting").touch()  # tells the test this shard, inside the run's lock, is parked
            deadline = time.monotonic() + WAIT_FOR_LIMIT_SECONDS
            while not Path(arg).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"injected wait for {self.table} on {self.day}: {arg} did not appear in {WAIT_FOR_LIMIT_SECONDS}s")
                time.sleep(0.1)
        elif kind == "transient" and attempt <= int(arg or 1):
            raise TransientError(f"injected transient failure for {self.table} on {self.day}, attempt {attempt}")


def faults_from_env() -> list[Fault]:
    spec = os.environ.get(FAULTS_ENV, "").strip()
    faults = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        where, _, action = item.partition(":")
        table_name, _, day = where.partition("@")
        faults.append(Fault(table_name, dt.date.fromisoformat(day), action or "fail"))
    return faults

