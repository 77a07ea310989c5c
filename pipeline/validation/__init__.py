"""Validation: per-feature coverage over the right population, duplicates, impossible values,
arithmetic identities, cross-layer consistency, gaps and regressions over the whole history;
``task=validate`` and the runner's gates. Config: ``conf/validation/``."""

from pipeline.validation.gate import gate_enforced, make_gate
from pipeline.validation.task import validate_task

__all__ = ["gate_enforced", "make_gate", "validate_task"]
