"""The site's pages, from :class:`~pipeline.docs.collect.SiteData`: what each page shows, as plain
values for its template (``templates/``, Jinja2 with autoescaping: every value is escaped, and
only the SVG drawn here and Markdown rendered here pass as markup)."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from pipeline.docs.charts import Series, line_chart, reliability_chart
from pipeline.docs.collect import SiteData
from pipeline.docs.lineage import STATUS_CLASSES, lineage_svg
from pipeline.tables import Table, dag_levels
from pipeline.validation.results import CHECK_ORDER

STATIC = Path(__file__).parent / "static"
MODEL_DIR = "model"
# Files of a model directory never copied into the site: the model itself.
MODEL_FILES_LEFT_OUT = {"model.txt", "model.json"}
LEGEND = (("ok", "every date built"), ("failed", "a date failed"), ("incomplete", "dates missing"), ("unbuilt", "not built"), ("source", "raw files"))


def environment() -> Environment:
    env = Environment(loader=PackageLoader("pipeline.docs", "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    return env


def markdown(text: str) -> Markup:
    """Markdown (docstrings, the model's report) as HTML; raw HTML in it is escaped."""
    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def table_page(name: str) -> str:
    return f"tables/{name}.html"


def anchor(*parts: str) -> str:
    return "check-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-")


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "" if value is None else str(value)


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:,.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def _dates(start: dt.date | None, end: dt.date | None) -> str:
    if start is None:
        return ""
    return str(start) if end in (None, start) else f"{start}..{end}"


