"""Config section: MLServer runtime: model loading, request validation."""

from __future__ import annotations

from pydantic import Field

from mainsail.config.base import StrictModel


class ServingConfig(StrictModel):
    """MLServer runtime: model loading, request validation."""

    parallel_workers: int = Field(0, ge=0, le=64)
    """MLServer inference worker processes. 0 runs inference in the server process (fastest
    for small tabular models); >0 needs uvloop<0.22 (see docs of mainsail.serving.settings)."""
    max_rows: int = Field(10_000, ge=1, le=1_000_000)
    """Largest number of rows one request may carry; larger requests get a 400."""
    feature_server_url: str | None = None
    """Feast feature server URL for requests that carry entity keys; null = such requests get a
    400 'feature server not configured'."""
    feature_timeout_s: float = Field(2.0, gt=0, le=60)
    """Timeout of one feature-server lookup."""
    drift_url: str | None = None
    """Drift sidecar URL that receives served rows (fire-and-forget); null = no feed."""
    drift_queue_size: int = Field(1000, ge=1, le=1_000_000)
    """Requests waiting for the drift feed; when full, new rows are dropped and counted."""
    drift_timeout_s: float = Field(1.0, gt=0, le=60)
    """Timeout of one POST to the drift sidecar."""
    latency_p95_budget_ms: float = Field(50.0, gt=0)
    """Budget of the 95th percentile request latency (ms), written to the model card; the
    production gate checks the p95 measured in staging against it."""
    throughput_budget_rps: float = Field(100.0, gt=0)
    """Smallest acceptable throughput (requests/s), written to the model card; the production
    gate checks the throughput measured in staging against it."""
