"""The model card (YAML), filled from the run's real values.

Deployment fields (endpoint, latency_p95, throughput) are present and null: deployment fills
them in. Nothing here is a placeholder; a field with no value in this run says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mainsail.config import ProjectConfig
from mainsail.data.stage import DataStageResult
from mainsail.evaluate.compare import Selection
from mainsail.evaluate.stats import BootstrapCI

CARD_VERSION = 1


def _r(x: float | None, nd: int = 5) -> float | None:
    if x is None or not np.isfinite(x):
        return None
    return round(float(x), nd)


def _date_range(data: DataStageResult) -> dict[str, Any] | None:
    col = data.schema.event_timestamp
    if not col or col not in data.frame:
        return None
    ts = data.frame.iloc[data.split.train][col]
    return {"column": col, "start": str(ts.min()), "end": str(ts.max())}


def build_card(
    cfg: ProjectConfig,
    data: DataStageResult,
    version: str,
    selection: Selection,
    subject: str,
    test_metrics: dict[str, dict[str, float]],
    test_ci: dict[str, BootstrapCI],
    cv_summary: dict[str, dict[str, dict[str, float]]],
    model_sha256: str | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The card as a plain mapping (see the issue's template)."""
    import mainsail

    metric = selection.metric
    ci = test_ci[subject]
    cv_sub = cv_summary.get(subject, {})
    balance = data.summary.get("class_balance") if isinstance(data.summary, dict) else None
    if data.problem_type == "classification":
        handling = (
            "class weights"
            if data.class_weight
            else "random oversampling of the minority"
            if data.oversample
            else "none"
        )
    else:
        handling = "not applicable (regression)"
    comparison = {
        "rule": (
            "a candidate must beat the baseline on the primary metric with the Nadeau-Bengio "
            f"corrected resampled t-test over {cfg.evaluate.cv_folds} CV folds (one-sided "
            f"p < {cfg.evaluate.alpha}) and a paired-bootstrap test-set CI of the gain above zero; "
            "the best CV mean among those wins"
        ),
        "result": selection.reason,
        "chosen": selection.chosen,
        "eligible": selection.eligible,
        "vs_baseline": {
            c: {
                "cv_p_value": _r(v.cv_p_value),
                "test_gain": _r(v.test_diff),
                "test_gain_ci": [_r(v.test_ci[0]), _r(v.test_ci[1])],
                "mcnemar_p_value": _r(v.mcnemar_p_value),
                "significant": v.significant,
            }
            for c, v in selection.vs_baseline.items()
        },
    }
    card: dict[str, Any] = {
        "model_name": cfg.name,
        "version": version,
        "status": "selected" if selection.chosen else "rejected",
        "problem_type": data.problem_type,
        "description": cfg.description,
        "model": {"family": subject, "hyperparameters": params},
        "metrics": {
            "primary": {
                "name": metric,
                "test": _r(ci.estimate),
                "test_ci": {"low": _r(ci.low), "high": _r(ci.high), "level": ci.level},
            },
            "validation": {
                "method": f"{cfg.evaluate.cv_folds}-fold cross-validation on train+validation "
                f"rows ({data.split.strategy} split)",
                **{k: {"mean": _r(v["mean"]), "std": _r(v["std"])} for k, v in cv_sub.items()},
            },
            "test": {k: _r(v) for k, v in test_metrics[subject].items()},
        },
        "features": [
            {"name": f.name, "kind": f.kind, "dtype": f.dtype} for f in data.schema.features
        ],
        "training_data": {
            "size": len(data.split.train),
            "rows": {
                "train": len(data.split.train),
                "valid": len(data.split.valid),
                "test": len(data.split.test),
            },
            "date_range": _date_range(data),
            "target": data.target,
            "source_sha256": data.data_sha256 or None,
        },
        "deployment": {"endpoint": None, "latency_p95": None, "throughput": None},
        "intended_use": (cfg.description or f"Predict {data.target} from the features listed here")
        + ". Scores rows drawn from the same population as the training data.",
        "limitations": _limitations(data, selection),
        "comparison": comparison,
        "class_balance": {
            "handling": handling,
            "class_weight": {str(k): float(v) for k, v in (data.class_weight or {}).items()}
            or None,
            "oversample": bool(data.oversample),
            "balance": balance,
        },
        "lineage": {
            "config_sha256": cfg.digest(),
            "data_sha256": data.data_sha256 or None,
            "model_sha256": model_sha256,
            "seed": cfg.seed,
            "code_version": getattr(mainsail, "__version__", None) or _pkg_version(),
            "split_strategy": data.split.strategy,
        },
        "card_version": CARD_VERSION,
    }
    return card


def _pkg_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mainsail")
    except PackageNotFoundError:
        return None


def _limitations(data: DataStageResult, selection: Selection) -> list[str]:
    notes = [
        "Validated only on held-out rows of the same source; performance under distribution "
        "shift is unknown until the drift monitor reports.",
        "Scores are associations learnt from historical data, not causal effects.",
    ]
    if _date_range(data) is None:
        notes.append("The dataset has no event timestamp, so the training period is unknown.")
    if data.split.groups is None:
        notes.append("No entity key: repeated entities across splits cannot be ruled out.")
    if selection.chosen is None:
        notes.append("Rejected: " + selection.reason)
    return notes


def write_card(card: dict[str, Any], path: Path) -> Path:
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100))
    tmp.replace(path)
    return path
