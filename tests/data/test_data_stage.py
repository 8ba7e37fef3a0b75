"""run_data_stage end to end: artifacts, schema, imbalance, progress, real ISLP datasets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mainsail.config import load_config
from mainsail.data.prepared import ARTIFACTS
from mainsail.data.schema import FeatureSchema
from mainsail.lifecycle.data import run_data_stage
from tests.support.configs import make_config

REPO = Path(__file__).resolve().parents[2]


def test_stage_writes_every_artifact_and_only_those(churn_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    steps: list[tuple[str, float]] = []
    result = run_data_stage(
        make_config(churn_file), run_dir, progress=lambda s, f: steps.append((s, f))
    )
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(ARTIFACTS.values())
    assert {k: p.name for k, p in result.artifacts.items()} == ARTIFACTS
    assert [s for s, _ in steps] == ["ingest", "validate", "split", "preprocess", "write", "done"]
    fractions = [f for _, f in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert set(result.timings) == {"ingest", "validate", "split", "preprocess", "write"}

    schema = FeatureSchema.load(run_dir / "feature_schema.json")
    assert schema == result.schema and schema.names == result.features
    assert schema.target == "churned" and schema.classes == ["0", "1"]
    assert schema.entity_key == "customer_id" and schema.event_timestamp == "event_timestamp"
    assert schema.get("contract").kind == "categorical"
    assert schema.get("paperless_billing").kind == "boolean"
    train = result.X("train")
    assert schema.get("tenure_months").min == float(train["tenure_months"].min())
    assert schema.get("satisfaction_score").missing_share == pytest.approx(
        float(train["satisfaction_score"].isna().mean()), abs=1e-6
    )

    summary = json.loads((run_dir / "split_summary.json").read_text())
    assert summary["strategy"] == "group" and summary["data_sha256"] == result.data_sha256
    assert sum(summary["sides"][s]["rows"] for s in ("train", "valid", "test")) == len(result.frame)
    npz = np.load(run_dir / "split_indices.npz")
    assert np.array_equal(npz["train"], result.split.train)
    assert np.array_equal(npz["groups"], result.split.groups)

    # The contract the training stage builds on.
    for side in ("train", "valid", "test"):
        assert list(result.X(side).columns) == result.features
        assert len(result.y(side)) == len(getattr(result.split, side))
    assert result.positive_class == 1 and result.classes == [0, 1]
    assert "customer_id" not in result.features and "churned" not in result.features


def test_auto_imbalance_uses_balanced_class_weights(churn_file: Path) -> None:
    result = run_data_stage(make_config(churn_file), None)
    y = result.y("train")
    share = float(y.mean())
    assert share < 0.2 and result.imbalance["applied"] == "class_weight"
    assert result.class_weight is not None and not result.oversample
    n, k = len(y), 2
    assert result.class_weight[1] == pytest.approx(n / (k * int(y.sum())))
    assert result.class_weight[0] == pytest.approx(n / (k * int((y == 0).sum())))


def test_oversampling_balances_the_train_rows_only(churn_file: Path) -> None:
    cfg = make_config(churn_file, imbalance={"strategy": "oversample"})
    result = run_data_stage(cfg, None)
    assert result.oversample and result.class_weight is None
    rows = result.oversampled_train
    assert rows is not None and set(rows.tolist()) == set(result.split.train.tolist())
    labels = result.frame["churned"].to_numpy()[rows]
    assert (labels == 1).sum() == (labels == 0).sum()
    again = run_data_stage(cfg, None).oversampled_train
    assert again is not None and again.tobytes() == rows.tobytes()


@pytest.mark.parametrize(
    ("strategy", "threshold", "applied"),
    [("none", 0.2, "none"), ("auto", 0.05, "none"), ("class_weight", 0.05, "class_weight")],
)
def test_imbalance_strategy_and_threshold(
    churn_file: Path, strategy: str, threshold: float, applied: str
) -> None:
    cfg = make_config(churn_file, imbalance={"strategy": strategy, "threshold": threshold})
    result = run_data_stage(cfg, None)
    assert result.imbalance["applied"] == applied
    assert (result.class_weight is not None) == (applied == "class_weight")


def _islp(config: str, tmp_path: Path, fmt: str) -> tuple[object, Path]:
    cfg = load_config(REPO / "configs" / config, {"data.path": str(tmp_path / f"data.{fmt}")})
    run_dir = tmp_path / "run"
    return run_data_stage(cfg, run_dir), run_dir


def test_stage_on_islp_default_classification(tmp_path: Path) -> None:
    result, run_dir = _islp("islp_default.yaml", tmp_path, "parquet")
    assert result.problem_type == "classification" and result.problem_type_detected  # type: ignore[attr-defined]
    assert result.features == ["student", "balance", "income"]  # type: ignore[attr-defined]
    assert result.positive_class == "Yes" and result.imbalance["applied"] == "class_weight"  # type: ignore[attr-defined]
    summary = json.loads((run_dir / "split_summary.json").read_text())
    shares = [summary["sides"][s]["class_share"]["Yes"] for s in ("train", "valid", "test")]
    assert max(shares) - min(shares) < 0.002  # stratified: about 3.3% defaults on every side
    out = result.preprocessor.transform(result.X("test"))  # type: ignore[attr-defined]
    assert out.shape == (2000, 4) and np.isfinite(out).all()


def test_stage_on_islp_carseats_regression(tmp_path: Path) -> None:
    result, run_dir = _islp("islp_carseats.yaml", tmp_path, "csv")
    assert result.problem_type == "regression" and result.problem_type_detected  # type: ignore[attr-defined]
    assert set(result.categorical) == {"ShelveLoc", "Urban", "US"}  # type: ignore[attr-defined]
    assert result.class_weight is None and result.schema.classes is None  # type: ignore[attr-defined]
    assert (tmp_path / "data.csv").exists()
    report = json.loads((run_dir / "validation_report.json").read_text())
    assert report["target_stats"]["min"] == pytest.approx(0.0)
    assert report["rows"] == 400 and report["leakage"] == []


def test_preprocessor_pickled_here_loads_and_matches_in_the_serving_env(
    churn_file: Path, tmp_path: Path
) -> None:
    serving = REPO / ".venv" / "serving" / "bin" / "python"
    assert serving.exists(), "the serving venv is built by `make envs` before the tests"
    result = run_data_stage(make_config(churn_file), tmp_path / "run")
    sample = result.X("test").head(50)
    sample.to_parquet(tmp_path / "sample.parquet")
    np.save(tmp_path / "expected.npy", result.preprocessor.transform(sample))
    code = (
        "import sys, joblib, numpy as np, pandas as pd\n"
        "d = sys.argv[1]\n"
        "pre = joblib.load(d + '/run/preprocessor.joblib')\n"
        "out = pre.transform(pd.read_parquet(d + '/sample.parquet'))\n"
        "assert np.array_equal(out, np.load(d + '/expected.npy')), 'outputs differ'\n"
        "print('same', out.shape)\n"
    )
    done = subprocess.run(
        [str(serving), "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "same (50," in done.stdout


def test_frame_rows_map_to_the_file_rows_after_cleaning(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i % 40}" for i in range(200)],
            "event_timestamp": pd.date_range("2024-01-01", periods=200, freq="h", tz="UTC"),
            "x": np.arange(200) + 0.5,  # distinct per row, yet not a row number
            "churned": pd.array([i % 3 == 0 for i in range(200)], dtype="boolean"),
        }
    )
    frame.loc[7, "churned"] = pd.NA
    path = tmp_path / "d.parquet"
    frame.to_parquet(path, index=False)
    result = run_data_stage(make_config(path), None)
    assert len(result.frame) == 199 and result.frame.index.equals(pd.RangeIndex(199))
    assert result.frame["x"].iloc[7] == 8.5  # the unlabeled row is gone, positions renumbered
    assert result.problem_type == "classification" and result.classes == [False, True]


def test_shipped_configs_point_into_the_repo_data_folder_and_run(tmp_path: Path) -> None:
    for name, data_file in (
        ("churn.yaml", "churn.parquet"),
        ("islp_default.yaml", "islp_default.parquet"),
        ("islp_carseats.yaml", "islp_carseats.parquet"),
    ):
        cfg = load_config(REPO / "configs" / name)
        assert cfg.data.path == REPO / "data" / data_file, name
    # The default config end to end, on a small generated file outside the repo.
    cfg = load_config(
        REPO / "configs" / "churn.yaml",
        {"data.path": str(tmp_path / "churn.parquet"), "data.synthetic.rows": 3000},
    )
    result = run_data_stage(cfg, tmp_path / "run")
    assert (tmp_path / "churn.parquet").exists() and len(result.frame) == 3000
    assert result.summary["checks"]["shared_entities"]["train-test"] == 0
    assert 0.10 <= result.report.minority_share <= 0.20  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_config_loads_and_its_data_validates(config: str, tmp_path: Path) -> None:
    """Every config under configs/ is valid and its data passes validation (what
    `mainsail check-config` does): no leakage suspect it did not acknowledge, the target there.
    The full runs are the real-data suite's (tests/model/test_real_data_suite.py, and
    tests/real_data for the large flights) and the churn stage tests."""
    from mainsail.lifecycle.data import load_validated

    cfg = load_config(REPO / "configs" / config)
    assert cfg.data.path.parent == REPO / "data", config
    overrides: dict[str, object] = {"data.path": str(tmp_path / cfg.data.path.name)}
    if cfg.data.synthetic is not None:
        overrides["data.synthetic.rows"] = 2000
    cfg = load_config(REPO / "configs" / config, overrides)
    loaded = load_validated(cfg, features=False)
    report = loaded.checked.report
    assert report.passed and report.features, config
    assert all(s.allowed for s in report.leakage), config


def test_the_data_stage_on_every_core_writes_what_the_plain_loop_writes(
    churn_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long tables get their per-column statistics (validation profiles, clip quantiles,
    medians) in threads; the artifacts must be byte for byte those of one column after
    another, or the model digest would depend on the machine's cores."""
    from concurrent.futures import ThreadPoolExecutor

    from mainsail.core import columnwise

    pools: list[int] = []  # the thread pools the stage made

    class CountedPool(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(columnwise, "ThreadPoolExecutor", CountedPool)
    monkeypatch.setattr(columnwise, "usable_cores", lambda: 2)
    cfg = make_config(churn_file)
    written: dict[str, dict[str, bytes]] = {}
    for mode, min_rows in (("loop", 10**12), ("threads", 0)):
        monkeypatch.setattr(columnwise, "MIN_ROWS", min_rows)
        pools.clear()
        run_data_stage(cfg, tmp_path / mode)
        assert bool(pools) == (mode == "threads"), (mode, len(pools))
        written[mode] = {
            p.name: p.read_bytes() for p in sorted((tmp_path / mode).rglob("*")) if p.is_file()
        }
    assert written["loop"].keys() == written["threads"].keys()
    differ = [k for k in written["loop"] if written["loop"][k] != written["threads"][k]]
    assert not differ, differ
    assert "preprocessor.joblib" in written["threads"], sorted(written["threads"])
