"""Config section: Drift sidecar: window, detectors, thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mainsail.config.base import StrictModel
from mainsail.core import naming


class DriftConfig(StrictModel):
    """Drift sidecar: window, detectors, thresholds."""

    host: str = "127.0.0.1"
    """Address the sidecar's HTTP server binds to."""
    port: int = Field(default=8010, ge=0, le=65535)
    """TCP port of the sidecar (rows in, `/metrics` out); 0 picks a free port."""
    token_env: str = Field(default=naming.ENV_DRIFT_TOKEN, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the bearer token for the endpoints that serve raw rows or
    start work (`GET /v1/window`, `POST /v1/check`); refused while it is unset. `POST /v1/rows`
    (the runtime's feed) takes loopback callers (the serving pod) or the token."""
    window_export: bool = False
    """Serve the current window of raw served rows at `GET /v1/window` (the retrain trigger
    fetches it as the retraining run's input). Off by default: served rows are personal data
    as often as not; while off the endpoint answers 403 and names this setting."""
    reference: str = "s3://mainsail-models/{model}/versions/{version}"
    """Folder of each model version's reference sample and feature schema: a local path or
    `s3://bucket/prefix`, with `{model}` and `{version}` filled in per batch (the registry's
    version folder; a path without placeholders serves every model version from one folder)."""
    reference_file: str = "reference.parquet"
    """File name of the reference sample inside the version folder."""
    schema_file: str = "feature_schema.json"
    """File name of the feature schema (`mainsail.data.schema.FeatureSchema`) in the version
    folder."""
    prediction_column: str = "prediction"
    """Column of the reference sample holding the model's predictions (the same kind of value the
    serving runtime posts: labels or scores); when the sample lacks it, the first full window of
    served predictions becomes the prediction baseline."""
    calibration_file: str = "calibration.parquet"
    """File name of the labelled calibration sample in the version folder (held-out rows with
    the target, `prediction` and `proba_<class>`; written by training): what the label-free
    performance estimate is fitted and checked on. A version without it gets no estimate."""
    card_file: str = "model_card.yaml"
    """File name of the model card in the version folder: its `metrics.test` are the validated
    figures the estimate is exported beside (and alerted against)."""
    performance: bool = True
    """Estimate each version's performance from its served scores (CBPE for binary
    classifiers: expected accuracy, F1, ROC AUC; DLE for regressors: expected MAE, RMSE)."""
    recalibrate: bool = True
    """CBPE: recalibrate the scores with an isotonic map fitted on the calibration sample
    (false: trust the model's own probabilities)."""
    calibration_max_error: float = Field(default=0.05, gt=0.0, lt=1.0)
    """CBPE: largest expected calibration error (cross-fitted, on the calibration sample) at
    which the estimate is trusted; above it `mainsail_performance_reliable` is 0 and the
    performance alert stays silent."""
    reference_rows: int = Field(default=5000, ge=50, le=1_000_000)
    """Most reference rows used by the detectors (a seeded subsample of a larger sample)."""
    window_rows: int = Field(default=1000, ge=20, le=1_000_000)
    """Rows in the sliding window compared with the reference (the newest served rows)."""
    min_rows: int = Field(default=200, ge=10)
    """No check runs before the window holds this many rows."""
    check_every_rows: int = Field(default=1000, ge=1)
    """A check runs after this many new rows have arrived ..."""
    check_interval_s: float = Field(default=30.0, gt=0)
    """... or this many seconds after the previous check when any new row arrived."""
    p_value: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Significance level of the corrected p-values (the false discovery rate with `fdr`, the
    family-wise error rate with `bonferroni`) of each check."""
    correction: Literal["bonferroni", "fdr"] = "fdr"
    """Multiple-testing correction across features, used for per-feature and whole-row verdicts:
    `fdr` (Benjamini-Hochberg) or `bonferroni` (stricter: any false alarm, not their share)."""
    min_distance_numeric: float = Field(default=0.05, ge=0.0, le=1.0)
    """Effect-size floor of numeric features and predicted scores: a feature is drifted only when
    significant AND its KS distance (largest gap between the reference's and the window's
    cumulative distributions) is at least this; with large windows every negligible difference
    is significant, the floor is what keeps them quiet. 0 = significance alone."""
    min_distance_categorical: float = Field(default=0.05, ge=0.0, le=1.0)
    """Effect-size floor of categorical features and predicted labels: total variation distance
    (share of the rows that would have to change category) that a significant change must
    reach to count as drift."""
    min_distance_features: dict[str, float] = Field(default_factory=dict)
    """Per-feature floors overriding the two above, by feature name (`prediction` for the
    prediction test)."""
    row_test: Literal["derived", "tabular"] = "derived"
    """Whole-row verdict: `derived` applies TabularDrift's correction to the per-feature p-values
    already computed (same answer, one pass); `tabular` runs alibi-detect's TabularDrift again."""
    mmd_permutations: int = Field(default=100, ge=10, le=10_000)
    """Permutations of the on-demand MMD test (`POST /v1/check?mmd=1`)."""
    mmd_max_rows: int = Field(default=500, ge=20, le=20_000)
    """Rows of reference and window (each) used by the MMD test; its cost grows quadratically."""
    queue_batches: int = Field(default=256, ge=1, le=1_000_000)
    """Batches waiting for the check worker; a POST beyond it gets 503 and is counted as dropped."""
    max_batch_rows: int = Field(default=10_000, ge=1)
    """Largest batch one POST may carry (larger ones get 413)."""
    seed: int = 42
    """Seed of the reference subsample and the MMD permutations."""

    @model_validator(mode="after")
    def _floors_are_distances(self) -> DriftConfig:
        bad = {k: v for k, v in self.min_distance_features.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"drift.min_distance_features must lie in [0, 1], got {bad}")
        return self

    @model_validator(mode="after")
    def _window_fits(self) -> DriftConfig:
        if self.min_rows > self.window_rows:
            raise ValueError(
                f"drift.min_rows ({self.min_rows}) must not exceed drift.window_rows "
                f"({self.window_rows})"
            )
        return self
