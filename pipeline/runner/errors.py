"""What a failure is, as the runner sees it: worth retrying or not, bad raw input or not, its
text for the run state, and the Ray node it happened on.

A module of its own because both sides of a shard need it: the Ray task that builds the shard
(:mod:`pipeline.runner.worker`, which names its node in the error) and the driver that retries
or records it (:mod:`pipeline.runner.levels`), as well as the test faults.
"""

from __future__ import annotations

import json
import re
import socket
import traceback
from dataclasses import dataclass
from typing import Sequence

import ray

from pipeline.tables._raw import RawDataError


class TransientError(RuntimeError):
    """An error worth retrying: the same work may succeed a moment later."""


TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        return isinstance(cause, TRANSIENT_TYPES) and not isinstance(cause, ray.exceptions.RayTaskError)
    return isinstance(exc, TRANSIENT_TYPES)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_text(exc: BaseException) -> str:
    """The full error with its traceback; for a Ray task, the traceback from the worker."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        return "Traceback (from the Ray task):\n" + _ANSI.sub("", str(exc)).strip()
    return "".join(traceback.format_exception(exc)).strip()


def is_bad_input(exc: BaseException) -> bool:
    """Bad raw data (a file or row the source checks refuse), raised here or in a Ray task."""
    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
    return isinstance(cause, RawDataError)


def error_message(exc: BaseException) -> str:
    """The exception's type and full message, without the traceback."""
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        exc = exc.cause
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Node:
    """Where work ran: the Ray node's ID (unique on any cluster) and its IP address beside it."""

    id: str | None
    ip: str

    @classmethod
    def here(cls) -> "Node":
        if ray.is_initialized():
            return cls(ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address())
        return cls(None, socket.gethostname())

    @classmethod
    def of_failure(cls, exc: BaseException) -> "Node":
        """The node a failure happened on: the Ray task's (named in the error by the task
        itself), or this driver's (reading inputs, writing)."""
        cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
        for note in getattr(cause, "__notes__", ()):
            if note.startswith(NODE_NOTE):
                found = json.loads(note[len(NODE_NOTE) :])
                return cls(found["id"], found["ip"])
        return cls.here()

    @staticmethod
    def joined(nodes: Sequence["Node"]) -> "Node":
        """The nodes a date range was built on (several, for a unit built in pieces)."""
        ids = sorted({n.id for n in nodes if n.id})
        return Node(",".join(ids) or None, ",".join(sorted({n.ip for n in nodes})))


NODE_NOTE = "ran on Ray node "

