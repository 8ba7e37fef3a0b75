"""Candidate model families: defaults, search spaces, and fitting on preprocessed arrays.

Families: `baseline` (constant predictor), `linear` (logistic / ridge regression), `tree`
(scikit-learn's histogram gradient boosting, its defaults), `lightgbm` (LightGBM's gradient
boosting, in process here; on Ray Train for large data, `mainsail.train.lgbm_ray`), `forest`
(random forest) and `mlp` (PyTorch). Tuning, cross-validation and the in-process final fit all
go through :func:`fit_arrays`, so a trial logged by the tuner is re-run by calling it again with
the logged parameters.

Every family's defaults depend on the problem type that the data stage decided (configured or
detected), never on the config's `data.problem_type` alone: a detected regression gets the
regression defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from mainsail.config import ProjectConfig

FAMILIES = ("baseline", "linear", "tree", "lightgbm", "forest", "mlp")

#: Simplicity order: among candidates whose scores are statistically tied, the simplest wins
#: (cheaper to fit, serve and explain; fewer ways to overfit a selection).
SIMPLICITY = {f: i for i, f in enumerate(FAMILIES)}

#: Family → define-by-run Optuna search space; `trial` is an `optuna.Trial`.
SearchSpace = Callable[[Any], dict[str, Any]]


def default_params(
    family: str, cfg: ProjectConfig, problem_type: str | None = None
) -> dict[str, Any]:
    """Untuned hyperparameters of a family for `problem_type` (the data stage's decision; the
    config's `data.problem_type` when not given, classification when that is unset too)."""
    kind = problem_type or cfg.data.problem_type or "classification"
    if family == "baseline":
        return {}
    if family == "linear":
        return {"C": 1.0} if kind == "classification" else {"alpha": 1.0}
    if family == "tree":
        # scikit-learn's own defaults: the untuned tree is the plain HistGradientBoosting that
        # every selection must at least match.
        return {
            "learning_rate": 0.1,
            "max_iter": 100,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 20,
            "l2_regularization": 0.0,
        }
    if family == "lightgbm":
        return {
            "learning_rate": 0.05,
            "n_estimators": 300,
            "num_leaves": 31,
            "min_child_samples": 20,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
        }
    if family == "forest":
        return {"n_estimators": 200, "max_depth": None, "min_samples_leaf": 2, "max_features": 0.5}
    if family == "mlp":
        mlp = cfg.train.mlp
        return {
            "hidden": list(mlp.hidden),
            "epochs": mlp.epochs,
            "batch_size": mlp.batch_size,
            "lr": mlp.lr,
            "dropout": mlp.dropout,
            "weight_decay": 0.0,
        }
    raise ValueError(f"unknown candidate family {family!r}; expected one of {', '.join(FAMILIES)}")


def search_space(family: str, problem_type: str, cfg: ProjectConfig) -> SearchSpace:
    """The define-by-run search space of a tunable family (used by Optuna and OptunaSearch)."""

    def linear(trial: Any) -> dict[str, Any]:
        if problem_type == "classification":
            return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}
        return {"alpha": trial.suggest_float("alpha", 1e-3, 1e3, log=True)}

    def tree(trial: Any) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "max_iter": trial.suggest_int("max_iter", 50, 400, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 64, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 100, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-4, 10.0, log=True),
        }

    def lightgbm(trial: Any) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "n_estimators": trial.suggest_int("n_estimators", 50, 500, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        }

    def forest(trial: Any) -> dict[str, Any]:
        return {
            "n_estimators": trial.suggest_int("n_estimators", 50, 300, log=True),
            "max_depth": trial.suggest_int("max_depth", 3, 20),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20, log=True),
            "max_features": trial.suggest_float("max_features", 0.2, 1.0),
        }

    def mlp(trial: Any) -> dict[str, Any]:
        width = trial.suggest_categorical("width", [16, 32, 64, 128])
        depth = trial.suggest_int("depth", 1, 3)
        return {
            "hidden": [int(width)] * int(depth),
            "epochs": cfg.train.mlp.epochs,
            "batch_size": cfg.train.mlp.batch_size,
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        }

    spaces: dict[str, SearchSpace] = {
        "linear": linear,
        "tree": tree,
        "lightgbm": lightgbm,
        "forest": forest,
        "mlp": mlp,
    }
    if family not in spaces:
        raise ValueError(
            f"candidate family {family!r} cannot be tuned; tunable: {', '.join(spaces)}"
        )
    return spaces[family]


