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


@pytest.fixture
def gs_target(storage_emulator) -> Folder:
    return gs_folder(storage_emulator)
