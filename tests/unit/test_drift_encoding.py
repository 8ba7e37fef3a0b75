"""Served batches are checked before anything is stored, and encoded like the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mainsail.demos.churn import churn_rows, churn_schema
from mainsail.drift.encoding import BatchError, Encoder, parse_batch


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "churn", "version": "3", "rows": [{"a": 1}]}
    body.update(over)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "body: expected a JSON object"),
        (_body(model=""), "model: expected a non-empty string"),
        (_body(version=True), "version: expected a non-empty string or integer"),
        (_body(rows=[]), "rows: expected a non-empty list"),
        (_body(rows=[{"a": 1}, 5]), r"rows\[1\]: expected an object, got int"),
        (
            _body(predictions=[0.1, 0.2]),
            r"predictions: expected a list with one value per row \(1\)",
        ),
        (_body(extra=1), r"unknown field\(s\) \['extra'\]"),
    ],
)
def test_malformed_bodies_are_refused_with_the_field_named(body: Any, message: str) -> None:
    with pytest.raises(BatchError, match=message) as info:
        parse_batch(body, max_rows=100)
    assert info.value.status == 400


def test_oversized_batch_is_413() -> None:
    with pytest.raises(BatchError, match="at most 2") as info:
        parse_batch(_body(rows=[{}, {}, {}]), max_rows=2)
    assert info.value.status == 413


def test_integer_version_is_accepted_as_text() -> None:
    assert parse_batch(_body(version=7), max_rows=10).version == "7"


def test_rows_encode_numbers_categories_unseen_and_missing() -> None:
    enc = Encoder(churn_schema())
    rows, _ = churn_rows(3, seed=1)
    rows[0]["contract"] = "lifetime"  # never seen in training
    rows[1]["contract"] = None
    rows[2]["tenure_months"] = None
    num, cat = enc.encode_rows(rows)
    j = enc.categorical.index("contract")
    assert cat[0, j] == enc.unseen_code("contract")
    assert cat[1, j] == enc.missing_code("contract")
    assert np.isnan(num[2, enc.numeric.index("tenure_months")])
    b = enc.categorical.index("paperless_billing")
    assert set(cat[:, b]) <= {0, 1}


@pytest.mark.parametrize(
    ("feature", "value", "message"),
    [
        ("tenure_months", "12", r"rows\[0\].tenure_months: expected a number or null"),
        ("tenure_months", True, r"rows\[0\].tenure_months: expected a number or null"),
        ("paperless_billing", "yes", r"rows\[0\].paperless_billing: expected true, false or null"),
        ("contract", [1], r"rows\[0\].contract: expected a category string or null"),
    ],
)
def test_wrong_value_types_name_row_and_feature(feature: str, value: Any, message: str) -> None:
    rows, _ = churn_rows(1, seed=1)
    rows[0][feature] = value
    with pytest.raises(BatchError, match=message):
        Encoder(churn_schema()).encode_rows(rows)


def test_a_missing_feature_key_is_refused() -> None:
    rows, _ = churn_rows(2, seed=1)
    del rows[1]["region"]
    with pytest.raises(BatchError, match=r"rows\[1\]: feature 'region' is missing"):
        Encoder(churn_schema()).encode_rows(rows)


def test_frame_and_rows_encode_identically() -> None:
    rows, _ = churn_rows(200, seed=3)
    enc = Encoder(churn_schema())
    frame = pd.DataFrame(rows)
    frame["paperless_billing"] = frame["paperless_billing"].astype("boolean")
    frame["contract"] = frame["contract"].astype("string")
    n1, c1 = enc.encode_rows(rows)
    n2, c2 = enc.encode_frame(frame)
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(c1, c2)


def test_reference_without_a_schema_column_is_refused() -> None:
    rows, _ = churn_rows(5, seed=3)
    frame = pd.DataFrame(rows).drop(columns=["plan"])
    with pytest.raises(ValueError, match=r"lacks feature column\(s\) \['plan'\]"):
        Encoder(churn_schema()).encode_frame(frame)
