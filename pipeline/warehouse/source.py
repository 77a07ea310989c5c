"""The raw input: a folder of box-score files, read as the ``source.*`` inputs of Phase 2.

Every row keeps the file it came from and its 1-based row number, so a bad row can be named.
A file missing a column fails every shard that needs its dates (naming the file and the
column), and leaves the other files' dates to load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.fingerprint import partition_fingerprints
from pipeline.tables._raw import COUNT_COLUMNS, SOURCE_FILE, SOURCE_ROW, RawDataError
from pipeline.tables.schedule import CALENDAR_COLUMNS

_COUNTS = {c: pl.Int16 for c in COUNT_COLUMNS}


@dataclass(frozen=True)
class SourceSpec:
    name: str  # the input name tables declare: source.<name>
    pattern: str  # file glob inside the raw folder
    columns: dict[str, pl.DataType]  # required columns and the types they are read as
    calendar_columns: tuple[str, ...]  # needed just to place the rows on the calendar
    optional: dict[str, pl.DataType] = field(default_factory=dict)  # read when a file has them, else NULL

    @property
    def all_columns(self) -> dict[str, pl.DataType]:
        return {**self.columns, **self.optional}


PLAYER_BOXSCORES = SourceSpec(
    name="source.player_boxscores",
    pattern="player_boxscores_*.parquet",
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_id": pl.Int32,
        "team_abbr": pl.String,
        "opponent_id": pl.Int32,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "player_id": pl.Int32,
        "player_name": pl.String,
        "starter": pl.Boolean,
        "comment": pl.String,
        "did_not_play": pl.Boolean,
        "minutes_raw": pl.String,
        **_COUNTS,
        "plus_minus": pl.Int16,
    },
    calendar_columns=CALENDAR_COLUMNS,  # what nba_raw.schedule, and so the calendar, is built from
    optional={"birth_date": pl.Date},  # the player's; not in the bundled files (fatigue uses age when known)
)

TEAM_GAME_LOGS = SourceSpec(
    name="source.team_game_logs",
    pattern="team_game_logs*.parquet",
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_id": pl.Int32,
        "team_abbr": pl.String,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "min": pl.Int16,
        **_COUNTS,
    },
    calendar_columns=("game_date",),
)

SOURCES = {s.name: s for s in (PLAYER_BOXSCORES, TEAM_GAME_LOGS)}


@dataclass
class BrokenFile:
    path: str
    problem: str
    dates: frozenset[dt.date]
    fingerprint: str


class RawSource:
    """All raw files of one folder, loaded once per run."""

    def __init__(self, raw_dir: str | Path):
        self.raw_dir = Path(raw_dir)
        if not self.raw_dir.is_dir():
            raise RawDataError(f"raw data folder {self.raw_dir} does not exist (data.raw_dir)")
        self.frames: dict[str, pl.DataFrame] = {}
        self.broken: dict[str, list[BrokenFile]] = {}
        self.calendar_rows: dict[str, pl.DataFrame] = {}
        for spec in SOURCES.values():
            self.frames[spec.name], self.broken[spec.name], self.calendar_rows[spec.name] = self._load(spec)
        if self.frames[PLAYER_BOXSCORES.name].is_empty() and not self.broken[PLAYER_BOXSCORES.name]:
            raise RawDataError(f"no {PLAYER_BOXSCORES.pattern} files in {self.raw_dir}")
        self._fingerprints: dict[str, dict[dt.date, str]] = {}

    def _load(self, spec: SourceSpec) -> tuple[pl.DataFrame, list[BrokenFile], pl.DataFrame]:
        good: list[pl.DataFrame] = []
        broken: list[BrokenFile] = []
        placed: list[pl.DataFrame] = []
        for path in sorted(self.raw_dir.glob(spec.pattern)):
            name = str(path)
            try:
                frame = pl.read_parquet(path)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
                raise RawDataError(f"{name}: cannot read as Parquet: {exc}") from exc
            missing_for_calendar = [c for c in spec.calendar_columns if c not in frame.columns]
            if missing_for_calendar:
                raise RawDataError(f"{name}: missing column(s) {missing_for_calendar}; the file cannot be placed on the calendar")
            try:
                placed.append(frame.select(read_as(c, frame.schema[c], spec.columns[c]) for c in spec.calendar_columns))
            except pl.exceptions.PolarsError as exc:
                raise RawDataError(f"{name}: calendar columns {list(spec.calendar_columns)} do not parse: {exc}") from exc
            missing = [c for c in spec.columns if c not in frame.columns]
            problem = f"missing column(s) {missing}" if missing else None
            if problem is None:
                try:
                    frame = frame.select(
                        read_as(c, frame.schema[c], t) if c in frame.columns else pl.lit(None, t).alias(c)
                        for c, t in spec.all_columns.items()
                    )
                except pl.exceptions.PolarsError as exc:
                    problem = first_uncastable(frame, spec.all_columns) or f"a column does not have the expected type ({exc})".replace("\n", " ")
            if problem is None:
                null_dates = frame.with_row_index(SOURCE_ROW, offset=1).filter(pl.col("game_date").is_null())
                if null_dates.height:
                    problem = f"row {null_dates[SOURCE_ROW][0]} has no game_date ({null_dates.height} such rows)"
            if problem is not None:
                broken.append(
                    BrokenFile(
                        path=name,
                        problem=problem,
                        dates=frozenset(frame["game_date"].drop_nulls()),
                        fingerprint=hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest(),
                    )
                )
                continue
            good.append(frame.with_columns(pl.lit(name).alias(SOURCE_FILE), pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(SOURCE_ROW)))
        empty = pl.DataFrame(schema={**spec.all_columns, SOURCE_FILE: pl.String, SOURCE_ROW: pl.Int64})
        empty_calendar = empty.select(spec.calendar_columns)
        return pl.concat([empty, *good], how="vertical"), broken, pl.concat([empty_calendar, *placed]).drop_nulls("game_date")

    def describe(self) -> str:
        return str(self.raw_dir)

    def calendar_frame(self) -> pl.DataFrame:
        """Player rows (calendar columns only) from every file, the broken ones included."""
        return self.calendar_rows[PLAYER_BOXSCORES.name]

    def read(self, name: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        for bad in self.broken[name]:
            hit = sorted(d for d in bad.dates if start <= d <= end)
            if hit:
                raise RawDataError(f"{bad.path}: {bad.problem} (needed for {hit[0]}..{hit[-1]})")
        return self.frames[name].filter(pl.col("game_date").is_between(start, end))

    def fingerprints(self, name: str) -> dict[dt.date, str]:
        """{date: fingerprint of that date's raw rows} for one source."""
        if name not in self._fingerprints:
            frame = self.frames[name].drop(SOURCE_FILE, SOURCE_ROW)
            fps = partition_fingerprints(frame)
            for bad in self.broken[name]:
                for day in bad.dates:
                    fps[day] = f"broken:{bad.fingerprint}"
            self._fingerprints[name] = fps
        return self._fingerprints[name]


def read_as(column: str, source: pl.DataType, dtype: pl.DataType, *, strict: bool = True) -> pl.Expr:
    """``column`` as ``dtype``; text dates in ISO form (YYYY-MM-DD) are parsed."""
    if source == pl.String and dtype == pl.Date:
        return pl.col(column).str.to_date("%Y-%m-%d", strict=strict)
    return pl.col(column).cast(dtype, strict=strict)


def first_uncastable(frame: pl.DataFrame, types: dict[str, pl.DataType]) -> str | None:
    """The first column and row whose value cannot be read as its declared type, as text."""
    for column, dtype in types.items():
        if column not in frame.columns:
            continue
        values = frame[column]
        try:
            read = frame.select(read_as(column, values.dtype, dtype, strict=False)).to_series()
            bad = (read.is_null() & values.is_not_null()).arg_true()
        except pl.exceptions.PolarsError:
            return f"a column does not have the expected type: column {column!r} is {values.dtype}, not {dtype}"
        if bad.len():
            row = int(bad[0])
            return f"a column does not have the expected type: column {column!r} row {row + 1} holds {values[row]!r}, which does not read as {dtype}"
    return None
