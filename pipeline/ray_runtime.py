"""Starting Ray: in-process and quiet on one machine, or joining a cluster (ray.address=auto)."""

from __future__ import annotations

import logging
import os

import ray
from omegaconf import DictConfig


def start_ray(config: DictConfig) -> None:
    if ray.is_initialized():
        return
    # Ray's own usage reporting would try the network; this pipeline talks only to its warehouse.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
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
