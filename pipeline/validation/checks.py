"""The checks, one function per kind. Each is pure: Polars frames (and config) in, results out.

Frames hold only the columns a check needs, plus ``game_date``. Shares are reported in 0..1.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping, Sequence

import polars as pl

from pipeline.calendar import date_runs, runs_text
from pipeline.validation.config import BoundRule, CrossCheck, IdentityRule, Threshold
from pipeline.validation.results import (
    BOUNDS,
    COVERAGE,
    CROSS_LAYER,
    DUPLICATES,
    FAIL,
    FLAGGED,
    GAPS,
    IDENTITY,
    INFO,
    PASS,
    REGRESSION,
    SAME_DATES,
    SKIP,
    Result,
)


BOUND_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Scope:
    """A named set of game dates a measure is aggregated over."""

    label: str
    dates: tuple[dt.date, ...]

    @property
    def start(self) -> dt.date | None:
        return min(self.dates) if self.dates else None

    @property
    def end(self) -> dt.date | None:
        return max(self.dates) if self.dates else None


def pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.2f}%".replace(".00%", "%")


def _value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _key_text(row: Mapping[str, object], key: Sequence[str]) -> str:
    return " ".join(f"{k}={row[k]}" for k in key)


# -- coverage ----------------------------------------------------------------------------------


def _pop(feature: str) -> str:
    return f"{feature}\x1fpop"


def _nn(feature: str) -> str:
    return f"{feature}\x1fnn"


def coverage_by_date(frame: pl.DataFrame, thresholds: Mapping[str, Threshold]) -> pl.DataFrame:
    """Per game date and feature: rows in the feature's population, and of those non-NULL."""
    if not thresholds:
        return pl.DataFrame(schema={"game_date": pl.Date})
    flags = []
    for feature, t in thresholds.items():
        in_pop = t.population.expr()  # may be a literal: broadcast per row before summing
        flags.append(in_pop.alias(_pop(feature)))
        flags.append((in_pop & pl.col(feature).is_not_null()).alias(_nn(feature)))
    return (
        frame.select("game_date", *flags)
        .group_by("game_date")
        .agg(pl.exclude("game_date").cast(pl.Int64).sum())
        .sort("game_date")
    )


def _totals(daily: pl.DataFrame, feature: str, dates: Sequence[dt.date]) -> tuple[int, int]:
    part = daily.filter(pl.col("game_date").is_in(list(dates)))
    if part.is_empty():
        return 0, 0
    return int(part[_pop(feature)].sum()), int(part[_nn(feature)].sum())


def coverage_results(
    table: str,
    daily: pl.DataFrame,
    thresholds: Mapping[str, Threshold],
    scopes: Sequence[Scope],
    reference: Sequence[dt.date],
) -> list[Result]:
    """Per feature and scope: non-NULL share over the population against ``min_coverage``. A
    failing result names the dates where the share is below the threshold."""
    results = []
    for feature, t in thresholds.items():
        for scope in scopes:
            population, non_null = _totals(daily, feature, scope.dates)
            base = dict(
                table=table, check=COVERAGE, feature=feature, scope=scope.label, start_date=scope.start,
                end_date=scope.end, threshold=t.min_coverage, severity=t.severity, rows=population,
            )  # fmt: skip
            if population == 0:
                results.append(Result(**base, observed=None, status=SKIP, failing=0, details=f"no rows in population {t.population.describe()}"))
                continue
            share = non_null / population
            text = f"{non_null:,} of {population:,} rows non-NULL over {t.population.describe()}"
            if share >= t.min_coverage:
                results.append(Result(**base, observed=share, status=PASS, failing=population - non_null, details=text))
                continue
            part = daily.filter(pl.col("game_date").is_in(list(scope.dates)) & (pl.col(_pop(feature)) > 0))
            low = part.filter(pl.col(_nn(feature)) < t.min_coverage * pl.col(_pop(feature)))["game_date"].to_list()
            runs = date_runs(low, reference)
            text += f"; below {pct(t.min_coverage)} on {len(low)} date(s): {runs_text(runs)}; {t.reason}"
            results.append(
                Result(
                    **{**base, "start_date": min(low) if low else scope.start, "end_date": max(low) if low else scope.end},
                    observed=share,
                    status=FAIL,
                    failing=population - non_null,
                    details=text,
                )
            )
    return results


