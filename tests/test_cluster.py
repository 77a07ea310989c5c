"""Running on a Ray cluster: the launcher config Ray itself accepts, and a Phase 3 run submitted as a
Ray job to a real two-node cluster on this machine, on DuckDB and on the BigQuery emulator."""

from __future__ import annotations

import re
import sys
import time

import polars as pl
import pytest
import yaml

from backends import Backend
from conftest import PHASE3_TABLES, PROJECT_ROOT
from pipeline.state import RUN_STATE
from pipeline.tables import registry
from storage import upload_raw


def test_the_cluster_launcher_config_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((PROJECT_ROOT / "ray_cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does before it launches anything
    assert config["provider"]["type"] == "gcp" and {"project_id", "region", "availability_zone"} <= set(config["provider"])
    head, workers = (config["available_node_types"][n] for n in (config["head_node_type"], "cpu_worker"))
    assert workers["max_workers"] > workers["min_workers"] >= 0  # autoscaling CPU workers
    for node in (head, workers):
        assert node["node_config"]["machineType"] and node["node_config"]["disks"][0]["initializeParams"]["diskSizeGb"]
        scopes = {s for account in node["node_config"]["serviceAccounts"] for s in account["scopes"]}
        assert "https://www.googleapis.com/auth/bigquery" in scopes
    assert any("pip install" in c and "-e ." in c for c in config["setup_commands"])


# -- a real two-node Ray cluster on this machine ---------------------------------------------------

PHASE_2_3 = [n for n, t in registry().items() if t.phase <= 3]
JOB_TIMEOUT_SECONDS = 600


@pytest.fixture(scope="module")
def two_nodes():
    """A head node with the dashboard (where jobs are submitted) and a second node, one CPU each,
    torn down after the module whatever happened."""
    from ray.cluster_utils import Cluster

    # The dashboard (where jobs are submitted) and each node's dashboard agent (which runs them) on
    # ports of their own: port 0, which each binds itself and reports (the dashboard's URL is read
    # back from the cluster); at Ray's fixed defaults another Ray on the machine may hold them.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": 0,
            "dashboard_agent_listen_port": 0,
        },
    )  # fmt: skip
    try:
        cluster.add_node(num_cpus=1, dashboard_agent_listen_port=0)
        cluster.wait_for_nodes()
        host, port = cluster.webui_url.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0, cluster.webui_url
        yield cluster, f"http://{cluster.webui_url}"
    finally:
        cluster.shutdown()


def submit(dashboard: str, overrides: list[str]) -> tuple[str, str]:
    """`python -m pipeline ray=cluster ...` as a Ray job with this checkout as its working
    directory (as `ray job submit --working-dir .` sends it); waits; (status, logs)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = _client(JobSubmissionClient, dashboard)
    command = " ".join([sys.executable, "-m", "pipeline", "ray=cluster", "training.after_run=false", *(f"'{o}'" for o in overrides)])
    runtime_env = {
        "working_dir": str(PROJECT_ROOT),
        "excludes": [".venv", ".git", "var", "outputs", "multirun", "__pycache__"],
        "env_vars": {"COLUMNS": "200"},
    }
    deadline = time.monotonic() + 120
    while True:  # the head's job agent starts a little after its dashboard answers
        try:
            job = client.submit_job(entrypoint=command, runtime_env=runtime_env)
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"job {job} did not finish:\n{client.get_job_logs(job)}"
        time.sleep(1)
    return client.get_job_status(job), client.get_job_logs(job)


def _client(client_class, dashboard: str):
    """The job client, once the dashboard answers (it starts after the head node)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return client_class(dashboard)
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def outside_the_job(folder) -> list[str]:
    """Logs and reports where they outlive the job: its working directory is Ray's temporary copy
    (which the second node of a one-machine cluster even replaces under it)."""
    return [
        f"logs.dir={folder / 'logs'}", f"validation.reports_dir={folder / 'reports'}", f"training.models_root={folder / 'models'}",
        f"data.slate_dir={folder / 'slates'}",  # not the checkout's data/slates, which the working directory copies
    ]  # fmt: skip


def same_tables(expected: Backend, got: Backend) -> None:
    with expected.open(read_only=True) as left, got.open(read_only=True) as right:
        for name in PHASE_2_3:
            key = list(registry()[name].key)
            assert right.read(name).sort(key).equals(left.read(name).sort(key)), f"{name} differs from a local run's"


