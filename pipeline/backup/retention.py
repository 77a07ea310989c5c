"""The backups under ``backup.target``, and which of them retention deletes.

Only folders named like a backup (``20250301T020000Z``, the UTC time it started) count; anything
else in the folder is neither listed nor ever deleted. A backup is complete once its manifest
is readable. :func:`expired` decides what goes (a pure function of the listing and the time):

- a complete backup older than ``retention_days``, unless it is the newest complete one;
- an incomplete one (no manifest) older than a day: what a killed backup left. One younger may
  still be being written, and is never touched.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

from pipeline.backup.folder import Folder
from pipeline.backup.manifest import BackupError, backup_time
from pipeline.backup.restore import read_manifest

INCOMPLETE_GRACE = dt.timedelta(days=1)


@dataclass(frozen=True)
class Listed:
    """One backup folder as ``task=backups`` shows it."""

    name: str
    started_at: dt.datetime  # naive UTC, from the name
    complete: bool
    tables: int | None  # from the manifest: None when incomplete
    rows: int | None
    bytes: int  # of the files present
    problem: str | None = None  # why it is not complete


def list_backups(target: Folder) -> list[Listed]:
    """Every backup folder under ``target``, oldest first."""
    listed = []
    for name in target.folders():
        started_at = backup_time(name)
        if started_at is None:
            continue
        folder = target.child(name)
        try:
            manifest = read_manifest(folder)
        except BackupError as exc:
            listed.append(Listed(name, started_at, False, None, None, folder.size(), str(exc)))
            continue
        listed.append(Listed(name, started_at, True, len(manifest.tables), manifest.rows, folder.size()))
    return sorted(listed, key=lambda b: b.started_at)


def newest_complete(target: Folder) -> Listed:
    complete = [b for b in list_backups(target) if b.complete]
    if not complete:
        raise BackupError(f"no complete backup under {target.url} (backup.target) to restore")
    return complete[-1]


def expired(backups: Sequence[Listed], now: dt.datetime, retention_days: float) -> list[Listed]:
    """The backups retention deletes at ``now`` (naive UTC)."""
    complete = [b for b in backups if b.complete]
    newest = max(complete, key=lambda b: b.started_at) if complete else None
    limit = now - dt.timedelta(days=retention_days)
    return [
        b
        for b in backups
        if (b.complete and b is not newest and b.started_at < limit) or (not b.complete and b.started_at < now - INCOMPLETE_GRACE)
    ]


def prune(target: Folder, now: dt.datetime, retention_days: float | None) -> list[Listed]:
    """Delete the expired backups under ``target``; returns them. ``None`` keeps everything."""
    if retention_days is None:
        return []
    gone = expired(list_backups(target), now, retention_days)
    for b in gone:
        target.child(b.name).remove()
    return gone
