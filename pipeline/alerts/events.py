"""What is wrong, as an alert says it: one :class:`Event` per finding, built by a pure function
from what a run or ``task=watch`` found; :func:`messages` makes one message per kind of event."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping, Sequence

from pipeline.validation.results import Result

# Lines of one message before it says how many more there are.
LINES_SHOWN = 15


@dataclass(frozen=True)
class Event:
    """One finding: its kind (an ``alerts.events`` key), a one-line title, the detail lines, the
    docs page it belongs on (relative to the site) and the local report or log that has more."""

    kind: str
    title: str
    lines: tuple[str, ...] = ()
    page: str = "index.html"
    report: str | None = None


@dataclass(frozen=True)
class Message:
    kind: str
    subject: str
    text: str


def messages(events: Sequence[Event], *, run_id: str, task: str, host: str, docs_url: str | None) -> list[Message]:
    """One message per kind of event, in the order the kinds first appear: the titles, the lines
    (at most ``LINES_SHOWN``), and where to look: the docs page (``docs_url``) or the report."""
    by_kind: dict[str, list[Event]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    out = []
    for kind, group in by_kind.items():
        subject = group[0].title if len(group) == 1 else f"{group[0].title} (and {len(group) - 1} more)"
        lines = [line for e in group for line in ((e.title,) if len(group) > 1 else ()) + e.lines]
        shown = lines[:LINES_SHOWN] + ([f"... and {len(lines) - LINES_SHOWN} more"] if len(lines) > LINES_SHOWN else [])
        where = []
        if docs_url:
            where.append(f"docs: {docs_url}/{group[0].page}")
        where += sorted({f"report: {e.report}" for e in group if e.report})
        text = "\n".join([f"nba-pipeline: {subject}", *shown, *where, f"(task={task}, run {run_id} on {host})"])
        out.append(Message(kind, f"[nba-pipeline] {subject}", text))
    return out


def _dates(days: Sequence[dt.date]) -> str:
    days = sorted(days)
    if not days:
        return "-"
    return str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} dates)"


# -- a run ----------------------------------------------------------------------------------------


def run_failed(failed: Mapping[str, Sequence[dt.date]], unfinished: Mapping[str, Sequence[dt.date]], retry: str | None, log: str) -> Event:
    """A run ended with failed dates: which tables, how many dates, the command that retries them."""
    total = sum(len(v) for v in failed.values())
    lines = [f"{table}: {len(days)} failed date(s): {_dates(days)}" for table, days in failed.items()]
    held = {t: d for t, d in unfinished.items() if t not in failed}
    lines += [f"{table}: {len(days)} date(s) not built (an input failed or its gate did)" for table, days in held.items()]
    if retry:
        lines.append(f"retry: {retry}")
    return Event("run_failed", f"run ended with {total} failed date(s) in {len(failed)} table(s)", tuple(lines), "runs.html", log)


def gate_failed(results: Sequence[Result], report: str) -> Event:
    """A validation gate failed: per failing critical check, the table, check, dates, threshold and value."""
    tables = sorted({r.table for r in results})
    lines = [
        f"{r.table}: {r.label} on {_span(r)}: observed {_number(r.observed)} against threshold {_number(r.threshold)}"
        + (f" ({r.details.splitlines()[0][:200]})" if r.details else "")
        for r in results
    ]
    return Event("gate_failed", f"validation gate failed for {', '.join(t.split('.', 1)[-1] for t in tables)}", tuple(lines), "validation.html", report)


def drift(results: Sequence[Result], report: str) -> Event:
    """Drift warnings: the feature, its statistic, the dates, and the value against its window."""
    features = sorted({f"{r.table.split('.', 1)[-1]}.{r.feature}" for r in results})
    lines = [f"{r.table}.{r.feature} {r.scope}: {r.details.splitlines()[0][:300]}" for r in results]
    return Event("drift", f"drift in {len(features)} feature(s): {', '.join(features[:5])}{' ...' if len(features) > 5 else ''}",
                 tuple(lines), "validation.html", report)  # fmt: skip


def lock_taken_over(previous: Mapping[str, object], warehouse: str, log: str) -> Event:
    """The lock was taken over from a run that died holding it."""
    holder = ", ".join(f"{k} {v}" for k, v in previous.items() if k != "command")
    lines = [f"the previous holder ({holder}) died without releasing the lock of {warehouse}; it never finished"]
    if previous.get("command"):
        lines.append(f"its command: {previous['command']}")
    return Event("lock_taken_over", f"warehouse lock taken over from run {previous.get('run', '?')}", tuple(lines), "runs.html", log)


def _span(result: Result) -> str:
    if result.start_date is None:
        return "all dates"
    return str(result.start_date) if result.end_date in (None, result.start_date) else f"{result.start_date}..{result.end_date}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


# -- backups ---------------------------------------------------------------------------------------


def backup_failed(error: str, target: str, log: str) -> Event:
    return Event("backup_failed", f"backup into {target} failed", tuple(error.strip().splitlines()[:8]), "backups.html", log)


def backup_stale(target: str, newest: dt.datetime | None, now: dt.datetime, max_age_hours: float) -> Event:
    if newest is None:
        return Event("backup_stale", f"no complete backup under {target}", (f"alerts.backup_max_age_hours is {max_age_hours:g}",), "backups.html")
    age = (now - newest).total_seconds() / 3600
    return Event(
        "backup_stale", f"newest complete backup is {age:.0f} hours old", (f"{target}: started {newest:%Y-%m-%d %H:%M} UTC; "
        f"alerts.backup_max_age_hours is {max_age_hours:g}",), "backups.html",
    )  # fmt: skip


# -- the data and the model --------------------------------------------------------------------------


def box_scores_stale(newest: dt.date, today: dt.date, after_days: int, raw_dir: str) -> Event:
    days = (today - newest).days
    return Event(
        "box_scores_stale", f"no new box scores for {days} days (newest {newest})",
        (f"{raw_dir}: the newest game date is {newest}, {days} days before {today}, inside the season window; "
         f"alerts.stale_after_days is {after_days}",), "index.html",
    )  # fmt: skip


def predictions_due(due: Mapping[dt.date, dt.datetime], now: dt.datetime, hours: float) -> Event:
    lines = [
        f"{day}: first tip-off {tipoff:%Y-%m-%d %H:%M} UTC "
        + (f"passed {(now - tipoff).total_seconds() / 3600:.1f} hours ago" if now >= tipoff else f"in {(tipoff - now).total_seconds() / 3600:.1f} hours")
        + " and nba_predictions.player_points_predictions has no row for it"
        for day, tipoff in sorted(due.items())
    ]
    lines.append(f"alerts.predictions_due_hours is {hours:g}: run task=predict dates.start=<date> dates.end=<date>")
    return Event("predictions_due", f"no predictions for {len(due)} slate date(s) due before tip-off", tuple(lines), "model.html")


def model_worse(model: Mapping[str, object]) -> Event:
    """The graded predictions of the last dates are worse than the best baseline on the same rows."""
    lines = (
        f"model {model['model_id']}: MAE {model['model_mae']:.3f} against {model['best_baseline']} {model['best_baseline_mae']:.3f} "
        f"on the same {model['rows']:,} graded player-games of {model['first_date']}..{model['last_date']} ({model['dates']} dates)",
    )
    return Event("model_worse", f"model worse than the {model['best_baseline']} baseline on its last {model['dates']} graded dates", lines, "model.html")
