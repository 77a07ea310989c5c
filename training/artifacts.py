"""A trained model on disk: ``model.txt`` (LightGBM), ``model.json`` (what it takes),
``intervals.json`` (its prediction intervals, :mod:`training.intervals`), metrics, report.

``model.json`` records the model id, the exact feature list (FEATURE_COLUMNS at training time)
and the feature-store version, so prediction refuses a feature store whose features differ.
A model directory from before intervals existed has no ``intervals.json``: it still predicts,
without ``p10`` / ``p90`` / ``p_over``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.tables.ml_feature_store import FEATURE_COLUMNS, FEATURE_VERSION

if TYPE_CHECKING:  # imported where a model is loaded: the sweep callback, loaded by every Hydra run, needs none
    import lightgbm as lgb

    from training.intervals import Calibration

MODEL_FILE = "model.txt"
MODEL_META = "model.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ModelNotFound(FileNotFoundError):
    pass


def model_id_of(booster: lgb.Booster, created: dt.datetime) -> str:
    """``v5-<UTC time>-<hash of the model text>``: readable, and distinct for distinct models."""
    text_hash = hashlib.blake2b(booster.model_to_string().encode(), digest_size=4).hexdigest()
    return f"v5-{created.strftime('%Y%m%dT%H%M%S')}-{text_hash}"


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it; ``unknown`` without git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


@dataclass
class SavedModel:
    directory: Path
    booster: lgb.Booster
    meta: dict
    intervals: Calibration | None = None  # intervals.json; None for a model trained before it existed

    @property
    def model_id(self) -> str:
        return self.meta["model_id"]

    @property
    def features(self) -> list[str]:
        return list(self.meta["features"])


def save_model(directory: Path, booster: lgb.Booster, meta: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / MODEL_FILE))
    write_json(directory / MODEL_META, meta)


def model_meta(model_id: str, booster: lgb.Booster, params: dict, created: dt.datetime) -> dict:
    return {
        "model_id": model_id,
        "created_at": created.isoformat(timespec="seconds"),
        "features": list(FEATURE_COLUMNS),
        "feature_version": FEATURE_VERSION,
        "num_trees": booster.num_trees(),
        "params": params,
    }


def latest_model_dir(root: Path) -> Path:
    """The newest model directory under ``root`` (directory names start with a timestamp)."""
    candidates = sorted(p.parent for p in root.glob(f"*/{MODEL_META}") if (p.parent / MODEL_FILE).exists())
    if not candidates:
        raise ModelNotFound(f"no trained model under {root}: run `python -m pipeline task=train` first, or pass training.model_dir=")
    return max(candidates, key=lambda p: (json.loads((p / MODEL_META).read_text()).get("created_at", ""), p.name))


def load_model(directory: Path) -> SavedModel:
    directory = Path(directory)
    if not (directory / MODEL_FILE).exists() or not (directory / MODEL_META).exists():
        raise ModelNotFound(f"{directory} holds no trained model ({MODEL_FILE} and {MODEL_META})")
    meta = json.loads((directory / MODEL_META).read_text())
    import lightgbm as lgb

    from training import intervals

    booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
    return SavedModel(directory, booster, meta, intervals.load(directory))


def check_features(saved: SavedModel) -> None:
    """Refuse a model trained on other features than the feature store's current ones."""
    if saved.features != list(FEATURE_COLUMNS) or saved.meta.get("feature_version") != FEATURE_VERSION:
        raise ModelNotFound(
            f"model {saved.model_id} was trained on feature version {saved.meta.get('feature_version')} with "
            f"{len(saved.features)} features; the feature store has version {FEATURE_VERSION} with "
            f"{len(FEATURE_COLUMNS)}: retrain it (python -m pipeline task=train)"
        )
