"""The site's pages, from :class:`~pipeline.docs.collect.SiteData`: what each page shows, as plain
values for its template (``templates/``, Jinja2 with autoescaping: every value is escaped, and
only the SVG drawn here and Markdown rendered here pass as markup). The index, validation, runs
and backups pages are here; a table's page is :mod:`.table_page`, the model's :mod:`.model_page`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from pipeline.docs.charts import Series, line_chart
from pipeline.docs.collect import SiteData
from pipeline.docs.format import anchor, check_rank, dates_text, integer_text, markdown, number_text, table_page
from pipeline.docs.lineage import STATUS_CLASSES, lineage_svg
from pipeline.docs.model_page import ModelPage
from pipeline.docs.table_page import TablePage
from pipeline.tables import dag_levels

STATIC = Path(__file__).parent / "static"
MODEL_DIR = "model"
# Files of a model directory never copied into the site: the model itself.
MODEL_FILES_LEFT_OUT = {"model.txt", "model.json"}
LEGEND = (("ok", "every date built"), ("failed", "a date failed"), ("incomplete", "dates missing"), ("unbuilt", "not built"), ("source", "raw files"))


def environment() -> Environment:
    env = Environment(loader=PackageLoader("pipeline.docs", "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    return env


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
        tables = TablePage(self.data, self.levels)
        for name, table in self.data.tables.items():
            self.render("table.html", table_page(name), tables.context(name, table), root="../", title=table.short_name)
        self.render("validation.html", "validation.html", self.validation())
        self.render("runs.html", "runs.html", self.runs())
        self.render("backups.html", "backups.html", self.backups())
        self.render("model.html", "model.html", ModelPage(self.data).context(self.copy_report(self.data.latest_model_dir)))
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
                "ok": integer_text(ok), "failed": integer_text(failed) if failed else "", "missing": integer_text(missing) if missing else "",
                "awaiting": integer_text(awaiting) if awaiting else "", "rows": integer_text(count), "newest": newest_of.get(name, ""), "description": t.description,
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
            cards.append({"label": "model test MAE", "value": number_text(m["test"]["mae"], 4), "link": "model.html",
                          "state": "ok" if best.get("ratio", 1) < 1 else "failed",
                          "detail": f"best baseline {best.get('name', '?')} {number_text(best.get('mae'), 4)}"})  # fmt: skip
        return cards

    # -- a table --------------------------------------------------------------------------------

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
            {**r, "number": i + 1, "checked_at": f"{r['checked_at']:%Y-%m-%d %H:%M}", "dates": dates_text(r["first"], r["last"])}
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
                "_order": (0 if state == "fail" else 1 if state == "warn" else 2 if ever else 3, self.table_rank(table), check_rank(check), feature),
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
                "status": status, "exit_code": integer_text(r["exit_code"]), "dates": dates_text(r["first_date"], r["last_date"]),
                "built": integer_text(sum(built.values())) if built else "", "failed": integer_text(sum(len(v) for v in failed.values())) if failed else "",
                "rows": integer_text(r["rows_written"]) if r["rows_written"] else "", "nodes": integer_text(len(json.loads(r["nodes"] or "{}")) or None),
                "alerts": (f"{delivered} of {len(alerts)} delivered" if alerts else ""), "overrides": " ".join(json.loads(r["overrides"] or "[]")), "css": css,
            })  # fmt: skip
            if css == "bad":
                what = "; ".join(f"{t}: {len(d)} failed date(s) ({dates_text(min(d), max(d))})" for t, d in failed.items())
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
             "tables": integer_text(x.tables), "rows": integer_text(x.rows), "size": size_text(x.bytes), "css": "" if x.complete else "warn"}
            for x in reversed(b.listed)
        ]  # fmt: skip
        cards = []
        if b.newest is not None:
            hours = (now - b.newest.started_at).total_seconds() / 3600
            late = f"; older than alerts.backup_max_age_hours ({b.max_age_hours:g})" if hours > b.max_age_hours else ""
            cards.append({"label": "newest complete backup", "value": _age(hours) + " old", "state": "failed" if late else "ok",
                          "detail": f"{b.newest.name}: {integer_text(b.newest.tables)} tables, {integer_text(b.newest.rows)} rows{late}"})  # fmt: skip
            verified = {True: ("verified", "ok"), False: ("does NOT verify", "failed"), None: ("not verified (docs.verify_backup=false)", "unbuilt")}[b.verified]
            cards.append({"label": "restorable", "value": verified[0], "state": verified[1], "detail": "manifest, sizes, SHA-256, schemas, rows"})
        else:
            cards.append({"label": "newest complete backup", "value": "none", "state": "failed", "detail": b.target})
        return {"title": "Backups", "b": b, "rows": rows, "cards": cards}

    # -- the model ---------------------------------------------------------------------------------

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


def _seconds(run: dict[str, Any], unit: bool = True) -> str:
    if run["ended_at"] is None:
        return "no end"
    seconds = (run["ended_at"] - run["started_at"]).total_seconds()
    return f"{seconds:,.1f}" + (" s" if unit else "")


def _age(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"



def linked_files(pages: Iterable[Path]) -> list[tuple[Path, str]]:
    """Every (page, href or src) in ``pages``: what a link check follows."""
    found = []
    for page in pages:
        for target in re.findall(r'(?:href|src)="([^"]*)"', page.read_text()):
            found.append((page, target))
    return found
