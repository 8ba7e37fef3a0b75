"""The durable feedback store: what each variant predicted, the ground truth that came later,
what a shadowed challenger answered to the same requests, and every promotion decision, in SQLite
(default) or Postgres (when configured).

The router records one row per served request (request id, the variant it ASSIGNED the request
to and the variant that ANSWERED it, model version, score, latency, error, and why it failed
over when those differ) and one row per mirrored answer of a shadowed challenger (same request
id, its own table); the feedback endpoint records labels by request id; the promotion controller
reads joined outcomes per variant, pairs shadow answers with the champion's, counts requests per
assigned variant for the sample-ratio check, and appends its decisions. Writes are idempotent per
request id, so a client that retries after a restart does not double-count.

Assigned and answering variant: the router assigns each request by weight; when the assigned
variant is out of rotation or gives no answer, the request fails over to the other one, which
answers it (`variant`) while `assigned` keeps the assignment. The sample-ratio check tests the
assignment (:meth:`FeedbackStore.requests_per_variant`): a challenger pod killed mid-experiment
must not look like a biased split. The A/B comparison reads only requests answered by their
assigned variant (:meth:`FeedbackStore.outcomes`); failovers are counted apart
(:meth:`FeedbackStore.failovers`) and reported in the controller's decisions.

Schema changes are additive: a column added later (`assigned`, `failover`) is added to an
existing table when a store opens it (:func:`migrate`), and a row written before it existed reads
as answered by its assigned variant (`assigned` NULL means `variant`).
"""

from __future__ import annotations

