"""``validation.drift`` of the validation config read and checked against the table declarations
(the checks themselves: :mod:`pipeline.validation.drift`)."""

from __future__ import annotations

from typing import Any, Mapping

from pipeline.tables import Table
from pipeline.validation.config_values import WARNING, Errors, read_names, read_number, read_pattern, read_severity, resolve_table
from pipeline.validation.drift import DriftGroup, DriftSettings, Limit

FEATURE_STORE = "nba_predictions.ml_feature_store"


def load_drift_settings(raw: Mapping[str, Any], tables: Mapping[str, Table], errors: Errors) -> DriftSettings:
    """``validation.drift``: the windows, and per group of features its tables, columns and limits.
    A group's ``feature_groups`` names groups of the feature store's columns
    (``ml_feature_store.FEATURE_GROUPS``), so the config never repeats that list."""
    from pipeline.tables.ml_feature_store import FEATURE_GROUPS

    def whole(value: object, where: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            errors.add(where, f"a whole number of at least {minimum}, not {value!r}")
            return minimum
        return value

    def limit(spec: object, where: str) -> Limit | None:
        if spec is None:
            return None
        if not isinstance(spec, Mapping) or set(spec) != {"max_z", "min_change"}:
            errors.add(where, "give {max_z, min_change} (or null: not watched)")
            return None
        z = read_number(spec["max_z"], f"{where}.max_z", errors, allow_none=False)
        change = read_number(spec["min_change"], f"{where}.min_change", errors, allow_none=False)
        return Limit(max_z=z or 0.0, min_change=change or 0.0)

    window = whole(raw.get("window_dates", 20), "drift.window_dates", 2)
    least = whole(raw.get("min_window_dates", 10), "drift.min_window_dates", 2)
    if least > window:
        errors.add("drift.min_window_dates", f"at most drift.window_dates ({window}), not {least}")
    groups = []
    for name, spec in (raw.get("groups") or {}).items():
        where = f"drift.groups.{name}"
        if spec is None:  # validation.drift.groups.<name>=null switches a group off
            continue
        if not isinstance(spec, Mapping):
            errors.add(where, "expected {tables or feature_groups, columns or match, null_fraction, mean}")
            continue
        unknown = set(spec) - {"tables", "feature_groups", "columns", "match", "exclude", "null_fraction", "mean"}
        if unknown:
            errors.add(where, f"unknown key(s) {sorted(unknown)}")
        columns = list(read_names(spec.get("columns")))
        for group in read_names(spec.get("feature_groups")):
            if group not in FEATURE_GROUPS:
                errors.add(f"{where}.feature_groups", f"no feature group {group!r}; known: {', '.join(FEATURE_GROUPS)}")
            else:
                columns += list(FEATURE_GROUPS[group])
        names = read_names(spec.get("tables")) or ((FEATURE_STORE,) if spec.get("feature_groups") else ())
        resolved = []
        for table_name in names:
            full = resolve_table(table_name, tables)
            if full is None:
                errors.add(f"{where}.tables", f"unknown table {table_name!r}")
            else:
                resolved.append(full)
                missing = [c for c in columns if c not in tables[full].schema]
                if missing:
                    errors.add(where, f"{full} has no column(s) {missing}")
        match = read_pattern(spec.get("match"), f"{where}.match", errors)
        if not resolved:
            errors.add(where, "give `tables` (or `feature_groups`, the feature store's)")
        if not columns and not match:
            errors.add(where, "give `columns`, `feature_groups` or `match`")
        groups.append(
            DriftGroup(
                name=name, tables=tuple(resolved), columns=tuple(dict.fromkeys(columns)), match=match,
                exclude=read_names(spec.get("exclude")), null_fraction=limit(spec.get("null_fraction"), f"{where}.null_fraction"),
                mean_value=limit(spec.get("mean"), f"{where}.mean"),
            )
        )  # fmt: skip
    return DriftSettings(
        severity=read_severity(raw.get("severity"), "drift.severity", errors, default=WARNING),
        window_dates=window,
        min_window_dates=least,
        groups=tuple(groups),
    )
