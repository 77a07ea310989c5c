"""A local service run as a child process: the BigQuery emulator (``pipeline.emulator``) and the
Cloud Storage emulator (``pipeline.storage_emulator``) that the tests and benchmarks start.

Each binds its ports itself (port 0: the kernel's pick, held from then on) and reports them as
JSON on its first line of output once it serves (:func:`start_reporting`): no port is picked by
the parent and bound later, which another process could take in between.
"""

from __future__ import annotations

import json
import selectors
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


def start_reporting(command: list[str], what: str, timeout: float) -> tuple[subprocess.Popen, dict]:
    """Start ``command`` and wait, up to ``timeout`` seconds, for its first line of output: a JSON
    object saying where it serves. Returns the process and that object; a child that exits, says
    something else or says nothing in time is killed, and :class:`RuntimeError` names ``what``."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        answered = bool(selector.select(timeout))
        line = process.stdout.readline() if answered else ""
    try:
        ready = json.loads(line)
        if isinstance(ready, dict):
            return process, ready
    except ValueError:
        pass
    process.kill()
    code = process.wait()
    said = f": {line.strip()!r}" if line.strip() else ": it said nothing" if answered else f": nothing said within {timeout:.0f} s"
    raise RuntimeError(f"{what} did not start (exit code {code}){said}")