def lightgbm_params(params: dict[str, Any], problem_type: str, seed: int, threads: int) -> dict:
    """LightGBM's own parameters for the family's hyperparameters: deterministic, quiet, row
    subsampling switched on when `subsample` < 1 (LightGBM ignores it without a frequency)."""
    return {
        **params,
        "subsample_freq": 1 if float(params.get("subsample", 1.0)) < 1.0 else 0,
        "random_state": seed,
        "n_jobs": threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def make_estimator(
    family: str, params: dict[str, Any], problem_type: str, seed: int, threads: int = 1
) -> Any:
    """An unfitted scikit-learn-API estimator of a family (every family but `mlp`)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    clf = problem_type == "classification"
    if family == "baseline":
        return DummyClassifier(strategy="prior") if clf else DummyRegressor(strategy="mean")
    if family == "linear":
        if clf:
            return LogisticRegression(C=params["C"], max_iter=2000, random_state=seed)
        return Ridge(alpha=params["alpha"], random_state=seed)
    if family == "tree":
        cls = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        # Fixed iterations (no internal early stopping) so a trial is a pure function of params.
        return cls(**params, early_stopping=False, random_state=seed)
    if family == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        lgbm = LGBMClassifier if clf else LGBMRegressor
        return lgbm(**lightgbm_params(params, problem_type, seed, threads))
    if family == "forest":
        cls = RandomForestClassifier if clf else RandomForestRegressor
        return cls(**params, n_jobs=1, random_state=seed)
    raise ValueError(f"no scikit-learn estimator for family {family!r}")


def sample_weights(y: np.ndarray, class_weight: dict[Any, float] | None) -> np.ndarray | None:
    """Per-row weights from per-class weights (None when no class weighting)."""
    if not class_weight:
        return None
    lookup = {str(k): float(v) for k, v in class_weight.items()}
    missing = sorted({str(v) for v in np.unique(y)} - set(lookup))
    if missing:
        raise ValueError(f"class_weight has no weight for classes {missing}")
    return np.array([lookup[str(v)] for v in y.tolist()], dtype=np.float64)


def oversample_indices(y: np.ndarray, seed: int) -> np.ndarray:
    """Row positions that repeat random minority rows until every class has the majority's count."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    target = counts.max()
    parts = []
    for cls, count in zip(classes, counts, strict=True):
        idx = np.flatnonzero(y == cls)
        parts.append(idx)
        if count < target:
            parts.append(rng.choice(idx, target - count, replace=True))
    return np.sort(np.concatenate(parts), kind="stable")


def fit_arrays(
    family: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    *,
    problem_type: str,
    seed: int,
    sample_weight: np.ndarray | None = None,
    X_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    threads: int = 1,
) -> Any:
    """Fit one family on preprocessed arrays; returns an object with predict (and predict_proba).

    The MLP uses `X_valid`/`y_valid` for early stopping (it holds out 10% of `X` when they are
    not given; a refit sets `patience` above `epochs` so that every epoch runs)
    and trains in this process; large final fits train on Ray Train instead
    (:mod:`mainsail.train.mlp_ray`, :mod:`mainsail.train.lgbm_ray`).
    """
    if family == "mlp":
        from mainsail.train.mlp_model import MLPModel, MLPParams, TargetCoding
        from mainsail.train.torch_model import train_mlp

        if X_valid is None or y_valid is None:
            X, y, sample_weight, X_valid, y_valid = _holdout(X, y, sample_weight, seed)
        mlp_params = MLPParams.from_dict(params)
        coding = TargetCoding.fit(y, problem_type)
        fit = train_mlp(
            X,
            y,
            X_valid,
            y_valid,
            coding,
            mlp_params,
            seed=seed,
            sample_weight=sample_weight,
            on_epoch=on_epoch,
        )
        model = MLPModel(fit.state, X.shape[1], mlp_params, coding)
        model.history = fit.history
        return model
    est = make_estimator(family, params, problem_type, seed, threads)
    if sample_weight is not None and family != "baseline":
        est.fit(X, y, sample_weight=sample_weight)
    else:
        est.fit(X, y)
    return est


def _holdout(
    X: np.ndarray, y: np.ndarray, w: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.random(len(X)) < 0.1
    w_fit = None if w is None else w[~mask]
    return X[~mask], y[~mask], w_fit, X[mask], y[mask]


def mlp_params_dict(params: dict[str, Any]) -> dict[str, Any]:
    """Full MLP parameter set (defaults filled in) as plain JSON-safe values."""
    from mainsail.train.mlp_model import MLPParams

    values = asdict(MLPParams.from_dict(params))
    values["hidden"] = list(values["hidden"])
    return values


def candidate_list(cfg: ProjectConfig) -> list[str]:
    """Trained families in config order, the baseline first and always present."""
    fams = [c for c in cfg.train.candidates if c != "baseline"]
    return ["baseline", *dict.fromkeys(fams)]


def initial_params(
    cfg: ProjectConfig, families: list[str], problem_type: str | None = None
) -> dict[str, dict[str, Any]]:
    """Each family's default hyperparameters (tuning replaces those of the families it tuned)."""
    params = {f: default_params(f, cfg, problem_type) for f in families}
    if "mlp" in params:
        params["mlp"] = mlp_params_dict(params["mlp"])
    return params
