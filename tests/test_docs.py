"""The data docs (``task=docs``): a page per table, every link resolving inside the site, and a
lineage map holding exactly the tables and dependencies the declarations define."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import duckdb
import polars as pl
import pytest
from conftest import run_in_process

from pipeline.docs.lineage import BOX_H, BOX_W, layout, short_lookback
from pipeline.docs.model_page import ModelPage, calibration_bins
from pipeline.docs.pages import table_page
from pipeline.tables import Lookback, registry

SVG = "{http://www.w3.org/2000/svg}"


def site_links(site: Path) -> list[tuple[Path, str]]:
    return [(page, target) for page in site.rglob("*.html") for target in re.findall(r'(?:href|src)="([^"]*)"', page.read_text())]


def ids_of(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text()))


def broken_links(site: Path) -> list[str]:
    """Every link or image on every page that does not lead to a file of the site (or to an id
    on the page it names): none may leave the site, either."""
    broken = []
    for page, target in site_links(site):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            broken.append(f"{page.name}: {target} leaves the site")
            continue
        file = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not file.is_file() or site.resolve() not in file.parents:
            broken.append(f"{page.relative_to(site)}: {target} (no such file in the site)")
        elif parts.fragment and parts.fragment not in ids_of(file):
            broken.append(f"{page.relative_to(site)}: {target} (no such id in {file.name})")
    return broken


def lineage(site: Path) -> ET.Element:
    html = (site / "index.html").read_text()
    svg = re.search(r'<svg class="lineage".*?</svg>', html, re.S)
    assert svg is not None
    return ET.fromstring(svg.group(0))


# -- without a warehouse -----------------------------------------------------------------------------


def test_lookback_labels():
    assert short_lookback(Lookback()) == "same date"
    assert short_lookback(Lookback(days=14, before=True)) == "14 days"
    assert short_lookback(Lookback(season_to_date=True, before=True)) == "season to date"
    assert short_lookback(Lookback(season_to_date=True, previous_season=True, before=True)) == "last season + season to date"


def test_no_two_boxes_of_the_map_overlap():
    boxes = list(layout(registry()).values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a.x + BOX_W <= b.x or b.x + BOX_W <= a.x or a.y + BOX_H <= b.y or b.y + BOX_H <= a.y, (a, b)


def test_an_empty_warehouse_gives_a_site_that_says_so(tmp_path):
    """Nothing built, no run, no model, no backup: every page is there and says so."""
    run = run_in_process(tmp_path, "task=docs", f"docs.dir={tmp_path / 'docs'}", f"backup.target={tmp_path / 'backups'}")
    assert run.returncode == 0, run.output
    site = tmp_path / "docs"
    assert broken_links(site) == []
    assert "No trained model under" in (site / "model.html").read_text()
    assert "No backup yet" in (site / "backups.html").read_text()
    nodes = {g.get("data-table"): g.get("class") for g in lineage(site).iter(f"{SVG}g") if "node" in (g.get("class") or "")}
    assert {state for name, state in nodes.items() if not name.startswith("source.")} == {"node unbuilt"}


def test_the_graded_predictions_on_the_model_page_worked_out_by_hand():
    """Six graded player-games of one model over two dates, every figure of the page by hand."""
    actual = [20.0, 10.0, 30.0, 8.0, 15.0, 22.0]
    predicted = [18.0, 13.0, 25.0, 9.0, 15.0, 26.0]  # absolute errors 2, 3, 5, 1, 0, 4
    lines = [19.5, 11.5, 24.5, None, 14.5, 23.5]  # went over: yes, no, yes, -, yes, no
    p_over = [0.30, 0.65, 0.72, None, 0.35, 0.61]  # sides: under, over, over, -, under, over
    graded = pl.DataFrame({
        "game_date": [dt.date(2025, 1, 1)] * 3 + [dt.date(2025, 1, 2)] * 3, "model_id": "m1",
        "predicted_at": dt.datetime(2025, 1, 1, 12), "actual_points": actual, "absolute_error": [abs(p - a) for p, a in zip(predicted, actual)],
        "played": True, "is_evaluation_row": True, "in_interval": [True, True, False, True, True, False],
        "points_line": lines, "p_over": p_over, "side_hit": [False, False, True, None, False, False],
        # each baseline's prediction: its distance from the actual points is its absolute error
        "rules": [a + 4 for a in actual], "rules_core": [a - 3 for a in actual], "last10": [a + d for a, d in zip(actual, [1, 2, 1, 2, 1, 2])],
        "season_avg": [a + 5 for a in actual], "prior_season_avg": [a - 6 for a in actual],
    })  # fmt: skip
    page = ModelPage(SimpleNamespace(graded=graded, models=[])).graded()["graded"]
    # MAE (2+3+5+1+0+4)/6 = 2.5; baselines 4, 3, 1.5, 5, 6: last10 the best; 4 of 6 in the interval;
    # 5 lines, their sides hit once (the 30 over 24.5): 1/5.
    assert page == {
        "rows": "6", "dates": "2", "span": "2025-01-01..2025-01-02", "mae": "2.5", "baseline": "last10", "baseline_mae": "1.5",
        "coverage": "66.7%", "lines": "5", "hit_rate": "20.0%", "decided": "5",
    }  # fmt: skip
    # P(over) by tenths: 0.30 and 0.35 (both went over), 0.65 and 0.61 (neither), 0.72 (over).
    bins = calibration_bins(graded)
    assert [(round(p, 4), o, n) for p, o, n in bins] == [(0.325, 1.0, 2), (0.63, 0.0, 2), (0.72, 1.0, 1)]


# -- on the main command's warehouse ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(main_command, tmp_path_factory) -> Path:
    workdir, _ = main_command
    out = tmp_path_factory.mktemp("docs")
    run = run_in_process(
        out, "task=docs", f"warehouse.path={workdir / 'warehouse.duckdb'}", f"training.models_root={workdir}", f"docs.dir={out / 'site'}",
        f"backup.target={out / 'backups'}",
    )  # fmt: skip
    assert run.returncode == 0, run.output
    assert re.search(r"data docs: \d+ pages in ", run.output)
    return out / "site"


@pytest.mark.slow
def test_every_table_has_a_page_and_every_link_resolves(site):
    for name, table in registry().items():
        page = site / table_page(name)
        assert page.is_file(), name
        text = page.read_text()
        assert f"<h1>{table.short_name} " in text and "Purpose and formulas" in text and "Coverage by season and month" in text
        for column in table.schema:
            assert f"<code>{column}</code>" in text, (name, column)
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {"index.html", "validation.html", "runs.html", "backups.html", "model.html", "model/report.html"} <= pages
    assert len(site_links(site)) > 500
    assert broken_links(site) == []


@pytest.mark.slow
def test_the_lineage_map_holds_every_table_and_every_declared_dependency(site):
    tables = registry()
    svg = lineage(site)
    groups = list(svg.iter(f"{SVG}g"))
    nodes = {g.get("data-table") for g in groups if "node" in (g.get("class") or "").split()}
    sources = {i.table for t in tables.values() for i in t.inputs if i.is_source}
    assert nodes == set(tables) | sources
    edges = {(g.get("data-from"), g.get("data-to"), g.get("data-lookback")) for g in groups if g.get("class") == "edge"}
    declared = {(i.table, name, short_lookback(i.lookback)) for name, t in tables.items() for i in t.inputs}
    assert edges == declared
    assert len([g for g in groups if g.get("class") == "edge"]) == len(declared)  # no arrow twice
    for g in groups:  # each table's box links to its page and is coloured by its status: all ok after the main command
        if g.get("data-table") in tables:
            assert g.get("class") == "node ok"
            assert g.find(f"{SVG}a").get("href") == table_page(g.get("data-table"))


@pytest.mark.slow
def test_the_pages_show_the_run_the_checks_and_the_model(site, main_command):
    workdir, _ = main_command
    with duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True) as con:
        run_id = con.execute("SELECT run_id FROM nba_orchestration.run_history").fetchone()[0]
        checks = con.execute("SELECT count(*) FROM nba_orchestration.validation_results").fetchone()[0]
    runs = (site / "runs.html").read_text()
    assert f"<code>{run_id}</code>" in runs and ">ok<" in runs
    assert f"{checks} checks" in (site / "index.html").read_text().replace(",", "")
    model = (site / "model.html").read_text()
    metrics = next(workdir.glob("model/metrics.json")).read_text()
    model_id = re.search(r'"model_id": "([^"]+)"', metrics)[1]
    assert f"<code>{model_id}</code>" in model and "No graded predictions yet" in model
    report = (site / "model" / "report.html").read_text()
    assert '<img src="predicted_vs_actual.png"' in report and (site / "model" / "predicted_vs_actual.png").is_file()
    assert "<script" not in "".join(p.read_text() for p in site.rglob("*.html"))  # no JavaScript
    assert not re.search(r"(src|href)=\"https?://", "".join(p.read_text() for p in site.rglob("*.html")))  # nothing from the internet
