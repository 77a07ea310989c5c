"""Prediction intervals and P(over a line) from residual quantiles calibrated on the validation split.

How a prediction's uncertainty is modelled (pure functions; the model directory keeps the
calibration as ``intervals.json``, written by training and loaded with the model):

- The residual is ``actual − predicted`` points. Its spread grows with the prediction and with
  the player's minutes (a star scoring 30 ± 9, a bench player 3 ± 4), so residuals are grouped
  by the minutes tier (:func:`training.evaluate.tier_expr`: bench, role, starter, star, from
  recent minutes, known before tip-off) and, within a tier, by quantile bins of the predicted
  points: at most ``max_bins`` (3) bins, each of at least ``min_rows`` (300) validation rows
  (fewer bins when the tier has fewer rows; a bin short of rows after ties is merged into its
  smaller neighbour). A tier with fewer than ``min_rows`` rows (``unknown``: no recent minutes)
  uses the pooled group ``all``: every validation row, binned by prediction the same way.
- Per bin, the residual quantiles at levels 0, 1, ..., 100 % (``numpy.quantile``, linear
  interpolation between order statistics, so a level falls between two residuals rather than on
  one of them; 0 and 100 are the smallest and largest residual).
- Interval: ``p10 = max(0, predicted + q_low)``, ``p90 = predicted + q_high`` of the row's bin:
  an 80 % interval. Points are never negative, hence the floor at 0 (it moves no row out of it).
  The levels are 10 % and 90 % widened by the same ``w`` on both sides (``Calibration.levels``),
  the smallest multiple of 0.5 % that covers 80 % out of time on the validation split itself
  (:func:`out_of_time_levels`: calibrated on its first half of dates, scored on its second half):
  later games are a little less predictable than the ones calibrated on, so quantiles taken at
  exactly 10 / 90 % cover under 80 % of the games after them.
- ``P(actual > line)``: actual points are whole numbers, so ``actual > line`` is
  ``actual ≥ floor(line) + 1``, i.e. ``actual > floor(line) + 0.5``; a 24.5 line and a 24 line
  both ask for 25 or more (on a 24 line, 24 is a push, neither over nor under). With ``F`` the
  bin's residual CDF, linear between the stored quantiles (0 below the smallest residual, 1
  above the largest): ``p_over = 1 − F(floor(line) + 0.5 − predicted)``. It is non-increasing in
  the line and constant between two whole numbers.

Why this conditioning: on the bundled data one pooled set of residual quantiles covers 80 % of
validation rows overall but about 93 % of bench rows and 65 % of star rows, on validation itself;
binning by the prediction alone leaves role and bench rows a few points off. Tier × prediction
bins cover every tier at 80 % on validation by construction, and the test split (never used to
calibrate or to choose) is what ``metrics.json`` reports. Three bins per tier, chosen on the
validation split alone: calibrated on its first half of dates and scored on its second half,
1 to 8 bins all covered 78.6-79.4 % overall, three the most (79.4 %, every tier 77.9-80.9 %);
more bins only add noise to each bin's tails. Out of time, coverage at exactly 10 / 90 % runs about
a point under 80 %, more in the star tier (on the default split's test rows, the star tier's 76.7 %
with the refitted model, 77.2 % without), hence the widening, chosen on validation: 0.5 % on the
bundled data, which covers 80.1 % of the test rows, every tier 78-83 %. The calibration rows are the validation split's
evaluation rows (played, at least 5 earlier games), so an interval is conditional on the player
playing: a dressed player who does not play scores 0, outside most intervals, and is not graded
against it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from training.evaluate import TIERS

INTERVALS_FILE = "intervals.json"
LOWER, UPPER = 0.10, 0.90  # the interval's nominal levels, before the out-of-time widening
TARGET_COVERAGE = UPPER - LOWER
WIDENING_STEP, MAX_WIDENING = 0.005, 0.05
LEVELS = np.linspace(0.0, 1.0, 101)  # residual quantiles stored per bin: 0 %, 1 %, ..., 100 %
POOLED = "all"
MAX_BINS = 3
MIN_ROWS = 300
VERSION = 1


@dataclass(frozen=True)
class Bin:
    """One calibration cell: a tier (or ``all``) and a range of predicted points."""

    id: str  # "<tier>:<index>", e.g. "role:2": what the predictions table stores as interval_bin
    rows: int
    low: float  # predicted points in [low, high) (-inf / inf at the ends)
    high: float
    quantiles: tuple[float, ...]  # residual quantiles at LEVELS

    def quantile(self, level: float) -> float:
        return float(np.interp(level, LEVELS, self.quantiles))


@dataclass
class Calibration:
    """Per group (a tier, or ``all``): cut points on the predicted points and the bins they make."""

    groups: dict[str, list[Bin]]
    calibrated_on: dict = field(default_factory=dict)  # split, dates, rows
    max_bins: int = MAX_BINS
    min_rows: int = MIN_ROWS
    levels: tuple[float, float] = (LOWER, UPPER)  # residual quantile levels of p10 and p90 (out_of_time_levels)

    @property
    def bins(self) -> dict[str, Bin]:
        return {b.id: b for group in self.groups.values() for b in group}

    def group_of(self, tier: str | None) -> str:
        return tier if tier in self.groups else POOLED

    def assign(self, predicted: Sequence[float], tiers: Sequence[str | None]) -> list[str]:
        """The bin id of each (predicted points, tier)."""
        predicted = np.asarray(predicted, dtype=np.float64)
        names = np.asarray([self.group_of(t) for t in tiers], dtype=object)
        out = np.empty(predicted.size, dtype=object)
        for name, group in self.groups.items():
            mask = names == name
            index = np.searchsorted([b.high for b in group[:-1]], predicted[mask], side="right")
            out[mask] = [group[i].id for i in index]
        return out.tolist()

    def bounds(self, predicted: Sequence[float], bins: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(p10, p90)`` per row: the prediction plus its bin's residual quantiles at ``levels``."""
        table = self.bins
        predicted = np.asarray(predicted, dtype=np.float64)
        lower, upper = self.levels
        low = np.array([table[b].quantile(lower) for b in bins], dtype=np.float64)
        high = np.array([table[b].quantile(upper) for b in bins], dtype=np.float64)
        return np.maximum(predicted + low, 0.0), predicted + high

    def p_over(self, predicted: float, bin_id: str, line: float) -> float:
        return p_over(predicted, self.bins[bin_id], line)

    def p_over_many(self, predicted: Sequence[float], bins: Sequence[str | None], lines: Sequence[float | None]) -> list[float | None]:
        """:func:`p_over` per row; ``None`` where the row has no line or no bin."""
        table = self.bins
        return [
            None if line is None or b is None or (isinstance(line, float) and math.isnan(line)) else p_over(p, table[b], line)
            for p, b, line in zip(predicted, bins, lines)
        ]

    # -- on disk --------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "version": VERSION,
            "interval": list(self.levels),
            "levels": "residual (actual - predicted) quantiles at 0, 1, ..., 100 %",
            "calibrated_on": self.calibrated_on,
            "max_bins": self.max_bins,
            "min_rows": self.min_rows,
            "groups": {
                name: [
                    {"id": b.id, "rows": b.rows, "low": _finite(b.low), "high": _finite(b.high), "quantiles": [round(q, 6) for q in b.quantiles]}
                    for b in bins
                ]
                for name, bins in self.groups.items()
            },
        }

    @classmethod
    def from_json(cls, payload: dict) -> "Calibration":
        if payload.get("version") != VERSION:
            raise ValueError(f"{INTERVALS_FILE} has version {payload.get('version')}, expected {VERSION}")
        groups = {
            name: [Bin(b["id"], int(b["rows"]), _number(b["low"], -math.inf), _number(b["high"], math.inf), tuple(b["quantiles"])) for b in bins]
            for name, bins in payload["groups"].items()
        }
        lower, upper = payload.get("interval", (LOWER, UPPER))
        return cls(groups, payload.get("calibrated_on", {}), payload.get("max_bins", MAX_BINS), payload.get("min_rows", MIN_ROWS), (float(lower), float(upper)))

    def save(self, directory: Path) -> Path:
        path = Path(directory) / INTERVALS_FILE
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 6)


