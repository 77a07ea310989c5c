"""``task=doctor``: can this machine run the pipeline as configured? A preflight that changes
nothing: the warehouse (credentials found, never shown; datasets reachable and where they
should be; the permissions every run needs), the raw and slate folders, the backup target, and
the alerts (the environment variables they name are set: never shown).
One line per check, ok or what is wrong and the role or setting that fixes it; exit 1 on any
failure, so that a deployment script can stop before the first nightly run does."""

from __future__ import annotations

import logging
import uuid
from typing import Iterator

from omegaconf import DictConfig
from rich.markup import escape

from pipeline.command import EXIT_FAILED, EXIT_OK
from pipeline.progress import console
from pipeline.warehouse import Check, WarehouseError, open_warehouse
from pipeline.warehouse.source import SOURCES, list_files

log = logging.getLogger(__name__)


def doctor_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    checks = []
    try:
        with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
            console.print(f"[bold]doctor[/]: {escape(warehouse.describe())}", highlight=False)
            for check in warehouse.checks():
                show(check)
                checks.append(check)
    except WarehouseError as exc:  # the configuration itself (a bad name, no project)
        checks.append(show(Check("warehouse configuration", problem=str(exc), fix="see conf/warehouse/")))
    for check in (*folder_checks(cfg), backup_target_check(cfg), *alerts_checks(cfg)):
        checks.append(show(check))
    failed = [c for c in checks if not c.ok]
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(checks)} checks failed[/]", highlight=False)
        return EXIT_FAILED
    console.print(f"[bold green]all {len(checks)} checks passed[/]", highlight=False)
    return EXIT_OK


def show(check: Check) -> Check:
    if check.ok:
        console.print(f"[green]ok  [/] {escape(check.name)}: {escape(check.detail)}", highlight=False, soft_wrap=True)
    else:
        fix = f" [dim]fix:[/] {escape(check.fix)}" if check.fix else ""
        console.print(f"[red]FAIL[/] {escape(check.name)}: {escape(check.problem or '')}{fix}", highlight=False, soft_wrap=True)
    log.debug("doctor: %s", check)
    return check


def folder_checks(cfg: DictConfig) -> Iterator[Check]:
    """The raw folder holds box scores; the slate folder, if set, can be listed."""
    from pipeline.tables._raw import RawDataError

    endpoint = (cfg.data.get("storage") or {}).get("endpoint_url")
    for key, source_folder, required in (("raw_dir", "raw", True), ("slate_dir", "slates", False), ("lines_dir", "lines", False)):
        folder = cfg.data.get(key)
        if not folder:
            continue
        patterns = tuple(p for spec in SOURCES.values() if spec.folder == source_folder for p in spec.patterns)
        try:
            files = list_files(str(folder), patterns, endpoint)
        except RawDataError as exc:
            yield Check(f"data.{key}", problem=str(exc), fix="grant the account Storage Object Viewer (roles/storage.objectViewer) on the bucket")
            continue
        if required and not files:
            yield Check(f"data.{key}", problem=f"no box-score files in {folder}", fix="point data.raw_dir at the folder the scrapers fill")
        else:
            yield Check(f"data.{key}", detail=f"{len(files)} file(s) in {folder}")


def backup_target_check(cfg: DictConfig) -> Check:
    """A file can be written to ``backup.target`` and deleted again."""
    from pipeline.backup.folder import Folder
    from pipeline.backup.manifest import BackupError

    target = cfg.backup.target
    probe = f"doctor-probe-{uuid.uuid4().hex}"
    try:
        folder = Folder.open(str(target), endpoint_url=cfg.backup.storage.get("endpoint_url"))
        folder.check_bucket()
        existed = folder.exists()
        folder.write_bytes(probe, b"nba-pipeline doctor: safe to delete")
        folder.fs.rm(folder.path(probe))
        if not existed:  # leave no folder behind that was not there
            folder.remove()
    except BackupError as exc:
        remote = str(target).startswith("gs://")
        fix = (
            "create the bucket, and grant the account Storage Object Admin (roles/storage.objectAdmin) on it"
            if remote else "set backup.target to a folder this user can write"
        )  # fmt: skip
        return Check("backup.target", problem=str(exc), fix=fix)
    return Check("backup.target", detail=f"{folder.url} is writable")


def alerts_checks(cfg: DictConfig) -> Iterator[Check]:
    """With alerts on: a channel is set, and every environment variable the config names for a
    secret is set (its value is never shown, nor its length)."""
    import os

    from pipeline.alerts.settings import load_settings
    from pipeline.command import UsageError

    try:
        settings = load_settings(cfg.get("alerts"))
    except UsageError as exc:
        yield Check("alerts", problem=str(exc), fix="see conf/alerts/default.yaml")
        return
    if not settings.enabled:
        yield Check("alerts", detail="off (alerts.enabled=false)")
        return
    if not settings.channels:
        yield Check("alerts", problem="on, but neither alerts.webhook.url_env nor alerts.smtp.host is set", fix="set one of them (conf/alerts/)")
        return
    named = [("alerts.webhook.url_env", settings.webhook_env)]
    if settings.smtp:
        named.append(("alerts.smtp.password_env", settings.smtp.password_env))
    for key, name in named:
        if not name:
            continue
        if os.environ.get(name):
            yield Check(f"alerts: {key}", detail=f"{name} is set (not shown)")
        else:
            yield Check(f"alerts: {key}", problem=f"the environment variable {name} is not set", fix=f"export {name}=... where the pipeline runs (cron: in the crontab or a sourced file)")
    if settings.smtp:
        login = f", login as {settings.smtp.username}" if settings.smtp.username else ""
        tls = "STARTTLS" if settings.smtp.starttls else "no TLS"
        yield Check("alerts: smtp", detail=f"{settings.smtp.host}:{settings.smtp.port} ({tls}{login}) to {', '.join(settings.smtp.recipients)}")
