"""The figures of a backtest, from its rows (pure functions; :mod:`training.backtest` walks, and
:mod:`training.backtest_report` writes them).

Every score is on the scored rows: a line, a prediction, and the player played. Three
predictors, each a point estimate with a P(over): ``model`` (``predicted_points``, ``p_over``),
``line`` (the line itself, P(over) = 0.5: the market's forecast), ``blend``
(``blend_points``, ``blend_p_over``).

- MAE and bias (mean of predicted − actual), overall, by minutes tier (recent minutes, known
  before tip-off) and by line size.
- The side each picks: over when P(over) ≥ 0.5, else under; a hit when it wins; a push (actual =
  line, whole-number lines only) is neither and is left out. Hit rate with the number of decided
  picks, the exact (Clopper-Pearson) 95 % interval, and the one-sided binomial p-value against
  the 52.4 % break-even of a -110 price (110 / 210): overall, by ``|P(over) − 0.5|`` bucket, on
  the ``backtest.top_picks`` picks of largest ``|P(over) − 0.5|``, and where the point estimate
  differs from the line by at least ``backtest.edge_points``.
- Calibration: per tenth of P(over), the picks, their mean P(over) and the share that went over;
  the Brier score of P(over) against the line-only forecast's (P = 0.5: 0.25 on every row).
- Profit at real prices (:func:`profit`): flat stakes of 1 on the side picked at each real-price
  book line; a win pays the price's odds (American: +150 pays 1.5, -110 pays 100 / 110), a loss
  costs the stake, a push returns it.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy.stats import binomtest

from training.data import TARGET
from training.evaluate import TIERS

BREAK_EVEN = 110 / 210  # the hit rate a -110 price needs: 52.4 %
CONFIDENCE = 0.95
EDGE_BUCKETS = (0.0, 0.05, 0.10, 0.15, 0.20)  # lower bounds of |P(over) - 0.5|
LINE_SIZES = (0.0, 10.0, 15.0, 20.0, 25.0)  # lower bounds of the line
CALIBRATION_BINS = 10
PREDICTORS = {"model": ("predicted_points", "p_over"), "line": ("points_line", None), "blend": ("blend_points", "blend_p_over")}


def _bucket(column: pl.Expr, bounds: tuple[float, ...], unit: str = "") -> pl.Expr:
    """A label per range of ``bounds`` (``[a, b)``, the last open): ``10-15``, ``25+``."""
    expr = pl.when(column < bounds[1]).then(pl.lit(f"<{bounds[1]:g}{unit}"))
    for low, high in zip(bounds[1:-1], bounds[2:]):
        expr = expr.when(column < high).then(pl.lit(f"{low:g}-{high:g}{unit}"))
    return expr.otherwise(pl.lit(f"{bounds[-1]:g}+{unit}"))


def bucket_labels(bounds: tuple[float, ...], unit: str = "") -> list[str]:
    return [f"<{bounds[1]:g}{unit}", *(f"{a:g}-{b:g}{unit}" for a, b in zip(bounds[1:-1], bounds[2:])), f"{bounds[-1]:g}+{unit}"]


def line_size_expr() -> pl.Expr:
    return _bucket(pl.col("points_line"), LINE_SIZES)


def edge_bucket_expr(p_over: str) -> pl.Expr:
    return _bucket((pl.col(p_over) - 0.5).abs(), EDGE_BUCKETS)


# -- accuracy ------------------------------------------------------------------------------------


def errors(scored: pl.DataFrame, by: str | None = None, order: list[str] | None = None) -> list[dict]:
    """Per group (or over all rows): rows, and each predictor's MAE and bias."""
    groups = [(None, scored)] if by is None else [(key, part) for (key,), part in scored.group_by(by, maintain_order=True)]
    if order is not None:
        rank = {name: i for i, name in enumerate(order)}
        groups.sort(key=lambda g: rank.get(g[0], len(rank)))
    out = []
    actual_col = pl.col(TARGET)
    for key, part in groups:
        row: dict = {} if by is None else {by: key}
        row["rows"] = part.height
        for name, (points, _) in PREDICTORS.items():
            error = part.select(pl.col(points) - actual_col).to_series().to_numpy()
            row[name] = {"mae": float(np.abs(error).mean()), "bias": float(error.mean())} if part.height else None
        out.append(row)
    return out


