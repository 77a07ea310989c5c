"""What a run shows while it works and when it ends: progress per level and for the whole run
(dates done of total, rows per second, ETA), then a one-screen summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

# Logs captured from a pipe (CI, `ray job`) get a wide fixed layout instead of 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)


class RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        rows = task.fields.get("rows", 0)
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        return Text(f"{rows:>9,} rows {rate:>9,.0f}/s", style="cyan")


def run_progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("dates"),
        RowsPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        refresh_per_second=4,
    )


@dataclass
class TableOutcome:
    built: int = 0
    rows: int = 0
    failed: dict = field(default_factory=dict)  # date -> error (first line)
    blocked: set = field(default_factory=set)  # dates not run: an input failed or its gate did
    gate_failed: set = field(default_factory=set)  # dates built whose gate failed (now `failed`)
    bootstrap: int = 0
    seconds: float = 0.0


@dataclass
class RunSummary:
    run_id: str
    started: float = field(default_factory=time.monotonic)
    tables: dict[str, TableOutcome] = field(default_factory=dict)
    first_date: object = None
    last_date: object = None
    quarantined: int = 0
    # Rows of nba_raw.prop_lines built in this run that are not used, by status (no_player, ...).
    lines_set_aside: dict[str, int] = field(default_factory=dict)
    gate_failures: list[str] = field(default_factory=list)
    gate_overridden: list[str] = field(default_factory=list)
    # Table data that passed through the driver (inputs it read, rows and row hashes it got
    # back) against the size of the rows built: with worker-side I/O only the hashes pass.
    driver_bytes: int = 0
    profile_bytes: int = 0  # the shards' column profiles (nba_orchestration.table_profile) the driver commits
    rows_bytes: int = 0
    worker_io: bool = False
    # Warehouse jobs the driver made during the run, by kind (BigQuery: what a run costs), and the
    # load jobs Ray workers made staging their own shards' rows (one per shard).
    jobs: dict[str, int] = field(default_factory=dict)
    worker_loads: int = 0
    # Each level run: its number, tables and wall seconds (building, committing and its gate).
    levels: list[dict] = field(default_factory=list)
    # The Ray nodes that built what was committed: {node ID (or IP, without Ray): IP}.
    nodes: dict[str, str] = field(default_factory=dict)

    def outcome(self, table: str) -> TableOutcome:
        return self.tables.setdefault(table, TableOutcome())

    @property
    def failed_dates(self) -> dict[str, list]:
        return {t: sorted(o.failed) for t, o in self.tables.items() if o.failed}

    @property
    def unfinished(self) -> dict[str, list]:
        """Per table, the dates this run meant to build and did not finish: failed, failed their
        gate, or not run because an input did."""
        return {t: sorted(set(o.failed) | o.gate_failed | o.blocked) for t, o in self.tables.items() if o.failed or o.gate_failed or o.blocked}

    @property
    def ok(self) -> bool:
        return not self.failed_dates and not self.gate_failures

    def render(self, retry_command: str | None) -> None:
        elapsed = time.monotonic() - self.started
        grid = RichTable(title=f"run {self.run_id}: {self.first_date} .. {self.last_date} in {elapsed:.1f}s", title_justify="left")
        for column in ("table", "dates built", "rows written", "bootstrap skipped", "failed", "blocked", "seconds"):
            grid.add_column(column, justify="left" if column == "table" else "right")
        for name, o in self.tables.items():
            grid.add_row(
                name,
                f"{o.built:,}",
                f"{o.rows:,}",
                f"{o.bootstrap:,}" if o.bootstrap else "",
                f"[red]{len(o.failed):,}" if o.failed else "",
                f"[yellow]{len(o.blocked):,}" if o.blocked else "",
                f"{o.seconds:.1f}",
            )
        console.print(grid)
        if self.rows_bytes:
            where = "the workers read their inputs and staged their rows" if self.worker_io else "the driver read every shard's inputs and wrote its rows"
            console.print(
                f"driver moved {size_text(self.driver_bytes)} of table data for {size_text(self.rows_bytes)} of rows built "
                f"({self.driver_bytes / self.rows_bytes:.1%}), and {size_text(self.profile_bytes)} of their column profiles: {where}",
                highlight=False,
            )
        if self.jobs:
            console.print(
                f"warehouse jobs: {self.jobs.get('transaction', 0):,} transactions, {self.jobs.get('load', 0):,} load jobs, "
                f"{self.jobs.get('query', 0):,} other queries by the driver; {self.worker_loads:,} load jobs by workers staging their shards",
                highlight=False,
            )
        if self.quarantined:
            console.print(f"[yellow]{self.quarantined:,} raw row(s) quarantined in nba_raw.quarantine (data.on_bad_rows=quarantine)")
        if self.lines_set_aside:
            counts = ", ".join(f"{n:,} {status}" for status, n in self.lines_set_aside.items())
            console.print(
                f"[yellow]{sum(self.lines_set_aside.values()):,} prop line row(s) set aside in nba_raw.prop_lines ({counts}): its reason column says why",
                highlight=False,
            )
        for name in self.gate_overridden:
            console.print(f"[bold yellow]VALIDATION GATE OVERRIDDEN for {name} (validation.gate=false): dependents ran on data that failed critical checks")
        for name in self.gate_failures:
            console.print(f"[bold red]validation gate failed for {name}: its dependents did not run")
        for name, dates in self.failed_dates.items():
            errors = self.tables[name].failed
            shown_dates = ", ".join(str(d) for d in dates[:10]) + (" ..." if len(dates) > 10 else "")
            console.print(Text(f"{name}: {len(dates)} failed date(s): {shown_dates}", style="red"))
            for message in sorted(set(errors.values()))[:3]:
                lines = message.splitlines()
                shown = "\n      ".join(lines[:8]) + ("\n      ..." if len(lines) > 8 else "")
                console.print(Text("    " + shown, style="red"), soft_wrap=True)
        if retry_command:
            console.print("retry the failed dates, and the dates they held back, with:")
            console.print(Text("  " + retry_command, style="bold"), soft_wrap=True)


def size_text(nbytes: int) -> str:
    """A size in bytes as people read it: KB below a megabyte, MB above."""
    return f"{nbytes / 2**20:,.1f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:,.1f} KB"
