"""Config section: content-addressed snapshots of each run's training data in the registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mainsail.config.base import StrictModel


class SnapshotConfig(StrictModel):
    """Each run's training data, stored as parquet in the registry bucket under its sha256
    (stored once however many runs use it), referenced from lineage.json and the model card, so
    that `mainsail data reproduce RUN` can run again from the snapshot alone."""

    mode: Literal["auto", "always", "never"] = "auto"
    """`auto`: store the snapshot when the registry can be reached, else run without one (the
    run says so); `always`: a run whose snapshot cannot be stored fails before training;
    `never`: no snapshot."""
    prefix: str = Field("_data/", pattern=r"^([A-Za-z0-9._-]+/)+$")
    """Key prefix of the snapshots under `registry.prefix` (ends with `/`): each snapshot is
    `<prefix>sha256/<digest>.parquet`. The default starts with `_`, which no model name does,
    so it never meets a model's folder."""
