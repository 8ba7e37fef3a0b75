"""The whole training stage on the default churn config (small): artifacts, card, report,
reference sample, behavioural checks of the chosen model, and loading it in the serving env."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from mainsail.config import ProjectConfig
from mainsail.data.prepared import DataStageResult
from mainsail.lifecycle.run import STAGES, TrainingResult, run_training_stage
from mainsail.tune.search import read_log

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(
    ray_session, churn_cfg: ProjectConfig, churn_data: DataStageResult, tmp_path_factory
) -> tuple[TrainingResult, dict[str, float]]:
    run_dir = tmp_path_factory.mktemp("runs") / "run-001"
    seen: dict[str, float] = {}

    def progress(stage: str, done: float) -> None:
        assert stage in STAGES
        assert done >= seen.get(stage, 0.0), "progress only moves forward"
        seen[stage] = done

    return run_training_stage(churn_cfg, churn_data, run_dir, progress=progress), seen


def test_stage_trains_every_candidate_and_selects_one(trained, churn_cfg) -> None:
    res, seen = trained
    assert set(res.test_metrics) == {"baseline", "linear", "tree", "lightgbm", "mlp"}
    assert res.chosen in {"linear", "tree", "lightgbm", "mlp"}
    assert res.chosen in res.reason
    assert res.test_metrics[res.chosen]["roc_auc"] > 0.7
    assert res.test_metrics["baseline"]["roc_auc"] == 0.5
    # Every stage reported its full progress.
    for stage in STAGES:
        assert seen[stage] == pytest.approx(1.0, abs=1e-6), stage


def test_run_folder_layout(trained) -> None:
    res, _ = trained
    d = res.model_dir
    for name in ("model.joblib", "model_card.yaml", "metrics.json", "report.html",
                 "experiment_log.jsonl", "reference.parquet", "importance.json",
                 "feature_schema.json"):  # fmt: skip
        assert (d / name).is_file(), name
    pngs = {p.name for p in (d / "plots").glob("*.png")}
    assert {"permutation_importance.png", "confusion_matrix.png", "roc.png", "pr.png",
            "calibration.png"} <= pngs  # fmt: skip
    assert not list(d.glob("*.tmp"))
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["chosen"] == res.chosen
    assert len(metrics["cv"]["tree"]["folds"]) == 3
    log = read_log(res.log_path)
    assert len(log) == 3 and {r["family"] for r in log} == {"lightgbm"}
    assert metrics["params"]["lightgbm"] == max(log, key=lambda r: r["score"])["params"]


def test_model_card_follows_the_template_with_real_values(trained, churn_data) -> None:
    res, _ = trained
    card = yaml.safe_load(res.card_path.read_text())
    for key in ("model_name", "version", "problem_type", "metrics", "features", "training_data",
                "deployment", "intended_use", "limitations", "comparison", "class_balance",
                "lineage"):  # fmt: skip
        assert key in card, key
    assert card["model_name"] == "churn" and card["version"] == "run-001"
    primary = card["metrics"]["primary"]
    assert primary["name"] == "roc_auc"
    assert primary["test_ci"]["low"] < primary["test"] < primary["test_ci"]["high"]
    # The served model's figures: refit on train+validation, calibrated.
    assert primary["test"] == pytest.approx(res.final_metrics["roc_auc"], abs=1e-5)
    assert "train and validation rows" in card["model"]["fitted_on"]
    assert card["training_data"]["fitted_on"] == {
        "train": len(churn_data.split.train),
        "valid": len(churn_data.split.valid),
    }
    calibration = card["metrics"]["calibration"]
    assert calibration["method"] in {"sigmoid", "isotonic"}  # class weights: always calibrated
    assert calibration["ece_after"] < calibration["ece_before"]
    assert calibration["log_loss_after"] <= calibration["baseline_log_loss"]
    assert card["model"]["decision_threshold"]["objective"] == "f1"
    assert card["positive_class"]["label"] == "1"
    assert card["positive_class"]["decided_by"] == "data.positive_class"
    val = card["metrics"]["validation"]["roc_auc"]
    assert 0.5 < val["mean"] < 1 and val["std"] > 0
    assert card["deployment"] == {"endpoint": None, "latency_p95": None, "throughput": None}
    assert card["training_data"]["size"] == len(churn_data.split.train) + len(
        churn_data.split.valid
    )
    rng = card["training_data"]["date_range"]
    assert rng["start"] < rng["end"]
    assert [f["name"] for f in card["features"]] == churn_data.features
    assert card["class_balance"]["handling"] == "class weights"
    assert card["lineage"]["model_sha256"] is not None
    assert card["comparison"]["chosen"] == res.chosen
    # p-values are never rounded to 0: a tiny one reads "< 0.001"; no doubled full stop.
    for evidence in card["comparison"]["vs_baseline"].values():
        assert evidence["cv_p_value"] != 0.0
        assert isinstance(evidence["cv_p_value"], str)
    assert ".." not in card["intended_use"]


def test_report_is_self_contained(trained) -> None:
    res, _ = trained
    html = res.report_path.read_text()
    assert "Paired comparisons" in html and "Data validation" in html
    # Every section is HTML: the validation report's own sections, the split and the card as
    # tables and lists, no raw JSON dump.
    assert "<pre>" not in html and '"issues":' not in html and '"sides":' not in html
    for section in ("The served model", "CV estimate vs test", "Shift from train to test",
                    "Leakage checks", "Excluded columns" if "Excluded" in html else "Columns",
                    "Calibration (test rows)", "Decision threshold"):  # fmt: skip
        assert section in html, section
    assert "badge" in html  # the validation badge (passed / passed with warnings)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no network references"
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 5
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_sample_for_drift(trained, churn_data) -> None:
    res, _ = trained
    ref = pd.read_parquet(res.reference_path)
    assert len(ref) == min(5000, len(churn_data.split.train))
    assert set(churn_data.features) <= set(ref.columns)
    assert {"prediction", "proba_0", "proba_1"} <= set(ref.columns)
    model = joblib.load(res.model_path)
    np.testing.assert_allclose(
        model.predict_proba(ref[churn_data.features])[:, 1], ref["proba_1"], rtol=1e-9
    )


# ----------------------------------------------------------------------- behavioural checks


def _proba(res: TrainingResult, frame: pd.DataFrame) -> np.ndarray:
    return joblib.load(res.model_path).predict_proba(frame)[:, 1]


def test_invariance_region_does_not_flip_many_predictions(trained, churn_data) -> None:
    """Region has no effect in the generator: moving customers to another region must not
    change many decisions."""
    res, _ = trained
    X = churn_data.X("test").reset_index(drop=True)
    base = _proba(res, X)
    for region in ("north", "central"):
        moved = _proba(res, X.assign(region=pd.Series(region, index=X.index, dtype="string")))
        flipped = np.mean((base >= 0.5) != (moved >= 0.5))
        assert flipped < 0.1, f"{region}: {flipped:.1%} of decisions flipped"
        assert np.mean(np.abs(moved - base)) < 0.06


@pytest.mark.parametrize(
    ("column", "low", "high"),
    [
        ("support_calls", 0, 5),
        ("satisfaction_score", 9.0, 3.0),  # lower satisfaction = higher risk
        ("contract", "two-year", "month-to-month"),
    ],
)
def test_directional_risk_factors_raise_churn_probability(trained, churn_data, column, low, high):
    res, _ = trained
    X = churn_data.X("test").reset_index(drop=True)
    dtype = X[column].dtype
    p_low = _proba(res, X.assign(**{column: pd.Series(low, index=X.index, dtype=dtype)}))
    p_high = _proba(res, X.assign(**{column: pd.Series(high, index=X.index, dtype=dtype)}))
    assert np.mean(p_high - p_low) > 0.05
    assert np.mean(p_high >= p_low) > 0.8


def test_model_loads_and_predicts_in_the_serving_env(trained, churn_data, tmp_path) -> None:
    """model.joblib is unpickled where there is no Ray, Optuna, Feast or kfp."""
    res, _ = trained
    python = REPO / ".venv" / "serving" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: the serving env is part of the set-up (make envs)")
    sample = tmp_path / "rows.parquet"
    churn_data.X("test").head(50).to_parquet(sample)
    script = (
        "import sys, joblib, pandas as pd, json\n"
        f"m = joblib.load({str(res.model_path)!r})\n"
        f"p = m.predict_proba(pd.read_parquet({str(sample)!r}))[:, 1]\n"
        "bad = [x for x in ('ray', 'optuna', 'feast', 'kfp') if x in sys.modules]\n"
        "print(json.dumps({'p': p.tolist(), 'bad': bad}))\n"
    )
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["bad"] == []
    np.testing.assert_allclose(got["p"], _proba(res, churn_data.X("test").head(50)), rtol=1e-6)