def regression_results(
    table: str,
    daily: pl.DataFrame,
    thresholds: Mapping[str, Threshold],
    pairs: Sequence[tuple[Scope, Scope]],
    max_drop: float,
) -> list[Result]:
    """Coverage in a scope more than ``max_drop`` (relative) below the preceding scope's."""
    results = []
    for feature, t in thresholds.items():
        for current, previous in pairs:
            cur_pop, cur_nn = _totals(daily, feature, current.dates)
            prev_pop, prev_nn = _totals(daily, feature, previous.dates)
            if cur_pop == 0 or prev_pop == 0:
                continue
            now, before = cur_nn / cur_pop, prev_nn / prev_pop
            floor = before * (1.0 - max_drop)
            failed = now < floor
            results.append(
                Result(
                    table=table,
                    check=REGRESSION,
                    feature=feature,
                    scope=current.label,
                    start_date=current.start,
                    end_date=current.end,
                    observed=now,
                    threshold=floor,
                    status=FAIL if failed else PASS,
                    severity=t.severity,
                    rows=cur_pop,
                    failing=cur_pop - cur_nn,
                    details=(
                        f"coverage {pct(now)} vs {pct(before)} over the preceding {len(previous.dates)} game date(s) "
                        f"{previous.start}..{previous.end} (at most {pct(max_drop)} lower allowed)"
                    ),
                )
            )
    return results


# -- rows that cannot be right -----------------------------------------------------------------


def duplicate_results(table: str, frame: pl.DataFrame, key: Sequence[str], scope: Scope, examples: int = 5) -> list[Result]:
    """Rows sharing the table's natural key."""
    groups = (
        frame.group_by(list(key))
        .agg(n=pl.len(), first=pl.col("game_date").min(), last=pl.col("game_date").max())
        .filter(pl.col("n") > 1)
        .sort("first", *key)
    )
    extra = int((groups["n"] - 1).sum()) if groups.height else 0
    details = f"{frame.height:,} rows, key ({', '.join(key)})"
    if extra:
        shown = "; ".join(f"{_key_text(r, key)} x{r['n']} on {r['first']}" for r in groups.head(examples).iter_rows(named=True))
        details = f"{groups.height:,} key(s) appear more than once ({extra:,} extra rows), e.g. {shown}"
    return [
        Result(
            table=table, check=DUPLICATES, feature=",".join(key), scope=scope.label,
            start_date=groups["first"].min() if extra else scope.start, end_date=groups["last"].max() if extra else scope.end,
            observed=float(extra), threshold=0.0, status=FAIL if extra else PASS, severity="critical",
            rows=frame.height, failing=extra, details=details,
        )
    ]  # fmt: skip


