"""A local service run as a child process: the BigQuery emulator (``pipeline.emulator``) and the
Cloud Storage emulator (``pipeline.storage_emulator``) that the tests and benchmarks start."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Self


@dataclass
class ChildProcess:
    process: subprocess.Popen

    def stop(self) -> None:
        """Terminate it, and kill it if it has not exited 30 s later."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
