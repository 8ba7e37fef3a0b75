"""Reusable test helpers for the registry and serving tests (and anyone who needs a model).

`build_churn_artifact(folder)` writes a complete model artifact, as training writes one: a
scikit-learn Pipeline (ColumnTransformer + LogisticRegression) on the synthetic churn data,
its feature schema, card, metrics, report, drift reference, calibration sample, lineage and a
plot. Only
scikit-learn objects are pickled, so the serving env unpickles it without our test code.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mainsail.data import synthetic
from mainsail.data.schema import FeatureSchema, FeatureSpec
from mainsail.data.synthetic import generate_churn
from mainsail.demos.churn import churn_schema
from mainsail.serving.v2client import v2_inputs  # noqa: F401  (re-exported for the tests)

# The generator's columns by kind, in its column order.
FEATURES = list(synthetic.FEATURES)
NUMERIC = list(synthetic.NUMERIC)
CATEGORICAL = list(synthetic.CATEGORICAL)
BOOLEAN = list(synthetic.BOOLEAN)


def churn_frame(rows: int = 1500, seed: int = 7) -> pd.DataFrame:
    """The synthetic churn table used by these tests (deterministic)."""
    return generate_churn(rows, seed=seed)


def _schema(train: pd.DataFrame) -> FeatureSchema:
    specs = []
    for name in FEATURES:
        col = train[name]
        share = float(col.isna().mean())
        if name in NUMERIC:
            specs.append(
                FeatureSpec(
                    name=name,
                    kind="numeric",
                    dtype=str(col.dtype),
                    nullable=share > 0,
                    min=float(col.min()),
                    max=float(col.max()),
                    missing_share=share,
                )
            )
        elif name in CATEGORICAL:
            cats = sorted(str(v) for v in col.dropna().unique())
            specs.append(
                FeatureSpec(
                    name=name,
                    kind="categorical",
                    dtype=str(col.dtype),
                    nullable=share > 0,
                    categories=cats,
                    missing_share=share,
                )
            )
        else:
            specs.append(
                FeatureSpec(
                    name=name,
                    kind="boolean",
                    dtype=str(col.dtype),
                    nullable=True,
                    missing_share=share,
                )
            )
    return churn_schema(specs)


def build_churn_pipeline() -> Pipeline:
    """Raw churn features -> churn probability (only scikit-learn objects)."""
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(
                        missing_values=pd.NA, strategy="constant", fill_value="__missing__"
                    ),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                CATEGORICAL,
            ),
            (
                "bool",
                make_pipeline(
                    SimpleImputer(missing_values=pd.NA, strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                BOOLEAN,
            ),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500, random_state=0))])


def build_churn_artifact(folder: Path, *, rows: int = 1500, seed: int = 7) -> Path:
    """Write a complete churn model artifact into `folder` and return it."""
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    frame = churn_frame(rows, seed)
    cut = int(len(frame) * 0.8)
    train, test = frame.iloc[:cut], frame.iloc[cut:]
    model = build_churn_pipeline().fit(train[FEATURES], train["churned"])
    proba = model.predict_proba(test[FEATURES])
    auc = float(roc_auc_score(test["churned"], proba[:, 1]))
    predicted = model.predict(test[FEATURES])
    accuracy = float((predicted == test["churned"].to_numpy()).mean())
    joblib.dump(model, folder / "model.joblib")
    _schema(train).save(folder / "feature_schema.json")
    (folder / "metrics.json").write_text(
        json.dumps({"test": {"roc_auc": auc, "rows": len(test)}}, indent=2)
    )
    (folder / "model_card.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "churn",
                "problem_type": "classification",
                "metrics": {"test": {"roc_auc": auc, "accuracy": accuracy}},
            }
        )
    )
    # The held-out rows with their target and the model's outputs, as training writes them
    # (the drift sidecar's label-free performance estimate is fitted on them).
    calibration = test[FEATURES].reset_index(drop=True).copy()
    calibration["prediction"] = predicted
    for j, c in enumerate(model.classes_.tolist()):
        calibration[f"proba_{c}"] = proba[:, j]
    calibration["churned"] = test["churned"].to_numpy()
    calibration.to_parquet(folder / "calibration.parquet")
    (folder / "lineage.json").write_text(
        json.dumps({"data_sha256": "0" * 64, "seed": seed, "code_version": "test"})
    )
    (folder / "report.html").write_text(f"<html><body><p>roc_auc {auc:.3f}</p></body></html>\n")
    # A random sample of the training rows, as training writes it: the rows are in time order, and
    # the first ones (short tenure) would make a reference that fresh traffic always drifts from.
    train[FEATURES].sample(n=min(200, len(train)), random_state=seed).to_parquet(
        folder / "reference.parquet"
    )
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "plots" / "roc.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    return folder


IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def build_iris_artifact(folder: Path) -> Path:
    """An all-numeric artifact for the matrix layout (one [rows, 4] `features` input): iris,
    an imputer and a logistic regression; `petal_width` may be null. Unsealed."""
    import joblib
    from sklearn.datasets import load_iris

    iris = load_iris()
    frame = pd.DataFrame(iris.data, columns=IRIS_FEATURES)
    model = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=1000, random_state=0))
    model.fit(frame, iris.target)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    specs = [
        FeatureSpec(
            name=name,
            kind="numeric",
            dtype="float64",
            nullable=name == "petal_width",
            min=float(frame[name].min()),
            max=float(frame[name].max()),
        )
        for name in IRIS_FEATURES
    ]
    FeatureSchema(
        features=specs,
        target="species",
        problem_type="classification",
        classes=[str(c) for c in range(3)],
    ).save(folder / "feature_schema.json")
    return folder


def expected_proba(folder: Path, frame: pd.DataFrame) -> np.ndarray:
    """Positive-class probabilities computed in-process from the artifact's pickle."""
    import joblib

    model = joblib.load(folder / "model.joblib")
    return np.asarray(model.predict_proba(frame[FEATURES])[:, 1])


class DriftSink:
    """A real HTTP server standing in for the drift sidecar: records POST /v1/rows bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                sink.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def rows(self) -> int:
        return sum(len(b["rows"]) for b in list(self.bodies))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