def accuracy(scored: pl.DataFrame) -> dict:
    tiers = [t[0] for t in TIERS] + ["unknown"]
    frame = scored.with_columns(line_size=line_size_expr())
    return {
        "overall": errors(frame)[0],
        "by_tier": errors(frame, "tier", tiers),
        "by_line_size": errors(frame, "line_size", bucket_labels(LINE_SIZES)),
    }


# -- sides ---------------------------------------------------------------------------------------


def hit_rate(hits: int, n: int) -> dict:
    """Hits of ``n`` decided picks: rate, exact 95 % interval, one-sided p-value against 52.4 %."""
    if n == 0:
        return {"picks": 0, "hits": 0, "rate": None, "ci_low": None, "ci_high": None, "p_value": None}
    interval = binomtest(hits, n).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return {
        "picks": n,
        "hits": hits,
        "rate": hits / n,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "p_value": float(binomtest(hits, n, p=BREAK_EVEN, alternative="greater").pvalue),
    }


def decided(scored: pl.DataFrame, points: str, p_over: str) -> pl.DataFrame:
    """The picks of one predictor: side (over when P(over) ≥ 0.5), whether it won, the edge
    ``|P(over) − 0.5|`` and the gap ``|points − line|``; pushes left out."""
    over = pl.col(p_over) >= 0.5
    actual, line = pl.col(TARGET), pl.col("points_line")
    return (
        scored.filter(actual != line)
        .with_columns(
            side=pl.when(over).then(pl.lit("over")).otherwise(pl.lit("under")),
            hit=pl.when(over).then(actual > line).otherwise(actual < line),
            edge=(pl.col(p_over) - 0.5).abs(),
            gap=(pl.col(points) - line).abs(),
        )
        .sort("edge", "game_date", "game_id", "player_id", descending=[True, False, False, False])
    )


def _rate(frame: pl.DataFrame) -> dict:
    return hit_rate(int(frame["hit"].sum()), frame.height)


def sides(scored: pl.DataFrame, points: str, p_over: str, top_picks: int, edge_points: float) -> dict:
    """Hit rates of one predictor's picks: overall, by edge bucket, the top picks, the large gaps."""
    picks = decided(scored, points, p_over)
    labelled = picks.with_columns(bucket=edge_bucket_expr(p_over))
    by_bucket = []
    for label in bucket_labels(EDGE_BUCKETS):
        part = labelled.filter(pl.col("bucket") == label)
        by_bucket.append({"bucket": label, **_rate(part)})
    top = picks.head(top_picks)
    return {
        "overall": _rate(picks),
        "overs_picked": float((picks["side"] == "over").mean()) if picks.height else None,
        "by_edge": by_bucket,
        "top": {"asked": top_picks, "min_edge": float(top["edge"].min()) if top.height else None, **_rate(top)},
        "gap": {"points": edge_points, **_rate(picks.filter(pl.col("gap") >= edge_points))},
        "pushes": scored.filter(pl.col(TARGET) == pl.col("points_line")).height,
    }


# -- calibration ---------------------------------------------------------------------------------


def calibration(scored: pl.DataFrame, p_over: str) -> dict:
    """Reliability per tenth of P(over), and the Brier score against the line-only forecast's."""
    went_over = (pl.col(TARGET) > pl.col("points_line")).cast(pl.Float64)
    frame = scored.select(pl.col(p_over).alias("p"), went_over.alias("over"))
    bins = []
    for i in range(CALIBRATION_BINS):
        low, high = i / CALIBRATION_BINS, (i + 1) / CALIBRATION_BINS
        part = frame.filter((pl.col("p") >= low) & ((pl.col("p") < high) if i < CALIBRATION_BINS - 1 else pl.lit(True)))
        if part.height:
            bins.append({"low": low, "high": high, "picks": part.height, "mean_p": float(part["p"].mean()), "over_rate": float(part["over"].mean())})
    brier = frame.select(((pl.col("p") - pl.col("over")) ** 2).mean()).item() if frame.height else None
    line_only = frame.select(((0.5 - pl.col("over")) ** 2).mean()).item() if frame.height else None
    return {"bins": bins, "brier": brier, "brier_line": line_only, "over_rate": float(frame["over"].mean()) if frame.height else None}