def bounds_results(
    table: str, frame: pl.DataFrame, rules: Sequence[BoundRule], key: Sequence[str], scope: Scope, examples: int = 5
) -> list[Result]:
    """Values outside a rule's min..max over its population; ``flag`` rules only count them."""
    results = []
    for rule in rules:
        for column in [c for c in frame.columns if rule.applies(table, c)]:
            base = dict(table=table, feature=column, scope=scope.label, severity=rule.severity)
            missing = sorted(rule.population.columns - set(frame.columns))
            if missing:
                results.append(
                    Result(**base, check=FLAGGED if rule.flag else BOUNDS, start_date=scope.start, end_date=scope.end,
                           observed=None, threshold=None, status=SKIP,
                           details=f"rule {rule.name}: no column(s) {missing} for its population")
                )  # fmt: skip
                continue
            values = frame.filter(rule.population.expr() & pl.col(column).is_not_null())
            outside = pl.lit(False)  # a float rounding error (1.0000000000000002) is not outside
            if rule.min is not None:
                outside = outside | (pl.col(column) < rule.min - BOUND_TOLERANCE)
            if rule.max is not None:
                outside = outside | (pl.col(column) > rule.max + BOUND_TOLERANCE)
            bad = values.filter(outside).sort("game_date", *key)
            where = f"{rule.population.describe()}" if rule.population.conditions else "all rows"
            context = sorted(rule.population.columns - {column})
            detail = f"rule {rule.name} ({rule.describe()}) over {where}: {values.height:,} values"
            if values.height:
                detail += f", observed {_value(values[column].min())}..{_value(values[column].max())}"
            if bad.height:
                shown = "; ".join(
                    f"{_key_text(r, key)} on {r['game_date']}: {column}={_value(r[column])}"
                    + "".join(f", {c}={_value(r[c])}" for c in context)
                    for r in bad.head(examples).iter_rows(named=True)
                )
                detail += f"; {bad.height:,} outside, e.g. {shown}"
            if rule.reason:
                detail += f"; {rule.reason}"
            status = (INFO if bad.height else PASS) if rule.flag else (FAIL if bad.height else PASS)
            results.append(
                Result(
                    **base,
                    check=FLAGGED if rule.flag else BOUNDS,
                    start_date=bad["game_date"].min() if bad.height else scope.start,
                    end_date=bad["game_date"].max() if bad.height else scope.end,
                    observed=float(bad.height),
                    threshold=None if rule.flag else 0.0,
                    status=status,
                    rows=values.height,
                    failing=bad.height,
                    details=detail,
                )
            )
    return results


def identity_results(
    table: str, frame: pl.DataFrame, rules: Sequence[IdentityRule], key: Sequence[str], scope: Scope, examples: int = 5
) -> list[Result]:
    """Rows where ``lhs op rhs`` does not hold (rows with a NULL operand are not counted)."""
    results = []
    for rule in rules:
        if not rule.identity.columns <= set(frame.columns) or (rule.tables is not None and table not in rule.tables):
            continue
        checked = frame.with_columns(
            __holds=rule.identity.holds(rule.tolerance), __lhs=rule.identity.lhs_expr(), __rhs=rule.identity.rhs_expr()
        ).filter(pl.col("__holds").is_not_null())
        bad = checked.filter(~pl.col("__holds")).sort("game_date", *key)
        detail = f"{rule.identity.text} on {checked.height:,} rows"
        if bad.height:
            shown = "; ".join(
                f"{_key_text(r, key)} on {r['game_date']}: {r['__lhs']:g} vs {r['__rhs']:g}" for r in bad.head(examples).iter_rows(named=True)
            )
            detail += f"; fails on {bad.height:,}, e.g. {shown}"
        results.append(
            Result(
                table=table, check=IDENTITY, feature=rule.name, scope=scope.label,
                start_date=bad["game_date"].min() if bad.height else scope.start,
                end_date=bad["game_date"].max() if bad.height else scope.end,
                observed=float(bad.height), threshold=0.0, status=FAIL if bad.height else PASS,
                severity=rule.severity, rows=checked.height, failing=bad.height, details=detail,
            )
        )  # fmt: skip
    return results


# -- across tables -----------------------------------------------------------------------------


def _short(table: str) -> str:
    return table.split(".", 1)[-1]


