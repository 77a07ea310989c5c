"""The Ray Train trainer every fit runs through: ``LightGBMTrainer`` without its placement-group cleaner.

Ray Train (2.60) starts a cleaner actor beside each fit that asks the State API, every few seconds,
whether the fit's controller is alive, and removes the fit's placement group (killing its training
workers) when the answer is no. In a worker process the State API finds "its" Ray by guessing:
without ``RAY_ADDRESS`` it takes the newest Ray on the machine, and the address it reads for our
own Ray's API server (``127.0.0.1:8265``) is not served when the dashboard is off (``ray.include_dashboard``
is false by default). With another run's Ray on the same machine (two runs on one host; the test
suite on two workers), the cleaner asked that Ray, did not find our controller there, and killed a
fit mid-way: ``WorkerGroupError: A worker health check failed ... placement group was removed``,
twice in one morning of runs here, the cleaner's log saying "Found multiple active Ray instances ...
Connecting to latest cluster" and then "Detected that the Ray Train controller actor ... is dead".

Nothing is lost without it: the cleaner exists for a controller that dies while its job lives on,
and a fit's controller dies only with the run's driver, whose job's placement groups Ray removes
when the job ends.
"""

from __future__ import annotations

from ray.train.lightgbm import LightGBMTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback


class Trainer(LightGBMTrainer):
    """``LightGBMTrainer`` whose fits only their own controller can stop."""

    def _create_default_callbacks(self):
        return [c for c in super()._create_default_callbacks() if not isinstance(c, PlacementGroupCleanerCallback)]
