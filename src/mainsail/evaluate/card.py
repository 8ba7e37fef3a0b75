"""The model card (YAML): every piece of code that writes one.

- :func:`build_card` / :func:`write_card`: the card of a run, filled from its real values.
  Deployment fields (endpoint, latency_p95, throughput) are present and null: deployment fills
  them in. Nothing here is a placeholder; a field with no value in this run says why.
- :func:`fill_deployment`: the deployment fields from a measured load run
  (`mainsail.deploy.load.measure`).
- :func:`append_promotion_decision`: each A/B decision and its evidence, appended to the card
  of the deployed version (`mainsail.promotion`).
- :func:`card_markdown`: the card for the KFP UI.

A registry version is immutable (its manifest holds the card's sha256), so a card with
deployment facts is a copy kept beside the deployment (:func:`deployed_card_path`).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.evaluate.compare import Selection, format_p
from mainsail.evaluate.stats import BootstrapCI

if TYPE_CHECKING:
    from mainsail.evaluate.results import FinalEvaluation

CARD_VERSION = 1
CARD_FILE = "model_card.yaml"


class CardError(ValueError):
    """A model card that cannot be read or filled; the message says which and why."""


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
    final: FinalEvaluation | None = None,
) -> dict[str, Any]:
    """The card as a plain mapping (see the issue's template). With `final` (a model was
    chosen), the metrics are those of the served model: refit, calibrated, thresholded."""
    import mainsail

    metric = selection.metric
    ci = final.ci if final is not None else test_ci[subject]
    subject_test = final.metrics if final is not None else test_metrics[subject]
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
            "among those, the simplest of the candidates statistically tied with the best CV "
            "estimate wins"
            + (
                f" (for this time split: the mean of the {cfg.evaluate.recent_folds} latest "
                "forward-in-time folds)"
                if data.split.strategy == "time"
                else ""
            )
        ),
        "result": selection.reason,
        "chosen": selection.chosen,
        "eligible": selection.eligible,
        "tied_with_best": selection.tied,
        "vs_baseline": {
            c: {
                "cv_p_value": format_p(v.cv_p_value),
                "test_gain": _r(v.test_diff),
                "test_gain_ci": [_r(v.test_ci[0]), _r(v.test_ci[1])],
                "mcnemar_p_value": format_p(v.mcnemar_p_value)
                if v.mcnemar_p_value is not None
                else None,
                "significant": v.significant,
            }
            for c, v in selection.vs_baseline.items()
        },
    }
    described = final.final.describe() if final is not None else None
    rows = (described or {}).get("rows") or {"train": len(data.split.train)}
    n_rows = sum(rows.values())
    fitted_on = (
        "train and validation rows (refitted after selection with the chosen hyperparameters; "
        "preprocessing fitted on the train rows)"
        if "valid" in rows
        else "train rows only (train.refit is false)"
    )
    leakage = [
        {"column": s.column, "metric": s.metric, "score": _r(s.score)}
        for s in data.report.leakage
        if s.allowed
    ]
    description = cfg.description or f"Predict {data.target} from the features listed here"
    card: dict[str, Any] = {
        "model_name": cfg.name,
        "version": version,
        "status": "selected" if selection.chosen else "rejected",
        "problem_type": data.problem_type,
        "description": cfg.description,
        "model": {
            "family": subject,
            "hyperparameters": params,
            "fitted_on": fitted_on,
            "calibration": (described or {}).get("calibration"),
            "decision_threshold": (described or {}).get("threshold"),
        },
        "positive_class": _positive(data),
        "metrics": {
            "primary": {
                "name": metric,
                "test": _r(ci.estimate),
                "test_ci": {"low": _r(ci.low), "high": _r(ci.high), "level": ci.level},
            },
            "validation": {
                "method": f"{cfg.evaluate.cv_folds}-fold cross-validation on train+validation "
                f"rows ({data.split.strategy} split"
                + (
                    f"; at most {cfg.evaluate.cv_max_rows} rows sampled"
                    if cfg.evaluate.cv_max_rows
                    else ""
                )
                + (
                    f"; forward in time, ranked by the mean of the {cfg.evaluate.recent_folds} "
                    "latest folds: recent_mean"
                    if data.split.strategy == "time"
                    else ""
                )
                + ")",
                **{k: {name: _r(value) for name, value in v.items()} for k, v in cv_sub.items()},
            },
            "test": {k: _r(v) for k, v in subject_test.items()},
            "calibration": None
            if final is None
            else {
                k: _r(v) if isinstance(v, float) else v
                for k, v in final.extra.get("calibration", {}).items()
            }
            or None,
            "threshold": None if final is None else final.extra.get("threshold"),
        },
        "warnings": [] if final is None else list(final.warnings),
        "leakage_suspects_allowed": leakage,
        # Names only: personal data that validation removed before anything was learned.
        "sensitive_columns_removed": sorted(data.report.sensitive),
        "features": [
            {"name": f.name, "kind": f.kind, "dtype": f.dtype} for f in data.schema.features
        ],
        "training_data": {
            "size": n_rows,
            "fitted_on": rows,
            "rows": {
                "train": len(data.split.train),
                "valid": len(data.split.valid),
                "test": len(data.split.test),
            },
            "date_range": _date_range(data),
            "target": data.target,
            "source_sha256": data.data_sha256 or None,
            "snapshot": data.snapshot,
        },
        "deployment": {"endpoint": None, "latency_p95": None, "throughput": None},
        "budget": {
            "latency_p95_ms": cfg.serving.latency_p95_budget_ms,
            "throughput_rps": cfg.serving.throughput_budget_rps,
        },
        "intended_use": description.rstrip(". ")
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


def _positive(data: DataStageResult) -> dict[str, Any] | None:
    """The positive class of a binary target and how it was decided."""
    if data.problem_type != "classification" or data.positive_class is None:
        return None
    return {
        "label": str(data.positive_class),
        "decided_by": data.report.positive_class_reason or "the minority class",
        "note": "PR AUC, F1, the ROC and PR plots and the decision threshold are for this class",
    }


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
    """Write the card as YAML, atomically."""
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100))
    tmp.replace(path)
    return path


def card_markdown(card: dict[str, Any], card_yaml: str) -> str:
    """The model card for the KFP UI: a title, the top-level facts, then the full YAML."""
    title = card.get("model") or card.get("name") or "model"
    lines = [f"# Model card: {title}", ""]
    for key, value in card.items():
        if isinstance(value, str | int | float | bool) or value is None:
            lines.append(f"- **{key}**: {value}")
    lines += ["", "```yaml", card_yaml.rstrip(), "```", ""]
    return "\n".join(lines)


def read_card(path: Path) -> dict[str, Any]:
    """A card file as a mapping (CardError when it is unreadable or not a mapping)."""
    try:
        card: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CardError(f"cannot read model card {path}: {err}") from None
    if not isinstance(card, dict):
        raise CardError(f"model card {path} is not a mapping")
    return card


def _write_yaml(card: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as fh:
        yaml.safe_dump(card, fh, sort_keys=False)
    Path(fh.name).replace(out)
    return out


def deployed_card_path(cfg: ProjectConfig, version: int | str) -> Path:
    """Where the deployed copy of a version's card lives (the registry copy is immutable)."""
    return cfg.stack.data_dir.resolve() / "deployments" / f"{cfg.name}-v{version}-{CARD_FILE}"


