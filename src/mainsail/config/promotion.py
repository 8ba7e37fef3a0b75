"""Config section: feedback store, A/B analysis and the promotion controller."""

from __future__ import annotations

from pydantic import Field, field_validator

from mainsail.config.base import StrictModel


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

    @field_validator("ramp")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value or value != sorted(set(value)) or value[0] <= 0 or value[-1] != 100:
            raise ValueError(
                "ramp must be increasing percentages ending at 100, e.g. [10, 25, 50, 100]"
            )
        return value
