"""``task=docs``: the data docs, a static site under ``docs.dir`` (default ``var/docs/``).

One command, no server (``python -m http.server -d var/docs`` to browse, or open index.html),
no JavaScript and nothing from the internet: the lineage map (:mod:`.lineage`), a page per
table, validation and run history, backups and the model (:mod:`.pages`), from what
:mod:`.collect` reads. The site is written into a new folder beside ``docs.dir`` and then put in
its place, so a reader never sees half of it.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig

from pipeline.calendar import Calendar
from pipeline.command import EXIT_OK
from pipeline.progress import console
from pipeline.warehouse import open_warehouse
from pipeline.warehouse.source import RawSource

log = logging.getLogger(__name__)


def docs_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    from pipeline.docs.collect import collect
    from pipeline.docs.pages import Site

    started = time.perf_counter()
    out = Path(cfg.docs.dir)
    with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
        calendar = calendar_of(cfg, warehouse)
        data = collect(cfg, warehouse, calendar)
    building = out.with_name(f".{out.name}.{run_id}")
    try:
        pages = Site(data, building).write()
        replace_dir(building, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    console.print(
        f"data docs: {len(pages)} pages in {out}/ in {time.perf_counter() - started:.1f}s; open {out / 'index.html'} "
        f"or browse with: python -m http.server -d {out}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    return EXIT_OK


def calendar_of(cfg: DictConfig, warehouse) -> Calendar:
    """The game dates of the raw data (what should be built), or, without raw files here, of the
    warehouse's schedule."""
    from pipeline.tables._raw import RawDataError

    try:
        return RawSource.from_config(cfg.data).calendar()
    except RawDataError as exc:
        log.warning("docs: the raw files are not readable (%s); the calendar comes from nba_raw.schedule", exc)
        return Calendar.from_schedule(warehouse.read("nba_raw.schedule"))


def replace_dir(new: Path, old: Path) -> None:
    """Put ``new`` where ``old`` is: ``old`` moved aside first, then removed."""
    aside = old.with_name(f".{old.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    if old.exists():
        old.rename(aside)
    new.rename(old)
    shutil.rmtree(aside, ignore_errors=True)
