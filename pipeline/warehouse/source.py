"""The raw input: a folder of box-score files and a folder of slates (tonight's listed players),
read as the ``source.*`` inputs of Phase 2.

Every row keeps the file it came from and its 1-based row number, so a bad row can be named.
A file missing a column fails every shard that needs its dates (naming the file and the
column), and leaves the other files' dates to load.

Every file is checked once, when a run starts (:class:`RawSource`); after that a shard reads
only its own dates from the files (:class:`RawFiles`, small enough to send to a Ray worker that
reads them itself), so no process holds the whole input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import polars as pl

from pipeline.fingerprint import fingerprints_of, row_hashes
from pipeline.tables._raw import COUNT_COLUMNS, SOURCE_FILE, SOURCE_ROW, RawDataError
from pipeline.calendar import Calendar
from pipeline.tables.schedule import CALENDAR_COLUMNS, games

_COUNTS = {c: pl.Int16 for c in COUNT_COLUMNS}


@dataclass(frozen=True)
class SourceSpec:
    name: str  # the input name tables declare: source.<name>
    patterns: tuple[str, ...]  # file globs inside the source's folder
    columns: dict[str, pl.DataType]  # required columns and the types they are read as
    calendar_columns: tuple[str, ...]  # needed just to place the rows on the calendar
    optional: dict[str, pl.DataType] = field(default_factory=dict)  # read when a file has them, else NULL
    folder: str = "raw"  # which folder: data.raw_dir, or data.slate_dir ("slates")

    @property
    def all_columns(self) -> dict[str, pl.DataType]:
        return {**self.columns, **self.optional}


PLAYER_BOXSCORES = SourceSpec(
    name="source.player_boxscores",
    patterns=("player_boxscores_*.parquet",),
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
    patterns=("team_game_logs*.parquet",),
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

# Tonight's listed players, before any box score: one row per player and game (see data/README.md).
SLATES = SourceSpec(
    name="source.slates",
    patterns=("*.parquet", "*.csv"),
    columns={
        "game_id": pl.String,
        "game_date": pl.Date,
        "season": pl.String,
        "season_type": pl.String,
        "team_abbr": pl.String,
        "opponent_abbr": pl.String,
        "is_home": pl.Boolean,
        "player_id": pl.Int32,
        "player_name": pl.String,
    },
    calendar_columns=("game_id", "game_date", "season", "season_type", "team_abbr", "opponent_abbr", "is_home"),
    optional={
        "team_id": pl.Int32,
        "starter": pl.Boolean,  # NULL until the lineups are announced
        "status": pl.String,  # active, questionable, out, inactive; NULL: active
        "points_line": pl.Float64,
        "bookmaker": pl.String,
        "birth_date": pl.Date,
    },
    folder="slates",
)

SOURCES = {s.name: s for s in (PLAYER_BOXSCORES, TEAM_GAME_LOGS, SLATES)}


@dataclass(frozen=True)
class BrokenFile:
    path: str
    problem: str
    dates: frozenset[dt.date]
    fingerprint: str


@dataclass(frozen=True)
class GoodFile:
    path: str
    types: tuple[tuple[str, pl.DataType], ...]  # the file's own type of each column of the spec it has


@dataclass(frozen=True)
class RawFiles:
    """Which files of each source passed the checks, and which did not: enough to read any date
    range again, in this process or in a Ray worker that sees the same folder."""

    good: dict[str, tuple[GoodFile, ...]]
    broken: dict[str, tuple[BrokenFile, ...]]
    boxscores_through: dt.date | None = None  # box scores of later dates are set aside

    def read(self, name: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Rows of source ``name`` dated ``start..end``, each with its file and 1-based row number."""
        if SOURCES[name].folder == "raw" and self.boxscores_through is not None:
            end = min(end, self.boxscores_through)
        for bad in self.broken[name]:
            hit = sorted(d for d in bad.dates if start <= d <= end)
            if hit:
                raise RawDataError(f"{bad.path}: {bad.problem} (needed for {hit[0]}..{hit[-1]})")
        spec = SOURCES[name]
        parts = []
        for f in self.good[name]:
            types = dict(f.types)
            columns = [read_as(c, types[c], t) if c in types else pl.lit(None, t).alias(c) for c, t in spec.all_columns.items()]
            parts.append(
                scan_file(f.path)
                .with_row_index(SOURCE_ROW, offset=1)
                .select(*columns, pl.lit(f.path).alias(SOURCE_FILE), pl.col(SOURCE_ROW).cast(pl.Int64))
                .filter(pl.col("game_date").is_between(start, end))
                .collect()
            )
        return pl.concat([pl.DataFrame(schema=_schema(spec)), *parts], how="vertical")


