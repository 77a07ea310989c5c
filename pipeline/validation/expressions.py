"""The two small languages validation config is written in, turned into Polars expressions.

No Python is evaluated: each string is matched against a fixed grammar.

Conditions (populations, e.g. ``did_not_play == false``, ``fga > 0 or fta > 0``)::

    condition := clause (" or " clause)*
    clause    := column op literal | column "is null" | column "is not null"
    op        := == | != | > | >= | < | <=
    literal   := number | true | false | null | 'string' | "string"

A population is a list of conditions a row must all meet; a condition that reads a NULL does not
hold. Identities (e.g. ``pts = 2*fgm + fg3m + ftm``)::

    identity := side ("=" | "<=" | ">=") side
    side     := term (("+" | "-") term)*
    term     := number "*" column | column | number
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import polars as pl


class ExpressionError(ValueError):
    """A condition or identity does not follow the grammar, or names an unknown column."""


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_UNSIGNED = r"\d+(?:\.\d+)?"
_NUMBER = r"-?" + _UNSIGNED
_CLAUSE = re.compile(
    rf"^\s*(?P<col>{_IDENT})\s*(?:(?P<null>is\s+(?:not\s+)?null)|(?P<op>==|!=|>=|<=|>|<)\s*(?P<lit>.+?))\s*$",
    re.IGNORECASE,
)
_OPS = {
    "==": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
}


def _literal(text: str, where: str) -> object:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if re.fullmatch(_NUMBER, text):
        number = float(text)
        return int(number) if re.fullmatch(r"-?\d+", text) else number
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    raise ExpressionError(f"{where}: {text!r} is not a literal (a number, true, false, null or a quoted 'string')")


@dataclass(frozen=True)
class Clause:
    column: str
    op: str  # one of _OPS, "is null", "is not null"
    value: object = None

    def expr(self) -> pl.Expr:
        col = pl.col(self.column)
        if self.op == "is null":
            return col.is_null()
        if self.op == "is not null":
            return col.is_not_null()
        if self.value is None:  # `x == null` reads as `x is null`
            return col.is_null() if self.op == "==" else col.is_not_null()
        return _OPS[self.op](col, pl.lit(self.value))

    def text(self) -> str:
        if self.op in ("is null", "is not null"):
            return f"{self.column} {self.op}"
        value = f"'{self.value}'" if isinstance(self.value, str) else str(self.value).lower() if isinstance(self.value, bool) else str(self.value)
        return f"{self.column} {self.op} {value}"


def parse_condition(text: str) -> tuple[Clause, ...]:
    """One condition string: its clauses, any of which makes it hold."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(f"a condition must be a non-empty string, not {text!r}")
    clauses = []
    for part in re.split(r"\s+or\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(part)
        if not match:
            raise ExpressionError(
                f"condition {text!r}: {part!r} is not `column op literal` (op: == != > >= < <=) "
                "or `column is [not] null`"
            )
        if match["null"]:
            op = "is not null" if "not" in match["null"].lower() else "is null"
            clauses.append(Clause(match["col"], op))
        else:
            clauses.append(Clause(match["col"], match["op"], _literal(match["lit"], f"condition {text!r}")))
    return tuple(clauses)


@dataclass(frozen=True)
class Population:
    """Rows a measure is taken over: every condition holds (no conditions: every row)."""

    name: str
    conditions: tuple[tuple[Clause, ...], ...]

    @property
    def columns(self) -> set[str]:
        return {c.column for cond in self.conditions for c in cond}

    def expr(self) -> pl.Expr:
        if not self.conditions:
            return pl.lit(True)
        parts = [pl.any_horizontal([c.expr() for c in cond]) if len(cond) > 1 else cond[0].expr() for cond in self.conditions]
        return pl.all_horizontal(parts).fill_null(False)

    def text(self) -> str:
        if not self.conditions:
            return "all rows"
        return " and ".join("(" + " or ".join(c.text() for c in cond) + ")" if len(cond) > 1 else cond[0].text() for cond in self.conditions)

    def describe(self) -> str:
        return self.name if self.name == self.text() else f"{self.name}: {self.text()}"


def parse_population(spec: object, named: dict[str, "Population"] | None = None, name: str | None = None) -> Population:
    """A population from config: the name of a named one, a condition string or a list of them."""
    named = named or {}
    if spec is None:
        return named.get("all", Population("all", ()))
    if isinstance(spec, str) and spec in named:
        return named[spec]
    if isinstance(spec, str):
        if re.fullmatch(_IDENT, spec.strip()):
            raise ExpressionError(f"unknown population {spec!r}; named populations: {', '.join(sorted(named)) or 'none'}")
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise ExpressionError(f"a population is a name, a condition string or a list of them, not {spec!r}")
    conditions = tuple(parse_condition(item) for item in spec)
    return Population(name or Population("", conditions).text(), conditions)


# -- identities --------------------------------------------------------------------------------

_TERM = re.compile(rf"^(?:(?P<coef>{_UNSIGNED})\s*\*\s*)?(?P<col>{_IDENT})$|^(?P<const>{_UNSIGNED})$")


@dataclass(frozen=True)
class Identity:
    """``lhs op rhs``, each side a list of (coefficient, column or None for a constant)."""

    text: str
    lhs: tuple[tuple[float, str | None], ...]
    op: str
    rhs: tuple[tuple[float, str | None], ...]

    @property
    def columns(self) -> set[str]:
        return {c for side in (self.lhs, self.rhs) for _, c in side if c is not None}

    @staticmethod
    def _side(terms: Sequence[tuple[float, str | None]]) -> pl.Expr:
        out = pl.lit(0.0)
        for coef, column in terms:
            out = out + (pl.lit(coef) * pl.col(column).cast(pl.Float64) if column else pl.lit(coef))
        return out

    def lhs_expr(self) -> pl.Expr:
        return self._side(self.lhs)

    def rhs_expr(self) -> pl.Expr:
        return self._side(self.rhs)

    def holds(self, tolerance: float = 1e-9) -> pl.Expr:
        """True where the identity holds; NULL where a column is NULL (not counted as failing)."""
        diff = self.lhs_expr() - self.rhs_expr()
        if self.op == "=":
            return diff.abs() <= tolerance
        if self.op == "<=":
            return diff <= tolerance
        return diff >= -tolerance


def _parse_side(text: str, whole: str) -> tuple[tuple[float, str | None], ...]:
    tokens = re.split(r"\s*([+-])\s*", text.strip())
    if tokens and tokens[0] == "":  # a leading sign
        tokens = tokens[1:]
    else:
        tokens = ["+", *tokens]
    if len(tokens) % 2:
        raise ExpressionError(f"identity {whole!r}: cannot read {text!r}")
    terms = []
    for sign, term in zip(tokens[::2], tokens[1::2]):
        match = _TERM.match(term.strip())
        if not match:
            raise ExpressionError(f"identity {whole!r}: {term!r} is not `number*column`, `column` or a number")
        factor = 1.0 if sign == "+" else -1.0
        if match["const"] is not None:
            terms.append((factor * float(match["const"]), None))
        else:
            terms.append((factor * float(match["coef"] or 1.0), match["col"]))
    return tuple(terms)


def parse_identity(text: str) -> Identity:
    if not isinstance(text, str):
        raise ExpressionError(f"an identity is a string like 'reb = oreb + dreb', not {text!r}")
    match = re.fullmatch(r"\s*(.+?)\s*(<=|>=|==|=)\s*(.+?)\s*", text)
    if not match:
        raise ExpressionError(f"identity {text!r}: expected `lhs = rhs`, `lhs <= rhs` or `lhs >= rhs`")
    op = "=" if match[2] in ("=", "==") else match[2]
    return Identity(text.strip(), _parse_side(match[1], text), op, _parse_side(match[3], text))
