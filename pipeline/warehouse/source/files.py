"""Finding and opening an input's files, in a local folder or in Cloud Storage (``gs://``) through
the same fsspec file systems as backups (:mod:`pipeline.warehouse.storage`); a storage failure is
bad input naming what was being done."""

from __future__ import annotations

import functools
import io
import posixpath
from pathlib import Path

import polars as pl

from pipeline.tables._raw import RawDataError
from pipeline.warehouse.source.specs import SourceSpec
from pipeline.warehouse.storage import is_remote, open_filesystem


def scan_source_file(spec: SourceSpec, path: str, endpoint_url: str | None = None) -> pl.LazyFrame:
    """A file of ``spec`` with the columns it derives (:attr:`SourceSpec.derive`)."""
    scan = scan_file(path, endpoint_url)
    return spec.derive(scan) if spec.derive else scan


def scan_file(path: str, endpoint_url: str | None = None) -> pl.LazyFrame:
    """A raw or slate file, Parquet or CSV (every CSV column read as text, then typed by
    :func:`read_as`); a ``gs://`` file is fetched whole (the files are a season each, or a night)."""
    csv = path.endswith(".csv")
    if is_remote(path):
        data = io.BytesIO(read_bytes(path, endpoint_url))
        return (pl.read_csv(data, infer_schema=False) if csv else pl.read_parquet(data)).lazy()
    return pl.scan_csv(path, infer_schema=False) if csv else pl.scan_parquet(path)


@functools.lru_cache(maxsize=8)
def _filesystem(url_scheme_root: str, endpoint_url: str | None):
    """One file system per bucket (or the local one) and process, kept: a Ray worker reads many shards."""
    return open_filesystem(url_scheme_root, endpoint_url)[0]


def _fs_and_path(url: str, endpoint_url: str | None):
    """The file system of ``url`` and its path there (a bucket path for ``gs://``)."""
    try:
        if is_remote(url):
            fs = _filesystem("gs://" + url[len("gs://") :].split("/", 1)[0], endpoint_url)
            return fs, fs._strip_protocol(url).rstrip("/")
        return _filesystem("/", None), str(Path(url).absolute())
    except ValueError as exc:
        raise RawDataError(f"{exc} (data.raw_dir, data.slate_dir)") from None


def folder_exists(url: str, endpoint_url: str | None) -> bool:
    fs, path = _fs_and_path(url, endpoint_url)

    def look() -> bool:
        try:  # a gs:// "folder" is a prefix of objects: it exists if anything is below it
            return fs.isdir(path) or (is_remote(url) and bool(fs.ls(path)))
        except FileNotFoundError:
            return False

    return bool(_storage(f"looking for {url}", look))


def list_files(folder: str, patterns: tuple[str, ...], endpoint_url: str | None) -> list[str]:
    """The files of ``folder`` matching any of ``patterns``, sorted, named as people name them
    (a local path, or ``gs://bucket/...``); none if the folder does not exist."""
    fs, path = _fs_and_path(folder, endpoint_url)
    if not folder_exists(folder, endpoint_url):
        return []
    found = {name for pattern in patterns for name in _storage(f"listing {folder}", lambda p=pattern: fs.glob(posixpath.join(path, p)))}
    return sorted(("gs://" + name if is_remote(folder) else name) for name in found)


def read_bytes(path: str, endpoint_url: str | None) -> bytes:
    fs, name = _fs_and_path(path, endpoint_url)
    return _storage(f"reading {path}", lambda: fs.cat_file(name))


def _storage(what: str, action):
    """A storage failure (a missing bucket, no permission) as bad input naming what was being done."""
    try:
        return action()
    except RawDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - named for the person reading it
        raise RawDataError(f"failed {what}: {type(exc).__name__}: {exc}") from exc