# -- profit --------------------------------------------------------------------------------------


def payout(price: float) -> float:
    """What a winning stake of 1 earns at an American price: +150 pays 1.5, -110 pays 100 / 110."""
    if price is None or (isinstance(price, float) and math.isnan(price)) or price == 0 or -100 < price < 100:
        raise ValueError(f"{price!r} is not an American price (at most -100 or at least +100)")
    return price / 100.0 if price > 0 else 100.0 / -price


def settled(bets: pl.DataFrame, p_over: str) -> pl.DataFrame:
    """Each bet of one predictor at the book's price of the side picked (bets without a price
    for that side are left out): ``profit`` per stake of 1, by date for the cumulative plot."""
    if bets.is_empty():
        return pl.DataFrame(schema={"game_date": pl.Date, "profit": pl.Float64, "edge": pl.Float64})
    over = pl.col(p_over) >= 0.5
    actual, line = pl.col(TARGET), pl.col("book_line")
    priced = bets.with_columns(price=pl.when(over).then(pl.col("over_price")).otherwise(pl.col("under_price"))).filter(pl.col("price").is_not_null())
    win = pl.when(over).then(actual > line).otherwise(actual < line)
    paid = pl.col("price").map_elements(payout, return_dtype=pl.Float64)
    return priced.select(
        "game_date",
        pl.when(actual == line).then(0.0).when(win).then(paid).otherwise(-1.0).alias("profit"),
        (pl.col(p_over) - 0.5).abs().alias("edge"),
    ).sort("game_date")


def profit(bets: pl.DataFrame, p_over: str, top_picks: int) -> dict:
    """Flat-stake profit per unit staked over every bet and over the ``top_picks`` of largest edge."""
    results = settled(bets, p_over)

    def summary(frame: pl.DataFrame) -> dict:
        staked = frame.height
        total = float(frame["profit"].sum()) if staked else 0.0
        return {"bets": staked, "profit": total, "per_unit": total / staked if staked else None}

    top = results.sort("edge", descending=True).head(top_picks)
    return {"all": summary(results), "top": summary(top)}


def cumulative_profit(bets: pl.DataFrame, p_over: str) -> pl.DataFrame:
    """``game_date``, ``profit``: the running total of the flat-stake profit, date by date."""
    return settled(bets, p_over).group_by("game_date").agg(pl.col("profit").sum()).sort("game_date").with_columns(pl.col("profit").cum_sum())


# -- the lines -----------------------------------------------------------------------------------


def line_counts(prop_lines: pl.DataFrame | None, rows: pl.DataFrame) -> dict:
    """What became of the lines of the range: prop-line rows (and lines: rows of one line's two
    sides count once) by status; player-games with a line, with a prediction, played (scored)."""
    with_line = rows.filter(pl.col("points_line").is_not_null())
    counts: dict = {
        "player_games_with_line": with_line.height,
        "predicted_not_played": with_line.filter(~pl.col("played")).height,
        "scored": rows.filter(pl.col("scored")).height,
    }
    if prop_lines is None:
        return {**counts, "files": False}
    line_id = ["game_date", "home_team", "away_team", "player_name", "player_id", "bookmaker", "points_line", "tipoff_at", "captured_at"]
    by_status = (
        prop_lines.group_by("status")
        .agg(rows=pl.len(), lines=pl.struct(line_id).n_unique())
        .sort("rows", "status", descending=[True, False])
    )
    used = prop_lines.filter(pl.col("status") == "used")
    matched = used.select("game_id", "player_id").unique()
    predicted = matched.join(rows.select("game_id", "player_id"), on=["game_id", "player_id"], how="inner")
    conflicting = used.filter(pl.col("reason").is_not_null()).select("game_id", "player_id", "bookmaker").unique().height
    return {
        **counts,
        "files": True,
        "rows": prop_lines.height,
        "by_status": by_status.to_dicts(),
        "matched_player_games": matched.height,
        "matched_without_prediction": matched.height - predicted.height,
        "books_with_several_lines": conflicting,
        "books": sorted(used["bookmaker"].unique().to_list()),
    }
