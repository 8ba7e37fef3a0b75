"""The feedback store against real SQLite and real Postgres (the project's own cluster)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.metrics import log_loss, roc_auc_score

from mainsail.feedback.store import FeedbackError, FeedbackStore, PredictionRecord, metadata


def postgres_url() -> str:
    """The test database that `make services` (scripts/services.sh) creates, with its password."""
    if url := os.environ.get("MAINSAIL_TEST_POSTGRES_URL"):
        return url
    path = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    path = path / "mainsail" / "postgres-test.url"
    if not path.exists():
        pytest.fail(f"{path} missing: run `make services` (it creates the test database)")
    return path.read_text().strip()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedback.db'}"
        return
    url = postgres_url()
    engine = sa.create_engine(url)
    metadata.drop_all(engine)  # a clean slate in the shared test database
    engine.dispose()
    yield url
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


def served(n: int, variant: str, rng: np.random.Generator) -> list[PredictionRecord]:
    scores = rng.random(n)
    return [
        PredictionRecord(
            request_id=f"{variant}-{i}",
            model="churn",
            variant=variant,
            version="3" if variant == "challenger" else "2",
            prediction=str(int(s > 0.5)),
            score=float(s),
            latency_s=0.005 + 0.001 * (i % 7),
            error=(i % 50 == 49),
            # stamped when served, as the router does: a re-sent record is the same record
            ts=1_790_000_000.0 + i,
        )
        for i, s in enumerate(scores)
    ]


def test_outcomes_join_labels_and_losses_match_sklearn(store_url: str) -> None:
    rng = np.random.default_rng(0)
    store = FeedbackStore(store_url)
    records = served(300, "champion", rng)
    assert store.record_predictions(records) == 300
    labels = {r.request_id: int(rng.random() < 0.3) for r in records[:200]}
    result = store.record_feedback(labels)
    assert result == {"accepted": 200, "unknown": 0, "duplicate": 0}

    out = store.outcomes("churn", "champion", "classification")
    labelled = [r for r in records[:200] if not r.error]
    expected = log_loss(
        [labels[r.request_id] for r in labelled],
        [r.score for r in labelled],
        labels=[0, 1],
        normalize=False,
    )
    assert out.losses.size == len(labelled)
    assert out.losses.sum() == pytest.approx(expected, rel=1e-6)
    assert out.errors.size == 300 and out.errors.sum() == 6
    assert out.latencies_s.size == 294

    quality = store.quality("churn", "champion", "classification")
    truth = [labels[r.request_id] for r in records[:200]]
    assert quality["roc_auc"] == pytest.approx(
        roc_auc_score(truth, [r.score for r in records[:200]])
    )
    store.close()


def test_nothing_is_lost_or_double_counted_across_a_restart(store_url: str) -> None:
    rng = np.random.default_rng(1)
    first = FeedbackStore(store_url)
    records = served(50, "challenger", rng)
    first.record_predictions(records)
    first.record_feedback({r.request_id: 1 for r in records[:20]})
    first.append_decision("churn", "ramp", "healthy at 10%", {"next_weight": 25})
    first.close()  # the router or controller restarts

    second = FeedbackStore(store_url)
    # The router re-sends the batch it could not confirm, and a client the same labels.
    assert second.record_predictions(records) == 0 and second.renamed == []
    again = second.record_feedback({r.request_id: 1 for r in records[:30]})
    assert again == {"accepted": 10, "unknown": 0, "duplicate": 20}
    assert second.outcomes("churn", "challenger", "classification").losses.size == sum(
        1 for r in records[:30] if not r.error
    )
    history = second.decisions("churn")
    assert [d["action"] for d in history] == ["ramp"]
    assert history[0]["evidence"] == {"next_weight": 25}
    second.close()


def test_feedback_for_unknown_requests_is_counted_not_stored(store_url: str) -> None:
    store = FeedbackStore(store_url)
    assert store.record_feedback({"never-served": 1}) == {
        "accepted": 0,
        "unknown": 1,
        "duplicate": 0,
    }
    with pytest.raises(FeedbackError, match="request_id must be a non-empty string"):
        store.record_feedback({"": 1})
    with pytest.raises(FeedbackError, match="label for request 'x' is missing"):
        store.record_feedback({"x": None})
    store.close()


def test_regression_losses_are_squared_errors(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.record_predictions(
        [
            PredictionRecord(f"r{i}", "price", "champion", "1", None, float(i), 0.01)
            for i in range(5)
        ]
    )
    store.record_feedback({f"r{i}": i + 2 for i in range(5)})
    out = store.outcomes("price", "champion", "regression")
    np.testing.assert_allclose(np.sort(out.losses), np.full(5, 4.0))
    assert store.quality("price", "champion", "regression")["rmse"] == pytest.approx(2.0)
