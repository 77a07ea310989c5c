"""``report.md`` and its PNG plots (matplotlib, Agg backend: no display needed).

Plots: predicted versus actual points (test rows), MAE by minutes tier against the baselines
(with the historical 4.27 as a dashed reference line: it was measured on other rows), feature
importance (gain), and residuals by month (validation and test rows). Section "Prediction
intervals": the 80 % interval's coverage and mean width on the test rows, overall and per tier.
Section "Opening weeks": the model and every baseline on the test rows with fewer than 5 earlier
games this season (not evaluation rows), overall and by earlier games.

The headline compares the model with the best baseline on the same rows (lowest test MAE), by
name; the old rules model stays in the tables as a reference row.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from training.baselines import SHORT_LABELS  # noqa: E402

HISTORICAL_RULES_MAE = 4.27
HISTORICAL_RULES_ROWS = "another system's rows, 2024-02-04..2024-04-14 (9,829 predictions of the old production rules model)"
BASELINE_LABELS = {
    "model": "v5 model (LightGBM)",
    "rules": "old rules model (no noise)",
    "rules_core": "rules core (no adjustments)",
    "last10": "last-10 average",
    "season_avg": "season average",
    "prior_season_avg": "prior-season average (< 5 games)",
}
COLORS = {
    "model": "#1f77b4", "rules": "#d62728", "rules_core": "#9467bd", "last10": "#ff7f0e", "season_avg": "#2ca02c",
    "prior_season_avg": "#8c564b",
}  # fmt: skip
PLOTS = {
    "pred_vs_actual": "predicted_vs_actual.png",
    "mae_by_tier": "mae_by_tier.png",
    "importance": "feature_importance.png",
    "residuals_by_month": "residuals_by_month.png",
}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predicted_vs_actual(path: Path, actual: np.ndarray, predicted: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    top = float(max(actual.max(), predicted.max(), 1.0)) + 2
    hb = ax.hexbin(predicted, actual, gridsize=45, extent=(0, top, 0, top), mincnt=1, bins="log", cmap="Blues")
    fig.colorbar(hb, ax=ax, label="rows (log)")
    ax.plot([0, top], [0, top], color="black", lw=1, ls="--", label="predicted = actual")
    ax.set_xlabel("predicted points")
    ax.set_ylabel("actual points")
    ax.set_title(f"Test rows: predicted vs actual (n={actual.size:,})")
    ax.legend(loc="upper left")
    _save(fig, path)


def plot_mae_by_tier(path: Path, by_tier: list[dict], predictors: list[str]) -> None:
    tiers = [row["tier"] for row in by_tier]
    x = np.arange(len(tiers))
    width = 0.8 / len(predictors)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, name in enumerate(predictors):
        ax.bar(x + (i - (len(predictors) - 1) / 2) * width, [row[name] for row in by_tier], width, label=BASELINE_LABELS.get(name, name), color=COLORS.get(name))
    ax.set_xticks(x, [f"{t}\n(n={row['rows']:,})" for t, row in zip(tiers, by_tier)])
    ax.axhline(HISTORICAL_RULES_MAE, color="black", lw=1, ls="--", label=f"historical rules MAE {HISTORICAL_RULES_MAE} (other rows, 2024-02-04..04-14)")
    ax.set_ylabel("MAE (points)")
    ax.set_ylim(0, 1.3 * max(max(row[name] for name in predictors) for row in by_tier))  # room for the legend
    ax.set_title("Test MAE by player tier (recent minutes), same rows for every predictor")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    _save(fig, path)


def plot_importance(path: Path, importance: list[tuple[str, float]], top: int = 25) -> None:
    shown = importance[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(shown) + 1.2))
    ax.barh([name for name, _ in shown], [value for _, value in shown], color=COLORS["model"])
    ax.set_xlabel("share of total gain")
    ax.set_title(f"Feature importance (gain), top {len(shown)}")
    _save(fig, path)


def plot_residuals_by_month(path: Path, frame: pl.DataFrame) -> None:
    """``frame``: month, split, residual (predicted − actual) of the model."""
    months = (
        frame.select("month", "split").unique().with_columns(order=pl.col("split").replace_strict({"valid": 0, "test": 1}, default=2))
        .sort("month", "order").select("month", "split")
    )
    data = [frame.filter((pl.col("month") == m) & (pl.col("split") == s))["residual"].to_numpy() for m, s in months.iter_rows()]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(data) + 2), 4.5))
    box = ax.boxplot(data, showfliers=False, patch_artist=True)
    for patch, split in zip(box["boxes"], months["split"]):
        patch.set_facecolor("#c6dbef" if split == "valid" else "#fdd0a2")
    ax.plot(range(1, len(data) + 1), [np.abs(d).mean() for d in data], "o-", color="black", label="MAE")
    ax.axhline(0, color="grey", lw=1)
    ax.set_xticks(range(1, len(data) + 1), [f"{m}\n{s}" for m, s in months.iter_rows()], fontsize=8)
    ax.set_ylabel("residual, predicted − actual (points)")
    ax.set_title("Model residuals by month (box: quartiles, whiskers 1.5 IQR)")
    ax.legend()
    _save(fig, path)


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _scores_table(overall: Mapping[str, dict], reference: str) -> list[str]:
    """One row per predictor; the last column is MAE over ``reference``'s (the best baseline)."""
    lines = [
        _row(["predictor", "MAE", "RMSE", "within 1", "within 3", "within 5", "bias", f"MAE / {SHORT_LABELS.get(reference, reference)}"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    ref = overall[reference]["mae"]
    for name, s in overall.items():
        lines.append(
            _row(
                [
                    BASELINE_LABELS.get(name, name),
                    f"{s['mae']:.3f}",
                    f"{s['rmse']:.3f}",
                    f"{s['within_1']:.1%}",
                    f"{s['within_3']:.1%}",
                    f"{s['within_5']:.1%}",
                    f"{s['bias']:+.2f}",
                    f"{s['mae'] / ref:.3f}",
                ]
            )
        )
    return lines


def _grouped_table(rows: list[dict], key: str, predictors: list[str]) -> list[str]:
    lines = [
        _row([key, "rows", *[f"MAE {BASELINE_LABELS.get(p, p)}" for p in predictors], "model bias"]),
        _row(["---", "---:", *["---:"] * len(predictors), "---:"]),
    ]
    for r in rows:
        lines.append(_row([r[key], f"{r['rows']:,}", *[f"{r[p]:.3f}" for p in predictors], f"{r['bias']:+.2f}"]))
    return lines


def _opening_section(ow: dict | None) -> list[str]:
    """"Opening weeks": the model and every baseline on the test rows with < 5 earlier games."""
    if not ow:
        return []
    fb = ow["fallback"]
    head = [
        "## Opening weeks",
        "",
        f"Test rows where the player played with fewer than 5 earlier played games this season (`games_played_season`): "
        f"{ow['rows']:,} player-games. They are not evaluation rows (those need at least 5), so the figures above leave them out. "
        "Early in a season they are every player's first games (the feature store has rows from each opener, "
        "with the previous season blended in); late in a season they are players joining it late (debuts, signings, "
        "returns). `benchmarks/model_windows.py` scores a season's first month (its `opening` window).",
        "",
        "Every predictor is scored on the same rows. Where a baseline has no value (a player without a played game this "
        "season has no last-5, last-10 or season average, so no rules, rules-core, last-10 or season-average prediction), "
        f"it predicts **{fb['points']:.2f} points**, the {fb['from']} ({fb['rows']:,} rows). The prior-season average uses "
        "the player's average over the season before (regular season to playoffs) when he played then, else the season "
        "average as the season-average baseline does, else the same figure. Rows given that figure, per baseline: "
        + ", ".join(f"{SHORT_LABELS.get(name, name)} {n}" for name, n in fb["used_on"].items())
        + ". The old rules model's adjustments are not added to it.",
        "",
    ]
    if not ow["rows"]:
        return [*head, "No such rows in this test split.", ""]
    predictors = list(ow["overall"])
    lines = [
        _row(["earlier games", "rows", *[f"MAE {BASELINE_LABELS.get(p, p)}" for p in predictors]]),
        _row(["---", "---:", *["---:"] * len(predictors)]),
        _row(["**all (< 5)**", f"{ow['rows']:,}", *[f"**{ow['overall'][p]['mae']:.3f}**" for p in predictors]]),
    ]
    for g in ow["by_earlier_games"]:
        lines.append(_row([g["earlier_games"], f"{g['rows']:,}", *[f"{g[p]:.3f}" for p in predictors]]))
    return [*head, *lines, ""]


def _levels(iv: dict) -> str:
    lower, upper = iv.get("interval", (0.10, 0.90))
    oot = iv.get("out_of_time")
    text = f"{lower:.1%} and {upper:.1%}"
    if oot and oot.get("rows"):
        text += (
            f" (10 % and 90 % widened by {oot['widening']:.1%}: the least that covers 80 % out of time on the validation split, "
            f"calibrated on its dates before {oot['from']} and scored on the {oot['rows']:,} rows from then on)"
        )
    return text


def _interval_section(iv: dict | None) -> list[str]:
    """"Prediction intervals": the 80 % interval's coverage on the test rows, overall and per tier."""
    if not iv:
        return []
    lines = [
        "## Prediction intervals",
        "",
        "Every prediction carries an 80 % interval [p10, p90]: the prediction plus quantiles of the "
        "validation residuals (actual − predicted) of its minutes tier and predicted-points bin, interpolated between "
        "order statistics (`intervals.json`, `training/intervals.py`), at levels "
        f"{_levels(iv)}. Calibrated on the validation rows only; scored here on the test rows. An interval assumes the player plays.",
        "",
        _row(["tier", "rows", "actual points inside [p10, p90]", "mean width (points)"]),
        _row(["---", "---:", "---:", "---:"]),
        _row(["**all**", f"{iv['rows']:,}", f"**{iv['coverage']:.1%}**", f"{iv['mean_width']:.2f}"]),
    ]
    for t in iv["by_tier"]:
        lines.append(_row([t["tier"], f"{t['rows']:,}", f"{t['coverage']:.1%}", f"{t['mean_width']:.2f}"]))
    valid = iv["valid"]
    bins = ", ".join(f"{name} {n}" for name, n in iv["bins"].items())
    lines += [
        "",
        f"On the validation rows it was calibrated on: {valid['coverage']:.1%} of {valid['rows']:,} (mean width {valid['mean_width']:.2f}). "
        f"Prediction bins per tier: {bins} (`all`: every tier pooled, for a tier with too few validation rows).",
        "",
    ]
    return lines


def _refit_lines(refit: dict | None) -> list[str]:
    if not refit:
        return ["- the model kept is the early-stopping fit (`training.refit=false`)"]
    return [
        f"- the model kept: the same settings fitted again for {refit['rounds']} rounds on the training and validation rows "
        f"together ({refit['rows']:,} rows, {refit['start']}..{refit['end']}; `training.refit`); the validation scores above "
        "are the early-stopping fit's, which never learnt from those rows"
    ]


def render_row_plots(test_actual: np.ndarray, test_predicted: np.ndarray, residuals: pl.DataFrame) -> dict[str, bytes]:
    """The plots of the rows themselves (predicted against actual on the test rows, residuals by
    month: ``residuals`` as :func:`plot_residuals_by_month` takes it), as PNG files by name: drawn
    where the rows are (training.scoring), so that they need not travel to where the report is written."""
    with tempfile.TemporaryDirectory(prefix="nba-report-plots-") as tmp:
        folder = Path(tmp)
        plot_predicted_vs_actual(folder / PLOTS["pred_vs_actual"], test_actual, test_predicted)
        plot_residuals_by_month(folder / PLOTS["residuals_by_month"], residuals)
        return {name: (folder / name).read_bytes() for name in (PLOTS["pred_vs_actual"], PLOTS["residuals_by_month"])}


def write_report(
    directory: Path,
    metrics: dict,
    *,
    row_plots: Mapping[str, bytes],
    importance: list[tuple[str, float]],
) -> Path:
    """Write the plots and ``report.md`` into ``directory``; return the report's path.
    ``row_plots``: :func:`render_row_plots` of the model's scored rows."""
    directory.mkdir(parents=True, exist_ok=True)
    test_overall = {"model": metrics["test"], **metrics["baselines"]}
    valid_overall = {"model": metrics["valid"], **metrics["valid"]["baselines"]}
    predictors = list(test_overall)
    for name, png in row_plots.items():
        (directory / name).write_bytes(png)
    plot_mae_by_tier(directory / PLOTS["mae_by_tier"], metrics["by_tier"], predictors)
    plot_importance(directory / PLOTS["importance"], importance)

    test, valid, train = metrics["test"], metrics["valid"], metrics["train"]
    rules_mae = metrics["baselines"]["rules"]["mae"]
    best = metrics["best_baseline"]
    lines = [
        f"# v5 points model: {metrics['model_id']}",
        "",
        f"Test MAE **{test['mae']:.3f}** on {test['rows']:,} player-games ({test['start']}..{test['end']}): "
        f"**{best['ratio']:.3f} × the best baseline**, {SHORT_LABELS[best['name']]} {best['mae']:.3f}, on the same rows. "
        f"The old rules model (with its fixed adjustments, bias {metrics['baselines']['rules']['bias']:+.2f}) scores {rules_mae:.3f} "
        f"there ({test['mae'] / rules_mae:.3f} ×): a reference row below, not the bar to clear.",
        "",
        "## Rows",
        "",
        "Split by game date (no date in two splits); features only from `nba_predictions.ml_feature_store`, "
        "target (actual points) from `nba_analytics.player_game_summary`.",
        "",
        _row(["split", "dates", "rows", "use"]),
        _row(["---", "---", "---:", "---"]),
        _row(["train", f"{train['start']}..{train['end']}", f"{train['rows']:,}", train["selection"]]),
        _row(["valid", f"{valid['start']}..{valid['end']}", f"{valid['rows']:,}", "evaluation rows; early stopping and model choice"]),
        _row(["test", f"{test['start']}..{test['end']}", f"{test['rows']:,}", "evaluation rows; reported only"]),
        "",
        "Evaluation rows: the player played (minutes > 0) and had at least 5 earlier played games that season. "
        "The model and every baseline are scored on exactly these rows. Rows come from the feature store, which has rows "
        "from each season's opener (`phase4.bootstrap_days`, default 0); the rows of a player's first games of a season "
        "are scored apart, under Opening weeks.",
        "",
        "## Test",
        "",
        *_scores_table(test_overall, best["name"]),
        "",
        f"Reference, not comparable: the old rules model's historical MAE of **{HISTORICAL_RULES_MAE}** was measured on "
        f"{HISTORICAL_RULES_ROWS}. On this test window's rows the same rules (without their random noise) score "
        f"{rules_mae:.3f}; the model {'is' if test['mae'] < HISTORICAL_RULES_MAE else 'is not'} under the {HISTORICAL_RULES_MAE} line "
        f"({test['mae']:.3f}).",
        "",
        "### By player tier (recent minutes: `minutes_avg_last_10` bench < 15, role 15-25, starter 25-32, star >= 32)",
        "",
        *_grouped_table(metrics["by_tier"], "tier", predictors),
        "",
        "### By month",
        "",
        *_grouped_table(metrics["by_month"], "month", predictors),
        "",
        *_opening_section(metrics.get("opening_weeks")),
        *_interval_section(metrics.get("intervals")),
        "## Validation",
        "",
        *_scores_table(valid_overall, valid["best_baseline"]["name"]),
        "",
        "## Model",
        "",
        f"- LightGBM through Ray Train ({metrics['fit']['backend']}, {metrics['fit']['num_workers']} worker(s)), "
        f"best iteration {metrics['fit']['best_iteration']} of {metrics['fit']['rounds']} rounds "
        f"(early stopping on validation MAE after {metrics['params']['early_stopping_rounds']} rounds without improvement)",
        *_refit_lines(metrics["fit"].get("refit")),
        f"- parameters: `{metrics['params']['lightgbm']}`",
        f"- {len(metrics['features'])} features (FEATURE_COLUMNS of the feature store, version {metrics['feature_version']})",
        f"- data fingerprint `{metrics['data_fingerprint']}`, git commit `{metrics['git_commit']}`",
        "",
        "Top features by gain: " + ", ".join(f"{name} ({share:.1%})" for name, share in importance[:10]) + ".",
        "",
        "## Plots",
        "",
        f"![predicted vs actual]({PLOTS['pred_vs_actual']})",
        "",
        f"![MAE by tier]({PLOTS['mae_by_tier']})",
        "",
        f"![feature importance]({PLOTS['importance']})",
        "",
        f"![residuals by month]({PLOTS['residuals_by_month']})",
        "",
    ]
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    return path
