"""A realistic synthetic customer-churn table, deterministic by seed, with a drift knob.

Each row is a monthly snapshot of one customer: numeric usage and billing features, a few
categorical attributes, missing values, outliers and a churn label around 10-20% positive.
`drift` (0..1) shifts the distributions the way production data drifts: heavier usage, more
support calls, a different contract mix, a new payment method share, and prices going up; and
it changes the relationship between features and churn (concept drift), so retraining pays off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONTRACTS = np.array(["month-to-month", "one-year", "two-year"])
PAYMENTS = np.array(["card", "bank-transfer", "electronic-check", "mailed-check"])
PLANS = np.array(["basic", "standard", "premium"])
REGIONS = np.array(["north", "south", "east", "west", "central"])

#: Feature columns by kind (the churn model's inputs; demos and tests build its schema from them).
NUMERIC = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "data_usage_gb",
    "support_calls",
    "late_payments",
    "days_since_last_login",
    "num_devices",
    "satisfaction_score",
)
CATEGORICAL = {"contract": CONTRACTS, "payment_method": PAYMENTS, "plan": PLANS, "region": REGIONS}
BOOLEAN = ("paperless_billing",)
FEATURES = (*NUMERIC, *CATEGORICAL, *BOOLEAN)

#: The generated columns, in order. `churned` is the target; `customer_id` the entity key;
#: `event_timestamp` the snapshot time and `label_timestamp` when the label became known.
COLUMNS = ("customer_id", "event_timestamp", "label_timestamp", *FEATURES, "churned")


def generate_churn(
    rows: int = 20_000,
    *,
    entities: int | None = None,
    drift: float = 0.0,
    seed: int = 42,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    """Generate `rows` customer snapshots for `entities` customers (about rows/4 by default).

    The same arguments always give the same frame, byte for byte.
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be within [0, 1], got {drift}")
    rng = np.random.default_rng(seed)
    n_ent = entities or max(10, rows // 4)

    # Per-customer traits, then one row per snapshot of a random customer.
    signup_offset = rng.integers(0, 36, n_ent)  # months before the start the customer joined
    ent_contract = rng.choice(
        CONTRACTS, n_ent, p=_mix([0.55, 0.25, 0.20], [0.75, 0.15, 0.10], drift)
    )
    ent_payment = rng.choice(
        PAYMENTS, n_ent, p=_mix([0.35, 0.25, 0.30, 0.10], [0.20, 0.15, 0.55, 0.10], drift)
    )
    ent_plan = rng.choice(PLANS, n_ent, p=[0.45, 0.35, 0.20])
    ent_region = rng.choice(REGIONS, n_ent, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    ent_devices = rng.poisson(2.0, n_ent) + 1
    ent_paperless = rng.random(n_ent) < 0.6

    ent = rng.integers(0, n_ent, rows)
    month = rng.integers(0, 24, rows)
    day = rng.integers(0, 28, rows)
    seconds = rng.integers(0, 86_400, rows)
    base = pd.Timestamp(start, tz="UTC")
    event_ts = (
        base + pd.to_timedelta(month * 30 + day, unit="D") + pd.to_timedelta(seconds, unit="s")
    )
    tenure = signup_offset[ent] + month + 1

    plan_price = pd.Series(ent_plan[ent]).map({"basic": 30.0, "standard": 60.0, "premium": 95.0})
    monthly = plan_price.to_numpy() * (1.0 + 0.25 * drift) + rng.normal(0, 8, rows)
    monthly = np.round(np.clip(monthly, 10, None), 2)
    total = np.round(monthly * tenure * rng.uniform(0.9, 1.05, rows), 2)
    usage = rng.gamma(2.0 + 2.0 * drift, 12.0, rows)
    support = rng.poisson(0.8 + 1.5 * drift, rows)
    late = rng.poisson(0.3, rows)
    login_gap = rng.exponential(6.0 + 10.0 * drift, rows)
    satisfaction = np.clip(np.round(rng.normal(7.2 - 1.5 * drift, 1.6, rows)), 1, 10)

    contract = ent_contract[ent]
    payment = ent_payment[ent]

    # The churn hazard: what a real churn model learns (short contracts, unhappy customers,
    # support trouble, late payments, inactivity, high prices, short tenure).
    logit = (
        -2.65
        + 1.1 * (contract == "month-to-month")
        - 0.8 * (contract == "two-year")
        + 0.35 * support
        + 0.45 * late
        - 0.32 * (satisfaction - 7)
        + 0.035 * login_gap
        + 0.012 * (monthly - 60)
        - 0.025 * np.minimum(tenure, 48)
        + 0.4 * (payment == "electronic-check")
        + rng.normal(0, 0.35, rows)
    )
    # Concept drift: under drift the reasons for churning change too (a competitor in the east,
    # multi-device households leaving, month-to-month customers staying), so a model trained
    # before the drift is not just extrapolating but wrong, and retraining pays off.
    logit = logit + drift * (
        1.4 * (ent_region[ent] == "east")
        + 0.5 * (ent_devices[ent] - 3)
        - 0.9 * (contract == "month-to-month")
    )
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    label_ts = event_ts + pd.to_timedelta(30, unit="D")

    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([f"C{i:07d}" for i in ent], dtype="string"),
            "event_timestamp": event_ts,
            "label_timestamp": label_ts,
            "tenure_months": tenure.astype(np.int64),
            "monthly_charges": monthly,
            "total_charges": total,
            "data_usage_gb": np.round(usage, 3),
            "support_calls": support.astype(np.int64),
            "late_payments": late.astype(np.int64),
            "days_since_last_login": np.round(login_gap, 2),
            "num_devices": ent_devices[ent].astype(np.int64),
            "satisfaction_score": satisfaction,
            "contract": pd.Series(contract, dtype="string"),
            "payment_method": pd.Series(payment, dtype="string"),
            "plan": pd.Series(ent_plan[ent], dtype="string"),
            "region": pd.Series(ent_region[ent], dtype="string"),
            "paperless_billing": pd.Series(ent_paperless[ent], dtype="boolean"),
            "churned": churned,
        }
    )
    # Real data is messy: missing values (not at random for satisfaction) and a few outliers.
    _blank(frame, "satisfaction_score", rng.random(rows) < 0.04 + 0.06 * (support > 2))
    _blank(frame, "total_charges", rng.random(rows) < 0.01)
    _blank(frame, "data_usage_gb", rng.random(rows) < 0.03)
    _blank(frame, "payment_method", rng.random(rows) < 0.02)
    outliers = rng.random(rows) < 0.003
    frame.loc[outliers, "data_usage_gb"] = np.round(rng.uniform(800, 5000, int(outliers.sum())), 3)

    # One snapshot per customer and timestamp: drop the rare exact collisions.
    frame = frame.drop_duplicates(["customer_id", "event_timestamp"]).sort_values(
        ["event_timestamp", "customer_id"], kind="stable"
    )
    return frame.reset_index(drop=True)[list(COLUMNS)]


def _mix(p0: list[float], p1: list[float], w: float) -> np.ndarray:
    mixed = (1.0 - w) * np.asarray(p0) + w * np.asarray(p1)
    return mixed / mixed.sum()


def _blank(frame: pd.DataFrame, column: str, mask: np.ndarray) -> None:
    frame.loc[mask, column] = pd.NA
