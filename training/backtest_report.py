"""``backtest.md``, its plots and ``backtest.json``; the table ``task=backtest`` prints.

:func:`summarise` gathers the figures of :mod:`training.backtest_scores` over a walk's scored
rows; :func:`write_report` writes them with the plots of :mod:`training.backtest_plots`;
:func:`print_summary` prints the headline table, the model-to-line MAE ratio last.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table as RichTable

from training import artifacts
from training.backtest import BacktestRun, block_record
from training.backtest_plots import PICKERS, PLOTS, plot_hit_by_edge, plot_mae_by_line, plot_profit, plot_reliability
from training.backtest_scores import BREAK_EVEN, PREDICTORS, accuracy, calibration, line_counts, profit, sides

REPORT_FILE = "backtest.md"
METRICS_FILE = "backtest.json"


def summarise(run: BacktestRun) -> dict:
    """Every figure of the report (``backtest.json``)."""
    rows, s = run.walk.rows, run.settings
    scored = rows.filter(pl.col("scored")) if rows.height else rows
    bets = run.walk.bets
    acc = accuracy(scored) if scored.height else None
    mae = {name: acc["overall"][name]["mae"] for name in PREDICTORS} if acc else {}
    return {
        "range": {"start": str(run.start), "end": str(run.end)},
        "settings": {
            "block": s.block,
            "model": s.model_dir or "fitted per block",
            "initial_weight": s.initial_weight,
            "top_picks": s.top_picks,
            "edge_points": s.edge_points,
            "bookmaker": s.bookmaker or "consensus (median over bookmakers)",
            "real_price_books": list(s.real_price_books),
        },
        "blocks": [block_record(b) for b in run.walk.blocks],
        "lines": line_counts(run.prop_lines, rows) if rows.height else {},
        "accuracy": acc,
        "sides": {name: sides(scored, *PREDICTORS[name], s.top_picks, s.edge_points) for name in PICKERS} if scored.height else {},
        "calibration": {name: calibration(scored, PREDICTORS[name][1]) for name in PICKERS} if scored.height else {},
        "profit": {name: profit(bets, PREDICTORS[name][1], s.top_picks) for name in PICKERS} if bets.height else None,
        "ratios": {"model_to_line": mae["model"] / mae["line"], "blend_to_line": mae["blend"] / mae["line"]} if mae else None,
        "break_even": BREAK_EVEN,
        "git_commit": artifacts.git_commit(),
    }


# -- markdown ------------------------------------------------------------------------------------


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _rate_cells(r: dict) -> list[str]:
    interval = "-" if r["rate"] is None else f"{r['ci_low']:.1%}-{r['ci_high']:.1%}"
    return [f"{r['picks']:,}", _pct(r["rate"]), interval, _num(r["p_value"])]


def _lines_section(m: dict) -> list[str]:
    lines = m["lines"]
    out = ["## Lines", ""]
    if lines.get("files"):
        out += [
            f"{lines['rows']:,} rows of the lines files in the range (one per side of a line, or per line), from "
            f"{', '.join(lines['books']) or 'no bookmaker'}; their status in `nba_raw.prop_lines`:",
            "",
            _row(["status", "rows", "lines"]),
            _row(["---", "---:", "---:"]),
            *(_row([s["status"], f"{s['rows']:,}", f"{s['lines']:,}"]) for s in lines["by_status"]),
            "",
            f"Matched: {lines['matched_player_games']:,} player-games with a used line, {lines['matched_without_prediction']:,} of them "
            "without a prediction (no feature-store row: a player listed inactive). "
            f"{lines['books_with_several_lines']:,} bookmaker lines of a player-game were several different lines without capture "
            "times: the book's line is their median.",
            "",
        ]
    else:
        out += ["No `nba_raw.prop_lines` table: lines come from the slates only.", ""]
    out += [
        f"Player-games with a line and a prediction: {lines['player_games_with_line']:,}; the player did not play in "
        f"{lines['predicted_not_played']:,} of them; **scored: {lines['scored']:,}** (a line, a prediction, the player played). "
        "Every figure below is on exactly these rows.",
        "",
    ]
    return out


def _blocks_section(m: dict) -> list[str]:
    out = [
        "## Blocks",
        "",
        "Each block is predicted by a model that learned only from rows dated before it, and blended with a weight "
        "fitted only on the scored rows of the blocks before it.",
        "",
        _row(["block", "dates", "model", "trained through", "blend weight", "weight fitted on", "rows", "scored"]),
        _row(["---", "---", "---", "---", "---:", "---", "---:", "---:"]),
    ]
    for b in m["blocks"]:
        source = b["blend_weight_fitted_on"]
        fitted = "initial weight: no earlier block" if source is None else f"{source['rows']:,} rows, {source['start']}..{source['end']}"
        model = f"`{b['model_id']}`" + (" (given)" if b["model_given"] else "")
        out.append(_row([b["block"], f"{b['start']}..{b['end']} ({b['dates']})", model, b["model_trained_through"], f"{b['blend_weight']:.2f}", fitted, f"{b['rows']:,}", f"{b['scored']:,}"]))
    return [*out, ""]


def _accuracy_section(m: dict) -> list[str]:
    acc, ratios = m["accuracy"], m["ratios"]
    head = _row(["", "rows", *(f"{name} MAE" for name in PREDICTORS), *(f"{name} bias" for name in PREDICTORS)])
    rule = _row(["---", *["---:"] * (1 + 2 * len(PREDICTORS))])

    def cells(label: str, row: dict) -> str:
        return _row([label, f"{row['rows']:,}", *(_num(row[n]["mae"]) for n in PREDICTORS), *(_num(row[n]["bias"], "{:+.3f}") for n in PREDICTORS)])

    return [
        "## Accuracy: model, line and blend on the same player-games",
        "",
        f"Model MAE / line MAE = **{ratios['model_to_line']:.3f}**; blend MAE / line MAE = **{ratios['blend_to_line']:.3f}**. "
        "Bias is the mean of predicted − actual points.",
        "",
        head,
        rule,
        cells("all", acc["overall"]),
        "",
        "By minutes tier (recent minutes, known before tip-off):",
        "",
        head,
        rule,
        *(cells(r["tier"], r) for r in acc["by_tier"]),
        "",
        "By line size:",
        "",
        head,
        rule,
        *(cells(r["line_size"], r) for r in acc["by_line_size"]),
        "",
        f"![MAE by line size]({PLOTS['mae_by_line']})",
        "",
    ]


def _top_label(top: dict) -> str:
    asked = f"the {top['asked']:,} largest" if top["picks"] >= top["asked"] else f"all {top['picks']:,} (fewer than the {top['asked']:,} asked)"
    return f"{asked} \\|P(over) − 0.5\\| (from {_num(top['min_edge'])})"


def _sides_section(m: dict) -> list[str]:
    out = [
        "## The side picked",
        "",
        "Over when P(over) ≥ 0.5, else under; pushes left out. 95 % intervals are exact (Clopper-Pearson); the p-value is "
        f"the one-sided binomial test of a hit rate above the {BREAK_EVEN:.1%} break-even of a -110 price.",
        "",
    ]
    for name in PICKERS:
        s = m["sides"][name]
        out += [
            f"### {name}",
            "",
            f"{s['pushes']:,} pushes; overs picked: {_pct(s['overs_picked'])}.",
            "",
            _row(["picks", "decided", "hit rate", "95 % interval", "p (> 52.4 %)"]),
            _row(["---", "---:", "---:", "---", "---:"]),
            _row(["all", *_rate_cells(s["overall"])]),
            *(_row([f"\\|P(over) − 0.5\\| {b['bucket']}", *_rate_cells(b)]) for b in s["by_edge"]),
            _row([_top_label(s["top"]), *_rate_cells(s["top"])]),
            _row([f"\\|prediction − line\\| ≥ {s['gap']['points']:g} points", *_rate_cells(s["gap"])]),
            "",
        ]
    return [*out, f"![hit rate by edge]({PLOTS['hit_by_edge']})", ""]


def _calibration_section(m: dict) -> list[str]:
    c = m["calibration"]
    return [
        "## Calibration of P(over)",
        "",
        f"Overs went {_pct(c['model']['over_rate'])} of the time. Brier score (lower is better): model {c['model']['brier']:.4f}, "
        f"blend {c['blend']['brier']:.4f}, the line alone (P = 0.5) {c['model']['brier_line']:.4f}.",
        "",
        _row(["P(over)", "model picks", "model mean P", "went over", "blend picks", "blend mean P", "went over"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
        *_calibration_rows(c),
        "",
        f"![reliability]({PLOTS['reliability']})",
        "",
    ]


def _calibration_rows(c: dict) -> list[str]:
    keys = sorted({(b["low"], b["high"]) for name in PICKERS for b in c[name]["bins"]})
    rows = []
    for low, high in keys:
        cells = [f"{low:.1f}-{high:.1f}"]
        for name in PICKERS:
            b = next((b for b in c[name]["bins"] if b["low"] == low), None)
            cells += ["0", "-", "-"] if b is None else [f"{b['picks']:,}", f"{b['mean_p']:.3f}", _pct(b["over_rate"])]
        rows.append(_row(cells))
    return rows


def _profit_section(m: dict) -> list[str]:
    out = ["## Profit at real prices", ""]
    if m["profit"] is None:
        books = ", ".join(m["settings"]["real_price_books"]) or "none named"
        return out + [
            "**No real prices**: none of the lines scored comes from a bookmaker named in `lines.real_price_books` "
            f"({books}) or carries a `real_prices` flag, so no profit is computed. A pick'em site's prices (such as the "
            "bundled PrizePicks and Underdog lines') are nominal, not odds: a profit at them would mean nothing.",
            "",
        ]
    out += [
        "Flat stakes of 1 on the side picked at each real-price book line (that book's own line and price).",
        "",
        _row(["", "bets", "profit", "per unit staked", f"top {m['settings']['top_picks']} bets", "profit", "per unit"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for name in PICKERS:
        p = m["profit"][name]
        out.append(_row([name, f"{p['all']['bets']:,}", f"{p['all']['profit']:+.2f}", _num(p["all"]["per_unit"], "{:+.3f}"), f"{p['top']['bets']:,}", f"{p['top']['profit']:+.2f}", _num(p["top"]["per_unit"], "{:+.3f}")]))
    return out + ["", f"![cumulative profit]({PLOTS['profit']})", ""]


def write_report(run: BacktestRun, metrics: dict) -> Path:
    """``backtest.md``, ``backtest.json`` and the plots in the run's directory."""
    directory = run.directory
    artifacts.write_json(directory / METRICS_FILE, metrics)
    s = metrics["settings"]
    out = [
        f"# Backtest {metrics['range']['start']}..{metrics['range']['end']}",
        "",
        f"Blocks of a {s['block']}{'' if s['block'] in ('month', 'week') else ' game dates'}; model: {s['model']}; line: {s['bookmaker']}. "
        f"The first block's blend weight is the initial {s['initial_weight']:.2f} (no earlier block's lines to fit it on). "
        f"Pipeline commit `{metrics['git_commit']}`.",
        "",
    ]
    if metrics["accuracy"] is None:
        out += ["**Nothing scored**: no player-game in the range has a line, a prediction and a box score where the player played.", ""]
        out += _blocks_section(metrics)
    else:
        acc = metrics["accuracy"]["overall"]
        top = metrics["sides"]["model"]["top"]
        out += [
            f"On {acc['rows']:,} player-games: model MAE {acc['model']['mae']:.3f}, line {acc['line']['mae']:.3f}, blend {acc['blend']['mae']:.3f}. "
            f"The model's side on its {top['picks']:,} largest-edge picks: {_pct(top['rate'])} (95 % {_pct(top['ci_low'])}-{_pct(top['ci_high'])}) "
            f"against the {BREAK_EVEN:.1%} break-even.",
            "",
            *_lines_section(metrics),
            *_blocks_section(metrics),
            *_accuracy_section(metrics),
            *_sides_section(metrics),
            *_calibration_section(metrics),
            *_profit_section(metrics),
        ]
        plot_mae_by_line(directory / PLOTS["mae_by_line"], metrics["accuracy"]["by_line_size"])
        plot_hit_by_edge(directory / PLOTS["hit_by_edge"], metrics["sides"])
        plot_reliability(directory / PLOTS["reliability"], metrics["calibration"])
        if metrics["profit"] is not None:
            plot_profit(directory / PLOTS["profit"], run.walk.bets)
    path = directory / REPORT_FILE
    path.write_text("\n".join(out) + "\n")
    return path


