"""Where backups live: a local folder or a Cloud Storage prefix (``gs://bucket/path``), through
fsspec (gcsfs for ``gs://``).

- Every name joined below a folder is checked first (:func:`~pipeline.backup.manifest.relative_path`),
  so nothing read or written through a :class:`Folder` can be outside it.
- :meth:`Folder.write_whole` makes a file appear whole or not at all: a Cloud Storage object is
  published when its upload completes; a local file is written under a temporary name and renamed.
- Google Cloud Storage takes Application Default Credentials; ``endpoint_url`` points at an
  emulator instead, with anonymous credentials. Credentials never appear in a folder's URL,
  in logs or in errors.
- A storage failure surfaces as :class:`~pipeline.backup.manifest.BackupError` naming what was
  being done and the path.
"""

from __future__ import annotations

import logging
import os
import posixpath
import uuid
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipeline.backup.manifest import BackupError, relative_path
from pipeline.warehouse import storage
from pipeline.warehouse.storage import GCS_SCHEME

log = logging.getLogger(__name__)


def open_filesystem(url: str, endpoint_url: str | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system of ``url`` and the path in it fsspec uses: a local folder or ``gs://``."""
    try:
        return storage.open_filesystem(url, endpoint_url)
    except ValueError:
        raise BackupError(f"{url!r}: a backup folder is a local path or gs://bucket/path") from None


@dataclass(frozen=True)
class Folder:
    """One folder of backups, or one backup: every path below it is checked to stay below it."""

    fs: fsspec.AbstractFileSystem
    root: str  # as the file system names it: /abs/path, or bucket/path
    url: str  # as people name it: /abs/path, or gs://bucket/path

    @classmethod
    def open(cls, url: str, *, endpoint_url: str | None = None) -> "Folder":
        if not url:
            raise BackupError("no backup folder given (backup.target, or backup.source for task=restore)")
        fs, root = open_filesystem(str(url), endpoint_url)
        shown = GCS_SCHEME + root if str(url).startswith(GCS_SCHEME) else root
        return cls(fs, root, shown)

    def child(self, name: str) -> "Folder":
        relative_path(name, "folder name")
        return Folder(self.fs, posixpath.join(self.root, name), posixpath.join(self.url, name))

    def path(self, relative: str) -> str:
        return posixpath.join(self.root, relative_path(relative, "path"))

    def url_of(self, relative: str) -> str:
        return posixpath.join(self.url, relative_path(relative, "path"))

    # -- reading ---------------------------------------------------------------------------

    def exists(self, relative: str | None = None) -> bool:
        path = self.root if relative is None else self.path(relative)
        return self._do(f"looking for {path}", lambda: self.fs.exists(path))

    def read_bytes(self, relative: str) -> bytes:
        """The file's bytes; :class:`FileNotFoundError` if there is none."""
        path = self.path(relative)
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - named, then raised as the backup's error
            raise BackupError(f"cannot read {self.url_of(relative)}: {type(exc).__name__}: {exc}") from exc

    def folders(self) -> list[str]:
        """The names of the folders directly below this one (none if it does not exist)."""
        if not self.exists():
            return []
        entries = self._do(f"listing {self.url}", lambda: self.fs.ls(self.root, detail=True))
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory")

    def size(self) -> int:
        """Bytes of every file below this folder."""
        return self._do(f"measuring {self.url}", lambda: int(self.fs.du(self.root, total=True)) if self.fs.exists(self.root) else 0)

    # -- writing ---------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """A ``gs://`` folder's bucket must exist: backups make folders, never buckets."""
        if not self.url.startswith(GCS_SCHEME):
            return
        bucket = self.root.split("/", 1)[0]
        if not self._do(f"looking for the bucket of {self.url}", lambda: self.fs.exists(bucket)):
            raise BackupError(f"no bucket gs://{bucket} for {self.url}: create it first (backups make folders, never buckets)")

    def write_bytes(self, relative: str, data: bytes) -> None:
        path = self.path(relative)
        self._do(f"writing {self.url_of(relative)}", lambda: self._pipe(path, data))

    def write_whole(self, relative: str, data: bytes) -> None:
        """Write a file that readers see whole or not at all (the manifest)."""
        path = self.path(relative)
        if isinstance(self.fs, LocalFileSystem):
            temporary = f"{path}.{uuid.uuid4().hex}.partial"
            self._do(f"writing {self.url_of(relative)}", lambda: self._pipe(temporary, data))
            self._do(f"writing {self.url_of(relative)}", lambda: os.replace(temporary, path))
        else:  # an object store publishes an upload whole
            self._do(f"writing {self.url_of(relative)}", lambda: self.fs.pipe_file(path, data))

    def remove(self) -> None:
        """Delete this folder and everything below it."""
        self._do(f"deleting {self.url}", lambda: self.fs.rm(self.root, recursive=True))

    def _pipe(self, path: str, data: bytes) -> None:
        if isinstance(self.fs, LocalFileSystem):
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self.fs.pipe_file(path, data)

    def _do(self, what: str, action):
        try:
            return action()
        except BackupError:
            raise
        except Exception as exc:  # noqa: BLE001 - a storage failure, named for the person reading it
            raise BackupError(f"failed {what}: {type(exc).__name__}: {exc}") from exc
