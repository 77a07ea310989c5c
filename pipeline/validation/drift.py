"""Drift: a watched feature's null fraction or mean on a date, against the same statistic on the
trailing window of earlier game dates of the same season (``validation.drift``).

The statistics come from ``nba_orchestration.table_profile`` (one value per date: the profile
the run wrote with the rows). For each checked date the window is the ``window_dates`` game
dates with rows just before it in its own season; a season's first ``min_window_dates`` dates
are not checked, since null fractions restart by design at every opener (season averages are
NULL again for everyone) and a window reaching into the season before would flag every opener.

A value drifts when it is far from the window's median both

- in robust z-score: ``|x − median| / (1.4826 · MAD)`` above ``max_z`` (MAD, the median absolute
  deviation, times 1.4826 is the standard deviation for normal data, and one odd date in the
  window moves neither), and
- in plain terms: ``|x − median|`` at least ``min_change`` (a share, for null fractions) or at
  least ``min_change`` times ``|median|`` (for means), so that a window that barely moves (a MAD
  near 0) does not turn noise into alarms.

Pure: Polars frames and settings in, :class:`Result` rows out (one per table, feature and
statistic checked; ``fail`` lists each drifting date with its value, the window's median and z).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from pipeline.validation.results import DRIFT, FAIL, PASS, Result

# The MAD of normal data times this is its standard deviation.
MAD_TO_SIGMA = 1.4826
STATISTICS = {"null_fraction": "null fraction", "mean_value": "mean"}


@dataclass(frozen=True)
class Limit:
    """When a statistic drifts: robust z above ``max_z`` and a change of at least ``min_change``."""

    max_z: float
    min_change: float


@dataclass(frozen=True)
class DriftGroup:
    """Features watched together, with their limits (None: that statistic is not watched)."""

    name: str
    tables: tuple[str, ...]  # full names
    columns: tuple[str, ...]
    match: str | None
    exclude: tuple[str, ...]
    null_fraction: Limit | None
    mean_value: Limit | None

    def applies(self, table: str, column: str) -> bool:
        if table not in self.tables or column in self.exclude:
            return False
        return column in self.columns or bool(self.match and re.search(self.match, column))


@dataclass(frozen=True)
class DriftSettings:
    severity: str = "warning"  # task=validate's; a run's gates always treat drift as a warning
    window_dates: int = 20
    min_window_dates: int = 10
    groups: tuple[DriftGroup, ...] = ()

    def watched(self, table: str, columns: Sequence[str]) -> dict[str, DriftGroup]:
        """{column: its group} for the columns of ``table`` some group watches (the first group wins)."""
        found: dict[str, DriftGroup] = {}
        for group in self.groups:
            for column in columns:
                if column not in found and group.applies(table, column):
                    found[column] = group
        return found


def drift_results(
    table: str,
    profile: pl.DataFrame,
    checked: Sequence[dt.date],
    season_of: Mapping[dt.date, str],
    watched: Mapping[str, DriftGroup],
    settings: DriftSettings,
    severity: str,
) -> list[Result]:
    """Each watched column's null fraction and mean on each ``checked`` date against its window.

    ``profile``: the table's profile rows (``game_date``, ``column_name``, ``row_count``,
    ``null_fraction``, ``mean_value``) on the checked dates and the dates before them in their
    seasons. Dates without rows are in no window and are not checked."""
    wanted = set(checked)
    rows = profile.filter(pl.col("column_name").is_in(list(watched)) & (pl.col("row_count") > 0)).sort("game_date")
    results = []
    for (column,), series in rows.group_by(["column_name"], maintain_order=True):
        group = watched[column]
        days = series["game_date"].to_list()
        seasons = [season_of.get(d, "") for d in days]
        for statistic, label in STATISTICS.items():
            limit: Limit | None = getattr(group, statistic)
            if limit is None:
                continue
            values = series[statistic].cast(pl.Float64).to_numpy()
            found = _drifts(days, seasons, values, wanted, limit, settings, absolute=statistic == "null_fraction")
            if found is None:
                continue
            checked_here, drifting = found
            worst = max(drifting, key=lambda d: d[3], default=None)
            results.append(
                Result(
                    table=table, check=DRIFT, feature=column, scope=label,
                    start_date=min(d[0] for d in drifting) if drifting else min(checked_here),
                    end_date=max(d[0] for d in drifting) if drifting else max(checked_here),
                    observed=worst[1] if worst else None, threshold=limit.max_z, status=FAIL if drifting else PASS,
                    severity=severity, rows=len(checked_here), failing=len(drifting),
                    details=_details(label, drifting, limit, group.name, settings.window_dates) if drifting
                    else f"{len(checked_here)} date(s) within robust z {limit.max_z:g} of their window (group {group.name})",
                )
            )  # fmt: skip
    return results


def _drifts(days, seasons, values, wanted, limit: Limit, settings: DriftSettings, *, absolute: bool):
    """(checked dates, [(date, value, median, z)] of those that drift), or None if no checked
    date has a window (too early in its season)."""
    checked_here, drifting = [], []
    width = settings.window_dates
    days = np.asarray(days, dtype=object)
    seasons = np.asarray(seasons, dtype=object)
    for season in dict.fromkeys(seasons.tolist()):
        at = np.flatnonzero((seasons == season) & ~np.isnan(values))
        season_values, season_days = values[at], days[at]
        # Row k: the `width` values just before value k in its season (NaN where there are fewer).
        padded = np.concatenate([np.full(width, np.nan), season_values])
        windows = np.lib.stride_tricks.sliding_window_view(padded, width)[: len(season_values)]
        enough = (~np.isnan(windows)).sum(axis=1) >= settings.min_window_dates
        asked = np.array([d in wanted for d in season_days], dtype=bool) & enough
        if not asked.any():
            continue
        windows, x = windows[asked], season_values[asked]
        median = np.nanmedian(windows, axis=1)
        scale = MAD_TO_SIGMA * np.nanmedian(np.abs(windows - median[:, None]), axis=1)
        change = np.abs(x - median)
        floor = limit.min_change if absolute else limit.min_change * np.abs(median)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(scale > 0, change / scale, np.where(change > 0, np.inf, 0.0))
        flagged = (change >= floor) & (change > 0) & (z > limit.max_z)
        checked_here += season_days[asked].tolist()
        drifting += [(d, float(v), float(m), float(q)) for d, v, m, q in zip(season_days[asked][flagged], x[flagged], median[flagged], z[flagged])]
    return (checked_here, drifting) if checked_here else None


def _details(label: str, drifting: list, limit: Limit, group: str, window: int) -> str:
    shown = sorted(drifting)[:8]
    dates = "; ".join(f"{d}: {_fmt(label, x)} against a median of {_fmt(label, m)} (robust z {z:.1f})" for d, x, m, z in shown)
    more = f"; and {len(drifting) - len(shown)} more date(s)" if len(drifting) > len(shown) else ""
    return (
        f"{label} drifted on {len(drifting)} date(s) from its window of up to {window} earlier dates of the season "
        f"(group {group}: robust z above {limit.max_z:g} and a change of at least {limit.min_change:g}): {dates}{more}"
    )


def _fmt(label: str, value: float) -> str:
    return f"{100 * value:.1f}%" if label == "null fraction" else f"{value:.4g}"
