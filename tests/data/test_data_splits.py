"""Splits: no entity on two sides, no future row in train, class balance kept, deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mainsail.data.errors import SplitError
from mainsail.data.split import SplitIndices, make_split, save_split_indices
from mainsail.data.synthetic import generate_churn
from mainsail.lifecycle.data import run_data_stage
from tests.support.configs import make_config


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return generate_churn(4_000, seed=3)


def _split(frame: pd.DataFrame, strategy: str, **kw: object) -> tuple[SplitIndices, dict]:
    args: dict = {
        "target": "churned",
        "problem_type": "classification",
        "seed": 5,
        "test_size": 0.2,
        "valid_size": 0.2,
        "entity_key": "customer_id",
        "event_timestamp": "event_timestamp",
    }
    args.update(kw)
    return make_split(frame, strategy=strategy, **args)  # type: ignore[arg-type]


def _entities(frame: pd.DataFrame, idx: np.ndarray) -> set[str]:
    return set(frame["customer_id"].iloc[idx].astype(str))


def _assert_partition(split: SplitIndices, n: int, *, complete: bool) -> None:
    sides = [split.train, split.valid, split.test]
    for idx in sides:
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0), "sorted, no repeats"
    union = np.concatenate(sides)
    assert len(np.unique(union)) == len(union), "a row is on two sides"
    if complete:
        assert len(union) == n


@pytest.mark.parametrize("strategy", ["group", "stratified", "random"])
def test_no_entity_is_shared_across_sides(churn: pd.DataFrame, strategy: str) -> None:
    split, summary = _split(churn, strategy)
    _assert_partition(split, len(churn), complete=True)
    train, valid, test = (_entities(churn, i) for i in (split.train, split.valid, split.test))
    assert not train & valid and not train & test and not valid & test
    assert summary["checks"]["shared_entities"] == {
        "train-valid": 0,
        "train-test": 0,
        "valid-test": 0,
    }
    # Groups are the entity of every row, for grouped cross-validation downstream.
    assert split.groups is not None and len(split.groups) == len(churn)
    codes = pd.factorize(churn["customer_id"], sort=True)[0]
    assert np.array_equal(split.groups, codes)


def test_stratified_group_split_keeps_the_class_balance(churn: pd.DataFrame) -> None:
    split, summary = _split(churn, "stratified")
    overall = churn["churned"].mean()
    for name in ("train", "valid", "test"):
        share = churn["churned"].iloc[getattr(split, name)].mean()
        assert abs(share - overall) < 0.03, (name, share, overall)
    assert summary["sides"]["train"]["class_counts"]["1"] == int(
        churn["churned"].iloc[split.train].sum()
    )


def test_stratified_rows_split_matches_class_shares_to_rounding() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=1000), "y": (rng.random(1000) < 0.05).astype(int)})
    split, _ = make_split(
        frame,
        strategy="stratified",
        target="y",
        problem_type="classification",
        seed=1,
        test_size=0.2,
        valid_size=0.2,
    )
    positives = int(frame["y"].sum())
    for name, share in (("test", 0.2), ("valid", 0.2)):
        got = int(frame["y"].iloc[getattr(split, name)].sum())
        assert abs(got - positives * share) <= 1
    _assert_partition(split, len(frame), complete=True)


def test_stratified_regression_split_spreads_the_target_range() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=500), "y": rng.lognormal(size=500)})
    split, summary = make_split(
        frame,
        strategy="stratified",
        target="y",
        problem_type="regression",
        seed=1,
        test_size=0.2,
        valid_size=0.2,
    )
    top = frame["y"] >= frame["y"].quantile(0.8)
    assert abs(top.iloc[split.test].mean() - 0.2) < 0.03
    assert "target_mean" in summary["sides"]["test"]


def test_time_split_puts_no_future_row_in_train(churn: pd.DataFrame) -> None:
    split, summary = _split(churn, "time", entity_key=None)
    _assert_partition(split, len(churn), complete=True)
    ts = churn["event_timestamp"]
    train, valid, test = (ts.iloc[i] for i in (split.train, split.valid, split.test))
    assert train.max() < valid.min()
    assert valid.max() < test.min()
    assert summary["checks"]["time_ordered"] is True
    assert abs(len(split.test) / len(churn) - 0.2) < 0.01


def test_time_split_leaves_the_gap_out(churn: pd.DataFrame) -> None:
    split, summary = _split(churn, "time", entity_key=None, gap="14D")
    ts = churn["event_timestamp"]
    train, valid, test = (ts.iloc[i] for i in (split.train, split.valid, split.test))
    assert valid.min() - train.max() >= pd.Timedelta("14D")
    assert test.min() - valid.max() >= pd.Timedelta("14D")
    left_out = len(churn) - sum(len(i) for i in (split.train, split.valid, split.test))
    assert left_out > 0 and summary["rows_left_out_by_gap"] == left_out
    _assert_partition(split, len(churn), complete=False)


def test_time_split_with_entity_key_is_time_ordered_and_entity_disjoint(
    churn: pd.DataFrame,
) -> None:
    split, summary = _split(churn, "time")
    ts = churn["event_timestamp"]
    train, valid, test = (ts.iloc[i] for i in (split.train, split.valid, split.test))
    assert train.max() < valid.min() and valid.max() < test.min()
    sides = [_entities(churn, i) for i in (split.train, split.valid, split.test)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    kept = sum(len(i) for i in (split.train, split.valid, split.test))
    assert summary["rows_purged_for_entity_separation"] == len(churn) - kept > 0
    # Purging keeps an entity's rows on its latest side: all test-period rows stay in test.
    test_period = ts >= test.min()
    assert np.array_equal(np.flatnonzero(test_period.to_numpy()), split.test)


def test_bad_gap_is_named() -> None:
    frame = generate_churn(200, seed=1)
    with pytest.raises(SplitError, match=r"split.gap '1 month' is not a fixed duration"):
        _split(frame, "time", gap="1 month")


def test_too_few_entities_for_three_sides_is_an_error() -> None:
    frame = pd.DataFrame({"e": ["a", "a", "b", "b"], "y": [0, 1, 0, 1]})
    with pytest.raises(SplitError, match=r"side of the 'group' split is empty: 2 entities"):
        make_split(
            frame,
            strategy="group",
            target="y",
            problem_type="classification",
            seed=0,
            test_size=0.2,
            valid_size=0.2,
            entity_key="e",
        )


@pytest.mark.parametrize("strategy", ["group", "stratified", "random", "time"])
def test_same_seed_gives_byte_identical_indices(
    churn: pd.DataFrame, strategy: str, tmp_path: Path
) -> None:
    a, _ = _split(churn, strategy)
    b, _ = _split(churn.copy(), strategy)
    for name in ("train", "valid", "test"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes()
    save_split_indices(a, tmp_path / "a.npz")
    save_split_indices(b, tmp_path / "b.npz")
    digest = [hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in ("a.npz", "b.npz")]
    assert digest[0] == digest[1]
    loaded = np.load(tmp_path / "a.npz")
    assert np.array_equal(loaded["train"], a.train) and np.array_equal(loaded["test"], a.test)
    if strategy != "time":  # the time split has no randomness
        c, _ = _split(churn, strategy, seed=6)
        assert c.test.tobytes() != a.test.tobytes(), "another seed must give another split"


def test_run_data_stage_twice_writes_byte_identical_split_files(
    churn_file: Path, tmp_path: Path
) -> None:
    cfg = make_config(churn_file, split={"strategy": "stratified"})
    run_data_stage(cfg, tmp_path / "one")
    run_data_stage(cfg, tmp_path / "two")
    for name in ("split_indices.npz", "split_summary.json", "feature_schema.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


@settings(max_examples=40, deadline=None)
@given(
    n_entities=st.integers(6, 60),
    rows_per=st.integers(1, 5),
    strategy=st.sampled_from(["group", "stratified", "random", "time"]),
    problem_type=st.sampled_from(["classification", "regression"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_table_splits_without_shared_entities_or_time_leaks(
    n_entities: int, rows_per: int, strategy: str, problem_type: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    n = n_entities * rows_per
    frame = pd.DataFrame(
        {
            "customer_id": np.repeat([f"E{i}" for i in range(n_entities)], rows_per),
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.permutation(n), unit="h"),
            "churned": rng.integers(0, 2, n)
            if problem_type == "classification"
            else rng.normal(size=n),
        }
    )
    try:
        split, _ = _split(frame, strategy, seed=seed, problem_type=problem_type)
    except SplitError:
        return  # too few units for three sides: a clear error is the right answer
    sides = [_entities(frame, i) for i in (split.train, split.valid, split.test)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    _assert_partition(split, n, complete=strategy != "time")
    if strategy == "time":
        ts = frame["event_timestamp"]
        assert ts.iloc[split.train].max() < ts.iloc[split.valid].min()
        assert ts.iloc[split.valid].max() < ts.iloc[split.test].min()


def test_rows_a_time_split_leaves_out_are_reported(churn_file: Path, tmp_path: Path) -> None:
    cfg = make_config(churn_file, split={"strategy": "time", "gap": "7D"})
    result = run_data_stage(cfg, tmp_path / "run")
    issues = {i.code: i for i in result.report.issues}
    purged = result.summary["rows_purged_for_entity_separation"]
    assert purged > 0 and f"left out {purged} rows" in issues["split_purged_rows"].message
    gap = result.summary["rows_left_out_by_gap"]
    assert gap > 0 and f"left out {gap} rows" in issues["split_gap_rows"].message
    saved = (tmp_path / "run" / "validation_report.json").read_text()
    assert "split_purged_rows" in saved


def test_time_split_cv_folds_keep_entities_apart(churn: pd.DataFrame, tmp_path: Path) -> None:
    """Forward-in-time CV folds on a time split with an entity key: no fold fits on an entity
    that it scores (evaluate/cv.py used to drop the groups for time splits)."""
    from mainsail.evaluate.cv import cv_folds

    path = tmp_path / "churn.parquet"
    churn.to_parquet(path, index=False)
    data = run_data_stage(make_config(path, split={"strategy": "time"}), None)
    groups = data.frame["customer_id"].to_numpy()
    folds = cv_folds(data, 4, seed=0)
    assert len(folds) == 4
    ts = data.frame["event_timestamp"].to_numpy()
    for fit, score in folds:
        assert not set(groups[fit]) & set(groups[score])
        assert ts[fit].max() <= ts[score].min()
