"""Config section: privacy by default: sensitive columns and how their values are hidden."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mainsail.config.base import StrictModel


class PrivacyConfig(StrictModel):
    """Which columns hold personal data, and what the stack does with their values.

    A sensitive column is never a feature: validation removes it from the rows that every later
    stage sees (split, preprocessing, Feast sources, reference sample, model card), and its
    profile in the validation report keeps counts only (no values, no ranges). Values of the
    detected kinds that still turn up in text the stack writes (a log line, an error message
    echoing a request) are hashed or dropped there (`redact`)."""

    sensitive_columns: list[str] = Field(default_factory=list)
    """Columns declared sensitive (personal data: names, emails, addresses, ...)."""
    detect: bool = True
    """Look for emails, phone numbers and card-like numbers (Luhn-valid) in text columns during
    validation; a column where at least `detect_share` of the values match is flagged in the
    report and treated as sensitive."""
    detect_share: float = Field(0.5, gt=0.0, le=1.0)
    """Share of a column's non-missing values that must match one kind to flag it."""
    detect_sample: int = Field(2000, ge=10, le=1_000_000)
    """Values per column looked at by the detector (the first ones: cheap on big tables)."""
    redact: Literal["hash", "drop"] = "hash"
    """An email, phone number or card-like number in a log line or error message becomes
    `<email:1a2b3c4d5e6f>` (`hash`: a truncated sha256, so two lines about the same value can
    still be matched) or `<email>` (`drop`)."""