def _schema(spec: SourceSpec) -> dict[str, pl.DataType]:
    return {**spec.all_columns, SOURCE_FILE: pl.String, SOURCE_ROW: pl.Int64}


class RawSource:
    """The raw files of one folder (and the slates of another), each checked once per run: which
    files are good, a fingerprint and a row count of each date's raw rows, and the calendar the
    rows place games on. Shards then read their own dates (:attr:`files`).

    A file whose columns or types are wrong is held back with its dates (a shard that needs one
    of them fails naming the file); every other file's dates still build."""

    def __init__(self, raw_dir: str | Path, slate_dir: str | Path | None = None, boxscores_through: dt.date | None = None):
        self.raw_dir = Path(raw_dir)
        if not self.raw_dir.is_dir():
            raise RawDataError(f"raw data folder {self.raw_dir} does not exist (data.raw_dir)")
        # No slate folder is the usual case for history: every date's roster comes from its box scores.
        self.slate_dir = Path(slate_dir) if slate_dir else None
        # The morning of a date whose box scores are already in the folder (a backtest, the example).
        self.boxscores_through = boxscores_through
        good: dict[str, tuple[GoodFile, ...]] = {}
        broken: dict[str, tuple[BrokenFile, ...]] = {}
        self.calendar_rows: dict[str, pl.DataFrame] = {}
        self.rows_per_date: dict[str, dict[dt.date, int]] = {}
        self._fingerprints: dict[str, dict[dt.date, str]] = {}
        for spec in SOURCES.values():
            good[spec.name], broken[spec.name], self.calendar_rows[spec.name], hashes = self._load(spec)
            fingerprints = fingerprints_of(hashes)
            for bad in broken[spec.name]:
                for day in bad.dates:
                    fingerprints[day] = f"broken:{bad.fingerprint}"
            self._fingerprints[spec.name] = fingerprints
            self.rows_per_date[spec.name] = dict(hashes.group_by("game_date").len().iter_rows())
        self.files = RawFiles(good, broken, boxscores_through)
        if not good[PLAYER_BOXSCORES.name] and not broken[PLAYER_BOXSCORES.name]:
            raise RawDataError(f"no {PLAYER_BOXSCORES.patterns[0]} files in {self.raw_dir}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(SOURCES)

    def _load(self, spec: SourceSpec) -> tuple[tuple[GoodFile, ...], tuple[BrokenFile, ...], pl.DataFrame, pl.DataFrame]:
        """Check every file of ``spec``: (good files, broken files, calendar rows, hashes of the good rows)."""
        good: list[GoodFile] = []
        hashes: list[pl.DataFrame] = []
        broken: list[BrokenFile] = []
        placed: list[pl.DataFrame] = []
        folder = self.raw_dir if spec.folder == "raw" else self.slate_dir
        paths = sorted({p for pattern in spec.patterns for p in folder.glob(pattern)}) if folder and folder.is_dir() else []
        for path in paths:
            name = str(path)
            try:
                scan = scan_file(name)
                if spec.folder == "raw" and self.boxscores_through is not None:
                    scan = scan.filter(pl.col("game_date").cast(pl.String) <= self.boxscores_through.isoformat())
                frame = scan.collect()
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
                raise RawDataError(f"{name}: cannot read as {path.suffix.lstrip('.').upper()}: {exc}") from exc
            missing_for_calendar = [c for c in spec.calendar_columns if c not in frame.columns]
            if missing_for_calendar:
                raise RawDataError(f"{name}: missing column(s) {missing_for_calendar}; the file cannot be placed on the calendar")
            try:
                placed.append(frame.select(read_as(c, frame.schema[c], spec.columns[c]) for c in spec.calendar_columns).unique())
            except pl.exceptions.PolarsError as exc:
                raise RawDataError(f"{name}: calendar columns {list(spec.calendar_columns)} do not parse: {exc}") from exc
            types = tuple((c, frame.schema[c]) for c in spec.all_columns if c in frame.columns)
            missing = [c for c in spec.columns if c not in frame.columns]
            problem = f"missing column(s) {missing}" if missing else None
            if problem is None:
                original = frame
                try:
                    frame = frame.select(
                        read_as(c, frame.schema[c], t) if c in frame.columns else pl.lit(None, t).alias(c)
                        for c, t in spec.all_columns.items()
                    )
                except pl.exceptions.PolarsError as exc:
                    problem = first_uncastable(original, spec.all_columns) or f"a column does not have the expected type ({exc})".replace("\n", " ")
                else:  # text parsed leniently (CSV booleans): a value that did not parse is still wrong
                    text_booleans = {c: t for c, t in spec.all_columns.items() if t == pl.Boolean and original.schema.get(c) == pl.String}
                    problem = first_uncastable(original, text_booleans)
            if problem is None:
                null_dates = frame.with_row_index(SOURCE_ROW, offset=1).filter(pl.col("game_date").is_null())
                if null_dates.height:
                    problem = f"row {null_dates[SOURCE_ROW][0]} has no game_date ({null_dates.height} such rows)"
            if problem is not None:
                broken.append(
                    BrokenFile(
                        path=name,
                        problem=problem,
                        dates=frozenset(placed[-1]["game_date"].drop_nulls()),
                        fingerprint=hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest(),
                    )
                )
                continue
            good.append(GoodFile(name, types))
            hashes.append(row_hashes(frame))
        empty = pl.DataFrame(schema=spec.all_columns)
        calendar = pl.concat([empty.select(spec.calendar_columns), *placed]).drop_nulls("game_date")
        return tuple(good), tuple(broken), calendar, pl.concat([row_hashes(empty), *hashes])

    def describe(self) -> str:
        return str(self.raw_dir)

    @classmethod
    def from_config(cls, data: Mapping) -> "RawSource":
        """The source of ``data.raw_dir``, ``data.slate_dir`` and ``data.boxscores_through`` (the
        ``data:`` group of the config)."""
        through = data.get("boxscores_through")
        if through is not None and not isinstance(through, dt.date):
            try:
                through = dt.date.fromisoformat(str(through))
            except ValueError:
                raise RawDataError(f"data.boxscores_through must be a date (YYYY-MM-DD), not {through!r}") from None
        return cls(data["raw_dir"], data.get("slate_dir"), through)

    def calendar(self) -> Calendar:
        """Every game date of the box scores and the slates, with its season, opener and teams."""
        return Calendar.from_schedule(games(self.calendar_frame()), played=self.calendar_rows[PLAYER_BOXSCORES.name]["game_date"])

    def calendar_frame(self) -> pl.DataFrame:
        """The distinct calendar columns (``CALENDAR_COLUMNS``) of the player rows of every box-score
        and slate file, the broken ones included: the games of every date, played or not yet."""
        frames = [
            self.calendar_rows[spec.name].select(
                pl.col(c) if c in spec.calendar_columns else pl.lit(None, spec.all_columns[c]).alias(c) for c in CALENDAR_COLUMNS
            )
            for spec in (PLAYER_BOXSCORES, SLATES)
        ]
        return pl.concat(frames).unique(maintain_order=True)

    def read(self, name: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self.files.read(name, start, end)

    def fingerprints(self, name: str) -> dict[dt.date, str]:
        """{date: fingerprint of that date's raw rows} for one source."""
        return self._fingerprints[name]


def scan_file(path: str) -> pl.LazyFrame:
    """A raw or slate file, Parquet or CSV (every CSV column read as text, then typed by :func:`read_as`)."""
    if path.endswith(".csv"):
        return pl.scan_csv(path, infer_schema=False)
    return pl.scan_parquet(path)


TRUE_TEXT = ("true", "t", "1", "yes")
FALSE_TEXT = ("false", "f", "0", "no")


def read_as(column: str, source: pl.DataType, dtype: pl.DataType, *, strict: bool = True) -> pl.Expr:
    """``column`` as ``dtype``; text dates in ISO form (YYYY-MM-DD) and text booleans
    (true/false, 1/0, yes/no) are parsed."""
    if source == pl.String and dtype == pl.Date:
        return pl.col(column).str.to_date("%Y-%m-%d", strict=strict)
    if source == pl.String and dtype == pl.Boolean:
        # Other text reads as NULL; RawSource refuses such a file (first_uncastable finds the row).
        text = pl.col(column).str.strip_chars().str.to_lowercase()
        return pl.when(text.is_in(TRUE_TEXT)).then(True).when(text.is_in(FALSE_TEXT)).then(False).alias(column)
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
