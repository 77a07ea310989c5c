"""Cloud Storage as tests use it: one gcp-storage-emulator process for the session (started on a
free port, stopped at the end), and a fresh ``gs://`` folder on it per test."""

from __future__ import annotations

import uuid

import pytest

from pipeline.backup.folder import Folder
from pipeline.storage_emulator import StorageEmulatorProcess

BUCKET = "backups"
OTHER_BUCKET = "elsewhere"  # for backups that try to reach out of their own


@pytest.fixture(scope="session")
def storage_emulator():
    with StorageEmulatorProcess.start(buckets=(BUCKET, OTHER_BUCKET)) as emulator:
        yield emulator


def gs_folder(emulator: StorageEmulatorProcess, name: str | None = None) -> Folder:
    """A folder of its own in the emulator's bucket (nothing is in it yet)."""
    return Folder.open(f"gs://{BUCKET}/{name or uuid.uuid4().hex[:12]}", endpoint_url=emulator.url)


def upload_raw(storage_emulator, *, broken_file: bool = False) -> str:
    """The bundled raw files in a folder of their own, in a bucket of their own, and the bundled
    prop lines beside it (``<bucket>/lines``); the raw folder's gs:// URL."""
    from gcsfs.core import GCSFileSystem

    from conftest import LINES_DIR, RAW_DIR

    bucket = f"raw-{uuid.uuid4().hex[:10]}"
    storage_emulator.create_bucket(bucket)
    fs = GCSFileSystem(endpoint_url=storage_emulator.url, token="anon", use_listings_cache=False)
    for path in sorted(RAW_DIR.glob("*.parquet")):
        fs.put_file(str(path), f"{bucket}/nightly/{path.name}")
    for path in sorted(LINES_DIR.glob("*.parquet")):
        fs.put_file(str(path), f"{bucket}/lines/{path.name}")
    if broken_file:
        fs.pipe_file(f"{bucket}/nightly/player_boxscores_2099-00.parquet", b"not parquet")
    return f"gs://{bucket}/nightly"


@pytest.fixture
def gs_target(storage_emulator) -> Folder:
    return gs_folder(storage_emulator)