def nodes_in_state(backend: Backend) -> set[str]:
    with backend.open(read_only=True) as warehouse:
        state = warehouse.read(RUN_STATE.name, columns=["table_name", "node", "node_ip"])
    return {n for nodes in state.filter(pl.col("table_name").is_in(PHASE_2_3))["node"].to_list() for n in nodes.split(",")}


@pytest.mark.slow
def test_a_phase3_run_submitted_as_a_job_runs_on_both_nodes(two_nodes, phase3_warehouse, tmp_path):
    cluster, dashboard = two_nodes
    backend = Backend.duckdb(tmp_path / "warehouse.duckdb")
    status, logs = submit(dashboard, [*backend.overrides, *outside_the_job(tmp_path), f"tables={PHASE3_TABLES}", "backfill.with_dependents=false"])
    assert status == "SUCCEEDED", logs
    cluster_nodes = {node.node_id for node in cluster.list_all_nodes()}
    assert nodes_in_state(backend) == cluster_nodes and len(cluster_nodes) == 2
    same_tables(Backend.duckdb(phase3_warehouse), backend)


@pytest.mark.slow
def test_on_bigquery_the_workers_read_and_stage_and_the_driver_only_commits(
    two_nodes, bigquery_emulator, storage_emulator, phase3_warehouse, tmp_path
):
    """Every worker reads its own raw files from Cloud Storage (where a local folder is refused:
    test_raw_storage), its inputs from BigQuery, and stages its own rows."""
    cluster, dashboard = two_nodes
    backend = Backend.bigquery(bigquery_emulator)
    raw_dir = upload_raw(storage_emulator)
    raw = [f"data.raw_dir={raw_dir}", f"data.lines_dir={raw_dir.rsplit('/', 1)[0]}/lines", f"data.storage.endpoint_url={storage_emulator.url}"]
    overrides = [*backend.overrides, *raw, *outside_the_job(tmp_path), f"tables={PHASE3_TABLES}", "backfill.with_dependents=false"]
    status, logs = submit(dashboard, overrides)
    assert status == "SUCCEEDED", logs
    assert nodes_in_state(backend) == {node.node_id for node in cluster.list_all_nodes()}
    same_tables(Backend.duckdb(phase3_warehouse), backend)
    moved = re.search(r"driver moved ([\d.,]+) (KB|MB) of table data for ([\d.,]+) MB of rows built \(([\d.]+)%\), and [\d.,]+ \w+ of their column profiles: the workers", " ".join(logs.split()))
    assert moved, logs
    assert float(moved[4]) < 1.0 and float(moved[3].replace(",", "")) > 20  # the driver moved under 1% of the rows' size


def test_a_level_planned_on_a_cluster_with_no_worker_cpus_yet_is_cut_for_the_cpus_it_will_reach(source, calendar):
    """A fresh autoscaling cluster: the head has no CPU and no worker has started. The level is cut
    for the CPUs the cluster reaches once grown (ray.reachable_cpus), which are asked of the
    autoscaler, not for the none alive now (one shard per CPU alive would give the autoscaler
    one shard to scale for)."""
    import ray
    from ray.cluster_utils import Cluster

    from conftest import stop_in_process_ray, token_auth_for_test_clusters
    from pipeline.planner import Fingerprinter
    from pipeline.runner import Runner, RunSettings
    from pipeline.state import RunState
    from pipeline.warehouse.duckdb import DuckDBWarehouse

    stop_in_process_ray()
    token_auth_for_test_clusters()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "dashboard_agent_listen_port": 0})
    try:
        ray.init(address=cluster.address)
        assert ray.cluster_resources().get("CPU", 0) == 0
        tables = registry()
        state = RunState()
        fingerprinter = Fingerprinter(tables, calendar, state, {n: source.fingerprints(n) for n in source.names}, {})
        spec = tables["nba_analytics.player_game_summary"]
        season = [d for d in calendar.dates if calendar.season_of[d] == "2023-24"]

        def units(reachable_cpus):
            settings = RunSettings("grow", None, 1, 0.0, False, {}, reachable_cpus=reachable_cpus)
            runner = Runner(DuckDBWarehouse(RAW_DIR_UNUSED), source, calendar, state, fingerprinter, settings, tables)
            return runner.cutter().cut(spec, season)

        assert len(units(None)) == 1  # cut for the CPUs alive: none, so one shard
        assert len(units(16)) == 16
    finally:
        ray.shutdown()
        cluster.shutdown()


RAW_DIR_UNUSED = "never-opened.duckdb"  # the cutter reads no table: the warehouse is never opened
