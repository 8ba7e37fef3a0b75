"""The durable feedback store: what each variant predicted, the ground truth that came later,
and every promotion decision, in SQLite (default) or Postgres (when configured).

The router records one row per served request (request id, variant, model version, score,
latency, error); the feedback endpoint records labels by request id; the promotion controller
reads joined outcomes per variant and appends its decisions. Writes are idempotent per request
id, so a client that retries after a restart does not double-count.
"""

from __future__ import annotations

import collections
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mainsail.config import ProjectConfig


@dataclass
class VariantOutcomes:
    """Per-request outcomes of one variant, as collected by the feedback store and router."""

    losses: np.ndarray
    """Quality loss per labelled request (lower is better)."""
    errors: np.ndarray
    """1.0 for a failed request, 0.0 for a served one."""
    latencies_s: np.ndarray
    """Latency per served request, seconds."""


metadata = sa.MetaData()

predictions = sa.Table(
    "mainsail_predictions",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("variant", sa.String(32), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("prediction", sa.String(256)),
    sa.Column("score", sa.Float),
    sa.Column("latency_s", sa.Float, nullable=False),
    sa.Column("error", sa.Boolean, nullable=False, default=False),
    sa.Column("ts", sa.Float, nullable=False),
)
feedback = sa.Table(
    "mainsail_feedback",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("label", sa.String(256), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
)
decisions = sa.Table(
    "mainsail_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
)
ab_state = sa.Table(
    "mainsail_ab_state",
    metadata,
    sa.Column("experiment", sa.String(200), primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class PredictionRecord:
    """One served request as the router saw it."""

    request_id: str
    model: str
    variant: str
    version: str
    prediction: str | None
    score: float | None
    """Probability of the positive class (binary classification) or the predicted value."""
    latency_s: float
    error: bool = False
    ts: float = 0.0


class FeedbackError(ValueError):
    """Feedback that cannot be stored (unknown request id, bad label)."""


class FeedbackStore:
    """SQL store for predictions, labels and decisions (SQLAlchemy Core; SQLite or Postgres)."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            # One file shared by the router and the controller: wait on locks instead of failing.
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            with self.engine.begin() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def _insert_ignore(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
        return len(self._insert_new(table, rows))

    def _insert_new(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Insert, skipping ids already stored; returns the ids really inserted."""
        if not rows:
            return []
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).on_conflict_do_nothing()
        # RETURNING counts what was really inserted (rowcount is -1 for psycopg's executemany).
        stmt = stmt.returning(table.c.request_id)
        with self.engine.begin() as conn:
            result = conn.execute(stmt, list(rows))
            return [str(row[0]) for row in result.all()]

    def record_predictions(self, records: Iterable[PredictionRecord]) -> int:
        """Store served requests; returns rows added.

        A request id that is already stored (a client reusing its `x-request-id`) is never
        dropped: the later prediction is stored as `<id>~2` (`~3`, ...), kept in
        :attr:`renamed` (id -> stored id) for the caller to count and log, and labelled by
        that name."""
        now = time.time()
        rows = [
            {
                "request_id": r.request_id,
                "model": r.model,
                "variant": r.variant,
                "version": r.version,
                "prediction": r.prediction,
                "score": r.score,
                "latency_s": r.latency_s,
                "error": r.error,
                "ts": r.ts or now,
            }
            for r in records
        ]
        added = self._insert_new(predictions, rows)
        self.renamed: dict[str, str] = {}
        inserted = collections.Counter(added)
        pending = []
        for row in rows:  # several rows of one batch may share an id too
            rid = str(row["request_id"])
            if inserted[rid] > 0:
                inserted[rid] -= 1
            else:
                pending.append(row)
        for row in pending:
            base = str(row["request_id"])
            for n in range(2, 1000):
                name = f"{base}~{n}"
                if self._insert_new(predictions, [{**row, "request_id": name}]):
                    self.renamed[base] = name
                    added.append(name)
                    break
        return len(added)

    def record_feedback(self, labels: dict[str, Any]) -> dict[str, int]:
        """Store ground truth by request id. Unknown ids are counted, not stored."""
        if not labels:
            return {"accepted": 0, "unknown": 0, "duplicate": 0}
        for request_id, label in labels.items():
            if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
                raise FeedbackError(
                    "request_id must be a non-empty string of at most 128 chars, "
                    f"got {request_id!r}"
                )
            if label is None or (isinstance(label, float) and math.isnan(label)):
                raise FeedbackError(f"label for request {request_id!r} is missing")
            if not isinstance(label, str | int | float) or len(str(label)) > 256:
                raise FeedbackError(
                    f"label for request {request_id!r} must be a class name or a number"
                )
        with self.engine.connect() as conn:
            known = {
                row[0]
                for row in conn.execute(
                    sa.select(predictions.c.request_id).where(
                        predictions.c.request_id.in_(list(labels))
                    )
                )
            }
        now = time.time()
        rows = [
            {"request_id": rid, "label": str(label), "ts": now}
            for rid, label in labels.items()
            if rid in known
        ]
        added = self._insert_ignore(feedback, rows)
        return {
            "accepted": added,
            "unknown": len(labels) - len(rows),
            "duplicate": len(rows) - added,
        }

    def outcomes(
        self,
        model: str,
        variant: str,
        problem_type: Literal["classification", "regression"],
        positive_label: str = "1",
        since: float | None = None,
    ) -> VariantOutcomes:
        """Joined per-request outcomes of one variant: losses (labelled rows), errors, latencies."""
        where = [predictions.c.model == model, predictions.c.variant == variant]
        if since is not None:
            where.append(predictions.c.ts >= since)
        served = sa.select(
            predictions.c.request_id, predictions.c.error, predictions.c.latency_s
        ).where(*where)
        joined = (
            sa.select(predictions.c.score, feedback.c.label)
            .join(feedback, feedback.c.request_id == predictions.c.request_id)
            .where(*where, predictions.c.error.is_(False))
        )
        with self.engine.connect() as conn:
            served_rows = conn.execute(served).all()
            labelled = conn.execute(joined).all()
        # Rows of one batched request (`<id>#<i>`) share its latency and outcome: count each
        # request once, or the guardrails would see 50 copies of one measurement as 50 samples.
        requests: dict[str, tuple[bool, float]] = {}
        for request_id, error, latency in served_rows:
            requests.setdefault(str(request_id).split("#", 1)[0], (bool(error), float(latency)))
        errors = np.array([float(e) for e, _ in requests.values()])
        latencies = np.array([lat for e, lat in requests.values() if not e])
        losses = _losses(labelled, problem_type, positive_label)
        return VariantOutcomes(losses=losses, errors=errors, latencies_s=latencies)

    def quality(
        self,
        model: str,
        variant: str,
        problem_type: Literal["classification", "regression"],
        positive_label: str = "1",
    ) -> dict[str, float]:
        """Headline quality of one variant over its labelled requests (Prometheus, reports)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(predictions.c.score, feedback.c.label, predictions.c.prediction)
                .join(feedback, feedback.c.request_id == predictions.c.request_id)
                .where(predictions.c.model == model, predictions.c.variant == variant)
            ).all()
        if not rows:
            return {"labelled": 0.0}
        if problem_type == "regression":
            err = np.array([float(r[0]) - float(r[1]) for r in rows])
            return {
                "labelled": float(len(rows)),
                "mae": float(np.abs(err).mean()),
                "rmse": float(np.sqrt((err**2).mean())),
            }
        scores = np.array([float(r[0]) for r in rows])
        truth = np.array([1.0 if str(r[1]) == positive_label else 0.0 for r in rows])
        correct = np.array([str(r[2]) == str(r[1]) for r in rows], dtype=float)
        out = {
            "labelled": float(len(rows)),
            "accuracy": float(correct.mean()),
            "log_loss": float(_log_loss(scores, truth).mean()),
        }
        if 0 < truth.sum() < truth.size:
            from scipy.stats import rankdata

            ranks = rankdata(scores)
            pos = truth == 1
            out["roc_auc"] = float(
                (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())
            )
        return out

    def append_decision(
        self, model: str, action: str, reason: str, evidence: dict[str, Any]
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                decisions.insert().values(
                    model=model,
                    ts=time.time(),
                    action=action,
                    reason=reason,
                    evidence=json.dumps(evidence),
                )
            )

    def load_state(self, experiment: str) -> dict[str, Any] | None:
        """The persisted state of a running experiment (sequential tests, weight), if any."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(ab_state.c.state).where(ab_state.c.experiment == experiment)
            ).first()
        return json.loads(row[0]) if row else None

    def save_state(self, experiment: str, state: dict[str, Any]) -> None:
        """Replace the state of an experiment, atomically."""
        with self.engine.begin() as conn:
            conn.execute(ab_state.delete().where(ab_state.c.experiment == experiment))
            conn.execute(
                ab_state.insert().values(
                    experiment=experiment, state=json.dumps(state), ts=time.time()
                )
            )

    def decisions(self, model: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(decisions).where(decisions.c.model == model).order_by(decisions.c.id)
            ).mappings()
            return [{**row, "evidence": json.loads(row["evidence"])} for row in rows]


def _log_loss(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    return -(truth * np.log(p) + (1 - truth) * np.log(1 - p))


def _losses(rows: Sequence[Any], problem_type: str, positive_label: str) -> np.ndarray:
    if not rows:
        return np.zeros(0)
    scores = np.array([float(r[0]) for r in rows])
    if problem_type == "regression":
        labels = np.array([float(r[1]) for r in rows])
        return (scores - labels) ** 2
    truth = np.array([1.0 if str(r[1]) == positive_label else 0.0 for r in rows])
    return _log_loss(scores, truth)


def store_url(cfg: ProjectConfig, stack_data_dir: Path | None = None) -> str:
    """The project's feedback store: `promotion.store_url`, else a SQLite file in the local
    stack's data dir (where the router records and the promotion controller reads)."""
    data_dir = stack_data_dir if stack_data_dir is not None else cfg.stack.data_dir.resolve()
    return cfg.promotion.store_url or f"sqlite:///{data_dir / 'feedback.db'}"
