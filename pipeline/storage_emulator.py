"""A local Cloud Storage, for trying ``backup.target=gs://...`` without a Google account.

gcp-storage-emulator (pinned in the ``emulator`` extra) serves Cloud Storage's JSON API over
HTTP on this machine. Start it with its own command, then point the pipeline at it with
``backup.storage.endpoint_url`` (gcsfs then talks to it with anonymous credentials)::

    gcp-storage-emulator start --host 127.0.0.1 --port 9023 --in-memory --default-bucket backups
    python -m pipeline task=backup backup.target=gs://backups/nightly backup.storage.endpoint_url=http://127.0.0.1:9023

The tests and benchmarks start it the same way as a child process, in memory, on a free
loopback port, with the buckets they ask for (:class:`StorageEmulatorProcess`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Sequence

from pipeline.child_process import ChildProcess

POLL_SECONDS = 0.1


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class StorageEmulatorProcess(ChildProcess):
    """``gcp-storage-emulator start`` as a child process (the tests' and benchmarks' Cloud Storage)."""

    url: str  # what backup.storage.endpoint_url takes

    @classmethod
    def start(cls, *, buckets: Sequence[str] = ("backups",), timeout: float = 60) -> "StorageEmulatorProcess":
        """In memory on a free loopback port, with ``buckets`` made; returns once it serves."""
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # it prints a traceback for every client that hangs up early
        )
        emulator = cls(process, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout
        while not emulator.serves():
            if process.poll() is not None or time.monotonic() > deadline:
                emulator.stop()
                raise RuntimeError(f"the Cloud Storage emulator did not start on port {port} (exit code {process.returncode})")
            time.sleep(POLL_SECONDS)
        for bucket in buckets:
            emulator.create_bucket(bucket)
        return emulator

    def serves(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2) as answer:  # its health check answers "OK"
                return answer.read() == b"OK"
        except OSError:
            return False

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=local",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def overrides(self) -> list[str]:
        """The Hydra overrides that point ``python -m pipeline``'s gs:// backups at it."""
        return [f"backup.storage.endpoint_url={self.url}"]

