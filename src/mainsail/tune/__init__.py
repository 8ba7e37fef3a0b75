"""Hyperparameter search (Optuna in-process or Ray Tune); see `mainsail.tune.search`."""
