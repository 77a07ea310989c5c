"""Starting Ray: in-process and quiet on one machine, or joining a cluster (ray.address=auto)."""

from __future__ import annotations

import logging
import os

import ray
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Ray gives a new local node 30 s for its GCS to publish its port, and a fixed 30 s more for its
# raylet to register. On a busy machine (two cores shared with other jobs, a killed run's Ray still
# exiting) either can run out although nothing is wrong, and a second start succeeds (what the
# first one started shares this process's fate: it ends with the run at the latest). The GCS wait
# has a knob of Ray's own, raised here unless the operator set it; the raylet's has none.
STARTUP_TIMEOUT_MESSAGES = (
    "timed out during startup",  # the raylet's registration
    "Timed out waiting for file",  # the GCS's port file
)
GCS_PORT_WAIT_SECONDS = "90"
LOCAL_START_ATTEMPTS = 2


def start_ray(config: DictConfig) -> None:
    if ray.is_initialized():
        return
    # Ray's own usage reporting would try the network; this pipeline talks only to its warehouse.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    attempts = LOCAL_START_ATTEMPTS if config.address is None else 1  # joining a cluster starts no node
    if config.address is None:
        # Not when joining a cluster: Ray reads the same knob as its number of 1 s tries to reach a
        # GCS, and an unreachable cluster should be reported in Ray's ~20 s, not 90.
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", GCS_PORT_WAIT_SECONDS)
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
