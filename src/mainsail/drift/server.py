"""The drift sidecar: an HTTP service that receives served rows and checks them for drift.

Endpoints (JSON in and out unless noted):

* `POST /v1/rows` — `{"model", "version", "rows": [{feature: value}], "predictions": [...]}`,
  or with `"columns": [feature, ...]` and each row an array of values in that order;
  202 when queued, 400 with the reason for a malformed batch, 404 when the model version has no
  reference, 413 for an oversized batch, 503 when the check queue is full (the batch is dropped
  and counted: the caller must not wait for the sidecar anyway).
* `POST /v1/check?model=&version=[&mmd=1]` — run a check now (on the worker) and return it;
  `mmd=1` adds the MMD test.
* `GET /v1/status` — window sizes and the latest result per model version.
* `GET /v1/window?model=&version=` — the current window as parquet (what a retraining run gets).
* `GET /metrics` — Prometheus metrics; `GET /healthz` — liveness of the server and the worker.

Authentication: `/v1/window` (raw rows) and `/v1/check` need `Authorization: Bearer <token>`,
the token in the variable `drift.token_env` names (refused while it is unset); `/v1/rows` takes
loopback callers (the runtime in the same pod) or the token.

Requests are parsed and encoded on the HTTP threads; windows and checks belong to one worker
thread fed by a bounded queue, so a check never holds up a request.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np

from mainsail.config.drift import DriftConfig
from mainsail.core import telemetry
from mainsail.core.http import JsonHandler
from mainsail.core.limits import is_loopback
from mainsail.drift.detectors import CheckResult, VersionDetectors
from mainsail.drift.encoding import BatchError, Encoder, parse_batch
from mainsail.drift.metrics import DriftMetrics
from mainsail.drift.performance import VersionPerformance
from mainsail.drift.reference import ReferenceError, ReferenceLoader

__all__ = ["DriftSidecar"]

log = logging.getLogger("mainsail.drift")

MAX_BODY_BYTES = 64 * 1024 * 1024


class _Ring:
    """A fixed-size ring of matrix rows; `view()` returns them oldest first."""

    def __init__(self, size: int, width: int, dtype: Any) -> None:
        self.buf = np.zeros((size, width), dtype=dtype)
        self.size = size
        self.pos = 0
        self.count = 0

    def extend(self, block: np.ndarray) -> None:
        if len(block) >= self.size:
            self.buf[:] = block[-self.size :]
            self.pos, self.count = 0, self.size
            return
        end = self.pos + len(block)
        if end <= self.size:
            self.buf[self.pos : end] = block
        else:
            first = self.size - self.pos
            self.buf[self.pos :] = block[:first]
            self.buf[: end - self.size] = block[first:]
        self.pos = end % self.size
        self.count = min(self.size, self.count + len(block))

    def view(self) -> np.ndarray:
        if self.count < self.size:
            return self.buf[: self.count]
        if self.pos == 0:
            return self.buf
        return np.concatenate([self.buf[self.pos :], self.buf[: self.pos]])


@dataclass
class _Version:
    """Window, detectors and latest result of one model version."""

    model: str
    version: str
    encoder: Encoder
    detectors: VersionDetectors
    num: _Ring
    cat: _Ring
    reference_rows: int
    raw: deque[dict[str, Any]]
    predictions: deque[Any]
    has_reference_predictions: bool
    scores: deque[float | None] = field(default_factory=deque)
    performance: VersionPerformance | None = None
    rows_since_check: int = 0
    last_check: float = 0.0
    consecutive: int = 0
    checks: int = 0
    last_result: CheckResult | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class DriftSidecar:
    """The sidecar service; `start()` binds and runs it in background threads."""

    def __init__(self, cfg: DriftConfig, loader: ReferenceLoader, token: str | None = None) -> None:
        self.cfg = cfg
        self.loader = loader
        self.token = token or None
        self.metrics = DriftMetrics(cfg.queue_batches)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=cfg.queue_batches)
        self._versions: dict[tuple[str, str], _Version] = {}
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="drift-worker", daemon=True)
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() first"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    def start(self) -> DriftSidecar:
        handler = type("Handler", (_Handler,), {"sidecar": self})
        self._httpd = ThreadingHTTPServer((self.cfg.host, self.cfg.port), handler)
        self._httpd.daemon_threads = True
        self._worker.start()
        self._http_thread = threading.Thread(
            target=self._httpd.serve_forever, name="drift-http", daemon=True
        )
        self._http_thread.start()
        return self

    def wait(self) -> None:
        """Block until `stop()` (or Ctrl-C), then stop."""
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._worker.is_alive():
            self._worker.join(5)

    def worker_alive(self) -> bool:
        return self._worker.is_alive()

    # -- model versions -------------------------------------------------------------------
    def version(self, model: str, version: str) -> _Version:
        """The state of a model version, loading its reference on first use."""
        key = (model, version)
        state = self._versions.get(key)
        if state is not None:
            return state
        with self._load_lock:
            state = self._versions.get(key)
            if state is None:
                state = self._load(model, version)
                self._versions[key] = state
        return state

    def _load(self, model: str, version: str) -> _Version:
        cfg = self.cfg
        ref = self.loader.load(model, version)
        frame = ref.frame
        if len(frame) > cfg.reference_rows:
            frame = frame.sample(n=cfg.reference_rows, random_state=cfg.seed)
        encoder = Encoder(ref.schema)
        try:
            ref_num, ref_cat = encoder.encode_frame(frame)
        except ValueError as err:
            raise ReferenceError(f"{ref.location}: {err}") from None
        ref_preds: list[Any] | None = None
        if cfg.prediction_column in frame.columns:
            column = frame[cfg.prediction_column]
            # tolist() gives Python scalars (ints stay ints: labels are told from scores by it).
            missing = column.isna().tolist()
            ref_preds = [None if na else v for v, na in zip(column.tolist(), missing, strict=True)]
        detectors = VersionDetectors(
            encoder.numeric,
            encoder.categorical,
            ref_num,
            ref_cat,
            alpha=cfg.p_value,
            correction=cfg.correction,
            row_test=cfg.row_test,
            missing_codes=[encoder.missing_code(c) for c in encoder.categorical],
            ref_predictions=ref_preds,
            mmd_permutations=cfg.mmd_permutations,
            mmd_max_rows=cfg.mmd_max_rows,
            seed=cfg.seed,
            min_distance={"ks": cfg.min_distance_numeric, "chi2": cfg.min_distance_categorical},
            feature_min_distance=cfg.min_distance_features,
        )
        performance = self._performance(model, version, ref.schema, encoder)
        w = cfg.window_rows
        self.metrics.reference_rows.labels(model, version).set(len(frame))
        log.info(
            "loaded reference of %s/%s from %s (%d rows)", model, version, ref.location, len(frame)
        )
        return _Version(
            model=model,
            version=version,
            encoder=encoder,
            detectors=detectors,
            num=_Ring(w, len(encoder.numeric), np.float64),
            cat=_Ring(w, len(encoder.categorical), np.int64),
            reference_rows=len(frame),
            raw=deque(maxlen=w),
            predictions=deque(maxlen=w),
            has_reference_predictions=ref_preds is not None,
            scores=deque(maxlen=w),
            performance=performance,
            # The interval rule counts from the first rows, not from the epoch.
            last_check=time.time(),
        )

    def _performance(
        self, model: str, version: str, schema: Any, encoder: Encoder
    ) -> VersionPerformance | None:
        """The label-free estimator of a version, when it has a calibration sample."""
        cfg = self.cfg
        if not cfg.performance:
            return None
        sample = self.loader.read_optional(model, version, cfg.calibration_file)
        if sample is None:
            log.info("%s/%s: no %s, no performance estimate", model, version, cfg.calibration_file)
            return None
        try:
            perf = VersionPerformance.build(
                schema,
                encoder,
                sample,
                self.loader.read_optional(model, version, cfg.card_file),
                prediction_column=cfg.prediction_column,
                recalibrate=cfg.recalibrate,
                seed=cfg.seed,
            )
        except Exception:  # a bad sample must not keep the drift checks from running
            log.exception("%s/%s: the performance estimator could not be built", model, version)
            return None
        if perf is not None:
            self.metrics.record_validated(model, version, perf, cfg.calibration_max_error)
        return perf

    # -- requests (HTTP threads) ----------------------------------------------------------
    def submit(self, body: Any) -> int:
        """Validate, encode and queue one batch; returns its row count. Raises on refusal."""
        try:
            batch = parse_batch(body, self.cfg.max_batch_rows)
        except BatchError:
            self.metrics.batches_rejected.labels("invalid").inc()
            raise
        try:
            state = self.version(batch.model, batch.version)
        except ReferenceError:
            self.metrics.batches_rejected.labels("no_reference").inc()
            raise
        try:
            num, cat = state.encoder.encode_rows(batch.rows)
        except BatchError:
            self.metrics.batches_rejected.labels("invalid").inc()
            raise
        try:
            self._queue.put_nowait(
                ("rows", (state, num, cat, batch.rows, batch.predictions, batch.scores))
            )
        except queue.Full:
            self.metrics.batches_rejected.labels("queue_full").inc()
            self.metrics.rows_dropped.inc(len(batch.rows))
            raise
        self.metrics.queue_batches.set(self._queue.qsize())
        self.metrics.rows_received.labels(batch.model, batch.version).inc(len(batch.rows))
        if batch.request_ids:
            telemetry.event(
                log,
                "served rows received",
                request_id=batch.request_ids[0] if len(batch.request_ids) == 1 else None,
                request_ids=batch.request_ids,
                model=batch.model,
                version=batch.version,
                rows=len(batch.rows),
            )
        return len(batch.rows)

    def request_check(
        self, model: str, version: str, *, mmd: bool = False, timeout_s: float = 120.0
    ) -> CheckResult:
        """Have the worker check a model version now and wait for the result."""
        state = self.version(model, version)
        done = threading.Event()
        box: list[Any] = []
        # A full queue answers 503 soon instead of holding the request thread.
        self._queue.put(("check", (state, mmd, box, done)), timeout=5.0)
        if not done.wait(timeout_s):
            raise TimeoutError(f"the check of {model}/{version} took longer than {timeout_s}s")
        if isinstance(box[0], Exception):
            raise box[0]
        result: CheckResult = box[0]
        return result

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (model, version), st in list(self._versions.items()):
            with st.lock:
                out[f"{model}/{version}"] = {
                    "model": model,
                    "version": version,
                    "window_rows": st.num.count if st.encoder.numeric else st.cat.count,
                    "reference_rows": st.reference_rows,
                    "rows_since_check": st.rows_since_check,
                    "checks": st.checks,
                    "consecutive_drifted_checks": st.consecutive,
                    "last_result": st.last_result.as_json() if st.last_result else None,
                }
        return {"versions": out, "queue_batches": self._queue.qsize()}

    def window_parquet(self, model: str, version: str) -> bytes:
        import pandas as pd

        state = self._versions.get((model, version))
        if state is None:
            raise KeyError(f"no rows received for model {model!r} version {version!r}")
        with state.lock:
            rows = list(state.raw)
            preds = list(state.predictions)
        frame = pd.DataFrame(rows)
        if any(p is not None for p in preds):
            frame[self.cfg.prediction_column] = preds
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()

    # -- the worker -----------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                kind, payload = self._queue.get(timeout=0.25)
            except queue.Empty:
                kind, payload = "", None
            self.metrics.heartbeat.set(time.time())
            try:
                if kind == "rows":
                    self._append(*payload)
                elif kind == "check":
                    state, mmd, box, done = payload
                    try:
                        box.append(self._check(state, mmd=mmd))
                    except Exception as err:  # handed back to the waiting request
                        box.append(err)
                    done.set()
                self._due_checks()
            except Exception:
                log.exception("drift worker step failed")
            finally:
                if kind:
                    self._queue.task_done()
                self.metrics.queue_batches.set(self._queue.qsize())

    def _append(
        self,
        state: _Version,
        num: np.ndarray,
        cat: np.ndarray,
        rows: list[dict[str, Any]],
        predictions: list[Any] | None,
        scores: list[float | None] | None = None,
    ) -> None:
        with state.lock:
            state.num.extend(num)
            state.cat.extend(cat)
            state.raw.extend(rows)
            state.predictions.extend(predictions if predictions is not None else [None] * len(rows))
            state.scores.extend(scores if scores is not None else [None] * len(rows))
            state.rows_since_check += len(rows)
            window = max(state.num.count, state.cat.count)
        self.metrics.window_rows.labels(state.model, state.version).set(window)
        # Without predictions in the reference, the first full window of served predictions
        # becomes their baseline.
        if (
            state.detectors.prediction is None
            and len(state.predictions) == state.predictions.maxlen
            and all(p is not None for p in state.predictions)
        ):
            state.detectors.set_prediction_reference(list(state.predictions))

    def _due_checks(self) -> None:
        now = time.time()
        for state in list(self._versions.values()):
            window = max(state.num.count, state.cat.count)
            if window < self.cfg.min_rows or state.rows_since_check == 0:
                continue
            if (
                state.rows_since_check >= self.cfg.check_every_rows
                or now - state.last_check >= self.cfg.check_interval_s
            ):
                try:
                    self._check(state)
                except Exception:
                    log.exception("drift check of %s/%s failed", state.model, state.version)

    def _check(self, state: _Version, *, mmd: bool = False) -> CheckResult:
        t0 = time.perf_counter()
        try:
            with state.lock:
                num = state.num.view().copy()
                cat = state.cat.view().copy()
                preds = list(state.predictions)
                scores = list(state.scores)
                state.rows_since_check = 0
            if max(len(num), len(cat)) < self.cfg.min_rows and not mmd:
                raise ValueError(
                    f"window of {state.model}/{state.version} holds {max(len(num), len(cat))} "
                    f"rows; a check needs at least {self.cfg.min_rows} (drift.min_rows)"
                )
            with_preds = preds if any(p is not None for p in preds) else None
            result = state.detectors.check(num, cat, with_preds, mmd=mmd)
            if state.performance is not None:
                result.performance = state.performance.estimate(
                    preds, scores, num, cat, self.cfg.min_rows
                )
        except Exception:
            self.metrics.check_errors.labels(state.model, state.version).inc()
            raise
        result.duration_s = time.perf_counter() - t0
        result.timestamp = time.time()
        with state.lock:
            state.consecutive = state.consecutive + 1 if result.row_is_drift else 0
            state.last_check = result.timestamp
            state.checks += 1
            state.last_result = result
        self.metrics.record(state.model, state.version, result, state.consecutive)
        log.info(
            "check %s/%s: rows=%d drift=%s features=%s (%.1f ms)",
            state.model,
            state.version,
            result.window_rows,
            result.row_is_drift,
            result.drifted_features,
            result.duration_s * 1000,
        )
        return result


class _Handler(JsonHandler):
    sidecar: DriftSidecar
    max_body_bytes = MAX_BODY_BYTES
    log = log

    def on_body_too_large(self, length: int) -> None:
        self.sidecar.metrics.batches_rejected.labels("too_large").inc()

    def _model_version(self, q: dict[str, str]) -> tuple[str, str] | None:
        model, version = q.get("model"), q.get("version")
        if not model or not version:
            self.send_error_json(400, "query parameters model and version are required")
            return None
        return model, version

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path, q = self.route()
        sc = self.sidecar
        try:
            if path == "/metrics":
                self.send_body(
                    200, sc.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8"
                )
            elif path == "/healthz":
                alive = sc.worker_alive()
                self.send_json(
                    200 if alive else 503, {"status": "ok" if alive else "worker stopped"}
                )
            elif path == "/v1/status":
                self.send_json(200, sc.status())
            elif path == "/v1/window":
                if not sc.cfg.window_export:
                    self.send_error_json(
                        403,
                        "window export is off (drift.window_export: false): served rows stay "
                        "in the sidecar",
                    )
                    return
                if not self.authorized(sc.token, sc.cfg.token_env):
                    return
                mv = self._model_version(q)
                if mv is None:
                    return
                try:
                    data = sc.window_parquet(*mv)
                except KeyError as err:
                    self.send_error_json(404, str(err.args[0]))
                    return
                self.send_body(200, data, "application/vnd.apache.parquet")
            else:
                self.send_error_json(404, f"no such endpoint: GET {path}")
        except Exception as err:
            log.exception("GET %s failed", path)
            self.send_error_json(500, f"internal error: {err}")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        path, q = self.route()
        sc = self.sidecar
        raw = self.read_body()
        if raw is None:
            return
        if path == "/v1/rows":
            if not is_loopback(self.client_address[0]) and not self.authorized(
                sc.token, sc.cfg.token_env
            ):
                return
            ok, body = self.parse_json(raw)
            if not ok:
                sc.metrics.batches_rejected.labels("invalid").inc()
                return
            try:
                n = sc.submit(body)
            except BatchError as err:
                self.send_error_json(err.status, str(err))
            except ReferenceError as err:
                self.send_error_json(404, str(err))
            except queue.Full:
                self.send_error_json(503, "drift check queue is full; batch dropped")
            else:
                self.send_json(202, {"accepted": n})
        elif path == "/v1/check":
            if not self.authorized(sc.token, sc.cfg.token_env):
                return
            mv = self._model_version(q)
            if mv is None:
                return
            try:
                result = sc.request_check(*mv, mmd=q.get("mmd", "0") in ("1", "true"))
            except ReferenceError as err:
                self.send_error_json(404, str(err))
            except ValueError as err:
                self.send_error_json(409, str(err))
            except (TimeoutError, queue.Full) as err:
                self.send_error_json(503, str(err) or "drift check queue is full")
            else:
                self.send_json(200, result.as_json())
        else:
            self.send_error_json(404, f"no such endpoint: POST {path}")
