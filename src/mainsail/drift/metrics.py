"""The sidecar's Prometheus metrics, in a registry of their own (names: see `METRIC_NAMES`).

Per model version and feature: p-value, corrected p-value (multiple comparisons), whether that
is significant, distance (effect size) and its floor, verdict (significant AND at least the floor)
and missing share of the latest check; the significance level and correction per version;
per model version: the whole-row verdict, how many checks in a row found drift (the alert rule
asks for several), window and reference size, the time of the last check; the label-free
performance estimate (CBPE / DLE: `mainsail_performance_*`) beside the model card's validated
figures and the calibration check; and the sidecar's own health: queue depth, rejected
batches, check errors and durations, the worker's heartbeat.
"""

from __future__ import annotations

import math
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from mainsail.drift.detectors import CheckResult
from mainsail.drift.performance import VersionPerformance

__all__ = ["METRIC_NAMES", "DriftMetrics"]

_MV = ("model", "version")


class DriftMetrics:
    """Every metric the sidecar exports."""

    def __init__(self, queue_capacity: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.p_value = Gauge(
            "mainsail_drift_feature_p_value",
            "p-value of the latest drift test of a feature (window vs reference)",
            [*_MV, "feature", "test"],
            registry=r,
        )
        self.corrected_p_value = Gauge(
            "mainsail_drift_feature_corrected_p_value",
            "p-value of the latest drift test of a feature after the multiple-testing correction",
            [*_MV, "feature", "test"],
            registry=r,
        )
        self.significant = Gauge(
            "mainsail_drift_feature_significant",
            "1 when the corrected p-value is at most the significance level, else 0",
            [*_MV, "feature"],
            registry=r,
        )
        self.distance = Gauge(
            "mainsail_drift_feature_distance",
            "Effect size of the latest drift test of a feature (KS distance; total variation "
            "distance for categories)",
            [*_MV, "feature", "test"],
            registry=r,
        )
        self.distance_threshold = Gauge(
            "mainsail_drift_feature_distance_threshold",
            "Effect-size floor of a feature's drift test: drift needs a distance at least this",
            [*_MV, "feature", "test"],
            registry=r,
        )
        self.is_drift = Gauge(
            "mainsail_drift_feature_is_drift",
            "1 when the latest check found the feature drifted (significant after the correction "
            "AND distance at least its floor), else 0",
            [*_MV, "feature"],
            registry=r,
        )
        self.significance = Gauge(
            "mainsail_drift_significance_level",
            "Level the corrected p-values are compared with, by correction (fdr, bonferroni)",
            [*_MV, "correction"],
            registry=r,
        )
        self.missing = Gauge(
            "mainsail_drift_feature_missing_ratio",
            "Share of missing values of a feature in the current window",
            [*_MV, "feature"],
            registry=r,
        )
        self.row_is_drift = Gauge(
            "mainsail_drift_row_is_drift",
            "1 when the latest check found the whole row drifted, else 0",
            _MV,
            registry=r,
        )
        self.drifted_features = Gauge(
            "mainsail_drift_drifted_features",
            "Number of features the latest check found drifted",
            _MV,
            registry=r,
        )
        self.consecutive = Gauge(
            "mainsail_drift_consecutive_drifted_checks",
            "Checks in a row (up to the latest) that found the whole row drifted",
            _MV,
            registry=r,
        )
        self.threshold = Gauge(
            "mainsail_drift_p_value_threshold",
            "Raw p-value threshold of the latest check after the multiple-testing correction",
            _MV,
            registry=r,
        )
        self.pred_p_value = Gauge(
            "mainsail_drift_prediction_p_value",
            "p-value of the latest prediction drift test",
            [*_MV, "test"],
            registry=r,
        )
        self.pred_distance = Gauge(
            "mainsail_drift_prediction_distance",
            "Test statistic of the latest prediction drift test",
            [*_MV, "test"],
            registry=r,
        )
        self.pred_is_drift = Gauge(
            "mainsail_drift_prediction_is_drift",
            "1 when the latest check found the predictions drifted (significant AND distance "
            "at least its floor), else 0",
            _MV,
            registry=r,
        )
        self.pred_distance_threshold = Gauge(
            "mainsail_drift_prediction_distance_threshold",
            "Effect-size floor of the prediction drift test",
            [*_MV, "test"],
            registry=r,
        )
        self.mmd_p_value = Gauge(
            "mainsail_drift_mmd_p_value",
            "p-value of the latest on-demand MMD test on the numeric features",
            _MV,
            registry=r,
        )
        self.mmd_is_drift = Gauge(
            "mainsail_drift_mmd_is_drift",
            "1 when the latest on-demand MMD test found drift, else 0",
            _MV,
            registry=r,
        )
        self.perf_estimate = Gauge(
            "mainsail_performance_estimate",
            "Label-free estimate of a metric over the window (CBPE: accuracy, f1, roc_auc; "
            "DLE: mae, rmse)",
            [*_MV, "metric"],
            registry=r,
        )
        self.perf_validated = Gauge(
            "mainsail_performance_validated",
            "The model card's validated test value of a metric",
            [*_MV, "metric"],
            registry=r,
        )
        self.perf_reference = Gauge(
            "mainsail_performance_reference",
            "The metric realised on the labelled calibration sample",
            [*_MV, "metric"],
            registry=r,
        )
        self.perf_rows = Gauge(
            "mainsail_performance_estimate_rows",
            "Window rows behind the latest performance estimate",
            _MV,
            registry=r,
        )
        self.calibration_error = Gauge(
            "mainsail_performance_calibration_error",
            "Expected calibration error of the scores on the calibration sample "
            "(scores=raw, or calibrated: after the isotonic map, cross-fitted)",
            [*_MV, "scores"],
            registry=r,
        )
        self.perf_reliable = Gauge(
            "mainsail_performance_reliable",
            "1 when the estimate can be trusted (calibration check passed), else 0",
            _MV,
            registry=r,
        )
        self.window_rows = Gauge(
            "mainsail_drift_window_rows",
            "Rows in the sliding window of a model version",
            _MV,
            registry=r,
        )
        self.reference_rows = Gauge(
            "mainsail_drift_reference_rows",
            "Rows of the reference sample the detectors use",
            _MV,
            registry=r,
        )
        self.last_check = Gauge(
            "mainsail_drift_last_check_timestamp_seconds",
            "Unix time of the latest completed check",
            _MV,
            registry=r,
        )
        self.checks = Counter("mainsail_drift_checks", "Completed drift checks", _MV, registry=r)
        self.check_errors = Counter(
            "mainsail_drift_check_errors", "Drift checks that failed", _MV, registry=r
        )
        self.check_duration = Histogram(
            "mainsail_drift_check_duration_seconds",
            "Time one drift check takes",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.rows_received = Counter(
            "mainsail_drift_rows_received", "Served rows accepted into the queue", _MV, registry=r
        )
        self.batches_rejected = Counter(
            "mainsail_drift_batches_rejected",
            "Batches refused (reason: invalid, too_large, no_reference, queue_full)",
            ["reason"],
            registry=r,
        )
        self.rows_dropped = Counter(
            "mainsail_drift_rows_dropped",
            "Valid rows refused because the check queue was full",
            registry=r,
        )
        self.queue_batches = Gauge(
            "mainsail_drift_queue_batches", "Batches waiting for the check worker", registry=r
        )
        self.queue_capacity = Gauge(
            "mainsail_drift_queue_capacity_batches", "Size of the check queue", registry=r
        )
        self.queue_capacity.set(queue_capacity)
        self.heartbeat = Gauge(
            "mainsail_drift_worker_heartbeat_timestamp_seconds",
            "Unix time the check worker last showed it is alive",
            registry=r,
        )
        self.heartbeat.set(time.time())

    def record(self, model: str, version: str, result: CheckResult, consecutive: int) -> None:
        """Export one check's results."""
        for f in result.features:
            if not math.isnan(f.p_value):
                self.p_value.labels(model, version, f.name, f.test).set(f.p_value)
                self.corrected_p_value.labels(model, version, f.name, f.test).set(
                    f.corrected_p_value
                )
                self.distance.labels(model, version, f.name, f.test).set(f.distance)
            self.distance_threshold.labels(model, version, f.name, f.test).set(f.min_distance)
            self.significant.labels(model, version, f.name).set(float(f.significant))
            self.is_drift.labels(model, version, f.name).set(float(f.is_drift))
            self.missing.labels(model, version, f.name).set(f.missing_ratio)
        self.significance.labels(model, version, result.correction).set(result.alpha)
        self.row_is_drift.labels(model, version).set(float(result.row_is_drift))
        self.drifted_features.labels(model, version).set(len(result.drifted_features))
        self.consecutive.labels(model, version).set(consecutive)
        self.threshold.labels(model, version).set(result.threshold)
        if result.prediction is not None:
            p = result.prediction
            self.pred_p_value.labels(model, version, p.test).set(p.p_value)
            self.pred_distance.labels(model, version, p.test).set(p.distance)
            self.pred_is_drift.labels(model, version).set(float(p.is_drift))
            self.pred_distance_threshold.labels(model, version, p.test).set(p.min_distance)
        if result.mmd is not None:
            self.mmd_p_value.labels(model, version).set(result.mmd["p_value"])
            self.mmd_is_drift.labels(model, version).set(result.mmd["is_drift"])
        if result.performance is not None:
            perf = result.performance
            for metric, value in perf["estimate"].items():
                if math.isfinite(value):
                    self.perf_estimate.labels(model, version, metric).set(value)
            self.perf_rows.labels(model, version).set(perf["rows"])
        self.last_check.labels(model, version).set(result.timestamp)
        self.checks.labels(model, version).inc()
        self.check_duration.observe(result.duration_s)

    def record_validated(
        self, model: str, version: str, perf: VersionPerformance, max_error: float
    ) -> None:
        """Export what a version's estimates are compared with (once, when it loads)."""
        for metric in perf.metrics:
            if metric in perf.validated:
                self.perf_validated.labels(model, version, metric).set(perf.validated[metric])
            value = perf.reference.get(metric)
            if value is not None and math.isfinite(value):
                self.perf_reference.labels(model, version, metric).set(value)
        reliable = True
        if perf.calibration:
            raw = perf.calibration["raw_ece"]
            calibrated = perf.calibration["calibrated_ece"]
            self.calibration_error.labels(model, version, "raw").set(raw)
            self.calibration_error.labels(model, version, "calibrated").set(calibrated)
            reliable = math.isfinite(calibrated) and calibrated <= max_error
        self.perf_reliable.labels(model, version).set(1.0 if reliable else 0.0)

    def exposition(self) -> bytes:
        """The text exposition format, as served on `/metrics`."""
        return generate_latest(self.registry)


#: Every metric family name the sidecar exports (counters with their `_total` suffix).
METRIC_NAMES = (
    "mainsail_drift_feature_p_value",
    "mainsail_drift_feature_corrected_p_value",
    "mainsail_drift_feature_significant",
    "mainsail_drift_feature_distance",
    "mainsail_drift_feature_distance_threshold",
    "mainsail_drift_feature_is_drift",
    "mainsail_drift_significance_level",
    "mainsail_drift_feature_missing_ratio",
    "mainsail_drift_row_is_drift",
    "mainsail_drift_drifted_features",
    "mainsail_drift_consecutive_drifted_checks",
    "mainsail_drift_p_value_threshold",
    "mainsail_drift_prediction_p_value",
    "mainsail_drift_prediction_distance",
    "mainsail_drift_prediction_is_drift",
    "mainsail_drift_prediction_distance_threshold",
    "mainsail_drift_mmd_p_value",
    "mainsail_drift_mmd_is_drift",
    "mainsail_performance_estimate",
    "mainsail_performance_validated",
    "mainsail_performance_reference",
    "mainsail_performance_estimate_rows",
    "mainsail_performance_calibration_error",
    "mainsail_performance_reliable",
    "mainsail_drift_window_rows",
    "mainsail_drift_reference_rows",
    "mainsail_drift_last_check_timestamp_seconds",
    "mainsail_drift_checks_total",
    "mainsail_drift_check_errors_total",
    "mainsail_drift_check_duration_seconds",
    "mainsail_drift_rows_received_total",
    "mainsail_drift_batches_rejected_total",
    "mainsail_drift_rows_dropped_total",
    "mainsail_drift_queue_batches",
    "mainsail_drift_queue_capacity_batches",
    "mainsail_drift_worker_heartbeat_timestamp_seconds",
)
