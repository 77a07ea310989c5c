"""`python -m pipeline`: the Hydra app. Picks the task, starts Ray, hands off to the runner."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig) -> int:
    from pipeline.tasks import run_task

    code = run_task(cfg, overrides=list(HydraConfig.get().overrides.task))
    if HydraConfig.get().mode == RunMode.RUN:
        sys.exit(code)
    return code


def main() -> None:
    app()


if __name__ == "__main__":
    main()
