"""How the site writes values and links: numbers, shares and date spans as text, Markdown as
HTML, a table's page and a check's anchor (shared by every page of :mod:`pipeline.docs`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from pipeline.validation.results import CHECK_ORDER


def markdown(text: str) -> Markup:
    """Markdown (docstrings, the model's report) as HTML; raw HTML in it is escaped."""
    return Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def table_page(name: str) -> str:
    return f"tables/{name}.html"


def anchor(*parts: str) -> str:
    return "check-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-")


def integer_text(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "" if value is None else str(value)


def number_text(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:,.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"


def percent_text(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def dates_text(start: dt.date | None, end: dt.date | None) -> str:
    if start is None:
        return ""
    return str(start) if end in (None, start) else f"{start}..{end}"


def result_row(r: dict[str, Any]) -> dict[str, str]:
    as_share = r["check_name"] in ("coverage", "regression")
    fmt = percent_text if as_share else number_text
    return {
        "severity": r["severity"], "check": r["check_name"], "feature": r["feature"], "scope": r["scope"],
        "dates": dates_text(r["start_date"], r["end_date"]), "observed": fmt(r["observed"]), "threshold": fmt(r["threshold"]),
        "details": (r["details"] or "")[:400],
    }  # fmt: skip


def check_rank(check: str) -> int:
    return CHECK_ORDER.index(check) if check in CHECK_ORDER else len(CHECK_ORDER)