def print_summary(console: Console, metrics: dict, report: Path) -> None:
    """The headline table: each predictor's MAE, bias, side hit rates and Brier on the scored
    rows; then the model-to-line MAE ratio, last."""
    r = metrics["range"]
    if metrics["accuracy"] is None:
        console.print(f"backtest {r['start']}..{r['end']}: nothing scored (no line, prediction and box score together); report: {report}", highlight=False, soft_wrap=True)
        return
    acc, top_n = metrics["accuracy"]["overall"], metrics["settings"]["top_picks"]
    table = RichTable(
        title=f"backtest {r['start']}..{r['end']}: {len(metrics['blocks'])} block(s), {acc['rows']:,} player-games with a line where the player played",
        title_justify="left",
    )
    for column in ("predictor", "MAE", "bias", "side hit rate (decided)", "95% interval", f"top {top_n} picks", "95% interval ", "Brier"):
        table.add_column(column, justify="left" if column == "predictor" else "right")
    for name in PREDICTORS:
        cells = [name, f"{acc[name]['mae']:.3f}", f"{acc[name]['bias']:+.3f}"]
        if name in PICKERS:
            s, c = metrics["sides"][name], metrics["calibration"][name]
            for part in (s["overall"], s["top"]):
                cells += [f"{_pct(part['rate'])} ({part['picks']:,})", f"{_pct(part['ci_low'])}-{_pct(part['ci_high'])}"]
            cells.append(f"{c['brier']:.4f}")
        else:
            cells += ["-", "-", "-", "-", f"{metrics['calibration']['model']['brier_line']:.4f}"]
        table.add_row(*cells)
    console.print(table)
    weights = ", ".join(f"{b['blend_weight']:.2f}" for b in metrics["blocks"])
    console.print(f"break-even at -110: {BREAK_EVEN:.1%}; blend weights by block: {weights}; report: {report}", highlight=False, soft_wrap=True)
    console.print(f"blend / line MAE: {metrics['ratios']['blend_to_line']:.3f}", highlight=False)
    console.print(f"model / line MAE: {metrics['ratios']['model_to_line']:.3f}", highlight=False)
