"""``training.*`` of the Hydra config (conf/training/v5.yaml), read and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training.blocks import DEFAULT_BLOCK_ROWS
from training.fit import lightgbm_params


class ConfigError(ValueError):
    """The training config cannot be used as given; the message names the key."""


@dataclass(frozen=True)
class TrainSettings:
    """``training.*`` of the Hydra config (conf/training/v5.yaml)."""

    split: dict[str, Any]
    min_prior_games: int
    refit: bool
    num_workers: int
    cpus_per_worker: float
    params: dict[str, Any]
    num_threads: int
    num_boost_round: int
    early_stopping_rounds: int
    output_dir: str | None
    models_root: str
    storage_path: str | None
    health_check_interval_s: float | None
    preemption_watcher: bool
    block_rows: int = DEFAULT_BLOCK_ROWS

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "TrainSettings":
        t = training_config(cfg)
        params = OmegaConf.to_container(t.params, resolve=True)
        block_rows = t.get("data", {}).get("block_rows", DEFAULT_BLOCK_ROWS)
        if not isinstance(block_rows, int) or block_rows < 1:
            raise ConfigError(f"training.data.block_rows must be a positive number of rows, not {block_rows!r}")
        return cls(
            split=OmegaConf.to_container(t.split, resolve=True),
            min_prior_games=int(t.train_rows.min_prior_games or 0),
            refit=bool(t.refit),
            num_workers=int(t.num_workers),
            cpus_per_worker=float(t.cpus_per_worker),
            params=params,
            num_threads=int(t.num_threads),
            num_boost_round=int(t.num_boost_round),
            early_stopping_rounds=int(t.early_stopping_rounds),
            output_dir=t.output_dir,
            models_root=str(t.models_root),
            storage_path=t.ray.storage_path,
            health_check_interval_s=t.ray.health_check_interval_s,
            preemption_watcher=bool(t.ray.get("preemption_watcher", False)),
            block_rows=block_rows,
        )

    def lightgbm(self) -> dict[str, Any]:
        return lightgbm_params(self.params, self.num_threads)

    def record(self) -> dict[str, Any]:
        """What of these settings shapes the model: ``params`` in metrics.json."""
        return {
            "lightgbm": self.lightgbm(),
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
            "num_workers": self.num_workers,
            "min_prior_games": self.min_prior_games,
            "refit": self.refit,
        }


def training_config(cfg: DictConfig) -> DictConfig:
    t = cfg.get("training")
    if t is None:
        raise ConfigError("no training config: add `+training=v5` to the command (or `- training: v5` to conf/config.yaml defaults)")
    return t
