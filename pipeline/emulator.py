"""A local BigQuery, for trying ``warehouse=bigquery`` without a Google account.

``python -m pipeline.emulator`` starts bqemulator (pinned in the ``emulator`` extra): BigQuery's
REST and gRPC (Storage Read) APIs served from a DuckDB file under ``var/bqemulator/``, so a
second start finds the tables the first one left. It prints the overrides that point the
pipeline at it and runs until Ctrl-C::

    python -m pipeline.emulator
    python -m pipeline warehouse=bigquery warehouse.project=local \\
        warehouse.endpoints.rest=http://127.0.0.1:9050 warehouse.endpoints.grpc=127.0.0.1:9060

The emulator needs DuckDB's ``spatial`` extension (and tries ``avro``); both come from pinned
packages (``duckdb-extension-*``) and are installed into DuckDB before it starts, so nothing is
downloaded. The tests and benchmarks start it the same way, on free loopback ports
(:class:`EmulatorProcess`), and read the ports from its first line of output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.child_process import ChildProcess, start_reporting

DEFAULT_DATA_DIR = Path("var/bqemulator")
DEFAULT_REST_PORT = 9050
DEFAULT_GRPC_PORT = 9060


def install_extensions() -> None:
    """DuckDB extensions the emulator loads, from their pinned packages instead of the network."""
    import duckdb_extensions

    for name in ("spatial", "avro"):
        duckdb_extensions.import_extension(name)


def make_server(*, data_dir: Path | None, rest_port: int, grpc_port: int, project: str = "local"):
    """An unstarted ``bqemulator`` server on loopback: persistent under ``data_dir``, or in memory."""
    import structlog

    # Quiet from import on: the emulator configures its own logging only when it starts.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    install_extensions()
    from bqemulator.config import LogLevel, PersistenceMode, Settings
    from bqemulator.server import EmulatorServer

    persistence = {"persistence_mode": PersistenceMode.EPHEMERAL}
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        persistence = {"persistence_mode": PersistenceMode.PERSISTENT, "data_dir": data_dir.resolve()}
    settings = Settings(
        rest_host="127.0.0.1",
        rest_port=rest_port,
        grpc_host="127.0.0.1",
        grpc_port=grpc_port,
        default_project_id=project,
        log_level=LogLevel.WARNING,
        # The emulator caps every gRPC message at this plus 1 MB, and sends a read in batches of
        # 65,536 rows: a wide table (the feature store) needs more than the 10 MB default.
        write_api_max_request_bytes=256 * 1024 * 1024,
        **persistence,
    )
    return EmulatorServer(settings)


def overrides_for(rest_url: str, grpc_endpoint: str, project: str = "local") -> list[str]:
    """The Hydra overrides that point ``python -m pipeline`` at an emulator."""
    return [
        "warehouse=bigquery",
        f"warehouse.project={project}",
        f"warehouse.endpoints.rest={rest_url}",
        f"warehouse.endpoints.grpc={grpc_endpoint}",
    ]


@dataclass
class EmulatorProcess(ChildProcess):
    """``python -m pipeline.emulator`` as a child process (the tests' and benchmarks' emulator)."""

    rest: str
    grpc: str

    @classmethod
    def start(cls, *, data_dir: Path | None = None, timeout: float = 120) -> "EmulatorProcess":
        """In memory (or persistent under ``data_dir``) on free loopback ports; returns once it serves."""
        where = ["--data-dir", str(data_dir)] if data_dir else ["--ephemeral"]
        command = [sys.executable, "-m", "pipeline.emulator", *where, "--rest-port", "0", "--grpc-port", "0"]
        process, ready = start_reporting(command, "the BigQuery emulator", timeout)
        return cls(process, ready["rest"], ready["grpc"])

    def overrides(self, project: str = "local") -> list[str]:
        return overrides_for(self.rest, self.grpc, project)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where the tables persist (default: %(default)s)")
    parser.add_argument("--ephemeral", action="store_true", help="keep everything in memory; --data-dir is ignored")
    parser.add_argument("--rest-port", type=int, default=DEFAULT_REST_PORT, help="REST port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port; 0 picks a free one (default: %(default)s)")
    args = parser.parse_args(argv)

    import asyncio
    import signal

    server = make_server(data_dir=None if args.ephemeral else args.data_dir, rest_port=args.rest_port, grpc_port=args.grpc_port)

    async def serve() -> None:
        await server.start()
        print(json.dumps({"rest": server.rest_url, "grpc": server.grpc_endpoint}), flush=True)
        where = "in memory" if args.ephemeral else f"persistent in {args.data_dir}"
        print(f"BigQuery emulator ({where}); point the pipeline at it with:", file=sys.stderr)
        print("  python -m pipeline " + " ".join(overrides_for(server.rest_url, server.grpc_endpoint)), file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
