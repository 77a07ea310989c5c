"""Small SVG charts for the docs: lines over time, and a reliability diagram.

Written here rather than with matplotlib: a page holds a few dozen small charts, and the whole
site must build in seconds; these are plain SVG text (a few KB each, no fonts embedded, scaled
by the browser), drawn with the page's own font and colours. Every value is escaped.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
WIDTH, HEIGHT = 720, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 40, 28, 30


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[dt.date | dt.datetime]
    ys: Sequence[float | None]  # None: a gap
    dashed: bool = False
    markers: bool = False
    # Consecutive points further apart than this are not joined (the summer between two seasons).
    gap: dt.timedelta = dt.timedelta(days=20)


def _number(value: float) -> float:
    return float(value.timestamp() if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time()).timestamp())


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round numbers spanning ``low..high`` (about ``count`` of them)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _date_ticks(low: dt.datetime, high: dt.datetime, count: int = 6) -> list[dt.datetime]:
    span = (high - low).total_seconds()
    if span <= 0:
        return [low]
    return [low + dt.timedelta(seconds=span * i / (count - 1)) for i in range(count)]


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str = "",
    y_format: Callable[[float], str] = lambda v: f"{v:,.4g}",
    references: Sequence[tuple[float, str]] = (),
    y_min: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Each series as a line over its dates (or times), gaps where a value is None; ``references``:
    horizontal dashed lines, each with its label (a target, a break-even)."""
    points = [(_number(x), float(y)) for s in series for x, y in zip(s.xs, s.ys) if y is not None and math.isfinite(y)]
    head = f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
    if not points:
        return head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="note">{escape(title)}: no data</text></svg>'
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + [r[0] for r in references]
    ticks = nice_ticks(min(ys) if y_min is None else min(y_min, min(ys)), max(ys))
    y0, y1 = ticks[0], ticks[-1]
    x0, x1 = min(xs), max(xs)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (plot_w * (x - x0) / (x1 - x0) if x1 > x0 else plot_w / 2)

    def py(y: float) -> float:
        return TOP + plot_h * (1 - (y - y0) / (y1 - y0 or 1))

    out = [head, f"<title>{escape(title)}</title>"]
    for tick in ticks:
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{escape(y_format(tick))}</text>')
    start, end = dt.datetime.fromtimestamp(x0), dt.datetime.fromtimestamp(x1)
    with_time = any(isinstance(x, dt.datetime) for s in series for x in s.xs) and (end - start) < dt.timedelta(days=3)
    for tick in _date_ticks(start, end):
        label = tick.strftime("%m-%d %H:%M" if with_time else "%Y-%m-%d")
        out.append(f'<text class="tick" x="{px(tick.timestamp()):.1f}" y="{height - 10}" text-anchor="middle">{label}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    if y_label:
        out.append(f'<text class="tick" x="12" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 12 {TOP + plot_h / 2:.1f})" text-anchor="middle">{escape(y_label)}</text>')
    for value, label in references:
        out.append(f'<line class="reference" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(value):.1f}" y2="{py(value):.1f}"><title>{escape(label)}</title></line>')
        # inside the plot, right-aligned just above its line: a label of any length stays in view
        out.append(f'<text class="tick" x="{LEFT + plot_w - 4}" y="{py(value) - 4:.1f}" text-anchor="end">{escape(label)}</text>')
    legend_x = LEFT
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        previous = None
        for x, y in zip(s.xs, s.ys):
            if y is None or not math.isfinite(float(y)):
                runs.append([])
                continue
            if previous is not None and _number(x) - previous > s.gap.total_seconds():
                runs.append([])
            runs[-1].append(f"{px(_number(x)):.1f},{py(float(y)):.1f}")
            previous = _number(x)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for run in (r for r in runs if r):
            if len(run) == 1 or s.markers:
                out += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{colour}"/>' for p in run]
            if len(run) > 1:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{" ".join(run)}"><title>{escape(s.label)}</title></polyline>')
        if len(series) > 1 or s.label:  # the legend: one row above the plot
            out.append(f'<line x1="{legend_x}" x2="{legend_x + 16}" y1="12" y2="12" stroke="{colour}" stroke-width="3"{dash}/>')
            out.append(f'<text class="legend" x="{legend_x + 20}" y="16">{escape(s.label)}</text>')
            legend_x += 34 + 6.2 * len(s.label)
    out.append("</svg>")
    return "".join(out)


def reliability_chart(bins: Sequence[tuple[float, float, int]], *, title: str, size: int = 260) -> str:
    """Predicted probability (x) against the observed share (y) per bin, each point's area by its
    rows, with the diagonal a calibrated model follows."""
    head = f'<svg class="chart square" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size + 60} {size + 50}" role="img" aria-label="{escape(title)}">'
    if not bins:
        return head + f'<text x="{size / 2 + 30}" y="{size / 2}" text-anchor="middle" class="note">{escape(title)}: no data</text></svg>'
    left, top = 44, 10

    def px(p: float) -> float:
        return left + size * p

    def py(p: float) -> float:
        return top + size * (1 - p)

    out = [head, f"<title>{escape(title)}</title>"]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line class="grid" x1="{px(0)}" x2="{px(1)}" y1="{py(tick):.1f}" y2="{py(tick):.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{tick:.0%}</text>')
        out.append(f'<text class="tick" x="{px(tick):.1f}" y="{top + size + 16}" text-anchor="middle">{tick:.0%}</text>')
    out.append(f'<line class="reference" x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}"><title>calibrated</title></line>')
    out.append(f'<text class="tick" x="{px(0.5)}" y="{top + size + 34}" text-anchor="middle">P(over), predicted</text>')
    out.append(f'<text class="tick" x="10" y="{py(0.5)}" transform="rotate(-90 10 {py(0.5)})" text-anchor="middle">over, observed</text>')
    most = max(n for _, _, n in bins) or 1
    for predicted, observed, n in bins:
        radius = 2 + 8 * math.sqrt(n / most)
        out.append(
            f'<circle cx="{px(predicted):.1f}" cy="{py(observed):.1f}" r="{radius:.1f}" fill="{PALETTE[0]}" fill-opacity="0.6">'
            f"<title>{predicted:.0%} predicted, {observed:.0%} observed, {n:,} rows</title></circle>"
        )
    out.append("</svg>")
    return "".join(out)
