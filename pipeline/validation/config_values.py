"""Reading the values of the validation config (``conf/validation/``): every mistake collected
with where it is (:class:`Errors`), so that all of them are reported at once, before anything runs."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from pipeline.command import UsageError
from pipeline.tables import Table

CRITICAL, WARNING = "critical", "warning"
SEVERITIES = (CRITICAL, WARNING)


def config_error(message: str) -> ValueError:
    """A config mistake, raised as the command-line usage error the task dispatcher reports."""
    return UsageError(f"validation config:\n  {message}")


def plain(cfg: DictConfig | Mapping | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


class Errors:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise config_error("\n  ".join(self.lines))


def resolve_table(name: object, tables: Mapping[str, Table]) -> str | None:
    if not isinstance(name, str):
        return None
    if name in tables:
        return name
    by_short = {t.short_name: t.name for t in tables.values()}
    return by_short.get(name)


def read_severity(value: object, where: str, errors: Errors, default: str = CRITICAL) -> str:
    value = default if value is None else value
    if value not in SEVERITIES:
        errors.add(where, f"severity must be one of {', '.join(SEVERITIES)}, not {value!r}")
        return default
    return str(value)


def read_number(value: object, where: str, errors: Errors, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.add(where, f"expected a number, not {value!r}")
        return None
    return float(value)


def read_names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def parse_range(text: object) -> tuple[dt.date, dt.date]:
    """``"YYYY-MM-DD..YYYY-MM-DD"`` (or a two-item list, or a {start, end} mapping)."""
    if isinstance(text, Mapping):
        parts = [text.get("start"), text.get("end")]
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = str(text).split("..")
    if len(parts) != 2:
        raise ValueError(f"a range is 'YYYY-MM-DD..YYYY-MM-DD', not {text!r}")
    start, end = (p if isinstance(p, dt.date) else dt.date.fromisoformat(str(p).strip()) for p in parts)
    if start > end:
        raise ValueError(f"range {text!r} ends before it starts")
    return start, end


def read_pattern(value: object, where: str, errors: Errors) -> str | None:
    """A regular expression (``match`` of a rule or a drift group), or None (none given, or it
    does not compile: the mistake is collected)."""
    if value is None:
        return None
    try:
        re.compile(str(value))
    except re.error as exc:
        errors.add(where, f"not a regular expression: {exc}")
        return None
    return str(value)
