"""Validation: problem type detection, leakage suspects, profiles and both report forms."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mainsail.data.errors import DuplicateRowsError, LeakageError, MixedTypesError, TargetError
from mainsail.data.validate import ValidationReport, validate_frame
from mainsail.lifecycle.data import run_data_stage
from tests.support.configs import make_config


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "d.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _plain_cfg(path: Path, **data: object) -> object:
    return make_config(
        path,
        data={"target": "y", "entity_key": None, "event_timestamp": None, **data},
        split={"strategy": "random"},
    )


def _base(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.choice(["a", "b", "c"], n), "z": rng.normal(size=n)}
    )


@pytest.mark.parametrize(
    ("target", "expected", "reason"),
    [
        (lambda r, n: r.choice(["yes", "no"], n), "classification", "labels"),
        (lambda r, n: r.integers(0, 3, n), "classification", "3 distinct integer values"),
        (lambda r, n: r.normal(50, 10, n), "regression", "non-integer numbers"),
        (lambda r, n: r.integers(0, 1000, n), "regression", "distinct integer values"),
    ],
    ids=["text-labels", "few-integers", "floats", "many-integers"],
)
def test_problem_type_is_detected_and_reported(
    tmp_path: Path, target: object, expected: str, reason: str
) -> None:
    frame = _base()
    frame["y"] = target(np.random.default_rng(1), len(frame))  # type: ignore[operator]
    result = run_data_stage(_plain_cfg(_write(tmp_path, frame)), tmp_path / "run")  # type: ignore[arg-type]
    assert result.problem_type == expected and result.problem_type_detected
    assert result.report.problem_type_detected and reason in result.report.problem_type_reason
    saved = json.loads((tmp_path / "run" / "validation_report.json").read_text())
    assert saved["problem_type"] == expected and saved["problem_type_detected"] is True
    assert (
        json.loads((tmp_path / "run" / "split_summary.json").read_text())["problem_type"]
        == expected
    )


def test_configured_problem_type_wins_and_is_not_marked_detected(tmp_path: Path) -> None:
    frame = _base()
    frame["y"] = np.random.default_rng(1).integers(0, 3, len(frame))
    cfg = _plain_cfg(_write(tmp_path, frame), problem_type="regression")
    result = run_data_stage(cfg, None)  # type: ignore[arg-type]
    assert result.problem_type == "regression" and not result.problem_type_detected
    assert "set in the config" in result.report.problem_type_reason


def test_a_feature_that_gives_the_label_away_stops_the_run_unless_allowed(tmp_path: Path) -> None:
    frame = _base(2_000)
    rng = np.random.default_rng(3)
    frame["y"] = (frame["x1"] + rng.normal(0, 1, len(frame)) > 1).astype(int)
    frame["refund_issued"] = frame["y"] * 10.0 + rng.normal(0, 0.5, len(frame))  # after the fact
    frame["status"] = np.where(frame["y"] == 1, "closed", "open")  # categorical copy of it
    path = _write(tmp_path, frame)
    with pytest.raises(LeakageError) as err:
        run_data_stage(_plain_cfg(path), None)  # type: ignore[arg-type]
    message = str(err.value)
    assert "'refund_issued' (roc_auc 1.000)" in message and "'status'" in message
    assert "data.allow_leakage_suspects" in message and "data.drop" in message
    assert err.value.report is not None and not err.value.report.passed
    # Acknowledged: the run goes on, the suspects stay warnings and are marked as allowed.
    cfg = _plain_cfg(path, allow_leakage_suspects=["refund_issued", "status"])
    result = run_data_stage(cfg, None)  # type: ignore[arg-type]
    suspects = {s.column: s for s in result.report.leakage}
    assert set(suspects) == {"refund_issued", "status"} and all(
        s.allowed for s in suspects.values()
    )
    assert suspects["refund_issued"].metric == "roc_auc" and suspects["refund_issued"].score > 0.99
    codes = {(i.code, i.column) for i in result.report.warnings()}
    assert ("leakage_suspect", "refund_issued") in codes and ("leakage_suspect", "status") in codes
    assert "passed with" in result.report.to_html()  # the badge does not say a plain "passed"
    # Dropped: not a feature, so not a suspect.
    dropped = run_data_stage(_plain_cfg(path, drop=["refund_issued", "status"]), None)  # type: ignore[arg-type]
    assert dropped.report.leakage == []


def test_a_97_percent_proxy_of_the_label_is_caught(tmp_path: Path) -> None:
    """A flag that equals the (5% minority) label on 97% of rows: ROC AUC about 0.97."""
    frame = _base(4_000, seed=8)
    rng = np.random.default_rng(8)
    frame["y"] = np.where(rng.random(len(frame)) < 0.05, "bad", "good")
    flag = (frame["y"] == "bad").to_numpy()
    flip = rng.random(len(frame)) < 0.03
    frame["collections_flag"] = np.where(flip, ~flag, flag).astype(int)
    with pytest.raises(LeakageError, match=r"'collections_flag' \(roc_auc 0\.9"):
        run_data_stage(_plain_cfg(_write(tmp_path, frame), positive_class="bad"), None)  # type: ignore[arg-type]


def test_regression_leak_is_caught_by_r2(tmp_path: Path) -> None:
    frame = _base(1_000)
    frame["y"] = 3 * frame["x1"] + np.random.default_rng(4).normal(0, 1, len(frame))
    frame["y_copy_in_cents"] = frame["y"] * 100
    path = _write(tmp_path, frame)
    with pytest.raises(LeakageError, match=r"'y_copy_in_cents' \(r2 "):
        run_data_stage(_plain_cfg(path), None)  # type: ignore[arg-type]
    cfg = _plain_cfg(path, allow_leakage_suspects=["y_copy_in_cents"])
    result = run_data_stage(cfg, None)  # type: ignore[arg-type]
    assert [s.column for s in result.report.leakage] == ["y_copy_in_cents"]
    assert result.report.leakage[0].metric == "r2"


def test_a_row_index_survives_neither_filtering_nor_sorting(tmp_path: Path) -> None:
    """A row number written before 20 rows were filtered out and the file sorted by the
    target: not 1..n any more, not in file order, yet excluded as an identifier."""
    rng = np.random.default_rng(11)
    n = 1_000
    frame = pd.DataFrame({"area": rng.normal(100, 30, n), "rooms": rng.integers(1, 8, n)})
    frame["price"] = 2_000 * frame["area"] + 10_000 * frame["rooms"] + rng.normal(0, 5e4, n)
    frame = frame.sort_values("price").reset_index(drop=True)
    frame.insert(0, "Order", np.arange(1, n + 1))  # the row number, in price order
    frame = frame.drop(index=rng.choice(n, 20, replace=False))  # rows filtered out
    frame = frame.sample(frac=1.0, random_state=1)  # and re-sorted
    cfg = _plain_cfg(_write(tmp_path, frame), target="price")
    result = run_data_stage(cfg, None)  # type: ignore[arg-type]
    assert "Order" not in result.features and "Order" in result.report.excluded
    assert result.report.leakage == []
    # A real integer feature with repeats is kept, and so is a unique but sparse code.
    assert "rooms" in result.features


def test_an_index_named_column_with_gaps_is_excluded(tmp_path: Path) -> None:
    frame = _base(500)
    frame["y"] = (frame["x1"] + frame["z"] > 0).astype(int)
    frame["Unnamed: 0"] = np.random.default_rng(2).permutation(5_000)[:500]  # sparse, unique
    frame["code"] = np.random.default_rng(3).permutation(5_000)[:500]  # same values, a real name
    result = run_data_stage(_plain_cfg(_write(tmp_path, frame)), None)  # type: ignore[arg-type]
    assert "Unnamed: 0" in result.report.excluded and "code" in result.features


def test_positive_class_yes_read_as_a_boolean_gets_a_hint(tmp_path: Path) -> None:
    frame = _base(400)
    frame["y"] = np.where(frame["x1"] + frame["z"] > 0.5, "yes", "no")
    path = _write(tmp_path, frame)
    with pytest.raises(TargetError, match=re.escape('quote the label, e.g. positive_class: "yes"')):
        run_data_stage(_plain_cfg(path, positive_class=True), None)  # type: ignore[arg-type]
    result = run_data_stage(_plain_cfg(path, positive_class="no"), None)  # type: ignore[arg-type]
    assert result.positive_class == "no" and result.classes == ["yes", "no"]  # positive last


@pytest.mark.parametrize(
    ("labels", "configured", "positive"),
    [
        (["good", "bad"], "bad", "bad"),  # sorts first, configured
        ([0, 1], 0, 0),  # an int label, configured as the smaller one
        ([False, True], False, False),  # booleans
        ([False, True], None, True),  # no configuration: the minority (True: 30%)
    ],
)
def test_positive_class_is_honoured_for_text_int_and_bool_labels(
    tmp_path: Path, labels: list[object], configured: object, positive: object
) -> None:
    frame = _base(500)
    minority = np.random.default_rng(6).random(len(frame)) < 0.3
    frame["y"] = np.where(minority, labels[1], labels[0])
    if isinstance(labels[0], bool):
        frame["y"] = frame["y"].astype(bool)
    extra = {} if configured is None else {"positive_class": configured}
    result = run_data_stage(_plain_cfg(_write(tmp_path, frame), **extra), None)  # type: ignore[arg-type]
    assert result.positive_class == positive and type(result.positive_class) is type(positive)
    assert result.classes is not None and result.classes[-1] == positive


def test_ordinary_churn_features_are_not_leakage_suspects(churn_file: Path) -> None:
    result = run_data_stage(make_config(churn_file), None)
    assert result.report.leakage == []


def test_event_time_after_label_time_is_reported(tmp_path: Path) -> None:
    frame = _base(300)
    frame["y"] = np.random.default_rng(5).integers(0, 2, len(frame))
    frame["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(frame)), unit="D"
    )
    frame["label_timestamp"] = frame["event_timestamp"] + pd.Timedelta("30D")
    frame.loc[:6, "label_timestamp"] = frame.loc[:6, "event_timestamp"] - pd.Timedelta("1D")
    cfg = _plain_cfg(
        _write(tmp_path, frame, "d.csv"),
        event_timestamp="event_timestamp",
        label_timestamp="label_timestamp",
    )
    result = run_data_stage(cfg, None)  # type: ignore[arg-type]
    assert result.report.timestamp_after_label_rows == 7
    warning = [i for i in result.report.warnings() if i.code == "timestamp_after_label"]
    assert warning and "7 row(s)" in warning[0].message
    assert "label_timestamp" not in result.features and "event_timestamp" not in result.features


def test_constant_id_like_and_duplicate_rows_are_handled(tmp_path: Path) -> None:
    frame = _base(400)
    frame["y"] = np.random.default_rng(6).integers(0, 2, len(frame))
    frame["country"] = "NZ"
    frame["row_id"] = np.arange(1000, 1000 + len(frame))
    frame["order_ref"] = [f"ORD-{i:05d}" for i in range(len(frame))]
    frame = pd.concat([frame, frame.iloc[:5]], ignore_index=True)  # 5 exact duplicates
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "y": np.nan, "row_id": 99}
    result = run_data_stage(_plain_cfg(_write(tmp_path, frame, "d.csv")), None)  # type: ignore[arg-type]
    report = result.report
    assert set(report.excluded) == {"country", "row_id", "order_ref"}
    assert "constant" in report.excluded["country"]
    assert (
        "identifier" in report.excluded["row_id"] and "identifier" in report.excluded["order_ref"]
    )
    assert report.duplicate_rows_dropped == 5 and report.missing_target_rows_dropped == 1
    assert report.rows == 400 and len(result.frame) == 400
    assert result.features == ["x1", "x2", "z"]
    by_name = {c.name: c for c in report.columns}
    assert by_name["country"].constant and by_name["row_id"].id_like
    assert by_name["x1"].role == "feature" and by_name["y"].role == "target"


def test_with_entity_and_timestamp_only_rows_sharing_a_key_are_compared(tmp_path: Path) -> None:
    """With an entity key and an event timestamp, exact duplicates are looked for among the
    rows whose key repeats (two equal rows share their key): the same rows are dropped as by
    comparing every row, and a key shared by rows that differ is still an error naming the
    first of them."""
    frame = _base(300, seed=4)
    frame["y"] = np.random.default_rng(4).integers(0, 2, len(frame))
    frame["customer_id"] = [f"C{i % 100:03d}" for i in range(len(frame))]
    frame["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        np.arange(len(frame)), unit="h"
    )
    # Rows 0 and 7 copied twice and once, out of order: three copies to drop.
    doubled = pd.concat([frame, frame.iloc[[7, 0, 0]]], ignore_index=True)
    keyed = {"entity_key": "customer_id", "event_timestamp": "event_timestamp"}
    result = run_data_stage(_plain_cfg(_write(tmp_path, doubled), **keyed), None)  # type: ignore[arg-type]
    assert result.report.duplicate_rows_dropped == 3 and result.report.rows == 300
    # The first copies kept, in file order.
    assert result.frame["x1"].tolist() == frame["x1"].tolist()
    assert result.frame["customer_id"].astype(str).tolist() == frame["customer_id"].tolist()
    # The same, plus a copy of row 12 with another x1: its key clashes, the copies do not.
    clash = pd.concat([doubled, frame.iloc[[12]].assign(x1=99.0)], ignore_index=True)
    with pytest.raises(DuplicateRowsError, match=r"^2 rows share .* customer_id=C012 at"):
        run_data_stage(_plain_cfg(_write(tmp_path, clash, "c.parquet"), **keyed), None)  # type: ignore[arg-type]


def test_outliers_and_class_balance_are_in_the_report(tmp_path: Path) -> None:
    frame = _base(1_000)
    frame.loc[:9, "x1"] = 1e6
    frame["y"] = (np.random.default_rng(7).random(len(frame)) < 0.1).astype(int)
    result = run_data_stage(_plain_cfg(_write(tmp_path, frame)), None)  # type: ignore[arg-type]
    report = result.report
    assert {c.name: c for c in report.columns}["x1"].outliers == 10
    assert report.class_balance == {
        "0": int((frame["y"] == 0).sum()),
        "1": int((frame["y"] == 1).sum()),
    }
    assert report.positive_class == "1"
    assert report.minority_share == pytest.approx(frame["y"].mean())
    assert any(i.code == "class_imbalance" for i in report.warnings())


def test_python_objects_of_several_types_in_one_column_are_rejected() -> None:
    frame = pd.DataFrame({"x": [1, "one", 2.5, 3], "y": [0, 1, 0, 1]})
    cfg = _plain_cfg(Path("unused.csv"))
    with pytest.raises(
        MixedTypesError, match=r"column 'x' holds values of several types \(float, int, str\)"
    ):
        validate_frame(frame, cfg)  # type: ignore[arg-type]


def test_reports_are_machine_readable_and_self_contained_html(tmp_path: Path) -> None:
    frame = _base(300)
    frame["<b>odd name</b>"] = np.random.default_rng(8).normal(size=len(frame))
    frame["y"] = np.random.default_rng(9).integers(0, 2, len(frame))
    run_dir = tmp_path / "run"
    result = run_data_stage(_plain_cfg(_write(tmp_path, frame)), run_dir)  # type: ignore[arg-type]
    loaded = ValidationReport.model_validate_json((run_dir / "validation_report.json").read_text())
    assert loaded == result.report and loaded.passed
    assert loaded.data_sha256 == result.data_sha256 and len(loaded.data_sha256) == 64
    html = (run_dir / "validation_report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "<b>odd name</b>" not in html and "&lt;b&gt;odd name&lt;/b&gt;" in html
    for column in frame.columns[:3]:
        assert f"<td>{column}</td>" in html


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the std of an infinity
@pytest.mark.parametrize(
    "values",
    [
        np.array([0.0, -0.0, 1.5, np.nan, 1.5, 2.0, np.inf, -3.0] * 5, dtype=np.float64),
        np.random.default_rng(1).normal(0, 1, 5_000).astype(np.float32),
        np.append(np.random.default_rng(2).normal(0, 1, 3_000), [80.0, -90.0, np.nan]),
        np.random.default_rng(3).integers(-(2**62), 2**62, 500),
        np.arange(400, dtype=np.int32),
    ],
)
def test_numeric_profile_counts_as_pandas_and_numpy_do(values: np.ndarray) -> None:
    """The profile takes distinct values, quartiles and outliers from one sort; the figures
    are those of `nunique`, `isna` and a comparison against the IQR fences."""
    from mainsail.data.validate import OUTLIER_IQR, _profile

    col = pd.Series(values)
    prof = _profile(col, "x", "numeric", "feature", len(col))
    assert prof.unique == col.nunique(dropna=True)
    assert prof.missing == int(col.isna().sum())
    observed = col.to_numpy(dtype=np.float64, na_value=np.nan)
    observed = observed[~np.isnan(observed)]
    assert prof.min == float(observed.min()) and prof.max == float(observed.max())
    # the same bits as the column's own float64 copy (an infinity's std is NaN on both sides)
    assert np.array_equal([prof.mean, prof.std], [observed.mean(), observed.std()], equal_nan=True)
    q1, q3 = np.quantile(observed, [0.25, 0.75])
    iqr = q3 - q1
    low, high = q1 - OUTLIER_IQR * iqr, q3 + OUTLIER_IQR * iqr
    expected = int(((observed < low) | (observed > high)).sum()) if iqr > 0 else 0
    assert prof.outliers == expected


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf, on both sides
@pytest.mark.parametrize("size", [1, 2, 3, 7, 128, 1_001, 20_000])
def test_quartiles_of_sorted_values_are_numpys_to_the_bit(size: int) -> None:
    """The profile reads quartiles off the sorted values instead of calling np.quantile (which
    partitions a copy); ties, huge and infinite values included, the result is the same."""
    from mainsail.data.validate import sorted_quantile

    rng = np.random.default_rng(size)
    samples = [
        rng.normal(size=size),
        rng.integers(0, 4, size).astype(np.float64),  # ties
        rng.normal(size=size) * 1e300,
        np.where(rng.random(size) < 0.2, np.inf, rng.normal(size=size)) * rng.choice([-1, 1], size),
    ]
    quantiles = [0.0, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 1.0]
    for values in samples:
        ordered = np.sort(values)
        expected = np.quantile(ordered, quantiles)
        got = [sorted_quantile(ordered, q) for q in quantiles]
        assert np.array_equal(got, expected, equal_nan=True), (values[:5], got, expected)


def test_a_row_number_needs_every_value_whole_not_only_the_first_ones() -> None:
    """A measured quantity is ruled out as a row number by the first values it has with a
    fraction (cheap); integers up to the last value are still checked to the end."""
    from mainsail.data.validate import _row_index_like

    n = 5_000
    whole = np.arange(n, dtype=np.float64)
    assert _row_index_like(pd.Series(whole), "x", whole, n, n)
    late_fraction = whole.copy()
    late_fraction[-1] += 0.5
    assert not _row_index_like(pd.Series(late_fraction), "x", late_fraction, n, n)
    measured = np.random.default_rng(0).normal(0, 1, n)
    assert not _row_index_like(pd.Series(measured), "x", measured, n, n)
