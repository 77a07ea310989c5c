"""The v5 points model: feature-store rows -> LightGBM through Ray Train; baselines; evaluation.

- :mod:`training.data`: feature-store rows with their targets, the date split, evaluation rows;
- :mod:`training.blocks`: those rows read in blocks of game dates by Ray tasks, as Ray Datasets;
- :mod:`training.baselines`: the old rules model and its core, last-10, season and prior-season averages, as code;
- :mod:`training.fit`: LightGBM through Ray Train (and the plain reference fit);
- :mod:`training.shards`: how Ray Train's workers share the blocks out (each row to one worker);
- :mod:`training.scoring`: the model and the baselines scored block by block, the intervals calibrated;
- :mod:`training.evaluate`: MAE, RMSE, within-N shares, by tier and by month; the opening weeks;
- :mod:`training.intervals`: 80 % prediction intervals and P(over a line), from validation residuals;
- :mod:`training.lines`: prop lines from ``nba_raw.pregame_roster``, edge, the side and its grade;
- :mod:`training.slate`: the predictions ``task=predict`` prints and writes as CSV;
- :mod:`training.report`: report.md and its plots;
- :mod:`training.train`: :func:`~training.train.train_and_report`, the whole training run;
- :mod:`training.predict`: predictions and grades in the warehouse;
- :mod:`training.sweep`: the multirun summary (a Hydra callback);
- :mod:`training.task`: the ``task=train`` / ``task=predict`` / ``task=grade`` functions.
"""
