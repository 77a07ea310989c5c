"""The model's page: the latest model and its report, test MAE against the best baseline across
trained models, and the graded predictions over time (MAE beside the best baseline on the same
player-games, interval coverage, and with lines the side hit rate and the calibration of P(over))."""

from __future__ import annotations

from typing import Any

import polars as pl
from markupsafe import Markup

from pipeline.docs.charts import Series, line_chart, reliability_chart
from pipeline.docs.collect import SiteData
from pipeline.docs.format import dates_text, integer_text, number_text, percent_text


class ModelPage:
    """The template values of ``model.html``."""

    def __init__(self, data: SiteData):
        self.data = data

    def context(self, report_link: str | None) -> dict[str, Any]:
        data = self.data
        models = []
        for m in data.models:
            best = m.get("best_baseline") or {}
            test = m.get("test") or {}
            models.append({
                "model_id": m.get("model_id", "?"), "created": str(m.get("created_at", ""))[:19].replace("T", " "),
                "dates": dates_text(test.get("start"), test.get("end")), "rows": integer_text(test.get("rows")), "mae": number_text(test.get("mae")),
                "baseline": best.get("name", ""), "baseline_mae": number_text(best.get("mae")), "ratio": number_text(best.get("ratio")),
                "worse": best.get("ratio", 0) > 1,
            })  # fmt: skip
        latest = data.models[0] if data.models else None
        context: dict[str, Any] = {"title": "The model", "latest": latest, "models": models, "report_link": report_link, "models_root": ""}
        if latest:
            best = latest.get("best_baseline") or {}
            context["cards"] = [
                {"label": "test MAE", "value": number_text(latest["test"]["mae"]), "state": "ok" if best.get("ratio", 1) < 1 else "failed",
                 "detail": f"{integer_text(latest['test'].get('rows'))} player-games, {dates_text(latest['test'].get('start'), latest['test'].get('end'))}"},
                {"label": "best baseline, same rows", "value": number_text(best.get("mae")), "state": "unbuilt", "detail": f"{best.get('name', '')}: model / it = {number_text(best.get('ratio'))}"},
            ]  # fmt: skip
        context.update(self.graded())
        return context

    def graded(self) -> dict[str, Any]:
        from training.baselines import BASELINES
        from training.predict import graded_totals, mae_per_date

        graded = self.data.graded
        if graded.is_empty():
            return {"graded": None}
        model_id = graded.sort("game_date", "predicted_at")["model_id"][-1]
        rows = graded.filter(pl.col("model_id") == model_id)
        maes = {n: rows.select((pl.col(n) - pl.col("actual_points")).abs().mean()).item() for n in BASELINES}
        best = min(maes, key=maes.__getitem__)
        per_date = mae_per_date(rows)
        base = rows.group_by("game_date").agg(baseline=(pl.col(best) - pl.col("actual_points")).abs().mean()).sort("game_date")
        days = per_date["game_date"].to_list()
        mae_chart = line_chart(
            [Series(f"model {model_id}", days, per_date["mae"].to_list(), markers=len(days) < 40),
             Series(f"{best} (best baseline)", base["game_date"].to_list(), base["baseline"].to_list(), dashed=True)],
            title="MAE per date, model and the best baseline on the same player-games", y_label="points", y_min=0,
        )  # fmt: skip
        coverage_chart = line_chart(
            [Series("inside the 80% interval", days, per_date["interval_coverage"].to_list(), markers=len(days) < 40)],
            title="interval coverage per date", y_label="share", y_format=lambda v: f"{v:.0%}", references=[(0.8, "80% target")],
        )  # fmt: skip
        hit_chart = line_chart(
            [Series("side hit rate", days, per_date["side_hit_rate"].to_list(), markers=len(days) < 40)],
            title="side hit rate per date (P(over) >= 0.5 picks the over)", y_label="share", y_format=lambda v: f"{v:.0%}",
            references=[(0.524, "52.4% break-even at -110")],
        )  # fmt: skip
        totals = graded_totals(rows)
        return {
            "graded": {
                "rows": integer_text(rows.height), "dates": integer_text(len(days)), "span": dates_text(days[0], days[-1]), "mae": number_text(maes and rows["absolute_error"].mean()),
                "baseline": best, "baseline_mae": number_text(maes[best]), "coverage": percent_text(totals["interval_coverage"]),
                "lines": integer_text(totals["lines"]) if totals["lines"] else None, "hit_rate": percent_text(totals.get("hit_rate")), "decided": integer_text(totals.get("decided")),
            },
            "mae_chart": Markup(mae_chart), "coverage_chart": Markup(coverage_chart), "hit_chart": Markup(hit_chart),
            "calibration_chart": Markup(reliability_chart(calibration_bins(rows), title="calibration of P(over)")),
        }  # fmt: skip



def calibration_bins(rows: pl.DataFrame, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted P(over), share that went over, rows) per tenth of P(over), over rows with
    a line whose outcome is not a push."""
    lined = rows.filter(pl.col("p_over").is_not_null() & pl.col("points_line").is_not_null() & (pl.col("actual_points") != pl.col("points_line")))
    if lined.is_empty():
        return []
    grouped = (
        lined.with_columns(bin=(pl.col("p_over") * bins).floor().clip(0, bins - 1))
        .group_by("bin")
        .agg(predicted=pl.col("p_over").mean(), observed=(pl.col("actual_points") > pl.col("points_line")).mean(), rows=pl.len())
        .sort("bin")
    )
    return [(p, o, n) for _, p, o, n in grouped.iter_rows()]

