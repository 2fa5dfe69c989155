"""Pure functions over samples and results tables: distances, aggregation, thresholds, plots."""