import collections
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
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
    # Added after the first release (see migrate): NULL in older rows, read as `variant`.
    sa.Column("assigned", sa.String(32)),
    sa.Column("failover", sa.String(32)),
)
#: Columns added to existing tables after they were first created, in order (see migrate).
ADDED_COLUMNS: tuple[sa.Column[Any], ...] = (predictions.c.assigned, predictions.c.failover)
#: The variant a request was assigned to (rows written before the column existed: the one that
#: answered it).
assigned_variant = sa.func.coalesce(predictions.c.assigned, predictions.c.variant)
feedback = sa.Table(
    "mainsail_feedback",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("label", sa.String(256), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
)
shadow = sa.Table(
    "mainsail_shadow",
    metadata,
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("prediction", sa.String(256)),
    sa.Column("score", sa.Float),
    sa.Column("latency_s", sa.Float, nullable=False),
    sa.Column("error", sa.Boolean, nullable=False, default=False),
    sa.Column("ts", sa.Float, nullable=False, index=True),
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
    assigned: str | None = None
    """The variant the router assigned the request to, when another one answered it (a
    failover); None: the one that answered (`variant`)."""
    failover: str | None = None
    """Why the assigned variant did not answer (`out_of_rotation`, `connect`, `timeout`,
    `model_not_served`, ...); None when it did."""


@dataclass
class ShadowPairs:
    """A shadowed challenger's answers paired with the champion's by request id.

    Row arrays (`*_prediction`, `*_score`, `label`) hold one entry per predicted row answered by
    both (ids `<request>` or `<request>#<i>`); request arrays (`*_error`, `*_latency_s`) hold one
    entry per request both saw (a batch counts once)."""

    champion_prediction: np.ndarray
    """Champion's predicted label (classification) per paired row, as text; '' when absent."""
    challenger_prediction: np.ndarray
    champion_score: np.ndarray
    """P(positive class) or the predicted value per paired row; NaN when absent."""
    challenger_score: np.ndarray
    label: np.ndarray
    """Ground truth per paired row as text, '' where none arrived yet."""
    champion_error: np.ndarray
    """1.0 where the request failed on that side, else 0.0 (per paired request, in the order
    the requests were served)."""
    challenger_error: np.ndarray
    champion_latency_s: np.ndarray
    """Latency per paired request (NaN where that side failed)."""
    challenger_latency_s: np.ndarray
    unpaired_champion: int = 0
    """Champion requests with no shadow answer (mirror copy dropped or still in flight)."""
    unpaired_challenger: int = 0
    """Shadow answers with no champion record."""

    @property
    def rows(self) -> int:
        return int(self.champion_score.size)

    @property
    def requests(self) -> int:
        return int(self.champion_error.size)


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
        migrate(self.engine)

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

        A record already stored (same request id, variant and timestamp: the router re-sending
        a batch after a store outage, or after a restart) is not stored twice. A request id
        that is already stored for another request (a client reusing its `x-request-id`) is
        never dropped: the later prediction is stored as `<id>~2` (`~3`, ...), listed in
        :attr:`renamed` as (id, stored id) pairs for the caller to count and log, and labelled
        by that name."""
        rows = _rows(records, with_variant=True)
        added = self._insert_new(predictions, rows)
        self.renamed: list[tuple[str, str]] = []
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
            if self._stored_already(row):
                continue
            for n in range(2, 1000):
                name = f"{base}~{n}"
                if self._insert_new(predictions, [{**row, "request_id": name}]):
                    self.renamed.append((base, name))
                    added.append(name)
                    break
        return len(added)

    def _stored_already(self, row: dict[str, Any]) -> bool:
        """Whether this very record (its id or one of its `~N` names, same variant and
        timestamp) is stored."""
        base = str(row["request_id"])
        names = sa.or_(
            predictions.c.request_id == base,
            predictions.c.request_id.startswith(base + "~", autoescape=True),
        )
        query = (
            sa.select(predictions.c.request_id, predictions.c.variant)
            .where(names)
            .where(predictions.c.ts == row["ts"])
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).all()

        def same_request(stored: str) -> bool:
            return stored == base or stored.removeprefix(base + "~").isdigit()

        return any(r.variant == row["variant"] and same_request(r.request_id) for r in found)

    def record_shadow(self, records: Iterable[PredictionRecord]) -> int:
        """Store a shadowed (mirrored) variant's answers; ids already stored are ignored."""
        return self._insert_ignore(shadow, _rows(records, with_variant=False))

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
        """Joined per-request outcomes of one variant: losses (labelled rows), errors, latencies.

        Only requests the variant was assigned AND answered count: a failover (assigned to one
        variant, answered by the other) is evidence about neither model's answers, and counting
        the champion's answer to a request assigned to the challenger on either side would bias
        the comparison (see :meth:`failovers`, reported beside it)."""
        where = [
            predictions.c.model == model,
            predictions.c.variant == variant,
            assigned_variant == variant,
        ]
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

    def requests_per_variant(self, model: str, since: float | None = None) -> dict[str, int]:
        """Requests ASSIGNED per variant (a batch counts once), for the sample-ratio check.

        The assignment, not the answering variant: the split the router was configured with is
        what the check tests, and a request that failed over to the champion while the
        challenger's pod was down was still assigned to the challenger."""
        where = [predictions.c.model == model]
        if since is not None:
            where.append(predictions.c.ts >= since)
        query = sa.select(assigned_variant, predictions.c.request_id).where(*where)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        seen: dict[str, set[str]] = {}
        for variant, request_id in rows:
            seen.setdefault(str(variant), set()).add(str(request_id).split("#", 1)[0])
        return {variant: len(ids) for variant, ids in seen.items()}

    def failovers(self, model: str, since: float | None = None) -> dict[str, dict[str, Any]]:
        """Per assigned variant: requests assigned, how many another variant answered
        (`failed_over`), their share, and how many per reason (a batch counts once)."""
        where = [predictions.c.model == model]
        if since is not None:
            where.append(predictions.c.ts >= since)
        query = sa.select(
            assigned_variant,
            predictions.c.variant,
            predictions.c.failover,
            predictions.c.request_id,
        ).where(*where)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        requests: dict[str, dict[str, str | None]] = {}
        for assigned, variant, reason, request_id in rows:
            base = str(request_id).split("#", 1)[0]
            failed_over = str(variant) != str(assigned)
            requests.setdefault(str(assigned), {}).setdefault(
                base, (reason or "unknown") if failed_over else None
            )
        out: dict[str, dict[str, Any]] = {}
        for assigned, by_request in sorted(requests.items()):
            reasons = collections.Counter(r for r in by_request.values() if r is not None)
            moved = sum(reasons.values())
            out[assigned] = {
                "assigned": len(by_request),
                "failed_over": moved,
                "share": moved / len(by_request),
                "reasons": dict(sorted(reasons.items())),
            }
        return out

    def shadow_pairs(self, model: str, since: float | None = None) -> ShadowPairs:
        """The shadow answers since `since`, each paired with the champion's answer to the same
        request id, with ground truth where it arrived."""
        champ_where = [predictions.c.model == model, predictions.c.variant == "champion"]
        shadow_where = [shadow.c.model == model]
        if since is not None:
            champ_where.append(predictions.c.ts >= since)
            shadow_where.append(shadow.c.ts >= since)
        cols = ("request_id", "prediction", "score", "latency_s", "error", "ts")
        with self.engine.connect() as conn:
            champ = conn.execute(
                sa.select(*(predictions.c[c] for c in cols), feedback.c.label)
                .outerjoin(feedback, feedback.c.request_id == predictions.c.request_id)
                .where(*champ_where)
            ).all()
            mirrored = conn.execute(sa.select(*(shadow.c[c] for c in cols)).where(*shadow_where))
            shadow_rows = {str(r[0]): r for r in mirrored.all()}
        champ_rows = {str(r[0]): r for r in champ}

        # Requests: errors and latency are per request; a failed request has one row without
        # a `#i` suffix on the side that failed, whatever the other side answered.
        def per_request(rows: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
            out: dict[str, tuple[float, float, float]] = {}
            for rid, row in rows.items():
                base = rid.split("#", 1)[0]
                err = bool(row[4])
                out.setdefault(base, (float(err), math.nan if err else float(row[3]), row[5]))
            return out

        champ_req, shadow_req = per_request(champ_rows), per_request(shadow_rows)
        # Requests in the order they were served (the first ones may be a cold start).
        both = sorted(set(champ_req) & set(shadow_req), key=lambda b: (champ_req[b][2], b))
        paired_rows = sorted(
            rid
            for rid in set(champ_rows) & set(shadow_rows)
            if not champ_rows[rid][4] and not shadow_rows[rid][4]
        )

        def text(values: list[Any]) -> np.ndarray:
            return np.array(["" if v is None else str(v) for v in values], dtype=object)

        def number(values: list[Any]) -> np.ndarray:
            return np.array([math.nan if v is None else float(v) for v in values], dtype=float)

        return ShadowPairs(
            champion_prediction=text([champ_rows[r][1] for r in paired_rows]),
            challenger_prediction=text([shadow_rows[r][1] for r in paired_rows]),
            champion_score=number([champ_rows[r][2] for r in paired_rows]),
            challenger_score=number([shadow_rows[r][2] for r in paired_rows]),
            label=text([champ_rows[r][6] for r in paired_rows]),
            champion_error=np.array([champ_req[b][0] for b in both], dtype=float),
            challenger_error=np.array([shadow_req[b][0] for b in both], dtype=float),
            champion_latency_s=np.array([champ_req[b][1] for b in both], dtype=float),
            challenger_latency_s=np.array([shadow_req[b][1] for b in both], dtype=float),
            unpaired_champion=len(set(champ_req) - set(shadow_req)),
            unpaired_challenger=len(set(shadow_req) - set(champ_req)),
        )

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


def _rows(records: Iterable[PredictionRecord], *, with_variant: bool) -> list[dict[str, Any]]:
    """Table rows of records (`ts` defaults to now)."""
    now = time.time()
    rows = []
    for r in records:
        row = {
            "request_id": r.request_id,
            "model": r.model,
            "version": r.version,
            "prediction": r.prediction,
            "score": r.score,
            "latency_s": r.latency_s,
            "error": r.error,
            "ts": r.ts or now,
        }
        if with_variant:
            row["variant"] = r.variant
            row["assigned"] = r.assigned or r.variant
            row["failover"] = r.failover if row["assigned"] != r.variant else None
        rows.append(row)
    return rows


def migrate(engine: Engine) -> list[str]:
    """Add the columns of :data:`ADDED_COLUMNS` that an existing table lacks (nullable, so the
    rows already there stay as they were); returns the names added. Safe when several processes
    open the store at once (the router and the controller): Postgres adds `IF NOT EXISTS`, and a
    SQLite "duplicate column" from a concurrent opener counts as done."""
    added: list[str] = []
    for column in ADDED_COLUMNS:
        table = column.table
        have = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
        if column.name in have:
            continue
        kind = column.type.compile(dialect=engine.dialect)
        guard = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
        ddl = f"ALTER TABLE {table.name} ADD COLUMN {guard}{column.name} {kind}"
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(ddl)
        except sa.exc.OperationalError as err:
            if "duplicate column" not in str(err).lower():
                raise
        added.append(column.name)
    return added


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


class StoreUnavailableError(RuntimeError):
    """The feedback store did not accept a connection in time."""


def wait_for_store(
    url: str,
    timeout_s: float,
    *,
    every_s: float = 2.0,
    log: Callable[[str], None] = print,
) -> float:
    """Wait until the store at `url` answers `SELECT 1`; returns the seconds waited.

    For a client that starts beside its database (the gateway's pod next to the chart's
    Postgres, which needs a few seconds to initialise): one line per failed try names the
    server and the reason, instead of a crash and a restart. Raises StoreUnavailableError after
    `timeout_s`."""
    where = sa.engine.make_url(url).render_as_string(hide_password=True)
    # A server that drops packets instead of refusing must not hang a try past its turn.
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    started = time.monotonic()
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                waited = time.monotonic() - started
                log(f"feedback store {where} ready after {waited:.0f} s")
                return waited
            except sa.exc.OperationalError as err:
                waited = time.monotonic() - started
                reason = str(err.orig or err).strip().splitlines()[0][:200]
                if waited + every_s > timeout_s:
                    raise StoreUnavailableError(
                        f"feedback store {where} not ready after {waited:.0f} s: {reason}"
                    ) from None
                log(
                    f"feedback store {where} not ready yet ({reason}); "
                    f"retrying for up to {timeout_s - waited:.0f} s more"
                )
                time.sleep(every_s)
    finally:
        engine.dispose()


def store_url(cfg: ProjectConfig, stack_data_dir: Path | None = None) -> str:
    """The project's feedback store: `promotion.store_url`, else a SQLite file in the local
    stack's data dir (where the router records and the promotion controller reads)."""
    data_dir = stack_data_dir if stack_data_dir is not None else cfg.stack.data_dir.resolve()
    return cfg.promotion.store_url or f"sqlite:///{data_dir / 'feedback.db'}"
