"""nba-pipeline: box scores to validated warehouse tables, a feature store and a points model."""
