"""Starting Ray: a local node that times out starting (a busy machine) is started again, up to twice.

The timeout itself cannot be caused on demand, so ``ray.init`` is wrapped: its first call raises
one of Ray's own startup-timeout errors, the next ones start the real Ray."""

from __future__ import annotations

import logging

import pytest
import ray
from omegaconf import OmegaConf

from conftest import stop_in_process_ray
from pipeline import ray_runtime

RAY_TIMEOUT = Exception(
    "The current node timed out during startup. This could happen because some of the raylet failed to startup or the GCS has become overloaded."
)
GCS_PORT_TIMEOUT = RuntimeError(
    "Timed out waiting for file /tmp/ray/session_2026-12-03_09-31-07_123456_4242/gcs_server_port_0a1b2c3d"
)
LOCAL = OmegaConf.create({"address": None, "num_cpus": 1, "include_dashboard": False, "log_to_driver": False})


@pytest.fixture
def no_ray():
    stop_in_process_ray()
    if ray.is_initialized():
        ray.shutdown()
    yield
    ray.shutdown()


def failing_first(monkeypatch, errors: list[Exception]) -> list[dict]:
    """Wrap ray.init: raise ``errors`` one per call, then call the real ray.init."""
    real_init, calls = ray.init, []

    def init(**kwargs):
        calls.append(kwargs)
        if errors:
            raise errors.pop(0)
        return real_init(**kwargs)

    monkeypatch.setattr(ray_runtime.ray, "init", init)
    return calls


@pytest.mark.parametrize("timeout", [RAY_TIMEOUT, GCS_PORT_TIMEOUT], ids=["raylet registration", "GCS port file"])
def test_a_local_node_that_times_out_starting_is_started_again(no_ray, monkeypatch, caplog, timeout):
    calls = failing_first(monkeypatch, [timeout])
    with caplog.at_level(logging.WARNING, logger="pipeline.ray_runtime"):
        ray_runtime.start_ray(LOCAL)
    assert ray.is_initialized() and len(calls) == 2
    assert "Ray's local node did not start in time" in caplog.text and "attempt 2 of 3" in caplog.text
    assert ray.cluster_resources()["CPU"] == 1


def test_two_failed_starts_then_a_good_one(no_ray, monkeypatch, caplog):
    calls = failing_first(monkeypatch, [GCS_PORT_TIMEOUT, RAY_TIMEOUT])
    with caplog.at_level(logging.WARNING, logger="pipeline.ray_runtime"):
        ray_runtime.start_ray(LOCAL)
    assert ray.is_initialized() and len(calls) == 3 and "attempt 3 of 3" in caplog.text


def test_a_third_timeout_and_any_other_error_are_raised(no_ray, monkeypatch):
    calls = failing_first(monkeypatch, [RAY_TIMEOUT, GCS_PORT_TIMEOUT, RAY_TIMEOUT])
    with pytest.raises(Exception, match="timed out during startup"):
        ray_runtime.start_ray(LOCAL)
    assert len(calls) == 3 and not ray.is_initialized()

    calls = failing_first(monkeypatch, [ValueError("not a startup timeout")])
    with pytest.raises(ValueError, match="not a startup timeout"):
        ray_runtime.start_ray(LOCAL)
    assert len(calls) == 1


def test_joining_a_cluster_is_not_retried(no_ray, monkeypatch):
    calls = failing_first(monkeypatch, [RAY_TIMEOUT])
    with pytest.raises(Exception, match="timed out during startup"):
        ray_runtime.start_ray(OmegaConf.merge(LOCAL, {"address": "auto", "num_cpus": None}))
    assert len(calls) == 1
