"""Cloud aggregator: time series, model registry and physics checks for robot cells."""
