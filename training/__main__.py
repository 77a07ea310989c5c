"""`python -m training task=train|predict|grade [key=value ...]`: the model tasks on their own.

The same Hydra config as `python -m pipeline` (conf/, with the `training` group), for running the
model tasks where `pipeline` does not dispatch them (yet); `-m` multiruns work the same way.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import pipeline.__main__  # noqa: F401 - registers the ${project_root:} resolver the config uses


def run(cfg: DictConfig, overrides: list[str]) -> int:
    from pipeline.progress import console
    from pipeline.tasks import new_run_id, setup_logging
    from training.task import grade_task, predict_task, train_task

    tasks = {"train": train_task, "predict": predict_task, "grade": grade_task}
    if cfg.task not in tasks:
        console.print(f"[bold red]error:[/] python -m training runs task={'|'.join(tasks)}, not {cfg.task!r}")
        return 1
    run_id = new_run_id()
    log_path = setup_logging(cfg, run_id)
    try:
        return tasks[cfg.task](cfg, run_id, overrides)
    finally:
        console.print(f"[dim]log: {log_path}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig) -> int:
    code = run(cfg, list(HydraConfig.get().overrides.task))
    if HydraConfig.get().mode == RunMode.RUN:
        sys.exit(code)
    return code


if __name__ == "__main__":
    app()
