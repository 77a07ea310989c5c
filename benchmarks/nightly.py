"""The nightly run that adds one new date to a built warehouse, two ways: Ray started and stopped
by the run itself (the default), against a Ray that stays up (`ray start --head` once, then
`ray.address=...`). Target: under 5 s wall for the run.

The bundled data with its last date held back (`data.boxscores_through`) is built once (not
timed); then each run starts from a copy of it and adds the last date, as `python -m pipeline
training.after_run=false`, a separate process each time, as cron would start it. Prints each
run's wall time and the time the run reports for building (plan to summary), the median of each
way, the load average seen (the machine is shared: figures move with it), and the ratio last.

    python benchmarks/nightly.py [--repeats 3] [--cpus 2]

The kept-up Ray is started here in a session of its own, with its own temporary folder, and
stopped at the end by its process group: no other Ray on the machine is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from pipeline.warehouse.source import RawSource  # noqa: E402

# `ray start` turns on token authentication (the token in ~/.ray/auth_token): the runs use it.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
STOP_SECONDS = 60


def pipeline(workdir: Path, *overrides: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    """`python -m pipeline` on ``workdir``'s warehouse: (wall seconds, output)."""
    args = [sys.executable, "-m", "pipeline", f"warehouse.path={workdir / 'warehouse.duckdb'}", f"logs.dir={workdir / 'logs'}", "training.after_run=false", *overrides]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=workdir, env={**os.environ, "COLUMNS": "200", **(env or {})}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(overrides)}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr


def built_in(output: str) -> float:
    """What the run itself reports for building: "run <id>: <first> .. <last> in N s"."""
    found = re.search(r"run \S+: \S+ \.\. \S+ in ([\d.]+)s", output)
    return float(found[1]) if found else float("nan")


def one_new_date(base: Path, workdir: Path, cpus: int, extra: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copy(base / "warehouse.duckdb", workdir / "warehouse.duckdb")
    seconds, output = pipeline(workdir, f"ray.num_cpus={cpus}", *extra, env=env)
    with duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True) as con:
        built = con.execute("SELECT dates_built FROM nba_orchestration.run_history ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    if set(json.loads(built).values()) != {1}:  # {table: dates built}: every table built the one date
        raise SystemExit(f"the run did not build exactly the new date: {built}")
    return seconds, built_in(output)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ray(tmp: Path, cpus: int) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    started = time.perf_counter()
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={tmp / 'ray'}", "--block"],
        env={**os.environ, **RAY_ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    for line in head.stdout:  # `ray start --block` says so once the node is up
        if "will now block" in line:
            break
    else:
        raise SystemExit("ray start did not come up")
    return head, f"127.0.0.1:{port}", time.perf_counter() - started


def stop_ray(head: subprocess.Popen) -> None:
    """SIGTERM the kept-up Ray's session, then SIGKILL what is left of it after STOP_SECONDS."""
    os.killpg(head.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and head.poll() is None:
        time.sleep(0.2)
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    dates = RawSource(PROJECT_ROOT / "data" / "raw").calendar().dates
    held_back = dates[-2]
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="nightly-") as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "base"
        base.mkdir()
        seconds, _ = pipeline(base, f"data.boxscores_through={held_back}", f"ray.num_cpus={args.cpus}")
        print(f"built the bundled data through {held_back} (not timed below): {seconds:.1f}s; each run adds {dates[-1]}")
        fresh = [one_new_date(base, tmp / "fresh", args.cpus, []) for _ in range(args.repeats)]
        for i, (wall, build) in enumerate(fresh, 1):
            print(f"  Ray started by the run, run {i}: {wall:.2f}s wall, building {build:.2f}s")
        head, address, up = start_ray(tmp, args.cpus)
        try:
            print(f"ray start --head: {up:.1f}s, once (not counted)")
            kept = [one_new_date(base, tmp / "kept", args.cpus, [f"ray.address={address}"], env=RAY_ENV) for _ in range(args.repeats)]
        finally:
            stop_ray(head)
        for i, (wall, build) in enumerate(kept, 1):
            print(f"  Ray kept up, run {i}: {wall:.2f}s wall, building {build:.2f}s")
    fresh_wall, kept_wall = statistics.median(w for w, _ in fresh), statistics.median(w for w, _ in kept)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"median wall: Ray started by the run {fresh_wall:.2f}s, Ray kept up {kept_wall:.2f}s (target under 5 s)")
    print(f"kept up / started by the run: {kept_wall / fresh_wall:.2f}")


if __name__ == "__main__":
    main()
