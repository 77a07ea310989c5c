"""The plots of ``backtest.md`` (matplotlib, Agg backend: no display needed): MAE by line size
(model, line, blend), the side's hit rate by ``|P(over) − 0.5|`` bucket with its 95 % interval
against the 52.4 % break-even, the reliability of P(over), and, where real prices exist, the
cumulative flat-stake profit."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from training.backtest_scores import BREAK_EVEN, PREDICTORS, cumulative_profit  # noqa: E402

PLOTS = {
    "mae_by_line": "mae_by_line_size.png",
    "hit_by_edge": "hit_rate_by_edge.png",
    "reliability": "reliability.png",
    "profit": "cumulative_profit.png",
}
COLORS = {"model": "#1f77b4", "line": "#7f7f7f", "blend": "#2ca02c"}
PICKERS = ("model", "blend")  # the predictors with a P(over) of their own


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mae_by_line(path: Path, by_line: list[dict]) -> None:
    x = np.arange(len(by_line))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, name in enumerate(PREDICTORS):
        ax.bar(x + (i - 1) * 0.27, [row[name]["mae"] for row in by_line], 0.27, label=name, color=COLORS[name])
    ax.set_xticks(x, [f"{row['line_size']}\n(n={row['rows']:,})" for row in by_line])
    ax.set_xlabel("line (points)")
    ax.set_ylabel("MAE (points)")
    ax.set_title("MAE by line size, same player-games for each")
    ax.legend()
    _save(fig, path)


def plot_hit_by_edge(path: Path, sides_of: dict) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for offset, name in ((-0.12, "model"), (0.12, "blend")):
        buckets = [b for b in sides_of[name]["by_edge"] if b["picks"]]
        x = np.arange(len(buckets)) + offset
        rate = np.array([b["rate"] for b in buckets])
        err = np.array([[b["rate"] - b["ci_low"] for b in buckets], [b["ci_high"] - b["rate"] for b in buckets]])
        ax.errorbar(x, rate, yerr=err, fmt="o", capsize=4, color=COLORS[name], label=f"{name} (95 % interval)")
        for xi, b in zip(x, buckets):
            ax.annotate(f"n={b['picks']:,}", (xi, b["ci_high"]), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
    labels = [b["bucket"] for b in sides_of["model"]["by_edge"] if b["picks"]]
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.axhline(BREAK_EVEN, color="black", ls="--", lw=1, label="52.4 % (break-even at -110)")
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xlabel("|P(over) − 0.5|")
    ax.set_ylabel("side hit rate")
    ax.set_title("The side picked (over when P(over) ≥ 0.5): hit rate by confidence")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_reliability(path: Path, calibration_of: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], color="black", ls="--", lw=1, label="perfectly calibrated")
    for name in PICKERS:
        bins = calibration_of[name]["bins"]
        sizes = np.array([b["picks"] for b in bins], dtype=float)
        ax.scatter([b["mean_p"] for b in bins], [b["over_rate"] for b in bins], s=20 + 200 * sizes / max(sizes.max(), 1), color=COLORS[name], alpha=0.7)
        ax.plot([b["mean_p"] for b in bins], [b["over_rate"] for b in bins], color=COLORS[name], label=f"{name}, Brier {calibration_of[name]['brier']:.4f}")
    ax.axhline(0.5, color="grey", lw=0.8, label=f"line only, P = 0.5: Brier {calibration_of['model']['brier_line']:.4f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("P(over), mean in each tenth (dot size: picks)")
    ax.set_ylabel("share that went over")
    ax.set_title("Reliability of P(over)")
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)


def plot_profit(path: Path, bets: pl.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in PICKERS:
        curve = cumulative_profit(bets, PREDICTORS[name][1])
        ax.plot(curve["game_date"].to_list(), curve["profit"].to_list(), color=COLORS[name], label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("cumulative profit (stakes of 1)")
    ax.set_title("Flat stakes on every side picked, at the books' real prices")
    ax.legend()
    fig.autofmt_xdate()
    _save(fig, path)
