"""Feedback on the router: remember what each variant predicted, accept ground truth later.

Every answered inference is queued (request id, the variant that answered and, after a failover,
the one it was assigned to and why it failed over, version, predicted label and score, latency,
error) and written to the feedback store in batches by a background task, so the
request path never waits on the database. Mirrored answers (a challenger in the shadow) are
queued the same way into the store's shadow table, under the id of the request they copy.
`POST /feedback` takes labels by request id, stores them, and refreshes the per-variant quality
gauges that Prometheus scrapes:

- `mainsail_variant_quality{model,variant,version,metric}`: accuracy / log_loss / roc_auc
  (classification) or mae / rmse (regression) over the labelled requests of the variant.
- `mainsail_variant_labelled{model,variant,version}`: labelled requests behind those numbers.
- `mainsail_feedback_total{outcome}`: labels `accepted`, `unknown` (no such request) or
  `duplicate` (already labelled).
- `mainsail_feedback_dropped_total`: predictions not recorded because the queue was full.
- `mainsail_feedback_reused_ids_total`: predictions whose request id was already stored (a client
  reusing its `x-request-id`): kept as `<id>~2`, `<id>~3`, ..., never dropped.

Labels are checked before anything is stored: for classification a class name (or integer)
among the classes the model answers with (`parameters.classes` of its V2 answers), for
regression a finite number; otherwise 400 naming the request id. The body is depth-bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mainsail.core import telemetry
from mainsail.core.limits import LimitError, load_json, shown
from mainsail.feedback.store import FeedbackError, FeedbackStore, PredictionRecord

log = logging.getLogger("mainsail.router.feedback")

MAX_LABELS_PER_POST = 10_000


class FeedbackRecorder:
    """Queues predictions for the store and serves `POST /feedback`."""

    def __init__(
        self,
        store_url: str,
        model: str,
        problem_type: Literal["classification", "regression"],
        positive_label: str,
        registry: CollectorRegistry,
        max_queue: int = 100_000,
    ) -> None:
        self.store = FeedbackStore(store_url)
        self.model = model
        self.problem_type = problem_type
        self.positive_label = positive_label
        self.max_queue = max_queue
        self._pending: list[PredictionRecord] = []
        self._shadow: list[PredictionRecord] = []
        self._versions: dict[str, str] = {}
        #: request id -> its trace and span ids, for the store's log line (tracing and logs on)
        self._traces: dict[str, dict[str, str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._flush_lock: asyncio.Lock | None = None
        self.quality = Gauge(
            "mainsail_variant_quality",
            "Quality of a variant over its labelled requests.",
            ["model", "variant", "version", "metric"],
            registry=registry,
        )
        self.labelled = Gauge(
            "mainsail_variant_labelled",
            "Labelled requests behind mainsail_variant_quality.",
            ["model", "variant", "version"],
            registry=registry,
        )
        self.feedback = Counter(
            "mainsail_feedback",
            "Ground-truth labels received, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.dropped = Counter(
            "mainsail_feedback_dropped", "Predictions not recorded: queue full.", registry=registry
        )
        self.reused = Counter(
            "mainsail_feedback_reused_ids",
            "Predictions whose request id was already stored (kept as <id>~N).",
            registry=registry,
        )
        #: Class names the model answers with (learned from its answers' `classes`).
        self.classes: set[str] = set()

    # -- request path (no I/O) -----------------------------------------------------------

    def observe(
        self,
        request_id: str,
        variant: str,
        version: str,
        status: int,
        body: bytes,
        latency_s: float,
        assigned: str | None = None,
        failover: str | None = None,
    ) -> None:
        """Queue one answered request; never blocks, drops (and counts) when the queue is full.

        `assigned` is the variant the request was assigned to when `variant` answered it in its
        place (a failover, for the reason `failover`); None when it answered its own request."""
        self._versions[variant] = version
        moved = (assigned, failover)
        if telemetry.STATE.tracer is None:
            self._queue(self._pending, request_id, variant, version, status, body, latency_s, moved)
            return
        with telemetry.span("router.feedback", variant=variant, version=version):
            self._queue(self._pending, request_id, variant, version, status, body, latency_s, moved)
            if telemetry.logs_on() and len(self._traces) < self.max_queue:
                # The store's line is written later, by the writer: it names this trace.
                self._traces[request_id] = telemetry.current_ids()

    def observe_shadow(
        self, request_id: str, version: str, status: int, body: bytes, latency_s: float
    ) -> None:
        """Queue one mirrored answer (status 599: no answer at all); never blocks."""
        self._queue(self._shadow, request_id, "shadow", version, status, body, latency_s)

    def _queue(
        self,
        pending: list[PredictionRecord],
        request_id: str,
        variant: str,
        version: str,
        status: int,
        body: bytes,
        latency_s: float,
        moved: tuple[str | None, str | None] = (None, None),
    ) -> None:
        if len(pending) >= self.max_queue:
            self.dropped.inc()
            return
        rows = self._predictions(body) if status == 200 else [(None, None)]
        now = time.time()
        for i, (label, score) in enumerate(rows):
            # One record per predicted row: `<request id>` for one row, `<request id>#<i>` for
            # batches, so ground truth can be given row by row.
            rid = request_id if len(rows) == 1 else f"{request_id}#{i}"
            pending.append(
                PredictionRecord(
                    rid,
                    self.model,
                    variant,
                    version,
                    label,
                    score,
                    latency_s,
                    error=status >= 500,
                    ts=now,
                    assigned=moved[0],
                    failover=moved[1],
                )
            )

    def _predictions(self, body: bytes) -> list[tuple[str | None, float | None]]:
        """Each row's label and positive-class probability (or value) from a V2 answer."""
        try:
            answer = json.loads(body)
            outputs = {o["name"]: o["data"] for o in answer["outputs"]}
        except (ValueError, KeyError, TypeError):
            return [(None, None)]
        classes = (answer.get("parameters") or {}).get("classes")
        if isinstance(classes, list) and len(self.classes) < 1000:
            self.classes.update(str(c) for c in classes)
        if self.problem_type == "regression":
            values = outputs.get("value") or next(iter(outputs.values()), None)
            return [(None, float(v)) for v in values] if values else [(None, None)]
        labels, probs = outputs.get("label"), outputs.get("probability")
        if not labels:
            return [(None, None)]
        if probs is None or len(probs) != len(labels):
            return [(str(label), None) for label in labels]
        # `probability` is that of the predicted label; the store wants P(positive class).
        return [
            (str(label), float(p) if str(label) == self.positive_label else 1.0 - float(p))
            for label, p in zip(labels, probs, strict=True)
        ]

    # -- background writer ---------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._flush_loop())

    async def stop(self, attempts: int = 20, wait_s: float = 0.5) -> None:
        """Stop without losing what is queued: the writer ends after the write in progress
        (never cancelled inside one: its batch would be gone, seen on kind when the gateway's
        pod was replaced right after answering), then what is still queued is written, again
        while the store refuses it (`attempts` times, `wait_s` apart), and only then is the
        store closed."""
        if self._task is not None and self._stopping is not None:
            self._stopping.set()
            await self._task
        for _ in range(attempts):
            await self.flush()
            if not self._pending and not self._shadow:
                break
            await asyncio.sleep(wait_s)
        else:
            log.error(
                "feedback store unreachable at shut-down: %d predictions and %d shadow answers "
                "not recorded",
                len(self._pending),
                len(self._shadow),
            )
        self.store.close()

    async def flush(self) -> None:
        # One flush at a time: a label must not overtake the write of the prediction it labels
        # (the background loop may be writing it right now).
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            try:
                await asyncio.to_thread(self._record, batch)
            except Exception:  # the store is down: keep serving, keep the batch for a retry
                log.exception(
                    "feedback store write failed; %d predictions kept for retry", len(batch)
                )
                self._pending = batch + self._pending
        mirrored, self._shadow = self._shadow, []
        if mirrored:
            try:
                await asyncio.to_thread(self.store.record_shadow, mirrored)
            except Exception:
                log.exception(
                    "feedback store write failed; %d shadow answers kept for retry", len(mirrored)
                )
                self._shadow = mirrored + self._shadow

    def _record(self, batch: list[PredictionRecord]) -> None:
        self.store.record_predictions(batch)
        if telemetry.logs_on():
            for rec in batch:
                telemetry.event(
                    log,
                    "prediction stored in the feedback store",
                    request_id=rec.request_id,
                    variant=rec.variant,
                    version=rec.version,
                    **self._traces.pop(rec.request_id.split("#", 1)[0], {}),
                )
        renamed = getattr(self.store, "renamed", [])
        if renamed:
            self.reused.inc(len(renamed))
            log.warning(
                "%d reused request id(s) stored under new names, e.g. %s -> %s",
                len(renamed),
                *renamed[0],
            )

    async def _flush_loop(self) -> None:
        stopping = self._stopping
        assert stopping is not None
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.2)
            await self.flush()

    # -- POST /feedback -------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        """`{"labels": {"<request id>": <label>, ...}}` -> counts per outcome."""
        try:
            payload = load_json(await request.body())
            labels = payload["labels"]
            if not isinstance(labels, dict):
                raise TypeError
        except LimitError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        except (KeyError, TypeError):
            return JSONResponse(
                {"error": 'expected a JSON object {"labels": {"<request id>": <label>, ...}}'},
                status_code=400,
            )
        if len(labels) > MAX_LABELS_PER_POST:
            return JSONResponse(
                {"error": f"at most {MAX_LABELS_PER_POST} labels per request, got {len(labels)}"},
                status_code=413,
            )
        for request_id, label in labels.items():
            problem = self._check_label(label)
            if problem is not None:
                return JSONResponse(
                    {"error": f"label for request {shown(request_id, 140)}: {problem}"},
                    status_code=400,
                )
        await self.flush()  # the predictions being labelled may still sit in the queue
        try:
            counts = await asyncio.to_thread(self.store.record_feedback, labels)
        except FeedbackError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        for outcome, n in counts.items():
            self.feedback.labels(outcome).inc(n)
        await asyncio.to_thread(self.refresh_quality)
        return JSONResponse(counts)

    def _check_label(self, label: Any) -> str | None:
        """Why `label` cannot be ground truth for this model, or None when it can."""
        if self.problem_type == "regression":
            if isinstance(label, bool) or not isinstance(label, int | float):
                return f"expected a number, got {shown(label)}"
            if label != label or label in (float("inf"), float("-inf")):
                return "expected a finite number"
            return None
        if isinstance(label, bool) or not isinstance(label, str | int):
            return f"expected a class name, got {shown(label)}"
        if self.classes and str(label) not in self.classes:
            return f"{shown(label)} is not a class of the model ({', '.join(sorted(self.classes))})"
        if not self.classes and len(str(label)) > 64:
            return "a class name has at most 64 characters"
        return None

    def refresh_quality(self) -> None:
        for variant, version in list(self._versions.items()):
            stats: dict[str, Any] = self.store.quality(
                self.model, variant, self.problem_type, self.positive_label
            )
            self.labelled.labels(self.model, variant, version).set(stats.pop("labelled", 0.0))
            for metric, value in stats.items():
                self.quality.labels(self.model, variant, version, metric).set(value)
