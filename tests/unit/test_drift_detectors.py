"""The detectors agree with alibi-detect's own TabularDrift, and handle missing values.

alibi-detect lives in the drift env only (numpy<2), so the computations run in one subprocess
of the drift env's python (the script below) and the assertions run here on its JSON output.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import numpy as np
import pytest

from mainsail.drift.detectors import correct
from mainsail.drift.process import drift_python

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
import numpy as np
import pandas as pd
from alibi_detect.cd import TabularDrift
from mainsail.demos.churn import churn_rows, churn_schema
from mainsail.drift.detectors import VersionDetectors
from mainsail.drift.encoding import Encoder

enc = Encoder(churn_schema())
ref_rows, ref_preds = churn_rows(3000, seed=42)
ref_num, ref_cat = enc.encode_rows(ref_rows)
out = {}
for correction in ("bonferroni", "fdr"):
    # complete reference rows only, so TabularDrift (which cannot take NaN) sees the same data
    keep = ~np.isnan(ref_num).any(axis=1)
    det = VersionDetectors(enc.numeric, enc.categorical, ref_num[keep], ref_cat[keep],
                           alpha=0.05, correction=correction,
                           missing_codes=[enc.missing_code(c) for c in enc.categorical])
    cats = {len(enc.numeric) + j: None for j in range(len(enc.categorical))}
    tab = TabularDrift(np.hstack([ref_num[keep], ref_cat[keep]]).astype(float), p_val=0.05,
                       categories_per_feature=cats, correction=correction)
    for drift in (0.0, 0.15, 0.5):
        rows, _ = churn_rows(800, drift=drift, seed=9)
        num, cat = enc.encode_rows(rows)
        k = ~np.isnan(num).any(axis=1)
        ours = det.check(num[k], cat[k])
        theirs = tab.predict(np.hstack([num[k], cat[k]]).astype(float), drift_type="batch")["data"]
        out[f"{correction}-{drift}"] = {
            "ours_row": ours.row_is_drift,
            "theirs_row": bool(theirs["is_drift"]),
            "ours_p": [f.p_value for f in ours.features],
            "theirs_p": [float(p) for p in theirs["p_val"]],
            "ours_threshold": ours.threshold,
            "theirs_threshold": float(np.min(theirs["threshold"])),
        }
# Missing values: tested on present values only, missing share reported apart.
det = VersionDetectors(enc.numeric, enc.categorical, ref_num, ref_cat, alpha=0.05,
                       correction="bonferroni",
                       missing_codes=[enc.missing_code(c) for c in enc.categorical])
rows, _ = churn_rows(800, seed=9)
for r in rows[:400]:
    r["monthly_charges"] = None
    r["plan"] = None
num, cat = enc.encode_rows(rows)
res = det.check(num, cat)
f = {x.name: x for x in res.features}
out["missing"] = {
    "monthly_charges_missing": f["monthly_charges"].missing_ratio,
    "monthly_charges_p": f["monthly_charges"].p_value,
    "plan_missing": f["plan"].missing_ratio,
    "plan_drift": f["plan"].is_drift,
}
# A column with almost nothing present gets no verdict instead of a bogus one.
for r in rows:
    r["tenure_months"] = None
num, cat = enc.encode_rows(rows)
res = det.check(num, cat)
out["empty_p"] = [x.p_value for x in res.features if x.name == "tenure_months"][0]
# Predicted labels (ints in the reference, floats or ints served) get a chi-square test.
det = VersionDetectors(enc.numeric, enc.categorical, ref_num, ref_cat, alpha=0.05,
                       correction="bonferroni", ref_predictions=[0] * 850 + [1] * 150)
same = det.check(num, cat, [1.0] * 120 + [0.0] * 680)
shifted = det.check(num, cat, [1] * 400 + [0] * 400)
out["labels"] = {"test": same.prediction.test, "same": same.prediction.is_drift,
                 "shifted": shifted.prediction.is_drift}
json.dump(out, sys.stdout, default=str)
"""


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    proc = subprocess.run(
        [str(drift_python()), "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
@pytest.mark.parametrize("drift", ["0.0", "0.15", "0.5"])
def test_row_verdict_and_p_values_match_tabular_drift(
    results: dict[str, Any], correction: str, drift: str
) -> None:
    r = results[f"{correction}-{drift}"]
    np.testing.assert_allclose(r["ours_p"], r["theirs_p"], rtol=1e-5, atol=1e-7)
    assert r["ours_row"] == r["theirs_row"]
    if correction == "bonferroni" or r["theirs_row"]:
        assert r["ours_threshold"] == pytest.approx(r["theirs_threshold"], rel=1e-6)


def test_strong_drift_is_found_and_no_drift_is_not(results: dict[str, Any]) -> None:
    assert results["bonferroni-0.5"]["ours_row"] is True
    assert results["bonferroni-0.0"]["ours_row"] is False


def test_missing_values_are_reported_not_tested(results: dict[str, Any]) -> None:
    m = results["missing"]
    assert m["monthly_charges_missing"] == pytest.approx(0.5)
    # The present half still comes from the reference distribution.
    assert m["monthly_charges_p"] > 0.01
    # For a categorical feature a surge of missing values is a category of its own: drift.
    assert m["plan_missing"] == pytest.approx(0.5)
    assert m["plan_drift"] is True
    assert results["empty_p"] is None or np.isnan(float(results["empty_p"]))


def test_predicted_labels_are_compared_as_classes(results: dict[str, Any]) -> None:
    assert results["labels"] == {"test": "chi2", "same": False, "shifted": True}


def test_fdr_correction_matches_benjamini_hochberg() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    verdict, threshold = correct(p, 0.05, "fdr")
    # BH at q=0.05 with 10 tests: only p_(1)=0.001 < 0.005 and p_(2)=0.008 < 0.01 pass.
    assert verdict.tolist() == [True, True] + [False] * 8
    assert threshold == pytest.approx(0.01)
    verdict, threshold = correct(p, 0.05, "bonferroni")
    assert verdict.tolist() == [True] + [False] * 9
    assert threshold == pytest.approx(0.005)


def test_correction_skips_tests_that_could_not_run() -> None:
    verdict, threshold = correct(np.array([np.nan, 0.001, 0.5]), 0.05, "bonferroni")
    assert verdict.tolist() == [False, True, False]
    assert threshold == pytest.approx(0.025)
