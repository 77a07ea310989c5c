"""What a training run leaves: ``metrics.json`` (:func:`build_metrics`), the summary it prints
(:class:`TrainResult`), and a finished run read back (:func:`load_result`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.progress import console, size_text
from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, FEATURE_VERSION
from training import artifacts
from training.baselines import SHORT_LABELS, best_baseline_of
from training.blocks import TrainingRows
from training.data import EVAL_MIN_PRIOR_GAMES, Dataset
from training.fit import FitResult
from training.report import HISTORICAL_RULES_MAE, HISTORICAL_RULES_ROWS
from training.settings import TrainSettings

# Keys of metrics.json that change from one run to the next even with the same data and seed;
# "data": how the rows were read (where, and what passed through the driver), not what they hold.
VOLATILE_KEYS = ("model_id", "created_at", "output_dir", "timings", "git_commit", "overrides", "data")


@dataclass
class TrainResult:
    metrics: dict
    output_dir: Path
    report_path: Path
    model_id: str

    def summary_lines(self) -> list[str]:
        m = self.metrics
        test, base = m["test"], m["baselines"]
        best = m.get("best_baseline") or best_baseline_of(test["mae"], base)  # older models: computed here
        others = [name for name in sorted(base, key=lambda n: base[n]["mae"]) if name not in (best["name"], "rules")]
        return [
            f"v5 model {m['model_id']}: test MAE {test['mae']:.3f} on {test['rows']:,} player-games ({test['start']}..{test['end']}): "
            f"{best['ratio']:.3f} x the best baseline, {SHORT_LABELS.get(best['name'], best['name'])} {best['mae']:.3f}",
            "  baselines on the same rows: "
            + ", ".join(f"{SHORT_LABELS.get(name, name)} {base[name]['mae']:.3f}" for name in [best["name"], *others])
            + (f"; old rules model {base['rules']['mae']:.3f} (reference; model / old rules = {test['mae'] / base['rules']['mae']:.3f})" if "rules" in base and best["name"] != "rules" else ""),
            f"  validation MAE {m['valid']['mae']:.3f} (early stopping, best iteration {m['fit']['best_iteration']}"
            + (f"; the model kept refitted on training + validation rows, {m['fit']['refit']['rows']:,}" if m["fit"].get("refit") else "")
            + "); "
            f"historical {HISTORICAL_RULES_MAE} was measured on another system's rows (2024-02-04..2024-04-14)",
            *self._opening_lines(),
            *self._interval_lines(),
            *self._data_lines(),
            f"  report: {self.report_path}",
        ]

    def _data_lines(self) -> list[str]:
        data = self.metrics.get("data")  # None for a model trained before the rows were read in blocks
        if not data:
            return []
        where = "the workers read them from the warehouse" if data["read_by"] == "workers" else "the driver read them from the warehouse"
        return [
            f"  rows read in {data['blocks']} block(s), {size_text(data['read_bytes'])}: {where}; the driver moved "
            f"{size_text(data['driver_bytes'])} of table data ({data['driver_bytes'] / max(1, data['read_bytes']):.2%})"
        ]

    def _opening_lines(self) -> list[str]:
        ow = self.metrics.get("opening_weeks")  # None for a model trained before the section existed
        if not ow or not ow["rows"]:
            return []
        overall = ow["overall"]
        best = min((name for name in overall if name != "model"), key=lambda n: overall[n]["mae"])
        return [
            f"  opening weeks (test rows with < 5 earlier games, {ow['rows']:,}): model MAE {overall['model']['mae']:.3f}, "
            f"best baseline {SHORT_LABELS.get(best, best)} {overall[best]['mae']:.3f}"
        ]

    def _interval_lines(self) -> list[str]:
        iv = self.metrics.get("intervals")  # None for a model trained before intervals existed
        if not iv:
            return []
        tiers = ", ".join(f"{t['tier']} {t['coverage']:.1%}" for t in iv["by_tier"])
        return [f"  80% interval (p10-p90): test coverage {iv['coverage']:.1%} ({tiers}), mean width {iv['mean_width']:.1f} points"]

    def print_summary(self) -> None:
        for line in self.summary_lines():
            console.print(line, highlight=False, soft_wrap=True)


def load_result(directory: Path) -> TrainResult:
    """A finished training run read back from its output directory."""
    metrics = json.loads((directory / artifacts.METRICS_FILE).read_text())
    return TrainResult(metrics, directory, directory / artifacts.REPORT_FILE, metrics["model_id"])


def importance_shares(booster) -> list[tuple[str, float]]:
    gain = booster.feature_importance(importance_type="gain").astype(np.float64)
    total = gain.sum() or 1.0
    return sorted(((name, float(g / total)) for name, g in zip(booster.feature_name(), gain)), key=lambda kv: -kv[1])


def build_metrics(
    *,
    model_id: str,
    created: dt.datetime,
    settings: TrainSettings,
    dataset: Dataset | TrainingRows,
    fit_result: FitResult,
    model_fit: FitResult,
    valid_eval: dict,
    test_eval: dict,
    output_dir: Path,
    overrides: list[str],
    interval_metrics: dict | None = None,
    opening_metrics: dict | None = None,
) -> dict:
    test_overall, valid_overall = test_eval["overall"], valid_eval["overall"]
    baselines = {name: s for name, s in test_overall.items() if name != "model"}
    valid_baselines = {name: s for name, s in valid_overall.items() if name != "model"}
    rules_mae = baselines["rules"]["mae"]
    best = best_baseline_of(test_overall["model"]["mae"], baselines)
    return {
        "model_id": model_id,
        "created_at": created.isoformat(timespec="seconds"),
        "test": {**test_overall["model"], "start": test_eval["start"], "end": test_eval["end"]},
        "valid": {
            **valid_overall["model"],
            "start": valid_eval["start"],
            "end": valid_eval["end"],
            "lightgbm_l1": fit_result.valid_mae,
            "baselines": valid_baselines,
            "best_baseline": best_baseline_of(valid_overall["model"]["mae"], valid_baselines),
        },
        "train": {
            "rows": dataset.rows_in("train"),
            **dataset.window("train"),
            "selection": "played (minutes > 0)"
            + (f", at least {settings.min_prior_games} earlier games this season" if settings.min_prior_games else ""),
        },
        "baselines": baselines,
        "best_baseline": best,
        "ratios": {
            "test_mae_vs_rules": test_overall["model"]["mae"] / rules_mae,
            "test_mae_vs_best_baseline": best["ratio"],
            "valid_mae_vs_rules": valid_overall["model"]["mae"] / valid_overall["rules"]["mae"],
        },
        "by_tier": test_eval["by_tier"],
        "by_month": test_eval["by_month"],
        "intervals": interval_metrics,
        "opening_weeks": opening_metrics,
        "evaluation_rows": f"minutes > 0 and games_played_season >= {EVAL_MIN_PRIOR_GAMES}",
        "reference": {"historical_rules_mae": HISTORICAL_RULES_MAE, "measured_on": HISTORICAL_RULES_ROWS},
        "features": list(FEATURE_COLUMNS),
        "feature_version": FEATURE_VERSION,
        "params": settings.record(),
        "fit": {
            "backend": fit_result.backend,
            "num_workers": fit_result.num_workers,
            "best_iteration": fit_result.best_iteration,
            "rounds": fit_result.rounds,
            # The model kept: fitted again on training + validation rows, or the early-stopping fit itself.
            "refit": {"rows": dataset.rows_in("refit"), **dataset.window("refit"), "rounds": model_fit.rounds} if model_fit is not fit_result else None,
            "rows_per_worker": fit_result.rows_per_worker(),
        },
        "data": dataset.record() if isinstance(dataset, TrainingRows) else None,
        "split": dataset.split.as_dict(),
        "data_fingerprint": dataset.fingerprint,
        "git_commit": artifacts.git_commit(),
        "output_dir": str(output_dir),
        "overrides": list(overrides),
    }