def _excuse(bad: pl.DataFrame, keys: list[str], excused: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``bad`` split into (still failing, explained by a row of ``excused`` with the same key)."""
    if excused is None or excused.is_empty() or bad.is_empty():
        return bad, bad.clear()
    excused = excused.select(keys).unique()
    return bad.join(excused, on=keys, how="anti"), bad.join(excused, on=keys, how="semi")


def _excused_text(check: CrossCheck, excused: pl.DataFrame, keys: list[str], examples: int) -> str:
    shown = ", ".join(f"{' '.join(str(r[k]) for k in keys)} ({r['game_date']})" for r in excused.head(examples).iter_rows(named=True))
    return f"; {excused.height:,} more differ but have rows in {_short(check.excused_by or '')} (excused, not failed): {shown}"


def _status(failing: int, excused: int) -> str:
    return FAIL if failing else INFO if excused else PASS


def sums_match_results(
    check: CrossCheck, detail: pl.DataFrame, total: pl.DataFrame, scope: Scope, examples: int = 5, excused: pl.DataFrame | None = None
) -> list[Result]:
    """The detail rows summed per key equal the total row of that key, for keys both have. Keys
    with rows in ``excused`` (quarantined raw rows) are listed, not failed."""
    left_keys = [left for left, _ in check.on]
    sums = detail.group_by(left_keys).agg(pl.col(d).sum().alias(f"__sum_{i}") for i, (d, _) in enumerate(check.columns))
    totals = total.select(
        *(pl.col(right).alias(left) for left, right in check.on),
        "game_date",
        *(pl.col(t).alias(f"__total_{i}") for i, (_, t) in enumerate(check.columns)),
    )
    joined = sums.join(totals, on=left_keys, how="inner")
    mismatch = pl.any_horizontal(
        ((pl.col(f"__sum_{i}").cast(pl.Float64) - pl.col(f"__total_{i}").cast(pl.Float64)).abs() > check.tolerance).fill_null(True)
        for i in range(len(check.columns))
    )
    bad, explained = _excuse(joined.filter(mismatch).sort("game_date", *left_keys), left_keys, excused)
    columns = ", ".join(f"{d}" if d == t else f"{d}->{t}" for d, t in check.columns)
    text = (
        f"sum of {columns} in {_short(check.left)} per ({', '.join(left_keys)}) vs {_short(check.right)}"
        f"{f' (tolerance {check.tolerance:g})' if check.tolerance else ''}: {joined.height:,} key(s) compared"
    )
    if bad.height:
        shown = []
        for r in bad.head(examples).iter_rows(named=True):
            diffs = ", ".join(
                f"{d} {r[f'__sum_{i}']:g} in {_short(check.left)} vs {t} {r[f'__total_{i}']:g} in {_short(check.right)}"
                for i, (d, t) in enumerate(check.columns)
                if r[f"__sum_{i}"] is None or r[f"__total_{i}"] is None or abs(r[f"__sum_{i}"] - r[f"__total_{i}"]) > check.tolerance
            )
            shown.append(f"game {' '.join(str(r[k]) for k in left_keys)} on {r['game_date']}: {diffs}")
        text += f"; {bad.height:,} differ: " + "; ".join(shown)
    if explained.height:
        text += _excused_text(check, explained, left_keys, examples)
    if check.reason:
        text += f"; {check.reason}"
    flagged = bad if bad.height else explained
    return [
        Result(
            table=check.left, check=CROSS_LAYER, feature=check.name, scope=scope.label,
            start_date=flagged["game_date"].min() if flagged.height else scope.start,
            end_date=flagged["game_date"].max() if flagged.height else scope.end,
            observed=float(bad.height), threshold=0.0, status=_status(bad.height, explained.height), severity=check.severity,
            rows=joined.height, failing=bad.height, details=text, related=(check.right,),
        )
    ]  # fmt: skip


def keys_match_results(
    check: CrossCheck, left: pl.DataFrame, right: pl.DataFrame, scope: Scope, examples: int = 5, excused: pl.DataFrame | None = None
) -> list[Result]:
    """Every key of ``left`` has rows in ``right`` and the other way round (keys with rows in
    ``excused`` are listed, not failed)."""
    left_keys = [left for left, _ in check.on]
    lk = left.group_by(left_keys).agg(game_date=pl.col("game_date").min())
    rk = right.select(*(pl.col(right).alias(left) for left, right in check.on), "game_date").group_by(left_keys).agg(pl.col("game_date").min())
    only_left, left_explained = _excuse(lk.join(rk, on=left_keys, how="anti").sort("game_date", *left_keys), left_keys, excused)
    only_right, right_explained = _excuse(rk.join(lk, on=left_keys, how="anti").sort("game_date", *left_keys), left_keys, excused)
    explained = pl.concat([left_explained, right_explained])
    keys = ", ".join(left_keys)
    text = f"({keys}): {lk.height:,} key(s) in {_short(check.left)}, {rk.height:,} in {_short(check.right)}"
    for missing, have, lacks in ((only_left, check.left, check.right), (only_right, check.right, check.left)):
        if missing.height:
            shown = ", ".join(f"{' '.join(str(r[k]) for k in left_keys)} ({r['game_date']})" for r in missing.head(examples).iter_rows(named=True))
            runs = date_runs(missing["game_date"].unique().to_list(), sorted(set(lk["game_date"]) | set(rk["game_date"])))
            text += f"; {missing.height:,} in {_short(have)} without rows in {_short(lacks)} on {runs_text(runs)}, e.g. {shown}"
    if explained.height:
        text += _excused_text(check, explained, left_keys, examples)
    if check.reason and (only_left.height or only_right.height):
        text += f"; {check.reason}"
    count = only_left.height + only_right.height
    flagged = pl.concat([only_left["game_date"], only_right["game_date"]]) if count else explained["game_date"]
    return [
        Result(
            table=check.left, check=CROSS_LAYER, feature=check.name, scope=scope.label,
            start_date=flagged.min() if flagged.len() else scope.start, end_date=flagged.max() if flagged.len() else scope.end,
            observed=float(count), threshold=0.0, status=_status(count, explained.height), severity=check.severity,
            rows=lk.height + rk.height, failing=count, details=text, related=(check.right,),
        )
    ]  # fmt: skip


# -- dates -------------------------------------------------------------------------------------


def gap_results(
    table: str,
    expected: Sequence[dt.date],
    present: set[dt.date],
    reference: Sequence[dt.date],
    severity: str,
    scope: Scope,
    state_of: Mapping[dt.date, str] | None = None,
) -> list[Result]:
    """Expected game dates (the schedule's, outside the bootstrap window) the table has no rows
    for: one failing result per run of consecutive missing game dates."""
    missing = sorted(set(expected) - present)
    if not missing:
        return [
            Result(
                table=table, check=GAPS, feature="", scope=scope.label, start_date=scope.start, end_date=scope.end,
                observed=0.0, threshold=0.0, status=PASS, severity=severity, rows=len(expected), failing=0,
                details=f"rows on all {len(expected):,} expected game dates",
            )
        ]  # fmt: skip
    state_of = state_of or {}
    results = []
    for first, last, n in date_runs(missing, reference):
        run_dates = [d for d in missing if first <= d <= last]
        statuses: dict[str, int] = {}
        for d in run_dates:
            statuses[state_of.get(d) or "no run state"] = statuses.get(state_of.get(d) or "no run state", 0) + 1
        span = (last - first).days + 1
        results.append(
            Result(
                table=table, check=GAPS, feature="", scope="gap", start_date=first, end_date=last,
                observed=float(n), threshold=0.0, status=FAIL, severity=severity, rows=len(expected), failing=n,
                details=(
                    f"no rows on {n} scheduled game date(s) {first}..{last} ({span} day(s)); run state of those dates: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
                ),
            )
        )  # fmt: skip
    return results


def same_dates_results(
    phase: int,
    present: Mapping[str, set[dt.date]],
    expected: Mapping[str, set[dt.date]],
    reference: Sequence[dt.date],
    severity: str,
    scope: Scope,
) -> list[Result]:
    """The tables of one phase cover the same game dates: a date one table has rows for and
    another lacks (outside that one's bootstrap window) fails for the one that lacks it."""
    results = []
    for table in present:
        others = [t for t in present if t != table]
        if not others:
            continue
        have = set().union(*(present[t] for t in others)) & expected[table]
        lacking = sorted(have - present[table])
        holders = tuple(t for t in others if set(lacking) & present[t])
        text = f"phase {phase}: {len(present[table] & expected[table]):,} date(s) with rows, compared with {', '.join(_short(t) for t in others)}"
        if lacking:
            text += f"; no rows on {len(lacking)} date(s) the others have: {runs_text(date_runs(lacking, reference))}"
        results.append(
            Result(
                table=table, check=SAME_DATES, feature=f"phase {phase}", scope=scope.label,
                start_date=lacking[0] if lacking else scope.start, end_date=lacking[-1] if lacking else scope.end,
                observed=float(len(lacking)), threshold=0.0, status=FAIL if lacking else PASS, severity=severity,
                rows=len(expected[table]), failing=len(lacking), details=text, related=holders,
            )
        )  # fmt: skip
    return results
