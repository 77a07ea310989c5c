"""The task layer's dependencies point one way: pipeline/command.py is below every task."""

from __future__ import annotations

import ast
from contextlib import contextmanager
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.command import hold_lock

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(
    "path",
    [ROOT / "pipeline" / "command.py", *sorted((ROOT / "pipeline" / "validation").glob("*.py")), *sorted((ROOT / "training").glob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_nothing_below_the_tasks_imports_them_back(path):
    modules = imported_modules(path)
    assert "pipeline.tasks" not in modules
    if path.name == "command.py":
        assert not {m for m in modules if m.startswith(("pipeline.validation", "training"))}


def test_hold_lock_names_the_run_and_its_command():
    taken = {}

    class Recorder:
        @contextmanager
        def lock(self, *, holder, wait_seconds, stale_seconds):
            taken.update(holder=holder, wait_seconds=wait_seconds, stale_seconds=stale_seconds)
            yield

    cfg = OmegaConf.create({"lock": {"wait_seconds": 7, "stale_seconds": 900}})
    with hold_lock(Recorder(), cfg, "run-1", ["task=validate", "tables=[schedule]"]):
        pass
    assert taken["wait_seconds"] == 7 and taken["stale_seconds"] == 900
    holder = taken["holder"]
    assert holder["run"] == "run-1" and holder["command"] == "python -m pipeline task=validate tables=[schedule]"
    assert {"pid", "host", "since"} <= set(holder)


def test_a_tests_pipeline_run_keeps_to_folders_of_its_own(tmp_path):
    """Every run a test makes through conftest (run_pipeline, run_in_process, the main command)
    reads the bundled raw files and prop lines and nothing else of the checkout: not the slates a user copied
    to data/slates, and it writes nothing under data/ or var/."""
    from conftest import LINES_DIR, PROJECT_ROOT, RAW_DIR, pipeline_config, pipeline_overrides

    cfg = OmegaConf.to_container(pipeline_config(pipeline_overrides(tmp_path, (), None)), resolve=True)
    folders = {key: OmegaConf.select(OmegaConf.create(cfg), key) for key in (
        "warehouse.path", "data.slate_dir", "logs.dir", "validation.reports_dir", "training.models_root", "backup.target",
    )}  # fmt: skip
    assert {key: Path(value).is_relative_to(tmp_path) for key, value in folders.items()} == dict.fromkeys(folders, True), folders

    def leaves(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from leaves(v, f"{key}.{k}".lstrip("."))
        elif isinstance(node, str):
            yield key, node

    in_checkout = {k: v for k, v in leaves(cfg) if v.startswith("/") and Path(v).is_relative_to(PROJECT_ROOT)}
    assert in_checkout == {"data.raw_dir": str(RAW_DIR), "data.lines_dir": str(LINES_DIR)}
