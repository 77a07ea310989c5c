"""A local Cloud Storage, for trying ``backup.target=gs://...`` without a Google account.

gcp-storage-emulator (pinned in the ``emulator`` extra) serves Cloud Storage's JSON API over
HTTP on this machine. Start it with its own command, then point the pipeline at it with
``backup.storage.endpoint_url`` (gcsfs then talks to it with anonymous credentials)::

    gcp-storage-emulator start --host 127.0.0.1 --port 9023 --in-memory --default-bucket backups
    python -m pipeline task=backup backup.target=gs://backups/nightly backup.storage.endpoint_url=http://127.0.0.1:9023

The tests and benchmarks start the same server as a child process, in memory, with the buckets
they ask for (:class:`StorageEmulatorProcess`): ``python -m pipeline.storage_emulator`` binds a
loopback port the kernel picks and holds it from then on, and prints its URL as its first line
of output, which the parent reads (a port picked by the parent and bound later by the child
could be taken in between by another process, or by another emulator).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from dataclasses import dataclass
from functools import partial
from typing import Sequence

from pipeline.child_process import ChildProcess, start_reporting


@dataclass
class StorageEmulatorProcess(ChildProcess):
    """``python -m pipeline.storage_emulator`` as a child process (the tests' and benchmarks' Cloud Storage)."""

    url: str  # what backup.storage.endpoint_url takes

    @classmethod
    def start(cls, *, buckets: Sequence[str] = ("backups",), timeout: float = 60) -> "StorageEmulatorProcess":
        """In memory on a loopback port of its own, with ``buckets`` made; returns once it serves."""
        process, ready = start_reporting([sys.executable, "-m", "pipeline.storage_emulator"], "the Cloud Storage emulator", timeout)
        emulator = cls(process, ready["url"])
        try:
            for bucket in buckets:
                emulator.create_bucket(bucket)
        except BaseException:
            emulator.stop()
            raise
        return emulator

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.storage_emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="loopback port; 0 (the default) lets the kernel pick a free one")
    args = parser.parse_args(argv)

    from http.server import HTTPServer

    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    # gcp-storage-emulator's own server, in memory: its request handler over its storage, on a
    # socket bound here (its `start` command takes the port to bind, and cannot report one it picked).
    server = HTTPServer(("127.0.0.1", args.port), partial(RequestHandler, Storage(use_memory_fs=True)))
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
