"""Every warehouse table the pipeline builds, discovered from the modules in this package.

One module per table, named after it. Nothing else lists the tables: the runner derives the
DAG from the declarations returned by :func:`registry`.

The one setting of the declarations that comes from the config is Phase 4's bootstrap window
(``phase4.bootstrap_days``): callers that plan, build or check dates pass it to :func:`registry`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from functools import cache

from pipeline.tables.base import Input, Lookback, Table, table

__all__ = ["Input", "Lookback", "Table", "registry", "table"]


@cache
def registry(bootstrap_days: int = 0) -> dict[str, Table]:
    """All declared tables by full name (``dataset.table``), in dependency order; the Phase 4
    tables with no rows for ``bootstrap_days`` days after each season opener (0: rows from the
    opener on)."""
    if bootstrap_days < 0:
        raise ValueError(f"phase4.bootstrap_days must be 0 or more, not {bootstrap_days}")
    return {
        name: dataclasses.replace(spec, bootstrap_days=bootstrap_days) if spec.phase == 4 else spec
        for name, spec in _declared().items()
    }


@cache
def _declared() -> dict[str, Table]:
    found: dict[str, Table] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Table) and value.short_name == info.name:
                found[value.name] = value
    return {name: found[name] for name in topological_order(found)}


def topological_order(tables: dict[str, Table]) -> list[str]:
    """Table names with every table after its inputs; ties broken by phase, then name."""
    unknown = {u: t.name for t in tables.values() for u in t.upstream_tables if u not in tables}
    if unknown:
        raise ValueError(f"tables read undeclared inputs: {unknown}")
    levels = dag_levels(tables)
    return [name for level in levels for name in level]


def dag_levels(tables: dict[str, Table]) -> list[list[str]]:
    """Groups of tables that can run together: each level reads only earlier levels."""
    depth: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            raise ValueError(f"dependency cycle: {' -> '.join(path + (name,))}")
        if name not in depth:
            ups = [u for u in tables[name].upstream_tables if u in tables]
            depth[name] = 1 + max((visit(u, path + (name,)) for u in ups), default=-1)
        return depth[name]

    for name in tables:
        visit(name, ())
    levels: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in sorted(tables, key=lambda n: (tables[n].phase, n)):
        levels[depth[name]].append(name)
    return levels
