"""How cost grows with data: the full Phase 2 to Phase 4 build (DuckDB, local Ray) of the bundled
data scaled up 1x, 4x and 16x. Prints per scale the rows built, wall time, rows per second, the
driver's peak memory (RSS) and the largest Ray worker's; last, time per row at 16x over time per
row at 1x. Targets: that ratio at most 1.0, and the driver's peak at 16x under 4 times its peak
at 1x.

A scale-up of N is N copies of every real season with shifted game, player and team ids, so every
game date has N times the games (and a season N times the teams). It is generated here into a
temporary folder; nothing large is committed. Each build runs in a fresh process (the harness's
build: Ray already up, validation gates left out). Peak memory is each process's own high-water
mark (``VmHWM`` in ``/proc``, Linux), read for the build process and every Ray worker below it.

    python benchmarks/scale.py [--scales 1,4,16] [extra Hydra overrides, e.g. shard.max_rows=200000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from _harness import PROJECT_ROOT, tables_of_phase

RAW_DIR = PROJECT_ROOT / "data" / "raw"
# Far apart enough that no shifted id meets a real one.
PLAYER_ID_STEP = 10_000_000
TEAM_ID_STEP = 100_000
POLL_SECONDS = 0.1


def scale_up(raw_dir: Path, factor: int, out: Path) -> int:
    """``factor`` copies of every raw file into ``out``; copy k shifts every id by k steps. Returns
    the player rows written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for path in sorted(raw_dir.glob("*.parquet")):
        frame = pl.read_parquet(path)
        copies = [shifted(frame, k) for k in range(factor)]
        scaled = pl.concat(copies)
        scaled.write_parquet(out / path.name)
        if path.name.startswith("player_boxscores"):
            rows += scaled.height
    return rows


def shifted(frame: pl.DataFrame, k: int) -> pl.DataFrame:
    if k == 0:
        return frame
    suffix = f"x{k}"
    exprs = [pl.col("game_id") + suffix]
    for column in ("team_abbr", "opponent_abbr"):
        exprs.append(pl.col(column) + suffix)
    for column in ("team_id", "opponent_id"):
        if column in frame.columns:
            exprs.append(pl.col(column) + k * TEAM_ID_STEP)
    if "player_id" in frame.columns:
        exprs.append(pl.col("player_id") + k * PLAYER_ID_STEP)
    if "matchup" in frame.columns:
        exprs.append(pl.col("matchup") + suffix)
    return frame.with_columns(exprs)


@dataclass
class Watched:
    """One watched process: its wall time and memory, and what it printed."""

    seconds: float
    driver_peak: int  # its peak RSS (VmHWM): its own memory, and Ray's object store pages it wrote or read
    driver_private_peak: int  # its largest anonymous RSS seen (polled): its own memory only
    driver_object_store_peak: int  # its largest RssShmem seen (polled): object store pages mapped in it
    worker_peak: int  # the largest peak RSS of a Ray worker below it
    output: str


def watched(args: list[str], cwd: Path) -> Watched:
    """Run ``args`` and watch its memory and its Ray workers' until it ends."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    workers: set[int] = set()
    private = shared = 0
    while proc.poll() is None:
        for pid in (proc.pid, *descendants(proc.pid)):
            status = proc_status(pid)
            if status:
                peaks[pid] = max(peaks.get(pid, 0), status.get("VmHWM", 0))
                if status.get("Name", "").startswith("ray::") or pid in workers:
                    workers.add(pid)
                if pid == proc.pid:
                    private, shared = max(private, status.get("RssAnon", 0)), max(shared, status.get("RssShmem", 0))
        time.sleep(POLL_SECONDS)
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} ... failed ({proc.returncode}):\n{output}")
    worker_peak = max((peaks[p] for p in workers), default=0)
    return Watched(time.perf_counter() - started, peaks.get(proc.pid, 0), private, shared, worker_peak, output)


def proc_status(pid: int) -> dict[str, object]:
    """Name and memory figures (bytes) of ``/proc/<pid>/status``; empty if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    status: dict[str, object] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        status[key] = int(value.split()[0]) * 1024 if value.endswith(" kB") else value
    return status


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def build_once(raw: Path, warehouse: Path, extra: list[str]) -> None:
    """One full build in this process (run as a child of main): what the numbers measure."""
    from _harness import build, config, start_ray_timed

    overrides = [f"data.raw_dir={raw}", f"warehouse.path={warehouse}", tables_of_phase(2, 3, 4), *extra]
    cfg = config(*overrides)
    start_ray_timed(cfg)
    timed = build(cfg)
    rows = sum(o.rows for o in timed.summary.tables.values())
    print(json.dumps({"seconds": timed.seconds, "rows": rows, "table_dates": timed.table_dates}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--build-once", nargs=2, metavar=("RAW", "WAREHOUSE"), help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.build_once:
        build_once(Path(args.build_once[0]), Path(args.build_once[1]), extra)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (int(s) for s in args.scales.split(",")):
            raw = Path(tmp) / f"raw{factor}"
            player_rows = scale_up(RAW_DIR, factor, raw)
            command = [sys.executable, __file__, "--build-once", str(raw), str(Path(tmp) / f"w{factor}.duckdb"), *extra]
            run = watched(command, Path(tmp))
            built = json.loads(run.output.strip().splitlines()[-1])
            results[factor] = built | {"driver": run.driver_peak, "worker": run.worker_peak}
            print(
                f"{factor:>3}x: {player_rows:,} raw player rows, {built['rows']:,} rows built in {built['seconds']:.1f}s "
                f"({built['rows'] / built['seconds']:,.0f} rows/s; the process {run.seconds:.1f}s); "
                f"driver peak {run.driver_peak / 2**20:,.0f} MB, largest worker {run.worker_peak / 2**20:,.0f} MB",
                flush=True,
            )
    scales = sorted(results)
    if len(scales) > 1:
        low, high = results[scales[0]], results[scales[-1]]
        per_row = (high["seconds"] / high["rows"]) / (low["seconds"] / low["rows"])
        print(f"driver peak {scales[-1]}x / {scales[0]}x: {high['driver'] / low['driver']:.2f} (target under 4)")
        print(f"time per row {scales[-1]}x / {scales[0]}x: {per_row:.2f} (target at most 1.0)")


if __name__ == "__main__":
    main()
