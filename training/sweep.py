"""The summary of a Hydra multirun of ``task=train``: one row per job, sorted by validation MAE.

``python -m pipeline -m task=train training.params.num_leaves=15,31,63 training.params.learning_rate=0.03,0.1``
runs the jobs one after another in one process; each writes its model directory (by default
``<hydra.sweep.dir>/<job number>/``). When the sweep ends, :class:`SweepSummary` (a Hydra
callback registered by conf/training/v5.yaml) writes ``sweep_summary.md`` and
``sweep_summary.csv`` into the sweep directory and prints the table. The job with the lowest
validation MAE is the one chosen; the test MAE is shown for the record and never used to choose,
beside the best baseline on the same test rows (named) and the model's ratio to it, with the
old rules model's ratio as a reference, as in each job's report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from training.artifacts import METRICS_FILE
from training.baselines import SHORT_LABELS

POINTER_FILE = "model_dir.txt"  # in a job's Hydra directory when its model went elsewhere
SUMMARY_MD = "sweep_summary.md"
SUMMARY_CSV = "sweep_summary.csv"


def job_metrics(sweep_dir: Path) -> list[dict]:
    """metrics.json of every job of the sweep (in its job directory, or where its pointer says)."""
    found: dict[Path, dict] = {}
    for job_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        candidates = [job_dir / METRICS_FILE]
        if (job_dir / POINTER_FILE).exists():
            candidates.append(Path((job_dir / POINTER_FILE).read_text().strip()) / METRICS_FILE)
        for path in candidates:
            if path.exists():
                found[path.resolve()] = {"job": job_dir.name, **json.loads(path.read_text())}
    return list(found.values())


def summary_frame(metrics: list[dict]) -> pl.DataFrame:
    records = []
    for m in metrics:
        records.append(
            {
                "job": m["job"],
                "overrides": " ".join(o for o in m.get("overrides", []) if o.startswith("training.")) or "(defaults)",
                "valid_mae": m["valid"]["mae"],
                "best_iteration": m["fit"]["best_iteration"],
                "test_mae": m["test"]["mae"],
                "best_baseline": m["best_baseline"]["name"],
                "test_best_baseline_mae": m["best_baseline"]["mae"],
                "test_vs_best_baseline": m["best_baseline"]["ratio"],
                "test_vs_rules": m["ratios"]["test_mae_vs_rules"],
                "model_dir": m["output_dir"],
            }
        )
    if not records:
        return pl.DataFrame()
    return pl.DataFrame(records).sort("valid_mae", "job")


def _baseline(row: dict) -> str:
    return f"{SHORT_LABELS.get(row['best_baseline'], row['best_baseline'])} {row['test_best_baseline_mae']:.4f}"


def write_sweep_summary(sweep_dir: Path) -> pl.DataFrame | None:
    """Write and return the summary of the training jobs under ``sweep_dir`` (None: no such job)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return None
    frame = summary_frame(job_metrics(sweep_dir))
    if frame.is_empty():
        return None
    frame.write_csv(sweep_dir / SUMMARY_CSV)
    lines = [
        f"# Sweep summary: {frame.height} training job(s), sorted by validation MAE",
        "",
        "The first row is the chosen configuration (lowest validation MAE). Test MAE is reported only, never used to choose.",
        "",
        "| rank | job | overrides | valid MAE | best iteration | test MAE (reported only) | best baseline (test) | test / best baseline | test / old rules | model dir |",
        "| ---: | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for rank, row in enumerate(frame.iter_rows(named=True), start=1):
        lines.append(
            f"| {rank} | {row['job']} | `{row['overrides']}` | {row['valid_mae']:.4f} | {row['best_iteration']} | "
            f"{row['test_mae']:.4f} | {_baseline(row)} | {row['test_vs_best_baseline']:.3f} | {row['test_vs_rules']:.3f} | {row['model_dir']} |"
        )
    (sweep_dir / SUMMARY_MD).write_text("\n".join(lines) + "\n")
    return frame


def print_summary(frame: pl.DataFrame, sweep_dir: Path) -> None:
    from rich.table import Table

    from pipeline.progress import console

    table = Table(title=f"sweep {sweep_dir}: sorted by validation MAE (test MAE reported only)", title_justify="left")
    for column in ("rank", "job", "overrides", "valid MAE", "best it.", "test MAE", "best baseline", "test / best", "test / old rules"):
        table.add_column(column, justify="left" if column in ("job", "overrides") else "right")
    for rank, row in enumerate(frame.iter_rows(named=True), start=1):
        table.add_row(
            str(rank), row["job"], row["overrides"], f"{row['valid_mae']:.4f}", str(row["best_iteration"]), f"{row['test_mae']:.4f}",
            _baseline(row), f"{row['test_vs_best_baseline']:.3f}", f"{row['test_vs_rules']:.3f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"sweep summary: {sweep_dir / SUMMARY_MD}", highlight=False)


class SweepSummary(Callback):
    """Hydra callback: after a multirun, summarise its training jobs (no-op for other tasks)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        frame = write_sweep_summary(sweep_dir)
        if frame is not None:
            print_summary(frame, sweep_dir)
