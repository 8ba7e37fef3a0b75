"""Candidates and the training stage. Importing this package imports nothing heavy: the serving
env unpickles `mainsail.train.model` and `mainsail.train.torch_model` without Ray or Optuna."""
