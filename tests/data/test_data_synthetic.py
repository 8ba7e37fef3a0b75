"""The synthetic churn generator: deterministic by seed, realistic imbalance, a drift knob."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mainsail.data.synthetic import COLUMNS, generate_churn


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return generate_churn(20_000, seed=42)


def test_same_seed_gives_the_same_frame_byte_for_byte(base: pd.DataFrame) -> None:
    again = generate_churn(20_000, seed=42)
    assert pd.util.hash_pandas_object(again).to_numpy().tobytes() == (
        pd.util.hash_pandas_object(base).to_numpy().tobytes()
    )
    other = generate_churn(20_000, seed=43)
    assert not other["monthly_charges"].equals(base["monthly_charges"])


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_minority_share_is_between_10_and_20_percent(seed: int) -> None:
    share = generate_churn(20_000, seed=seed)["churned"].mean()
    assert 0.10 <= share <= 0.20


def test_shape_keys_and_mess(base: pd.DataFrame) -> None:
    assert tuple(base.columns) == COLUMNS
    assert not base.duplicated(["customer_id", "event_timestamp"]).any()
    assert base["event_timestamp"].is_monotonic_increasing
    assert (base["label_timestamp"] > base["event_timestamp"]).all()
    assert 3.0 < len(base) / base["customer_id"].nunique() < 5.0
    for column in ("satisfaction_score", "total_charges", "data_usage_gb", "payment_method"):
        assert base[column].isna().any(), f"{column} should have missing values"
    assert base["data_usage_gb"].max() > 10 * base["data_usage_gb"].quantile(0.99)  # outliers


def test_drift_knob_shifts_the_distributions(base: pd.DataFrame) -> None:
    drifted = generate_churn(20_000, seed=42, drift=1.0)
    assert drifted["monthly_charges"].mean() > 1.15 * base["monthly_charges"].mean()
    assert drifted["support_calls"].mean() > base["support_calls"].mean() + 1.0
    assert drifted["satisfaction_score"].mean() < base["satisfaction_score"].mean() - 1.0
    m2m = lambda f: (f["contract"] == "month-to-month").mean()  # noqa: E731
    assert m2m(drifted) > m2m(base) + 0.1
    half = generate_churn(20_000, seed=42, drift=0.5)
    means = [f["monthly_charges"].mean() for f in (base, half, drifted)]
    assert means == sorted(means), "the shift grows with the knob"
    assert drifted["churned"].mean() > base["churned"].mean()


def test_generator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rows must be positive"):
        generate_churn(0)
    with pytest.raises(ValueError, match=r"drift must be within \[0, 1\]"):
        generate_churn(10, drift=1.5)


def test_entities_argument_controls_the_number_of_customers() -> None:
    frame = generate_churn(2_000, entities=50, seed=1)
    assert frame["customer_id"].nunique() == 50
    assert np.issubdtype(frame["tenure_months"].dtype, np.integer)
