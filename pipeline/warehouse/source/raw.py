"""The raw files checked once per run (:class:`RawSource`), and what a shard needs to read its own
dates again, in this process or in a Ray worker (:class:`RawFiles`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import polars as pl

from pipeline.calendar import Calendar
from pipeline.fingerprint import fingerprints_of, row_hashes
from pipeline.tables._raw import SOURCE_FILE, SOURCE_ROW, RawDataError
from pipeline.tables.schedule import CALENDAR_COLUMNS, games
from pipeline.warehouse.source.columns import first_uncastable, read_as
from pipeline.warehouse.source.files import folder_exists, list_files, read_bytes, scan_source_file
from pipeline.warehouse.source.specs import PLAYER_BOXSCORES, SLATES, SOURCES, SourceSpec


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
    endpoint_url: str | None = None  # gs:// files: a Cloud Storage emulator instead of Google's

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
                scan_source_file(spec, f.path, self.endpoint_url)
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

    def __init__(
        self,
        raw_dir: str | Path,
        slate_dir: str | Path | None = None,
        boxscores_through: dt.date | None = None,
        lines_dir: str | Path | None = None,
        *,
        endpoint_url: str | None = None,
    ):
        self.raw_dir = str(raw_dir)
        self.endpoint_url = endpoint_url
        if not folder_exists(self.raw_dir, endpoint_url):
            raise RawDataError(f"raw data folder {self.raw_dir} does not exist (data.raw_dir)")
        # No slate folder is the usual case for history: every date's roster comes from its box scores.
        self.slate_dir = str(slate_dir) if slate_dir else None
        # No lines folder (null): no prop lines. A folder named but missing is a mistake, not "no lines".
        self.lines_dir = str(lines_dir) if lines_dir else None
        if self.lines_dir is not None and not folder_exists(self.lines_dir, endpoint_url):
            raise RawDataError(f"prop lines folder {self.lines_dir} does not exist (data.lines_dir; null for no lines)")
        self.folders = {"raw": self.raw_dir, "slates": self.slate_dir, "lines": self.lines_dir}
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
        self.files = RawFiles(good, broken, boxscores_through, endpoint_url)
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
        folder = self.folders[spec.folder]
        for name in list_files(folder, spec.patterns, self.endpoint_url) if folder else []:
            suffix = posixpath.splitext(name)[1].lstrip(".").upper()
            try:
                scan = scan_source_file(spec, name, self.endpoint_url)
                if spec.folder == "raw" and self.boxscores_through is not None:
                    scan = scan.filter(pl.col("game_date").cast(pl.String) <= self.boxscores_through.isoformat())
                frame = scan.collect()
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
                raise RawDataError(f"{name}: cannot read as {suffix}: {exc}") from exc
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
            lacking = [" or ".join(group) for group in spec.one_of if not any(c in frame.columns for c in group)]
            if problem is None and lacking:
                problem = f"missing column(s): needs {'; '.join(lacking)}"
            if problem is None:
                original = frame
                try:
                    frame = frame.select(
                        read_as(c, frame.schema[c], t) if c in frame.columns else pl.lit(None, t).alias(c)
                        for c, t in spec.all_columns.items()
                    )
                except pl.exceptions.PolarsError as exc:
                    problem = first_uncastable(original, spec.all_columns) or f"a column does not have the expected type ({exc})".replace("\n", " ")
                else:  # text parsed leniently (CSV booleans and times): a value that did not parse is still wrong
                    lenient = {c: t for c, t in spec.all_columns.items() if t in (pl.Boolean, pl.Datetime) and original.schema.get(c) == pl.String}
                    problem = first_uncastable(original, lenient)
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
                        fingerprint=hashlib.blake2b(read_bytes(name, self.endpoint_url), digest_size=16).hexdigest(),
                    )
                )
                continue
            good.append(GoodFile(name, types))
            hashes.append(row_hashes(frame))
        empty = pl.DataFrame(schema=spec.all_columns)
        calendar = pl.concat([empty.select(spec.calendar_columns), *placed]).drop_nulls("game_date")
        return tuple(good), tuple(broken), calendar, pl.concat([row_hashes(empty), *hashes])

    def describe(self) -> str:
        return self.raw_dir

    @classmethod
    def from_config(cls, data: Mapping) -> "RawSource":
        """The source of ``data.raw_dir``, ``data.slate_dir``, ``data.boxscores_through`` and
        ``data.lines_dir`` (the ``data:`` group of the config)."""
        through = data.get("boxscores_through")
        if through is not None and not isinstance(through, dt.date):
            try:
                through = dt.date.fromisoformat(str(through))
            except ValueError:
                raise RawDataError(f"data.boxscores_through must be a date (YYYY-MM-DD), not {through!r}") from None
        endpoint = (data.get("storage") or {}).get("endpoint_url")
        return cls(data["raw_dir"], data.get("slate_dir"), through, data.get("lines_dir"), endpoint_url=endpoint)

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
