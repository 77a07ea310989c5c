"""The validation config (``conf/validation/``) read and checked against the table declarations.

Every mistake is reported at once, before anything runs: an unknown table or column, a
population that does not parse, a severity that is not ``critical`` or ``warning``
(:mod:`.config_values` reads the values; :mod:`.drift_config` the ``drift`` section).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from omegaconf import DictConfig

from pipeline.tables import Table
from pipeline.validation.config_values import (
    parse_range,
    Errors,
    config_error,
    plain,
    read_names,
    read_number,
    read_pattern,
    read_severity,
    resolve_table,
)
from pipeline.validation.drift import DriftSettings
from pipeline.validation.drift_config import load_drift_settings
from pipeline.validation.expressions import ExpressionError, Identity, Population, parse_identity, parse_population

CROSS_KINDS = ("sums_match", "keys_match")


@dataclass(frozen=True)
class Threshold:
    table: str  # full name
    feature: str
    min_coverage: float
    population: Population
    severity: str
    reason: str


@dataclass(frozen=True)
class BoundRule:
    name: str
    columns: tuple[str, ...]
    match: str | None
    exclude: tuple[str, ...]
    min: float | None
    max: float | None
    population: Population
    severity: str
    reason: str
    flag: bool = False
    tables: tuple[str, ...] | None = None  # full names; None: every table

    def applies(self, table: str, column: str) -> bool:
        if self.tables is not None and table not in self.tables:
            return False
        if column in self.exclude:
            return False
        return column in self.columns or bool(self.match and re.search(self.match, column))

    def describe(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"{lo}..{hi}"


@dataclass(frozen=True)
class IdentityRule:
    name: str
    identity: Identity
    severity: str
    reason: str
    tolerance: float = 1e-9
    tables: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CrossCheck:
    """``sums_match``: ``left`` is the detail, ``right`` the total. ``keys_match``: both ways."""

    name: str
    kind: str
    left: str
    right: str
    on: tuple[tuple[str, str], ...]  # (left column, right column)
    columns: tuple[tuple[str, str], ...]  # sums_match: (detail column, total column)
    tolerance: float
    severity: str
    reason: str
    # A table (nba_raw.quarantine) whose rows, matched on the left key columns, explain a
    # difference: such keys are listed (flagged), not failed.
    excused_by: str | None = None

    @property
    def tables(self) -> tuple[str, str]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Settings:
    gate: bool
    reports_dir: Path
    regression_max_drop: float
    ranges: tuple[tuple[dt.date, dt.date], ...]
    examples: int
    may_be_empty: frozenset[str]
    gap_severity: str
    thresholds: Mapping[str, Mapping[str, Threshold]]  # table -> feature -> threshold
    bounds: tuple[BoundRule, ...]
    identities: tuple[IdentityRule, ...]
    cross: tuple[CrossCheck, ...]
    same_dates_phases: tuple[int, ...]
    same_dates_severity: str
    populations: Mapping[str, Population] = field(default_factory=dict)
    drift: DriftSettings = field(default_factory=DriftSettings)


def load_settings(cfg: DictConfig | Mapping | None, tables: Mapping[str, Table]) -> Settings:
    """Read ``cfg.validation`` (the mapping itself) and check it against ``tables``."""
    if cfg is None:
        raise config_error(
            "no `validation` config: add `- validation: default` to the defaults of conf/config.yaml (or pass +validation=default)"
        )
    raw = plain(cfg)
    errors = Errors()

    populations: dict[str, Population] = {}
    for name, spec in (raw.get("populations") or {}).items():
        try:
            populations[name] = parse_population(spec, {}, name=name)
        except ExpressionError as exc:
            errors.add(f"populations.{name}", str(exc))
    populations.setdefault("all", Population("all", ()))

    thresholds: dict[str, dict[str, Threshold]] = {}
    for table_key, features in (raw.get("thresholds") or {}).items():
        where = f"thresholds.{table_key}"
        full = resolve_table(table_key, tables)
        if full is None:
            errors.add(where, f"unknown table; known: {', '.join(sorted(t.short_name for t in tables.values()))}")
            continue
        schema = tables[full].schema
        if not isinstance(features, Mapping):
            errors.add(where, "expected a mapping of feature -> {min_coverage, population , read_severity, reason}")
            continue
        for feature, spec in features.items():
            fwhere = f"{where}.{feature}"
            if feature not in schema:
                errors.add(fwhere, f"{full} has no column {feature!r}")
                continue
            if not isinstance(spec, Mapping):
                errors.add(fwhere, "expected {min_coverage, population , read_severity, reason}")
                continue
            unknown = set(spec) - {"min_coverage", "population", "severity", "reason"}
            if unknown:
                errors.add(fwhere, f"unknown key(s) {sorted(unknown)}")
            coverage = read_number(spec.get("min_coverage"), f"{fwhere}.min_coverage", errors, allow_none=False)
            if coverage is not None and not 0.0 <= coverage <= 1.0:
                errors.add(f"{fwhere}.min_coverage", f"a share in 0..1, not {coverage}")
            try:
                population = parse_population(spec.get("population", "all"), populations)
            except ExpressionError as exc:
                errors.add(f"{fwhere}.population", str(exc))
                continue
            missing = sorted(population.columns - set(schema))
            if missing:
                errors.add(f"{fwhere}.population", f"{full} has no column(s) {missing} ({population.describe()})")
            if not spec.get("reason"):
                errors.add(fwhere, "give a one-line `reason`")
            thresholds.setdefault(full, {})[feature] = Threshold(
                table=full,
                feature=feature,
                min_coverage=coverage if coverage is not None else 1.0,
                population=population,
                severity=read_severity(spec.get("severity"), f"{fwhere}.severity", errors),
                reason=str(spec.get("reason") or ""),
            )

    def table_list(value: object, where: str) -> tuple[str, ...] | None:
        if value is None:
            return None
        resolved = []
        for name in read_names(value):
            full = resolve_table(name, tables)
            if full is None:
                errors.add(where, f"unknown table {name!r}")
            else:
                resolved.append(full)
        return tuple(resolved)

    bounds = []
    for name, spec in (raw.get("bounds") or {}).items():
        where = f"bounds.{name}"
        if spec is None:  # `validation.bounds.<name>=null` switches a rule off
            continue
        match = read_pattern(spec.get("match"), f"{where}.match", errors)
        try:
            population = parse_population(spec.get("population"), populations)
        except ExpressionError as exc:
            errors.add(f"{where}.population", str(exc))
            population = populations["all"]
        lo = read_number(spec.get("min"), f"{where}.min", errors)
        hi = read_number(spec.get("max"), f"{where}.max", errors)
        if lo is None and hi is None:
            errors.add(where, "give `min`, `max` or both")
        if not spec.get("columns") and not match:
            errors.add(where, "give `columns`, `match` or both")
        bounds.append(
            BoundRule(
                name=name,
                columns=read_names(spec.get("columns")),
                match=match,
                exclude=read_names(spec.get("exclude")),
                min=lo,
                max=hi,
                population=population,
                severity=read_severity(spec.get("severity"), f"{where}.severity", errors),
                reason=str(spec.get("reason") or ""),
                flag=bool(spec.get("flag", False)),
                tables=table_list(spec.get("tables"), f"{where}.tables"),
            )
        )

    identities = []
    for name, spec in (raw.get("identities") or {}).items():
        where = f"identities.{name}"
        if spec is None:
            continue
        if isinstance(spec, str):
            spec = {"check": spec}
        try:
            identity = parse_identity(spec.get("check"))
        except ExpressionError as exc:
            errors.add(where, str(exc))
            continue
        identities.append(
            IdentityRule(
                name=name,
                identity=identity,
                severity=read_severity(spec.get("severity"), f"{where}.severity", errors),
                reason=str(spec.get("reason") or ""),
                tolerance=read_number(spec.get("tolerance", 1e-9), f"{where}.tolerance", errors) or 1e-9,
                tables=table_list(spec.get("tables"), f"{where}.tables"),
            )
        )

    cross = []
    for name, spec in (raw.get("cross_layer") or {}).items():
        where = f"cross_layer.{name}"
        if spec is None:
            continue
        kind = spec.get("kind")
        if kind not in CROSS_KINDS:
            errors.add(f"{where}.kind", f"one of {', '.join(CROSS_KINDS)}, not {kind!r}")
            continue
        left_key, right_key = ("detail", "total") if kind == "sums_match" else ("left", "right")
        left = resolve_table(spec.get(left_key), tables)
        right = resolve_table(spec.get(right_key), tables)
        for key, full in ((left_key, left), (right_key, right)):
            if full is None:
                errors.add(f"{where}.{key}", f"unknown table {spec.get(key)!r}")
        if left is None or right is None:
            continue
        on_spec = spec.get("keys")
        on = tuple(on_spec.items()) if isinstance(on_spec, Mapping) else tuple((c, c) for c in read_names(on_spec))
        columns_spec = spec.get("columns") or {}
        columns = tuple(columns_spec.items()) if isinstance(columns_spec, Mapping) else tuple((c, c) for c in read_names(columns_spec))
        if not on:
            errors.add(f"{where}.keys", "give the key columns")
        if kind == "sums_match" and not columns:
            errors.add(f"{where}.columns", "give {detail column: total column}")
        for l_col, r_col in (*on, *columns):
            if l_col not in tables[left].schema:
                errors.add(where, f"{left} has no column {l_col!r}")
            if r_col not in tables[right].schema:
                errors.add(where, f"{right} has no column {r_col!r}")
        excused_by = None
        if spec.get("excused_by") is not None:
            excused_by = resolve_table(spec.get("excused_by"), tables)
            if excused_by is None:
                errors.add(f"{where}.excused_by", f"unknown table {spec.get('excused_by')!r}")
            else:
                lacking = [left for left, _ in on if left not in tables[excused_by].schema]
                if lacking:
                    errors.add(f"{where}.excused_by", f"{excused_by} has no key column(s) {lacking}")
        cross.append(
            CrossCheck(
                name=name,
                kind=kind,
                left=left,
                right=right,
                on=on,
                columns=columns,
                tolerance=read_number(spec.get("tolerance", 0.0), f"{where}.tolerance", errors) or 0.0,
                severity=read_severity(spec.get("severity"), f"{where}.severity", errors),
                reason=str(spec.get("reason") or ""),
                excused_by=excused_by,
            )
        )

    ranges = []
    for i, item in enumerate(raw.get("ranges") or []):
        try:
            ranges.append(parse_range(item))
        except ValueError as exc:
            errors.add(f"ranges[{i}]", str(exc))

    may_be_empty = []
    for name in read_names(raw.get("may_be_empty")):
        full = resolve_table(name, tables)
        if full is None:
            errors.add("may_be_empty", f"unknown table {name!r}")
        else:
            may_be_empty.append(full)

    drop = read_number(raw.get("regression_max_drop", 0.10), "regression_max_drop", errors, allow_none=False)
    if drop is not None and not 0.0 <= drop <= 1.0:
        errors.add("regression_max_drop", f"a share in 0..1, not {drop}")
    same = raw.get("same_dates") or {}
    gaps = raw.get("gaps") or {}
    gap_severity = read_severity(gaps.get("severity"), "gaps.severity", errors)
    same_severity = read_severity(same.get("severity"), "same_dates.severity", errors)
    examples = raw.get("examples", 5)
    if not isinstance(examples, int) or isinstance(examples, bool) or examples < 1:
        errors.add("examples", f"a positive whole number, not {examples!r}")
        examples = 5
    drift = load_drift_settings(raw.get("drift") or {}, tables, errors)
    errors.raise_if_any()
    return Settings(
        gate=bool(raw.get("gate", True)),
        reports_dir=Path(raw.get("reports_dir") or "var/reports"),
        regression_max_drop=drop if drop is not None else 0.10,
        ranges=tuple(ranges),
        examples=examples,
        may_be_empty=frozenset(may_be_empty),
        gap_severity=gap_severity,
        thresholds=thresholds,
        bounds=tuple(bounds),
        identities=tuple(identities),
        cross=tuple(cross),
        same_dates_phases=tuple(int(p) for p in same.get("phases", ())),
        same_dates_severity=same_severity,
        populations=populations,
        drift=drift,
    )
