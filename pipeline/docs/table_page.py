"""A table's page: purpose and formulas (its module's docstring), columns with types and their
latest profile, natural key, inputs with lookbacks, its validation rules (coverage, bounds,
identities, cross-table checks, drift limits), the bootstrap rule, coverage by season and month,
rows per date, and the latest validation results."""

from __future__ import annotations

import sys
from typing import Any

import polars as pl
from markupsafe import Markup

from pipeline.docs.charts import Series, line_chart
from pipeline.docs.collect import SiteData
from pipeline.docs.format import anchor, check_rank, integer_text, markdown, number_text, percent_text, result_row, table_page
from pipeline.tables import Table


class TablePage:
    """The template values of each table's page."""

    def __init__(self, data: SiteData, levels: dict[str, int]):
        self.data = data
        self.levels = levels

    def context(self, name: str, t: Table) -> dict[str, Any]:
        data = self.data
        module = sys.modules.get(t.build.__module__)
        doc = (module.__doc__ if module else None) or t.description
        inputs = [
            {"name": i.table, "link": "../" + table_page(i.table) if not i.is_source else None, "lookback": i.lookback.describe(),
             "columns": ", ".join(i.columns) if i.columns else "all"}
            for i in t.inputs
        ]  # fmt: skip
        dependents = [{"name": n, "link": "../" + table_page(n)} for n, other in data.tables.items() if name in other.upstream_tables]
        profile = data.latest_profile.filter(pl.col("table_name") == name)
        by_column = {r["column_name"]: r for r in profile.iter_rows(named=True)}
        watched = data.validation.drift.watched(name, list(t.schema))
        columns = []
        for column, dtype in t.schema.items():
            p = by_column.get(column, {})
            if column in t.key:  # identifiers: their mean or quartiles mean nothing
                p = {"null_fraction": p.get("null_fraction")}
            approx = "≈" if p and p.get("quartiles_exact") is False and p.get("p50") is not None else ""
            columns.append({
                "name": column, "type": str(dtype), "key": column in t.key, "null": percent_text(p.get("null_fraction")),
                "mean": number_text(p.get("mean_value")), "min": number_text(p.get("min_value")), "p25": approx + number_text(p.get("p25")),
                "p50": approx + number_text(p.get("p50")), "p75": approx + number_text(p.get("p75")), "max": number_text(p.get("max_value")),
                "watched": f"drift: {watched[column].name}" if column in watched else "",
            })  # fmt: skip
        months = [
            {"season": r["season"], "month": r["month"], "ok": integer_text(r["ok"]), "failed": integer_text(r["failed"]) if r["failed"] else "",
             "missing": integer_text(r["missing"]) if r["missing"] else "", "bootstrap": integer_text(r["bootstrap_skipped"]) if r["bootstrap_skipped"] else "",
             "awaiting": integer_text(r["awaiting_box_scores"]) if r["awaiting_box_scores"] else "", "rows": integer_text(r["rows"])}
            for r in data.coverage.filter(pl.col("table") == name).iter_rows(named=True)
        ]  # fmt: skip
        per_date = data.rows_per_date.filter(pl.col("table_name") == name)
        chart = line_chart(
            [Series("rows", per_date["game_date"].to_list(), per_date["rows_written"].to_list(), markers=per_date.height < 40)],
            title=f"{name}: rows per game date (run state)", y_label="rows", y_min=0,
        )  # fmt: skip
        return {
            "t": t, "level": self.levels[name], "status": data.status_of(name), "doc": markdown(doc), "build_text": build_text(t),
            "bootstrap": bootstrap_text(t), "inputs": inputs, "dependents": dependents, "columns": columns,
            "profile_date": profile["game_date"].max() if profile.height else None,
            "approximate": any(c["p50"].startswith("≈") for c in columns),
            "coverage": self.coverage_rules(name), "bounds": self.bound_rules(name, t), "identities": self.identity_rules(name, t),
            "cross": self.cross_rules(name), "drift": self.drift_groups(name, t), "drift_window": data.validation.drift.window_dates,
            "months": months, "rows_chart": Markup(chart), "latest": self.latest_results(name),
            "anchor": anchor(name) if (data.results["table_name"] == name).any() else None,
        }  # fmt: skip

    def coverage_rules(self, name: str) -> list[dict[str, str]]:
        return [
            {"feature": th.feature, "min": percent_text(th.min_coverage, 0 if th.min_coverage in (0, 1) else 1), "population": th.population.describe(),
             "severity": th.severity, "reason": th.reason}
            for th in self.data.validation.thresholds.get(name, {}).values()
        ]  # fmt: skip

    def bound_rules(self, name: str, t: Table) -> list[dict[str, str]]:
        out = []
        for rule in self.data.validation.bounds:
            columns = [c for c in t.schema if rule.applies(name, c)]
            if columns:
                out.append({"name": rule.name + (" (flagged, kept)" if rule.flag else ""), "columns": ", ".join(columns),
                            "range": rule.describe(), "severity": rule.severity, "reason": rule.reason})  # fmt: skip
        return out

    def identity_rules(self, name: str, t: Table) -> list[dict[str, str]]:
        return [
            {"text": f"{r.name}: {r.identity.text}", "severity": r.severity}
            for r in self.data.validation.identities
            if r.identity.columns <= set(t.schema) and (r.tables is None or name in r.tables)
        ]

    def cross_rules(self, name: str) -> list[dict[str, str]]:
        out = []
        for c in self.data.validation.cross:
            if name in c.tables:
                other = c.right if c.left == name else c.left
                out.append({"name": c.name, "reason": c.reason, "kind": c.kind, "other": other, "link": "../" + table_page(other), "severity": c.severity})
        return out

    def drift_groups(self, name: str, t: Table) -> list[dict[str, str]]:
        watched = self.data.validation.drift.watched(name, list(t.schema))
        groups: dict[str, list[str]] = {}
        for column, group in watched.items():
            groups.setdefault(group.name, []).append(column)
        by_name = {g.name: g for g in self.data.validation.drift.groups}

        def limit(value) -> str:
            return "not watched" if value is None else f"robust z above {value.max_z:g} and a change of at least {value.min_change:g}"

        return [{"name": g, "columns": ", ".join(cols), "null": limit(by_name[g].null_fraction), "mean": limit(by_name[g].mean_value)} for g, cols in groups.items()]

    def latest_results(self, name: str) -> dict[str, Any] | None:
        results = self.data.results.filter((pl.col("table_name") == name) | pl.col("related_tables").str.contains(name, literal=True).fill_null(False))
        if results.is_empty():
            return None
        newest = results.sort("checked_at").row(-1, named=True)["run_id"]
        rows = results.filter(pl.col("run_id") == newest)
        failed = rows.filter(pl.col("status") == "fail").sort(pl.col("severity") != "critical", "check_name", "feature")
        kinds = rows.group_by("check_name").len().sort(pl.col("check_name").map_elements(check_rank, return_dtype=pl.Int64))
        return {
            "what": f"{rows['context'][0]} run {newest} ({rows['checked_at'].max():%Y-%m-%d %H:%M} UTC)",
            "passed": integer_text(int((rows["status"] == "pass").sum())), "failed": integer_text(failed.height), "skipped": integer_text(int((rows["status"] == "skip").sum())),
            "failures": [result_row(r) for r in failed.head(50).iter_rows(named=True)],
            "kinds": ", ".join(f"{k} {n}" for k, n in kinds.iter_rows()),
        }  # fmt: skip


def build_text(t: Table) -> str:
    parts = ["one Polars function over each shard's dates"]
    if t.split_by_team:
        parts.append("cut by teams over a season (split_by_team): each Ray task builds some teams' rows")
    if t.needs_box_scores:
        parts.append("rows only on dates whose box scores are in (a date known from a slate only awaits them)")
    if t.built_with:
        parts.append("built together with " + ", ".join(t.built_with))
    return "; ".join(parts)


def bootstrap_text(t: Table) -> str:
    if t.phase != 4:
        return "none: rows on every game date" + (" with box scores" if t.needs_box_scores else "")
    if t.bootstrap_days:
        return (f"no rows in the first {t.bootstrap_days} days from each season opener (phase4.bootstrap_days={t.bootstrap_days}): "
                "those dates are marked skipped_bootstrap in the run state")  # fmt: skip
    return (
        "rows from each season opener on (phase4.bootstrap_days=0): a figure over too few games this season is NULL, or its "
        "*_blended version leans on the previous season (phase4.prior_games)"
    )

