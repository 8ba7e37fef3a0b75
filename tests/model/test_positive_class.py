"""The configured positive class is the one every positive-class figure is about.

A text-labelled imbalanced target (`good`/`bad`, 5% `bad`) with `positive_class: bad`: PR AUC
and F1 are computed for `bad` (a constant model's PR AUC is then the `bad` share, not the `good`
share it was when the second label in sort order was taken as positive), the plots and the card
name it, and the served model's positive-class probability is the `bad` one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mainsail.config import parse_config
from mainsail.lifecycle.data import run_data_stage
from mainsail.lifecycle.run import run_training_stage

pytestmark = pytest.mark.slow


def test_text_labels_with_configured_positive_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    n = 3000
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    risk = 1.5 * frame["a"] + frame["b"] + rng.normal(0, 1.0, n)
    frame["credit"] = np.where(risk > np.quantile(risk, 0.95), "bad", "good")
    path = tmp_path / "credit.parquet"
    frame.to_parquet(path, index=False)
    cfg = parse_config(
        {
            "name": "credit",
            "data": {"path": str(path), "target": "credit", "positive_class": "bad"},
            "train": {"candidates": ["baseline", "linear"]},
            "tune": {"enabled": False},
            "evaluate": {"cv_folds": 3, "bootstrap": 200, "importance_rows": 300},
        }
    )
    data = run_data_stage(cfg)
    assert data.classes == ["good", "bad"] and data.positive_class == "bad"
    res = run_training_stage(cfg, data, tmp_path / "run")
    bad_share = float((data.y("test") == "bad").mean())
    baseline = res.test_metrics["baseline"]
    assert baseline["pr_auc"] == pytest.approx(bad_share, abs=0.02)  # was the good share (0.95)
    assert baseline["f1"] == 0.0  # a constant "good" finds no bad case (it was 0.97)
    assert res.chosen == "linear", res.reason
    assert res.final_metrics["pr_auc"] > 3 * bad_share
    proba = res.model.predict_proba(data.X("test"))  # type: ignore[union-attr]
    y_bad = (data.y("test") == "bad").to_numpy()
    assert proba[y_bad, 1].mean() > proba[~y_bad, 1].mean()  # column 1 is P(bad)
    card = yaml.safe_load(res.card_path.read_text())
    assert card["positive_class"]["label"] == "bad"
    threshold = card["metrics"]["threshold"]
    assert threshold["positive_class"] == "bad" and threshold["test_recall"] > 0.3
    assert card["metrics"]["calibration"]["log_loss_after"] <= baseline["log_loss"]
    per_class = {row["class"]: row for row in card_metrics(res.metrics_path)["per_class"]}
    assert set(per_class) == {"good", "bad"} and per_class["bad"]["support"] == y_bad.sum()
    html = res.report_path.read_text()
    assert "Per-class metrics" in html and "positive class decided by" in html


def card_metrics(path: Path) -> dict:
    import json

    return json.loads(path.read_text())["final"]
