"""The lineage map: every table as a box, in rows by DAG level (the raw sources on top), an
arrow from each input down to its table labelled with the input's lookback, each box coloured by
its latest status and linking to its page. Drawn as SVG here, from the table declarations (no
external layout program).

The SVG says what it draws in attributes a program can read back: each box is a
``<g class="node" data-table="...">``, each arrow a ``<g class="edge" data-from="..." data-to="...">``.
Within a row, boxes are ordered by the mean position of their inputs (the usual barycentre
heuristic), so that arrows cross less.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Mapping

from pipeline.tables import Lookback, Table, dag_levels

BOX_W, BOX_H = 240, 44
COLUMN_GAP, ROW_GAP = 34, 84
MARGIN = 24
STATUS_CLASSES = ("ok", "failed", "incomplete", "unbuilt", "source")


def short_lookback(lookback: Lookback) -> str:
    """An arrow's label: ``same date``, ``N days``, ``season to date`` or ``last season + season to
    date`` (an input read only before the date is drawn dashed instead of saying so)."""
    if lookback.season_to_date:
        return "last season + season to date" if lookback.previous_season else "season to date"
    return f"{lookback.days} days" if lookback.days else "same date"


@dataclass(frozen=True)
class Box:
    name: str
    level: int  # the row: 0 the raw sources, then each DAG level
    x: float
    y: float


def layout(tables: Mapping[str, Table]) -> dict[str, Box]:
    """A box per table and per raw source, in rows: the sources, then each DAG level."""
    sources = sorted({i.table for t in tables.values() for i in t.inputs if i.is_source})
    rows = [sources, *dag_levels(dict(tables))]
    boxes: dict[str, Box] = {}
    widest = max(len(r) for r in rows)
    for number, names in enumerate(rows):
        if number > 0:  # the barycentre of each table's inputs, placed already
            def centre(name: str) -> float:
                ups = [boxes[i.table].x for i in tables[name].inputs if i.table in boxes]
                return sum(ups) / len(ups) if ups else 0.0

            names = sorted(names, key=lambda n: (centre(n), n))
        offset = (widest - len(names)) * (BOX_W + COLUMN_GAP) / 2
        for column, name in enumerate(names):
            boxes[name] = Box(name, number, MARGIN + offset + column * (BOX_W + COLUMN_GAP), MARGIN + number * (BOX_H + ROW_GAP))
    return boxes


def lineage_svg(tables: Mapping[str, Table], status: Mapping[str, str], link: Mapping[str, str], titles: Mapping[str, str]) -> str:
    """The map: ``status`` of each table (one of ``STATUS_CLASSES``), ``link``: its page (relative
    to where the SVG is shown), ``titles``: its tooltip."""
    boxes = layout(tables)
    width = max(b.x for b in boxes.values()) + BOX_W + MARGIN
    height = max(b.y for b in boxes.values()) + BOX_H + MARGIN
    out = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        'role="img" aria-label="lineage map of every table">',
        "<title>lineage map: every table by level, arrows from each input labelled with its lookback</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>',
    ]
    edges = [(inp, name) for name, table in tables.items() for inp in table.inputs]
    # Each label goes at the first place along its arrow where it covers no box and no label
    # placed before it (the middle first), so that labels do not overlap.
    taken = [(b.x, b.y, b.x + BOX_W, b.y + BOX_H) for b in boxes.values()]
    labels = []
    for inp, name in edges:
        a, b = boxes[inp.table], boxes[name]
        x0, y0 = a.x + BOX_W / 2, a.y + BOX_H
        x1, y1 = b.x + BOX_W / 2, b.y
        bend = max(30.0, (y1 - y0) / 2)
        label = short_lookback(inp.lookback)
        path = f"M {x0:.1f} {y0:.1f} C {x0:.1f} {y0 + bend:.1f}, {x1:.1f} {y1 - bend:.1f}, {x1:.1f} {y1:.1f}"
        style = ' class="before"' if inp.lookback.before else ""
        out.append(
            f'<g class="edge" data-from="{escape(inp.table)}" data-to="{escape(name)}" data-lookback="{escape(label)}">'
            f"<title>{escape(inp.table)} → {escape(name)}: {escape(inp.lookback.describe())}</title>"
            f'<path{style} d="{path}" marker-end="url(#arrow)"/></g>'
        )
        lx, ly = _label_place(label, taken, lambda t: (_bezier(x0, x0, x1, x1, t), _bezier(y0, y0 + bend, y1 - bend, y1, t)))
        labels.append(f'<text class="edge-label" x="{lx:.1f}" y="{ly + 3:.1f}" text-anchor="middle">{escape(label)}</text>')
    out.append('<g class="edge-labels">' + "".join(labels) + "</g>")
    for name, box in boxes.items():
        state = "source" if name not in tables else status.get(name, "unbuilt")
        short = name.split(".", 1)[1]
        dataset = name.split(".", 1)[0]
        body = (
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text class="box-name" x="{box.x + 10:.1f}" y="{box.y + 19:.1f}">{escape(short)}</text>'
            f'<text class="box-dataset" x="{box.x + 10:.1f}" y="{box.y + 35:.1f}">{escape(dataset if dataset != "source" else "raw files")}'
            f"{' · ' + escape(state) if state != 'source' else ''}</text>"
        )
        tooltip = f"<title>{escape(titles.get(name, name))}</title>"
        if name in link:
            body = f'<a href="{escape(link[name])}">{tooltip}{body}</a>'
        else:
            body = tooltip + body
        out.append(f'<g class="node {state}" data-table="{escape(name)}" id="node-{escape(name)}">{body}</g>')
    out.append("</svg>")
    return "".join(out)


LABEL_PLACES = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.15, 0.85)
CHAR_W, LABEL_H = 5.6, 12.0


def _label_place(label: str, taken: list[tuple[float, float, float, float]], at) -> tuple[float, float]:
    """The first point ``at(t)`` (t in ``LABEL_PLACES``) where the label overlaps nothing in
    ``taken``, else the middle; its rectangle is added to ``taken``."""
    half = CHAR_W * len(label) / 2
    chosen = at(0.5)
    for t in LABEL_PLACES:
        x, y = at(t)
        rect = (x - half, y - LABEL_H / 2, x + half, y + LABEL_H / 2)
        if not any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3] for r in taken):
            chosen = (x, y)
            break
    x, y = chosen
    taken.append((x - half, y - LABEL_H / 2, x + half, y + LABEL_H / 2))
    return chosen


def _bezier(p0: float, p1: float, p2: float, p3: float, t: float) -> float:
    """One coordinate at ``t`` of the cubic Bézier curve with those control values."""
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
