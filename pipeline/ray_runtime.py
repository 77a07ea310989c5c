"""Starting Ray: in-process and quiet on one machine, or joining a cluster (ray.address=auto)."""

from __future__ import annotations

import logging
import os

import ray
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Ray gives a new local node 30 s for each of its processes to publish its port (the GCS first),
# and a fixed 30 s more for its raylet to register. On a busy machine (two cores shared with other
# jobs, a killed run's Ray still exiting) a start can run out of that time although nothing is wrong
# with the run. Seen here: the raylet late, and a GCS that never wrote its port file or any log
# (waiting 90 s did not help); each time a new start in the same process succeeded (what a failed
# start left shares this process's fate: it ends with the run at the latest).
STARTUP_TIMEOUT_MESSAGES = (
    "timed out during startup",  # the raylet's registration
    "Timed out waiting for file",  # a process's port file (seen: the GCS's)
)
LOCAL_START_ATTEMPTS = 3


def start_ray(config: DictConfig) -> None:
    if ray.is_initialized():
        return
    # Ray's own usage reporting would try the network; this pipeline talks only to its warehouse.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    attempts = LOCAL_START_ATTEMPTS if config.address is None else 1  # joining a cluster starts no node
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                # Without an address, a Ray of this run's own: never one that another run on this
                # machine started (Ray would join the newest, which may be shutting down as that run ends).
                address=config.address or "local",
                num_cpus=config.num_cpus if config.address is None else None,
                include_dashboard=config.include_dashboard,
                log_to_driver=config.log_to_driver,
                logging_level=logging.ERROR,  # Ray's own notices (e.g. about token auth on a local cluster) stay in its session logs
                configure_logging=True,
            )
            return
        except Exception as error:  # Ray raises a bare Exception for this
            if not any(message in str(error) for message in STARTUP_TIMEOUT_MESSAGES) or attempt == attempts:
                raise
            log.warning("Ray's local node did not start in time (%s): starting it again (attempt %d of %d)", error, attempt + 1, attempts)
            ray.shutdown()


@ray.remote
def _import_worker_module() -> None:
    import pipeline.runner.worker  # noqa: F401 - importing is the point


def warm_workers() -> list[ray.ObjectRef]:
    """Have a worker per CPU alive import what a shard's task needs, while the driver plans.

    A job's workers are its own: a Ray that stays up between runs starts new ones for every run,
    and each pays for its imports (Polars, Arrow, the table modules) with its first task. The
    refs are never waited on; a task that fails here fails again, with its error, in the run."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return [_import_worker_module.remote() for _ in range(cpus)]
