"""Config section: feedback store, A/B analysis and the promotion controller."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from mainsail.config.base import StrictModel


class ShadowConfig(StrictModel):
    """The shadow stage before the canary: the challenger answers mirrored copies only, and the
    ramp's first step waits for this gate (see `mainsail.promotion.shadow`)."""

    enabled: bool = True
    """Start a deployed challenger in the shadow (`mainsail deploy` without `--canary`, and the
    loop demo); false starts it at the ramp's first canary step."""
    min_pairs: int = Field(200, ge=2)
    """Paired answers (rows answered by both) before the gate decides anything."""
    max_pairs: int = Field(5000, ge=2)
    """Paired answers after which a challenger not shown to pass is stopped at shadow."""
    max_disagreement: float = Field(0.15, gt=0.0, lt=1.0)
    """Largest acceptable share of answers that differ from the champion's; the challenger is
    stopped when the disagreement's always-valid interval lies above it, passes when it lies
    below (unless the labelled pairs decide first, see below)."""
    regression_tolerance: float = Field(0.1, gt=0.0)
    """Regression: two values differ when they are more than this share of the champion's value
    apart."""
    max_error_increase: float = Field(0.01, ge=0.0, lt=1.0)
    """Largest acceptable increase of the failed-request rate over the champion's (absolute)."""
    latency_tolerance: float = Field(0.5, ge=0.0)
    """Largest acceptable slow-down of the mirrored answers (mean log-latency ratio, relative;
    mirrored copies share the machine with the champion's answer, hence looser than the
    canary's guardrail)."""
    min_requests: int = Field(100, ge=2)
    """Paired requests (after the warm-up) before the gate decides: errors and latency are
    judged per request, and a request may carry many rows."""
    warmup_requests: int = Field(20, ge=0)
    """The stage's first paired requests left out of the latency comparison: a challenger that
    has just loaded its model answers its first requests slowly."""
    min_labelled: int = Field(100, ge=2)
    """Labelled paired rows before their loss delta takes part: a challenger significantly worse
    on them is stopped, one significantly better passes whatever its disagreement."""
    tau_disagreement: float = Field(0.05, gt=0.0)
    """Mixing standard deviation of the disagreement rate's confidence sequence."""

    @model_validator(mode="after")
    def _pairs_order(self) -> ShadowConfig:
        if self.max_pairs < self.min_pairs:
            raise ValueError(
                f"promotion.shadow.max_pairs ({self.max_pairs}) must be at least min_pairs "
                f"({self.min_pairs})"
            )
        return self


class PromotionConfig(StrictModel):
    """Ground-truth feedback, the always-valid A/B analysis, and how the challenger is ramped."""

    store_url: str | None = None
    """SQLAlchemy URL of the feedback store: `sqlite:///path.db` (default: `feedback.db` in the
    stack's data dir) or `postgresql+psycopg://user@host:5432/db` in production."""
    positive_label: str | None = None
    """Class label counted as positive for binary classification quality metrics; null = the
    configured `data.positive_class` (as text), else "1"."""
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    """Bound on the chance of a wrong promote/rollback per metric, however often we look."""
    tau: float | None = Field(None, gt=0.0)
    """Mixing standard deviation of the quality effect (the loss difference the test is tuned
    for); null = 0.05 for classification log loss and 10% of the champion's loss for regression."""
    min_samples: int = Field(200, ge=2)
    """Labelled outcomes per variant before any decision."""
    max_samples: int = Field(20_000, ge=10)
    """Outcomes per variant after which a challenger that is not better is rolled back."""
    ramp: list[int] = Field(default_factory=lambda: [10, 25, 50, 100])
    """Challenger traffic steps, in percent."""
    step_samples: int = Field(200, ge=1)
    """Challenger outcomes needed at each ramp step before the next."""
    promote_from: int = Field(50, ge=1, le=100)
    """Smallest challenger share at which a better challenger is promoted (it is ramped before)."""
    latency_tolerance: float = Field(0.2, ge=0.0)
    """Allowed relative slow-down of the challenger before the latency guardrail trips."""
    interval_s: float = Field(10.0, gt=0.0)
    """Seconds between two looks of `mainsail promote --watch`."""
    deploy_candidates: bool = False
    """When no challenger is deployed, deploy the version under `registry.candidate_alias` (a
    retraining run's, `mainsail run --publish --candidate`) as the next challenger: in the shadow
    when `shadow.enabled` and the backend mirrors, else at the ramp's first step. This closes the
    loop drift -> retraining -> experiment without a person (the chart's controller pod turns it
    on); off, a retrained version waits in the registry for `mainsail deploy`."""
    srm_alpha: float = Field(0.001, gt=0.0, lt=0.5)
    """Sample-ratio check: bound on the chance of pausing an experiment whose split is correct,
    however often the controller looks (always-valid sequential test of the requests per
    variant in each ramp stage against the configured weight)."""
    srm_concentration: float = Field(1000.0, gt=0.0)
    """Sample-ratio check: concentration of the Dirichlet mixture (the alternative's share
    spreads about sqrt(p (1 - p) / concentration) around the configured one; 1000 suits
    mismatches of a few percentage points)."""
    metrics_port: int | None = Field(8030, ge=1, le=65535)
    """Port where `mainsail promote --watch` serves its Prometheus metrics (sample-ratio check,
    shadow report, decisions; scraped by the local stack's Prometheus as `mainsail-promotion`);
    null serves none."""
    shadow: ShadowConfig = Field(default_factory=lambda: ShadowConfig())
    """The shadow stage before the first canary step."""

    @field_validator("ramp")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value or value != sorted(set(value)) or value[0] <= 0 or value[-1] != 100:
            raise ValueError(
                "ramp must be increasing percentages ending at 100, e.g. [10, 25, 50, 100]"
            )
        return value