@dataclass(frozen=True)
class LoadFigures:
    """What a load run measured."""

    endpoint: str
    """URL that was loaded (the router's infer URL)."""
    latency_p50_ms: float
    """Median request latency, milliseconds."""
    latency_p95_ms: float
    """95th percentile request latency, milliseconds."""
    latency_p99_ms: float
    """99th percentile request latency, milliseconds."""
    throughput_rps: float
    """Successful requests per second."""
    requests: int
    """Requests sent."""
    errors: int
    """Requests that failed (no answer or HTTP status >= 400)."""
    duration_s: float
    """Length of the run, seconds."""
    concurrency: int
    """Requests in flight at once."""


def fill_deployment(
    card_path: Path,
    figures: LoadFigures,
    out_path: Path | None = None,
    endpoint: str | None = None,
) -> Path:
    """Write the card at `card_path` with its deployment fields from `figures` to `out_path`
    (default: in place); returns the path written. `endpoint` is the public URL written to the
    card (default: the URL that was loaded)."""
    card_path = Path(card_path)
    for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_rps"):
        value = getattr(figures, name)
        if not math.isfinite(value) or value <= 0:
            raise CardError(f"measured {name} must be a positive number, got {value!r}")
    if figures.requests <= 0 or figures.errors >= figures.requests:
        raise CardError(
            f"the load run has no successful request ({figures.requests} sent, "
            f"{figures.errors} failed); nothing to put in the model card"
        )
    card = read_card(card_path)
    if not isinstance(card.get("deployment"), dict):
        raise CardError(f"model card {card_path} has no `deployment` section")
    card["deployment"] = {
        "endpoint": endpoint or figures.endpoint,
        "latency_p95": round(figures.latency_p95_ms, 3),
        "throughput": round(figures.throughput_rps, 1),
        "units": {"latency_p95": "ms", "throughput": "requests/s"},
        "measured": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "url": figures.endpoint,
            "latency_p50_ms": round(figures.latency_p50_ms, 3),
            "latency_p99_ms": round(figures.latency_p99_ms, 3),
            "requests": figures.requests,
            "errors": figures.errors,
            "duration_s": round(figures.duration_s, 2),
            "concurrency": figures.concurrency,
        },
    }
    return _write_yaml(card, Path(out_path) if out_path is not None else card_path)


def append_promotion_decision(
    path: Path, decision: dict[str, Any], start_from: Path | None = None
) -> Path:
    """Append a promotion decision and its evidence to the card's `promotion_history` at `path`;
    a card not there yet starts as a copy of `start_from` (the registry version's card)."""
    if path.exists():
        card = read_card(path)
    elif start_from is not None and start_from.exists():
        card = read_card(start_from)
    else:
        card = {}
    card.setdefault("promotion_history", []).append(decision)
    return _write_yaml(card, path)
