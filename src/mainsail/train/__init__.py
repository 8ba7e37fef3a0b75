"""Candidates and the training stage. Importing this package imports nothing heavy: the serving
env unpickles `mainsail.train.model` and `mainsail.train.mlp_model` without Ray, Optuna or torch."""
