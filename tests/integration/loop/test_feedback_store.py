"""The feedback store against real SQLite and real Postgres (the project's own cluster)."""

from __future__ import annotations

import contextlib
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


def test_assigned_and_answering_variants_are_kept_apart(store_url: str) -> None:
    """A request assigned to the challenger and answered by the champion (a failover) counts for
    the challenger in the split, in neither side's outcomes, and in the failover report."""
    store = FeedbackStore(store_url)
    ts = 1_790_000_000.0
    rows = [
        PredictionRecord(f"a{i}", "churn", "champion", "2", "0", 0.2, 0.01, ts=ts + i)
        for i in range(30)
    ]
    rows += [
        PredictionRecord(f"b{i}", "churn", "challenger", "3", "1", 0.9, 0.01, ts=ts + i)
        for i in range(6)
    ]

    def failed_over(rid: str, reason: str) -> PredictionRecord:
        return PredictionRecord(
            rid,
            "churn",
            "champion",
            "2",
            "0",
            0.2,
            0.01,
            ts=ts,
            assigned="challenger",
            failover=reason,
        )

    rows += [failed_over(f"c{i}", "connect" if i == 0 else "out_of_rotation") for i in range(4)]
    # A failed-over batch of three rows counts once.
    rows += [failed_over(f"d#{j}", "out_of_rotation") for j in range(3)]
    assert store.record_predictions(rows) == len(rows)
    store.record_feedback({r.request_id: 1 for r in rows})
    assert store.requests_per_variant("churn") == {"champion": 30, "challenger": 11}
    champion = store.outcomes("churn", "champion", "classification")
    challenger = store.outcomes("churn", "challenger", "classification")
    assert champion.errors.size == 30 and champion.losses.size == 30
    assert challenger.errors.size == 6 and challenger.losses.size == 6
    assert store.failovers("churn") == {
        "challenger": {
            "assigned": 11,
            "failed_over": 5,
            "share": 5 / 11,
            "reasons": {"connect": 1, "out_of_rotation": 4},
        },
        "champion": {"assigned": 30, "failed_over": 0, "share": 0.0, "reasons": {}},
    }
    assert store.failovers("churn", since=ts + 29) == {
        "champion": {"assigned": 1, "failed_over": 0, "share": 0.0, "reasons": {}}
    }
    store.close()


def test_a_table_written_before_the_assignment_columns_is_migrated(store_url: str) -> None:
    """A store created by the previous release (no `assigned`, `failover`) gains the columns
    when opened, its rows stay readable as answered by their assigned variant, and opening it
    again changes nothing."""
    from mainsail.feedback.store import migrate

    old = sa.MetaData()
    table = sa.Table(
        "mainsail_predictions",
        old,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in metadata.tables["mainsail_predictions"].columns
            if c.name not in ("assigned", "failover")
        ),
    )
    engine = sa.create_engine(store_url)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {
                    "request_id": f"old{i}",
                    "model": "churn",
                    "variant": "challenger" if i % 4 == 0 else "champion",
                    "version": "1",
                    "prediction": "1",
                    "score": 0.7,
                    "latency_s": 0.01,
                    "error": False,
                    "ts": 1_790_000_000.0 + i,
                }
                for i in range(20)
            ],
        )
    store = FeedbackStore(store_url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("mainsail_predictions")}
    assert {"assigned", "failover"} <= columns
    assert store.requests_per_variant("churn") == {"champion": 15, "challenger": 5}
    assert store.outcomes("churn", "challenger", "classification").errors.size == 5
    assert store.failovers("churn")["challenger"]["failed_over"] == 0
    store.record_predictions(
        [
            PredictionRecord(
                "new",
                "churn",
                "champion",
                "1",
                "1",
                0.7,
                0.01,
                assigned="challenger",
                failover="timeout",
            )
        ]
    )
    assert store.requests_per_variant("churn") == {"champion": 15, "challenger": 6}
    assert store.failovers("churn")["challenger"]["reasons"] == {"timeout": 1}
    store.close()
    assert migrate(engine) == []  # a second opener finds the columns there
    FeedbackStore(store_url).close()
    engine.dispose()


def test_a_client_waits_for_a_postgres_that_is_not_ready_yet() -> None:
    """The gateway's init container on the cluster (`python -m mainsail.feedback wait`): a
    Postgres whose port opens only after 1.5 s (a forwarder in front of the real one) is waited
    for, one line per try naming the server and the reason; a store that never opens fails
    after the timeout with the same message, exit 1, and no stack trace."""
    import socket
    import subprocess
    import sys
    import threading
    import time

    from mainsail.core.ports import free_port
    from mainsail.feedback.store import wait_for_store

    real = sa.engine.make_url(postgres_url())
    port = free_port()
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def forward_later() -> None:
        time.sleep(1.5)
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection((real.host or "127.0.0.1", real.port or 5432))
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=forward_later, daemon=True)
    thread.start()
    lines: list[str] = []
    try:
        url = real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        waited = wait_for_store(url, 30, every_s=0.3, log=lines.append)
    finally:
        stop.set()
        thread.join(5)
    assert waited >= 1.4, (waited, lines)
    assert f"127.0.0.1:{port}" in lines[0] and "not ready yet" in lines[0], lines
    assert "ready after" in lines[-1]
    assert not real.password or real.password not in "\n".join(lines)

    closed = real.set(host="127.0.0.1", port=free_port()).render_as_string(hide_password=True)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mainsail.feedback",
            "wait",
            closed,
            "--timeout",
            "1",
            "--every",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert "not ready after" in last and closed.split("@")[-1] in last, run.stderr
    assert "Traceback" not in run.stderr
