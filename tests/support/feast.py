"""Helpers of the Feast tests: a small churn frame with controlled timestamps and configs for
SQLite and Redis online stores.

Everything runs against real Feast (local provider, DuckDB offline store) and the real Redis at
127.0.0.1:6379, in db 13 with a per-run project name so no other test's keys are touched.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from mainsail.config import ProjectConfig, parse_config
from mainsail.data.synthetic import generate_churn

#: Fixed "now" of the tests: data is laid out relative to it and lookups use it as clock.
T0 = datetime(2025, 6, 1, tzinfo=UTC)
REDIS_URL = "redis://127.0.0.1:6379/13"

PROFILE = ["contract", "plan", "region", "paperless_billing", "num_devices"]
ACTIVITY = ["tenure_months", "monthly_charges", "total_charges", "satisfaction_score"]


def make_config(
    online_store: str = "sqlite", project: str | None = None, **features: Any
) -> ProjectConfig:
    """A churn project with two views (profile: TTL 400d, activity: TTL 45d) and a ratio."""
    raw: dict[str, Any] = {
        "name": "churn",
        "data": {
            "path": "unused.parquet",
            "target": "churned",
            "entity_key": "customer_id",
            "event_timestamp": "event_timestamp",
            "label_timestamp": "label_timestamp",
            "drop": ["data_usage_gb", "support_calls", "late_payments", "days_since_last_login"],
        },
        "features": {
            "project": project or f"t_{uuid.uuid4().hex[:10]}",
            "online_store": online_store,
            "redis_url": REDIS_URL,
            "views": [
                {"name": "profile", "features": PROFILE, "ttl": "400d"},
                {"name": "activity", "features": ACTIVITY, "ttl": "45d"},
            ],
            "derived": [
                {
                    "name": "charge_per_month",
                    "numerator": "total_charges",
                    "denominator": "tenure_months",
                }
            ],
            **features,
        },
    }
    return parse_config(raw)


def churn_frame(rows: int = 800, entities: int = 120) -> pd.DataFrame:
    """Snapshots spread over the two years before T0 (seeded: the same frame every run)."""
    start = (T0 - timedelta(days=760)).date().isoformat()
    frame = generate_churn(rows, entities=entities, seed=7, start=start)
    return frame[frame["event_timestamp"] < pd.Timestamp(T0)].reset_index(drop=True)


def controlled_rows() -> pd.DataFrame:
    """Two customers whose latest snapshot is 1 day (FRESH) and 60 days (OLD) before T0."""
    base = churn_frame().iloc[:2].copy()
    base["customer_id"] = pd.array(["FRESH", "OLD"], dtype="string")
    base["event_timestamp"] = [
        pd.Timestamp(T0 - timedelta(days=1)),
        pd.Timestamp(T0 - timedelta(days=60)),
    ]
    base["label_timestamp"] = base["event_timestamp"] + pd.Timedelta(days=30)
    base["tenure_months"] = [10, 20]
    base["total_charges"] = [500.0, 0.0]
    base["monthly_charges"] = [50.0, 70.0]
    base["satisfaction_score"] = [8.0, 3.0]
    return base


def clock_at(moment: datetime) -> Any:
    """A clock for the lookups that always reads `moment`."""
    return lambda: moment.timestamp()
