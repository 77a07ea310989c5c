"""The fits' trainer leaves out Ray Train's placement-group cleaner (training/ray_trainer.py says why:
with another Ray on the machine it took a live fit for dead and killed it)."""

from __future__ import annotations

import ray.train
from ray.train.lightgbm import LightGBMTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

from training.ray_trainer import Trainer


def callback_types(trainer_class, tmp_path) -> set[type]:
    trainer = trainer_class(
        lambda config: None, scaling_config=ray.train.ScalingConfig(num_workers=1), run_config=ray.train.RunConfig(storage_path=str(tmp_path))
    )
    return {type(c) for c in trainer._create_default_callbacks()}


def test_the_fits_trainer_has_every_default_callback_but_the_placement_group_cleaner(tmp_path):
    ray_default = callback_types(LightGBMTrainer, tmp_path)
    assert PlacementGroupCleanerCallback in ray_default  # the pinned Ray still starts one per fit
    assert callback_types(Trainer, tmp_path) == ray_default - {PlacementGroupCleanerCallback}