class Site:
    """Writes every page of the site into ``out``."""

    def __init__(self, data: SiteData, out: Path):
        self.data = data
        self.out = out
        self.env = environment()
        self.levels = {name: number for number, level in enumerate(dag_levels(data.tables)) for name in level}
        self.pages: list[Path] = []

    def write(self) -> list[Path]:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "tables").mkdir(exist_ok=True)
        shutil.copyfile(STATIC / "style.css", self.out / "style.css")
        self.render("index.html", "index.html", self.index())
        for name, table in self.data.tables.items():
            self.render("table.html", table_page(name), self.table(name, table), root="../", title=table.short_name)
        self.render("validation.html", "validation.html", self.validation())
        self.render("runs.html", "runs.html", self.runs())
        self.render("backups.html", "backups.html", self.backups())
        self.render("model.html", "model.html", self.model())
        return self.pages

    def render(self, template: str, path: str, context: dict[str, Any], *, root: str = "", title: str | None = None) -> None:
        page = template.removesuffix(".html")
        context = {**context, "title": title or context.get("title") or page.title()}
        html = self.env.get_template(template).render(root=root, page=page, built_at=self.data.built_at, warehouse=self.data.warehouse, **context)
        target = self.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html)
        self.pages.append(target)

    # -- the index: lineage and tables ------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        data = self.data
        status = {name: data.status_of(name) for name in data.tables}
        titles = {name: f"{name}: {status[name]} · {t.description}" for name, t in data.tables.items()}
        svg = lineage_svg(data.tables, status, {n: table_page(n) for n in data.tables}, titles)
        totals = data.coverage.group_by("table", maintain_order=True).agg(pl.col("ok", "failed", "missing", "awaiting_box_scores", "rows").sum())
        newest = data.rows_per_date.filter(pl.col("status") == "ok").group_by("table_name").agg(pl.col("game_date").max())
        newest_of = dict(newest.iter_rows())
        rows = []
        for name, ok, failed, missing, awaiting, count in totals.iter_rows():
            t = data.tables[name]
            rows.append({
                "level": self.levels[name], "name": name, "link": table_page(name), "phase": t.phase, "status": status[name],
                "ok": _n(ok), "failed": _n(failed) if failed else "", "missing": _n(missing) if missing else "",
                "awaiting": _n(awaiting) if awaiting else "", "rows": _n(count), "newest": newest_of.get(name, ""), "description": t.description,
            })  # fmt: skip
        return {"title": "Lineage and tables", "cards": self.cards(status), "lineage": Markup(svg), "legend": LEGEND, "tables": rows}

    def cards(self, status: dict[str, str]) -> list[dict[str, str]]:
        data = self.data
        counts = {s: sum(1 for v in status.values() if v == s) for s in STATUS_CLASSES}
        worst = "failed" if counts["failed"] else "incomplete" if counts["incomplete"] or counts["unbuilt"] else "ok"
        cards = [{"label": "tables", "value": f"{counts['ok']} of {len(status)} ok", "state": worst, "link": "#tables",
                  "detail": ", ".join(f"{n} {s}" for s, n in counts.items() if n and s != "ok") or f"{len(data.calendar.dates):,} game dates each"}]  # fmt: skip
        if data.runs.height:
            last = data.runs.row(0, named=True)
            cards.append({"label": f"last run ({last['task']})", "value": last["status"], "link": "runs.html",
                          "state": {"ok": "ok", "running": "incomplete", "warnings": "incomplete"}.get(last["status"], "failed"),
                          "detail": f"{last['started_at']:%Y-%m-%d %H:%M} UTC, {_seconds(last)}"})  # fmt: skip
        else:
            cards.append({"label": "last run", "value": "none recorded", "state": "unbuilt", "link": "runs.html", "detail": ""})
        summary = self.validation_runs()
        if summary:
            latest = summary[-1]
            state = "failed" if latest["critical"] else "incomplete" if latest["warnings"] else "ok"
            value = "passed" if state == "ok" else f"{latest['critical'] + latest['warnings']} failing"
            cards.append({"label": f"validation ({latest['context']})", "value": value, "state": state, "link": "validation.html",
                          "detail": f"{latest['checks']} checks, {latest['checked_at']} UTC"})  # fmt: skip
        b = data.backups
        if b.newest is not None:
            hours = (data.built_at - b.newest.started_at).total_seconds() / 3600
            verified = {True: "verified", False: "does NOT verify", None: "not verified here"}[b.verified]
            cards.append({"label": "newest backup", "value": _age(hours), "link": "backups.html",
                          "state": "failed" if b.verified is False else "ok", "detail": f"{b.newest.name}, {verified}"})  # fmt: skip
        else:
            cards.append({"label": "newest backup", "value": "none", "state": "failed" if b.problem else "unbuilt", "link": "backups.html", "detail": b.target})
        if data.models:
            m = data.models[0]
            best = m.get("best_baseline") or {}
            cards.append({"label": "model test MAE", "value": _num(m["test"]["mae"], 4), "link": "model.html",
                          "state": "ok" if best.get("ratio", 1) < 1 else "failed",
                          "detail": f"best baseline {best.get('name', '?')} {_num(best.get('mae'), 4)}"})  # fmt: skip
        return cards

    # -- a table --------------------------------------------------------------------------------

    def table(self, name: str, t: Table) -> dict[str, Any]:
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
                "name": column, "type": str(dtype), "key": column in t.key, "null": _pct(p.get("null_fraction")),
                "mean": _num(p.get("mean_value")), "min": _num(p.get("min_value")), "p25": approx + _num(p.get("p25")),
                "p50": approx + _num(p.get("p50")), "p75": approx + _num(p.get("p75")), "max": _num(p.get("max_value")),
                "watched": f"drift: {watched[column].name}" if column in watched else "",
            })  # fmt: skip
        months = [
            {"season": r["season"], "month": r["month"], "ok": _n(r["ok"]), "failed": _n(r["failed"]) if r["failed"] else "",
             "missing": _n(r["missing"]) if r["missing"] else "", "bootstrap": _n(r["bootstrap_skipped"]) if r["bootstrap_skipped"] else "",
             "awaiting": _n(r["awaiting_box_scores"]) if r["awaiting_box_scores"] else "", "rows": _n(r["rows"])}
            for r in data.coverage.filter(pl.col("table") == name).iter_rows(named=True)
        ]  # fmt: skip
        per_date = data.rows_per_date.filter(pl.col("table_name") == name)
        chart = line_chart(
            [Series("rows", per_date["game_date"].to_list(), per_date["rows_written"].to_list(), markers=per_date.height < 40)],
            title=f"{name}: rows per game date (run state)", y_label="rows", y_min=0,
        )  # fmt: skip
        return {
            "t": t, "level": self.levels[name], "status": data.status_of(name), "doc": markdown(doc), "build_text": _build_text(t),
            "bootstrap": _bootstrap_text(t), "inputs": inputs, "dependents": dependents, "columns": columns,
            "profile_date": profile["game_date"].max() if profile.height else None,
            "approximate": any(c["p50"].startswith("≈") for c in columns),
            "coverage": self.coverage_rules(name), "bounds": self.bound_rules(name, t), "identities": self.identity_rules(name, t),
            "cross": self.cross_rules(name), "drift": self.drift_groups(name, t), "drift_window": data.validation.drift.window_dates,
            "months": months, "rows_chart": Markup(chart), "latest": self.latest_results(name),
            "anchor": anchor(name) if (data.results["table_name"] == name).any() else None,
        }  # fmt: skip

    def coverage_rules(self, name: str) -> list[dict[str, str]]:
        return [
            {"feature": th.feature, "min": _pct(th.min_coverage, 0 if th.min_coverage in (0, 1) else 1), "population": th.population.describe(),
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
        kinds = rows.group_by("check_name").len().sort(pl.col("check_name").map_elements(_check_rank, return_dtype=pl.Int64))
        return {
            "what": f"{rows['context'][0]} run {newest} ({rows['checked_at'].max():%Y-%m-%d %H:%M} UTC)",
            "passed": _n(int((rows["status"] == "pass").sum())), "failed": _n(failed.height), "skipped": _n(int((rows["status"] == "skip").sum())),
            "failures": [_result_row(r) for r in failed.head(50).iter_rows(named=True)],
            "kinds": ", ".join(f"{k} {n}" for k, n in kinds.iter_rows()),
        }  # fmt: skip

    # -- validation history ----------------------------------------------------------------------

    def validation_runs(self) -> list[dict[str, Any]]:
        """The validation runs shown, oldest first."""
        results = self.data.results
        if results.is_empty():
            return []
        runs = (
            results.group_by("run_id", "context")
            .agg(
                checked_at=pl.col("checked_at").max(), checks=pl.len(),
                critical=((pl.col("status") == "fail") & (pl.col("severity") == "critical")).sum(),
                warnings=((pl.col("status") == "fail") & (pl.col("severity") != "critical")).sum(),
                first=pl.col("start_date").min(), last=pl.col("end_date").max(),
            )
            .sort("checked_at")
        )  # fmt: skip
        return [
            {**r, "number": i + 1, "checked_at": f"{r['checked_at']:%Y-%m-%d %H:%M}", "dates": _dates(r["first"], r["last"])}
            for i, r in enumerate(runs.iter_rows(named=True))
        ]

    def validation(self) -> dict[str, Any]:
        runs = self.validation_runs()
        results = self.data.results
        if results.is_empty():
            return {"title": "Validation history", "runs": [], "sections": []}
        order = {r["run_id"]: i for i, r in enumerate(runs)}
        per_check = (
            results.with_columns(
                state=pl.when((pl.col("status") == "fail") & (pl.col("severity") == "critical")).then(pl.lit("fail"))
                .when(pl.col("status") == "fail").then(pl.lit("warn"))
                .when(pl.col("status") == "pass").then(pl.lit("pass"))
                .otherwise(pl.lit("skip"))
            )
            .with_columns(rank=pl.col("state").replace_strict({"fail": 0, "warn": 1, "pass": 2, "skip": 3}, return_dtype=pl.Int8))
            .group_by("table_name", "check_name", "feature", "run_id")
            .agg(pl.col("rank").min(), pl.col("details").sort_by("rank").first(), pl.len().alias("results"))
        )  # fmt: skip
        checks = []
        for (table, check, feature), group in per_check.group_by(["table_name", "check_name", "feature"]):
            by_run = {r["run_id"]: r for r in group.iter_rows(named=True)}
            cells = []
            for run in runs:
                got = by_run.get(run["run_id"])
                state = ("fail", "warn", "pass", "skip")[got["rank"]] if got else "none"
                cells.append({"state": state, "title": f"run {run['number']} {run['run_id']} ({run['context']}, {run['checked_at']}): {state}"})
            latest_run = max(by_run, key=order.__getitem__)
            latest = by_run[latest_run]
            state = ("fail", "warn", "pass", "skip")[latest["rank"]]
            ever = any(r["rank"] <= 1 for r in by_run.values())
            checks.append({
                "table": table.split(".", 1)[-1] if table.count(".") == 1 else table, "check": check, "feature": feature,
                "link": table_page(table) if table in self.data.tables else "index.html", "anchor": anchor(table, check, feature),
                "cells": cells, "latest": f"{state}: {(latest['details'] or '')[:240]}" if state in ("fail", "warn") else state,
                "_order": (0 if state == "fail" else 1 if state == "warn" else 2 if ever else 3, self.table_rank(table), _check_rank(check), feature),
            })  # fmt: skip
        checks.sort(key=lambda c: c["_order"])
        for table in self.data.tables:  # a table's page links to its checks' first row
            first = next((c for c in checks if c["link"] == table_page(table)), None)
            if first is not None:
                first["anchor"] = anchor(table)
        sections = [
            {"title": "Failing in the latest run that checked them", "rows": [c for c in checks if c["_order"][0] <= 1], "folded": False},
            {"title": "Failed before, passing now", "rows": [c for c in checks if c["_order"][0] == 2], "folded": False},
            {"title": "Always passed (or skipped)", "rows": [c for c in checks if c["_order"][0] == 3], "folded": True},
        ]
        return {"title": "Validation history", "runs": list(reversed(runs)), "sections": sections}

    def table_rank(self, table: str) -> tuple[int, str]:
        """Tables in DAG order (the registry's), then anything else (a phase's same-dates check)."""
        order = list(self.data.tables)
        return (order.index(table), "") if table in order else (len(order), table)

    # -- runs --------------------------------------------------------------------------------------

    def runs(self) -> dict[str, Any]:
        runs = self.data.runs
        rows, problems = [], []
        level_series: dict[int, tuple[list, list]] = {}
        task_series: dict[str, tuple[list, list]] = {}
        for r in runs.sort("started_at").iter_rows(named=True):
            levels = json.loads(r["level_seconds"] or "[]")
            for level in levels:
                xs, ys = level_series.setdefault(level["level"], ([], []))
                xs.append(r["started_at"])
                ys.append(level["seconds"])
            if r["ended_at"] is not None:
                xs, ys = task_series.setdefault(r["task"], ([], []))
                xs.append(r["started_at"])
                ys.append((r["ended_at"] - r["started_at"]).total_seconds())
        for r in runs.iter_rows(named=True):
            failed = json.loads(r["dates_failed"] or "{}")
            built = json.loads(r["dates_built"] or "{}")
            alerts = json.loads(r["alerts"] or "[]")
            status = r["status"] if r["ended_at"] is not None else "no end: killed, or still running"
            css = "bad" if r["ended_at"] is None or r["status"] == "failed" else "warn" if r["status"] == "warnings" else ""
            delivered = sum(a["delivered"] for a in alerts)
            rows.append({
                "run_id": r["run_id"], "task": r["task"], "started": f"{r['started_at']:%Y-%m-%d %H:%M:%S}", "seconds": _seconds(r, unit=False),
                "status": status, "exit_code": _n(r["exit_code"]), "dates": _dates(r["first_date"], r["last_date"]),
                "built": _n(sum(built.values())) if built else "", "failed": _n(sum(len(v) for v in failed.values())) if failed else "",
                "rows": _n(r["rows_written"]) if r["rows_written"] else "", "nodes": _n(len(json.loads(r["nodes"] or "{}")) or None),
                "alerts": (f"{delivered} of {len(alerts)} delivered" if alerts else ""), "overrides": " ".join(json.loads(r["overrides"] or "[]")), "css": css,
            })  # fmt: skip
            if css == "bad":
                what = "; ".join(f"{t}: {len(d)} failed date(s) ({_dates(min(d), max(d))})" for t, d in failed.items())
                what = what or (r["error"] or "") or ("never completed" if r["ended_at"] is None else f"exit code {r['exit_code']}")
                problems.append({"run_id": r["run_id"], "task": r["task"], "started": rows[-1]["started"], "status": status, "what": what})
        level_chart = line_chart(
            [Series(f"level {n}", xs, ys, markers=True) for n, (xs, ys) in sorted(level_series.items())],
            title="seconds per DAG level in each run that built tables", y_label="seconds", y_min=0,
        )  # fmt: skip
        duration_chart = line_chart(
            [Series(task, xs, ys, markers=True) for task, (xs, ys) in sorted(task_series.items())],
            title="wall seconds per run, by task", y_label="seconds", y_min=0,
        )  # fmt: skip
        return {"title": "Run history", "runs": rows, "problems": problems, "level_chart": Markup(level_chart), "duration_chart": Markup(duration_chart)}

    # -- backups -----------------------------------------------------------------------------------

    def backups(self) -> dict[str, Any]:
        from pipeline.backup.task import size_text

        b = self.data.backups
        now = self.data.built_at
        rows = [
            {"name": x.name, "started": f"{x.started_at:%Y-%m-%d %H:%M:%S}", "age": _age((now - x.started_at).total_seconds() / 3600),
             "state": ("complete" + (", verified" if b.newest is x and b.verified else ", does NOT verify" if b.newest is x and b.verified is False else ""))
             if x.complete else f"incomplete: {x.problem or 'no manifest'}",
             "tables": _n(x.tables), "rows": _n(x.rows), "size": size_text(x.bytes), "css": "" if x.complete else "warn"}
            for x in reversed(b.listed)
        ]  # fmt: skip
        cards = []
        if b.newest is not None:
            hours = (now - b.newest.started_at).total_seconds() / 3600
            late = f"; older than alerts.backup_max_age_hours ({b.max_age_hours:g})" if hours > b.max_age_hours else ""
            cards.append({"label": "newest complete backup", "value": _age(hours) + " old", "state": "failed" if late else "ok",
                          "detail": f"{b.newest.name}: {_n(b.newest.tables)} tables, {_n(b.newest.rows)} rows{late}"})  # fmt: skip
            verified = {True: ("verified", "ok"), False: ("does NOT verify", "failed"), None: ("not verified (docs.verify_backup=false)", "unbuilt")}[b.verified]
            cards.append({"label": "restorable", "value": verified[0], "state": verified[1], "detail": "manifest, sizes, SHA-256, schemas, rows"})
        else:
            cards.append({"label": "newest complete backup", "value": "none", "state": "failed", "detail": b.target})
        return {"title": "Backups", "b": b, "rows": rows, "cards": cards}

    # -- the model ---------------------------------------------------------------------------------

    def model(self) -> dict[str, Any]:
        data = self.data
        models = []
        for m in data.models:
            best = m.get("best_baseline") or {}
            test = m.get("test") or {}
            models.append({
                "model_id": m.get("model_id", "?"), "created": str(m.get("created_at", ""))[:19].replace("T", " "),
                "dates": _dates(test.get("start"), test.get("end")), "rows": _n(test.get("rows")), "mae": _num(test.get("mae")),
                "baseline": best.get("name", ""), "baseline_mae": _num(best.get("mae")), "ratio": _num(best.get("ratio")),
                "worse": best.get("ratio", 0) > 1,
            })  # fmt: skip
        latest = data.models[0] if data.models else None
        report_link = self.copy_report(data.latest_model_dir)
        context: dict[str, Any] = {"title": "The model", "latest": latest, "models": models, "report_link": report_link, "models_root": ""}
        if latest:
            best = latest.get("best_baseline") or {}
            context["cards"] = [
                {"label": "test MAE", "value": _num(latest["test"]["mae"]), "state": "ok" if best.get("ratio", 1) < 1 else "failed",
                 "detail": f"{_n(latest['test'].get('rows'))} player-games, {_dates(latest['test'].get('start'), latest['test'].get('end'))}"},
                {"label": "best baseline, same rows", "value": _num(best.get("mae")), "state": "unbuilt", "detail": f"{best.get('name', '')}: model / it = {_num(best.get('ratio'))}"},
            ]  # fmt: skip
        context.update(self.graded())
        return context

    def copy_report(self, directory: Path | None) -> str | None:
        """The latest model's report.md as model/report.html, with the files beside it (its plots)."""
        if directory is None or not (directory / "report.md").exists():
            return None
        target = self.out / MODEL_DIR
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in directory.iterdir():
            if path.is_file() and path.name not in MODEL_FILES_LEFT_OUT and path.suffix in (".png", ".svg", ".json", ".md", ".csv"):
                shutil.copyfile(path, target / path.name)
        report = markdown((directory / "report.md").read_text())
        self.render("report.html", f"{MODEL_DIR}/report.html", {"report": report}, root="../", title="training report")
        return f"{MODEL_DIR}/report.html"

    def graded(self) -> dict[str, Any]:
        from training.predict import graded_totals, mae_per_date

        graded = self.data.graded
        if graded.is_empty():
            return {"graded": None}
        model_id = graded.sort("game_date", "predicted_at")["model_id"][-1]
        rows = graded.filter(pl.col("model_id") == model_id)
        names = ["rules", "rules_core", "last10", "season_avg", "prior_season_avg"]
        maes = {n: rows.select((pl.col(n) - pl.col("actual_points")).abs().mean()).item() for n in names}
        best = min(maes, key=maes.__getitem__)
        per_date = mae_per_date(rows)
        base = rows.group_by("game_date").agg(baseline=(pl.col(best) - pl.col("actual_points")).abs().mean()).sort("game_date")
        days = per_date["game_date"].to_list()
        mae_chart = line_chart(
            [Series(f"model {model_id}", days, per_date["mae"].to_list(), markers=len(days) < 40),
             Series(f"{best} (best baseline)", base["game_date"].to_list(), base["baseline"].to_list(), dashed=True)],
            title="MAE per date, model and the best baseline on the same player-games", y_label="points", y_min=0,
        )  # fmt: skip
        coverage_chart = line_chart(
            [Series("inside the 80% interval", days, per_date["interval_coverage"].to_list(), markers=len(days) < 40)],
            title="interval coverage per date", y_label="share", y_format=lambda v: f"{v:.0%}", references=[(0.8, "80% target")],
        )  # fmt: skip
        hit_chart = line_chart(
            [Series("side hit rate", days, per_date["side_hit_rate"].to_list(), markers=len(days) < 40)],
            title="side hit rate per date (P(over) >= 0.5 picks the over)", y_label="share", y_format=lambda v: f"{v:.0%}",
            references=[(0.524, "52.4% break-even at -110")],
        )  # fmt: skip
        totals = graded_totals(rows)
        return {
            "graded": {
                "rows": _n(rows.height), "dates": _n(len(days)), "span": _dates(days[0], days[-1]), "mae": _num(maes and rows["absolute_error"].mean()),
                "baseline": best, "baseline_mae": _num(maes[best]), "coverage": _pct(totals["interval_coverage"]),
                "lines": _n(totals["lines"]) if totals["lines"] else None, "hit_rate": _pct(totals.get("hit_rate")), "decided": _n(totals.get("decided")),
            },
            "mae_chart": Markup(mae_chart), "coverage_chart": Markup(coverage_chart), "hit_chart": Markup(hit_chart),
            "calibration_chart": Markup(reliability_chart(calibration_bins(rows), title="calibration of P(over)")),
        }  # fmt: skip


def calibration_bins(rows: pl.DataFrame, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted P(over), share that went over, rows) per tenth of P(over), over rows with
    a line whose outcome is not a push."""
    lined = rows.filter(pl.col("p_over").is_not_null() & pl.col("points_line").is_not_null() & (pl.col("actual_points") != pl.col("points_line")))
    if lined.is_empty():
        return []
    grouped = (
        lined.with_columns(bin=(pl.col("p_over") * bins).floor().clip(0, bins - 1))
        .group_by("bin")
        .agg(predicted=pl.col("p_over").mean(), observed=(pl.col("actual_points") > pl.col("points_line")).mean(), rows=pl.len())
        .sort("bin")
    )
    return [(p, o, n) for _, p, o, n in grouped.iter_rows()]


def _result_row(r: dict[str, Any]) -> dict[str, str]:
    share = r["check_name"] in ("coverage", "regression")
    fmt = _pct if share else _num
    return {
        "severity": r["severity"], "check": r["check_name"], "feature": r["feature"], "scope": r["scope"],
        "dates": _dates(r["start_date"], r["end_date"]), "observed": fmt(r["observed"]), "threshold": fmt(r["threshold"]),
        "details": (r["details"] or "")[:400],
    }  # fmt: skip


def _check_rank(check: str) -> int:
    return CHECK_ORDER.index(check) if check in CHECK_ORDER else len(CHECK_ORDER)


def _seconds(run: dict[str, Any], unit: bool = True) -> str:
    if run["ended_at"] is None:
        return "no end"
    seconds = (run["ended_at"] - run["started_at"]).total_seconds()
    return f"{seconds:,.1f}" + (" s" if unit else "")


def _age(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _build_text(t: Table) -> str:
    parts = ["one Polars function over each shard's dates"]
    if t.split_by_team:
        parts.append("cut by teams over a season (split_by_team): each Ray task builds some teams' rows")
    if t.needs_box_scores:
        parts.append("rows only on dates whose box scores are in (a date known from a slate only awaits them)")
    if t.built_with:
        parts.append("built together with " + ", ".join(t.built_with))
    return "; ".join(parts)


def _bootstrap_text(t: Table) -> str:
    if t.phase != 4:
        return "none: rows on every game date" + (" with box scores" if t.needs_box_scores else "")
    if t.bootstrap_days:
        return (f"no rows in the first {t.bootstrap_days} days from each season opener (phase4.bootstrap_days={t.bootstrap_days}): "
                "those dates are marked skipped_bootstrap in the run state")  # fmt: skip
    return (
        "rows from each season opener on (phase4.bootstrap_days=0): a figure over too few games this season is NULL, or its "
        "*_blended version leans on the previous season (phase4.prior_games)"
    )


def linked_files(pages: Iterable[Path]) -> list[tuple[Path, str]]:
    """Every (page, href or src) in ``pages``: what a link check follows."""
    found = []
    for page in pages:
        for target in re.findall(r'(?:href|src)="([^"]*)"', page.read_text()):
            found.append((page, target))
    return found