def _number(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def load(directory: Path) -> Calibration | None:
    """The calibration in a model directory; ``None`` for a model trained before intervals existed."""
    path = Path(directory) / INTERVALS_FILE
    return Calibration.from_json(json.loads(path.read_text())) if path.exists() else None


# -- calibration ---------------------------------------------------------------------------------


def threshold(line: float) -> float:
    """The continuous cut equivalent to ``actual > line`` for whole-number points: floor(line) + 0.5."""
    return math.floor(line) + 0.5


def p_over(predicted: float, bin_: Bin, line: float) -> float:
    """P(actual > line) for a prediction in ``bin_``: ``1 − F(floor(line) + 0.5 − predicted)``.

    F is the bin's residual CDF, linear between its stored quantiles, 0 below the smallest
    residual and 1 above the largest; a player never scores below 0, so a line under 0 is 1.
    """
    cut = threshold(line)
    if cut < 0:
        return 1.0
    cdf = float(np.interp(cut - predicted, bin_.quantiles, LEVELS, left=0.0, right=1.0))
    return 1.0 - cdf


def _edges(predicted: np.ndarray, max_bins: int, min_rows: int) -> list[float]:
    """Cut points making at most ``max_bins`` quantile bins of at least ``min_rows`` rows each."""
    k = max(1, min(max_bins, predicted.size // max(min_rows, 1)))
    edges = sorted(set(np.quantile(predicted, np.linspace(0, 1, k + 1)[1:-1]).tolist())) if k > 1 else []
    while edges:  # ties can leave a bin short: merge it into its smaller neighbour
        counts = np.bincount(np.searchsorted(edges, predicted, side="right"), minlength=len(edges) + 1)
        small = int(np.argmin(counts))
        if counts[small] >= min_rows:
            break
        if small == 0:
            drop = 0
        elif small == len(edges):
            drop = len(edges) - 1
        else:
            drop = small - 1 if counts[small - 1] <= counts[small + 1] else small
        edges.pop(drop)
    return edges


def _bins(name: str, predicted: np.ndarray, residual: np.ndarray, max_bins: int, min_rows: int) -> list[Bin]:
    edges = _edges(predicted, max_bins, min_rows)
    index = np.searchsorted(edges, predicted, side="right")
    bounds = [-math.inf, *edges, math.inf]
    return [
        Bin(f"{name}:{i}", int((index == i).sum()), bounds[i], bounds[i + 1], tuple(float(q) for q in np.quantile(residual[index == i], LEVELS)))
        for i in range(len(edges) + 1)
    ]


def calibrate(
    predicted: Sequence[float],
    actual: Sequence[float],
    tiers: Sequence[str],
    *,
    max_bins: int = MAX_BINS,
    min_rows: int = MIN_ROWS,
    calibrated_on: dict | None = None,
    levels: tuple[float, float] = (LOWER, UPPER),
) -> Calibration:
    """Residual quantiles per tier × prediction bin (and pooled, for tiers with too few rows);
    ``levels``: the quantile levels its intervals use (:func:`out_of_time_levels`)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    tiers = np.asarray(list(tiers), dtype=object)
    if predicted.size == 0:
        raise ValueError("no rows to calibrate prediction intervals on")
    residual = actual - predicted
    groups = {POOLED: _bins(POOLED, predicted, residual, max_bins, min_rows)}
    for tier in [t[0] for t in TIERS] + ["unknown"]:
        mask = tiers == tier
        if mask.sum() >= min_rows:
            groups[tier] = _bins(tier, predicted[mask], residual[mask], max_bins, min_rows)
    return Calibration(groups, calibrated_on or {}, max_bins, min_rows, levels)


def out_of_time_levels(
    predicted: Sequence[float], actual: Sequence[float], tiers: Sequence[str], dates: Sequence[object], **bins: int
) -> tuple[tuple[float, float], dict]:
    """The interval's levels: 10 % and 90 % widened by the smallest multiple of ``WIDENING_STEP``
    (at most ``MAX_WIDENING``) whose intervals, calibrated on the first half of the rows' dates,
    cover at least 80 % of the second half's rows; and what was measured on that half."""
    predicted, actual = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    tiers, dates = np.asarray(list(tiers), dtype=object), np.asarray(list(dates), dtype=object)
    days = sorted(set(dates.tolist()))
    if len(days) < 2:  # nothing to measure out of time on
        return (LOWER, UPPER), {"widening": 0.0, "rows": 0}
    first = dates < days[len(days) // 2]
    later = ~first
    earlier = calibrate(predicted[first], actual[first], tiers[first], **bins)
    measured = {}
    for step in range(round(MAX_WIDENING / WIDENING_STEP) + 1):
        widening = step * WIDENING_STEP
        levels = (LOWER - widening, UPPER + widening)
        trial = Calibration(earlier.groups, levels=levels)
        p10, p90 = trial.bounds(predicted[later], trial.assign(predicted[later], tiers[later]))
        covered = coverage(actual[later], p10, p90, tiers[later])["coverage"]
        measured[f"{widening:.3f}"] = covered  # keyed by text, as metrics.json will have it
        if covered >= TARGET_COVERAGE - 1e-12:
            break
    return levels, {"widening": round(widening, 4), "rows": int(later.sum()), "from": str(days[len(days) // 2]), "coverage_by_widening": measured}


# -- coverage ------------------------------------------------------------------------------------


def coverage(actual: Sequence[float], p10: Sequence[float], p90: Sequence[float], tiers: Sequence[str]) -> dict:
    """Share of rows with ``p10 <= actual <= p90`` and mean width ``p90 − p10``, overall and per tier."""
    actual, p10, p90 = (np.asarray(a, dtype=np.float64) for a in (actual, p10, p90))
    tiers = np.asarray(list(tiers), dtype=object)
    inside = (actual >= p10) & (actual <= p90)
    width = p90 - p10

    def summary(mask: np.ndarray) -> dict:
        return {"rows": int(mask.sum()), "coverage": float(inside[mask].mean()), "mean_width": float(width[mask].mean())}

    present = set(tiers.tolist())
    order = [t[0] for t in TIERS] + ["unknown"]
    return {
        **summary(np.ones(actual.size, dtype=bool)),
        "by_tier": [{"tier": t, **summary(tiers == t)} for t in order + sorted(present - set(order)) if t in present],
    }


def interval_columns(calibration: Calibration | None, frame: pl.DataFrame, predicted: Sequence[float], tiers: Sequence[str]) -> pl.DataFrame:
    """``interval_bin``, ``p10``, ``p90`` for rows of ``frame`` (all NULL without a calibration)."""
    if calibration is None or frame.height == 0:
        return pl.DataFrame(
            {"interval_bin": [None] * frame.height, "p10": [None] * frame.height, "p90": [None] * frame.height},
            schema={"interval_bin": pl.String, "p10": pl.Float64, "p90": pl.Float64},
        )
    bins = calibration.assign(predicted, tiers)
    p10, p90 = calibration.bounds(predicted, bins)
    return pl.DataFrame({"interval_bin": bins, "p10": p10, "p90": p90}, schema={"interval_bin": pl.String, "p10": pl.Float64, "p90": pl.Float64})
