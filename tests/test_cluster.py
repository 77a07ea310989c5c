"""Running on a Ray cluster: the launcher config Ray itself accepts."""

from __future__ import annotations

import yaml

from conftest import PROJECT_ROOT


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
