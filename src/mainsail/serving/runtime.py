"""The mainsail MLServer runtime: a verified registry version behind the V2 protocol.

Serving env only (imports mlserver). Point a model-settings.json at it::

    {"name": "churn", "implementation": "mainsail.serving.runtime.MainsailRuntime",
     "parameters": {"uri": "./", "version": "3", "extra": {...RuntimeOptions...}}}

`load()` gets the artifact — downloaded from the registry when `extra.registry` is set
(credentials from the environment variables it names), else the folder `uri` points at — and
verifies the sha256 of every file against the manifest before unpickling anything. `predict()`
validates the request against the feature schema (see `mainsail.serving.validation` for the
layout) and answers a bad request with MLServer's `InferenceError`, which MLServer sends as
HTTP 400 / gRPC INVALID_ARGUMENT with our message; it never lets a request error become a 500.

Outputs: classification -> `label` (BYTES [n]; a binary model's stored decision threshold
decides it) and `probability` (FP64 [n], of that label),
plus `probabilities` (FP64 [n, k], columns in the order of the response parameter `classes`)
when the request's V2 `outputs` asks for it (naming outputs also selects among the others);
regression -> `value` (FP64 [n]).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sklearn
from mlserver import MLModel
from mlserver.errors import InferenceError, MLServerError
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    Parameters,
    ResponseOutput,
)
from mlserver.utils import get_model_uri
from pydantic import Field

from mainsail.config.base import StrictModel
from mainsail.config.registry import RegistryConfig
from mainsail.core import naming, telemetry
from mainsail.core.limits import LimitError, check_request_id
from mainsail.core.privacy import redact
from mainsail.data.schema import FeatureSchema
from mainsail.registry.errors import RegistryError
from mainsail.registry.manifest import MODEL_FILE, SCHEMA_FILE, verify_folder
from mainsail.serving.validation import (
    EntityRequest,
    RequestError,
    TensorIn,
    decode,
    frame_from_records,
)

log = logging.getLogger("mainsail.runtime")

#: Requests up to this many rows are scored on the event loop (cheaper than a thread hop);
#: larger ones in a worker thread so the server keeps answering.
_INLINE_ROWS = 64
LOOKUP_SPEC_FILE = "feature_lookup.json"
#: Classification outputs; `probabilities` (all classes) only when the request asks for it.
ALL_OUTPUTS = frozenset({"label", "probability", "probabilities"})
DEFAULT_OUTPUTS = frozenset({"label", "probability"})


class RegistrySource(RegistryConfig):
    """Where `load()` downloads the version from: a registry section (opened by the same
    :func:`mainsail.registry.open_registry` as everywhere else) that names its endpoint."""

    endpoint: str
    """S3 endpoint: `host:port`, or a URL `http(s)://host:port` (its scheme sets `secure`)."""
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    """Registry bucket."""
    model: str | None = None
    """Registry model name; the MLServer model name when null."""
    ref: str = "champion"
    """Version number, `latest`, or alias to serve."""
    cache_dir: Path = Path(".cache/models")
    """Download folder, relative to MLServer's working directory, or to the temporary directory
    when that one is not writable (a read-only root filesystem)."""


class RuntimeOptions(StrictModel):
    """`parameters.extra` of a model-settings.json served by :class:`MainsailRuntime`."""

    model: str | None = None
    """Registry model name (informational; set by the registry)."""
    registry_version: int | None = None
    """Registry version number (informational; set by the registry)."""
    registry: RegistrySource | None = None
    """Download from the registry; null = load the local folder `parameters.uri`."""
    max_rows: int = Field(10_000, ge=1)
    """Largest request, in rows."""
    feature_server_url: str | None = None
    """Feast feature server for entity-key requests; null = the environment's
    MAINSAIL_FEATURE_SERVER_URL, else those requests get a 400."""
    feature_timeout_s: float = Field(2.0, gt=0)
    """Timeout of one feature lookup."""
    feature_fallback: Literal["fail", "impute"] = "fail"
    """Feature server unreachable or failing: `fail` the request (HTTP 503 with the reason) or
    serve imputed values (`feature_imputation`, else missing for the model's own imputers),
    counted in `mainsail_feature_fallback_total`."""
    feature_imputation: dict[str, Any] = Field(default_factory=dict)
    """Value per feature for fetched values that are absent, stale or unreachable; a feature
    not listed stays missing (the model's imputers fill it)."""
    enforce_freshness: bool = True
    """Treat an online value older than its view's TTL as missing."""
    lookup_spec: dict[str, Any] | None = None
    """Feast lookup spec (`mainsail.features.freshness.LookupSpec` JSON); default: the
    artifact's feature_lookup.json."""
    drift_url: str | None = None
    """Drift sidecar URL fed with served rows; null = the environment's MAINSAIL_DRIFT_URL (the
    chart sets it to the sidecar in the pod), else no feed."""
    drift_queue_size: int = Field(1000, ge=1)
    """Bounded feed queue; overflow is dropped and counted."""
    drift_timeout_s: float = Field(1.0, gt=0)
    """Timeout of one POST to the sidecar."""
    drift_linger_s: float = Field(0.25, ge=0, le=5)
    """How long the feed gathers served rows into one POST (less when its queue is half
    full): each POST costs the server about as much CPU as a small prediction."""


#: Options that the serving container's environment supplies when a model's settings leave them
#: unset: a version folder's model-settings.json (as the registry writes it, and as Seldon Core
#: 2 loads it) names no sidecar and no feature server; the pod knows them.
ENV_DEFAULTS = {
    "drift_url": naming.ENV_DRIFT_URL,
    "feature_server_url": naming.ENV_FEATURE_SERVER_URL,
}


def with_env_defaults(options: RuntimeOptions, environ: Mapping[str, str]) -> RuntimeOptions:
    """`options` with `ENV_DEFAULTS` filled in from `environ` where the settings left them
    null; an empty variable means none (the chart renders "" when the part is disabled)."""
    updates = {
        name: environ[var]
        for name, var in ENV_DEFAULTS.items()
        if getattr(options, name) is None and environ.get(var)
    }
    return options.model_copy(update=updates) if updates else options


class MainsailRuntime(MLModel):
    """MLServer runtime for mainsail models (see the module docstring)."""

    async def load(self) -> bool:
        telemetry.setup("mainsail-runtime")
        extra = {}
        if self.settings.parameters is not None and self.settings.parameters.extra:
            extra = dict(self.settings.parameters.extra)
        try:
            self.options = with_env_defaults(RuntimeOptions.model_validate(extra), os.environ)
        except ValueError as err:
            raise MLServerError(f"model {self.name}: invalid parameters.extra: {err}") from err
        if self.options.registry is not None:
            try:
                folder = await asyncio.to_thread(self._download, self.options.registry)
            except RegistryError as err:
                message = f"model {self.name}: registry download failed: {err}"
                raise MLServerError(message, 422) from None
        else:
            folder = Path(await get_model_uri(self.settings))
            if folder.is_file():
                folder = folder.parent
        # Verify before unpickling: joblib.load runs code from the file. With the registry's
        # public keys in the environment, the manifest's signature must verify too.
        try:
            verifier = _verifier(self.options.registry, os.environ)
            self.manifest = await asyncio.to_thread(verify_folder, folder, verifier=verifier)
        except RegistryError as err:
            raise MLServerError(f"model {self.name}: refusing to load: {err}", 422) from None
        self.folder = folder
        self.schema = FeatureSchema.load(folder / SCHEMA_FILE)
        self.model = await asyncio.to_thread(_load_model, folder / MODEL_FILE)
        self._classification = self.schema.problem_type == "classification"
        if self._classification:
            if not hasattr(self.model, "predict_proba"):
                raise MLServerError(f"model {self.name}: a classifier needs predict_proba")
            classes = getattr(self.model, "classes_", None)
            if classes is None:
                classes = self.schema.classes or []
            self._classes = np.asarray([str(c) for c in classes], dtype=object)
            # The same labels as a str array for the drift feed: its queue keeps an array of
            # str as it is, and encodes it with the POST (objects are encoded per request).
            self._feed_labels = np.asarray(self._classes.tolist(), dtype=str)
            if len(self._classes) == 0:
                raise MLServerError(f"model {self.name}: no class labels (classes_ or schema)")
        self._numpy_fast = _accepts_numpy(self.model, self.schema, self._classification)
        self._lookup: Any = None
        self._feed: Any = None
        if self.options.drift_url:
            from mainsail.drift.client import LoopDriftFeed

            # On MLServer's event loop: a feed thread would fight the serving thread for the GIL.
            self._feed = LoopDriftFeed(
                self.options.drift_url,
                max_queue=self.options.drift_queue_size,
                timeout_s=self.options.drift_timeout_s,
                linger_s=self.options.drift_linger_s,
            )
            _FEEDS.add(self.name, self)
            self._feed_columns = tuple(self.schema.names)
        self._registry_name = self.options.model or self.manifest.model
        self._registry_version = str(self.manifest.version)
        self.inputs, self.outputs = _metadata(self.schema, self._classification)
        telemetry.settle()  # logs or traces on: the loaded process out of the full scans
        return True

    async def unload(self) -> bool:
        if getattr(self, "_feed", None) is not None:
            _FEEDS.remove(self.name)
            await self._feed.aclose(2.0)
        if getattr(self, "_lookup", None) is not None:
            self._lookup.close()
        return True

    def _download(self, source: RegistrySource) -> Path:
        from mainsail.registry.connect import open_registry

        try:
            registry = open_registry(source)
        except RegistryError as err:
            raise MLServerError(f"model {self.name}: {err}") from None
        cache = source.cache_dir
        if not cache.is_absolute() and not os.access(Path.cwd(), os.W_OK):
            # A read-only working directory (the image's /app under a read-only root
            # filesystem): the temporary directory (an emptyDir in the chart) holds the cache.
            cache = Path(tempfile.gettempdir()) / cache
        local = registry.download(source.model or self.name, source.ref, cache)
        return local.path

    # -- inference ------------------------------------------------------------------------

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if telemetry.STATE.tracer is None and not telemetry.STATE.json_logs:
            return await self._predict(payload, None, None)
        # Observed: one `runtime.infer` span (a child of the router's, through `traceparent`)
        # and one log line, both with the request id the router forwarded (or the V2 `id`).
        params = payload.parameters
        headers = (params.headers if params is not None else None) or {}
        rid = headers.get("x-request-id") or payload.id
        try:
            check_request_id(rid, "x-request-id")
        except LimitError:
            rid = None  # refused below, or a bad header: never logged nor traced as given
        token = telemetry.REQUEST_ID.set(rid)
        seen: dict[str, Any] = {}  # what the request's stages report for its one log line
        try:
            with telemetry.span("runtime.infer", headers, model=self.name) as current:
                try:
                    answer = await self._predict(payload, rid, seen)
                except MLServerError as err:
                    if current is not None:
                        current.set_attribute("error", True)
                    telemetry.event(log, "request refused", model=self.name, error=str(err))
                    raise
                telemetry.event(
                    log,
                    "request served",
                    model=self.name,
                    version=self._registry_version,
                    rows=answer.outputs[0].shape[0] if answer.outputs else 0,
                    **seen,
                )
            return answer
        finally:
            telemetry.REQUEST_ID.reset(token)

    async def _predict(
        self, payload: InferenceRequest, rid: str | None, seen: dict[str, Any] | None
    ) -> InferenceResponse:
        """The answer to `payload`; `seen` (while logs or traces are on) gets the stages'
        facts for the request's log line (`drift_queued`)."""
        if payload.id:
            # MLServer copies the id into response headers (ce-id): refuse what cannot be one.
            try:
                check_request_id(payload.id, "id")
            except LimitError as err:
                raise InferenceError(_private(f"model {self.name}: {err}")) from None
        tensors = [
            TensorIn(
                i.name,
                i.shape,
                _datatype(i.datatype),
                i.data.root,
                i.parameters.model_dump() if i.parameters is not None else None,
            )
            for i in payload.inputs
        ]
        feed_values: list[list[Any]] | None = [] if self._feed is not None else None
        try:
            with telemetry.stage("validation"):
                decoded = decode(
                    tensors,
                    self.schema,
                    max_rows=self.options.max_rows,
                    as_matrix=self._numpy_fast,
                    feed_values=feed_values,
                )
            if isinstance(decoded, EntityRequest):
                with telemetry.span("feature_lookup", keys=len(decoded.ids)):
                    fetched = await self._features_for(decoded)
                telemetry.event(log, "features looked up", model=self.name, rows=len(fetched))
                frame: pd.DataFrame | np.ndarray = (
                    fetched.to_numpy(dtype=np.float64) if self._numpy_fast else fetched
                )
            else:
                frame = decoded
        except RequestError as err:
            raise InferenceError(_private(f"model {self.name}: {err}")) from None
        wanted = self._wanted(payload)
        try:
            with telemetry.stage("predict", rows=len(frame)):
                if len(frame) <= _INLINE_ROWS:
                    outputs, parameters, fed = self._score(frame, wanted)
                else:
                    outputs, parameters, fed = await asyncio.to_thread(self._score, frame, wanted)
        except (ValueError, TypeError) as err:
            if isinstance(decoded, EntityRequest):
                # Features came from the store (gaps included): not the client's data.
                raise MLServerError(
                    f"model {self.name} could not score the features fetched for "
                    f"{decoded.key!r}: {err}",
                    status_code=503,
                ) from None
            # Input passed the schema but the model still refused it: the client's data, 400.
            raise InferenceError(
                _private(f"model {self.name} could not score the input: {err}")
            ) from None
        if self._feed is not None and fed is not None:
            with telemetry.stage("drift_enqueue"):
                queued = self._feed.submit(
                    self._registry_name,
                    self._registry_version,
                    _feed_rows(frame, feed_values),
                    fed[0],
                    columns=self._feed_columns,
                    scores=fed[1],
                    request_id=rid,
                )
            if seen is not None:
                seen["drift_queued"] = queued
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version or self._registry_version,
            id=payload.id,
            parameters=parameters,
            outputs=outputs,
        )

    def _score(
        self, frame: pd.DataFrame | np.ndarray, wanted: frozenset[str] | None = None
    ) -> tuple[
        list[ResponseOutput], Parameters | None, tuple[np.ndarray, np.ndarray | None] | None
    ]:
        """The outputs, their parameters, and (with the drift feed on) what the feed sends of
        them: each row's prediction (the label or value, whichever outputs were asked for) and,
        in binary classification, its probability of the last class for the sidecar's
        label-free performance estimate. Arrays: the feed keeps them until its POST."""
        n = len(frame)
        feed = self._feed is not None
        with _finite_known(frame):
            if not self._classification:
                values = np.asarray(self.model.predict(frame), dtype=np.float64).reshape(n)
            else:
                proba = np.asarray(self.model.predict_proba(frame), dtype=np.float64)
        if not self._classification:
            out = ResponseOutput(name="value", shape=[n], datatype="FP64", data=values.tolist())
            return [out], None, ((values, None) if feed else None)
        threshold = getattr(self.model, "threshold", None)
        if threshold is not None and proba.shape[1] == 2:
            # The decision threshold chosen on validation rows and stored with the model:
            # column 1 is the positive class (the data stage puts it last).
            best = (proba[:, 1] >= threshold).astype(np.int64)
        else:
            best = proba.argmax(axis=1)
        wanted = wanted or DEFAULT_OUTPUTS
        outputs = []
        if "label" in wanted:
            labels = self._classes[best].tolist()
            outputs.append(ResponseOutput(name="label", shape=[n], datatype="BYTES", data=labels))
        if "probability" in wanted:
            top = proba[np.arange(n), best].tolist()
            outputs.append(ResponseOutput(name="probability", shape=[n], datatype="FP64", data=top))
        if "probabilities" in wanted:
            outputs.append(
                ResponseOutput(
                    name="probabilities",
                    shape=[n, proba.shape[1]],
                    datatype="FP64",
                    data=proba.ravel().tolist(),
                )
            )
        fed = None
        if feed:
            fed = (self._feed_labels[best], proba[:, -1] if proba.shape[1] == 2 else None)
        return outputs, Parameters(classes=self._classes.tolist()), fed

    def _wanted(self, payload: InferenceRequest) -> frozenset[str] | None:
        """Outputs the request asks for (V2 `outputs`); None = the defaults."""
        if not payload.outputs:
            return None
        names = frozenset(o.name for o in payload.outputs)
        known = ALL_OUTPUTS if self._classification else frozenset({"value"})
        unknown = sorted(names - known)
        if unknown:
            raise InferenceError(
                f"model {self.name}: requested output {unknown[0]!r} does not exist; "
                f"outputs are {', '.join(sorted(known))}"
            )
        return names

    async def _features_for(self, request: EntityRequest) -> pd.DataFrame:
        if not self.options.feature_server_url:
            raise RequestError(
                f"the request carries entity keys ({request.key!r}) but the feature server is "
                "not configured for this model; send the features instead",
                request.key,
            )
        lookup = self._lookup or self._make_lookup()
        try:
            vectors = await asyncio.to_thread(lookup.get, request.ids)
        except ValueError as err:
            raise RequestError(f"input {request.key!r}: {err}", request.key) from None
        except Exception as err:
            # Feature store down (fallback "fail") or refusing the lookup: the client cannot
            # fix it, but it is not our crash either.
            _lookup_errors().labels(self.name, type(err).__name__).inc()
            raise MLServerError(
                _private(
                    f"model {self.name}: feature lookup at {self.options.feature_server_url} "
                    f"failed: {err}"
                ),
                status_code=503,
            ) from None
        if vectors.unknown:
            raise RequestError(
                f"input {request.key!r}: unknown entity id(s) {vectors.unknown[:5]!r}; the "
                "feature store has no features for them",
                request.key,
            )
        # Absent, stale or fallback values are the store's gaps, not the client's: they pass
        # as missing whatever the schema's nullability, and the model's imputers fill them.
        return frame_from_records(vectors.rows, self.schema, allow_missing=True)

    def _make_lookup(self) -> Any:
        try:
            from mainsail.features.freshness import LookupSpec
            from mainsail.features.http import HttpLookup
        except ImportError as err:
            raise RequestError(f"feature lookup client not available: {err}") from None
        if self.options.lookup_spec is not None:
            spec_json = json.dumps(self.options.lookup_spec)
        elif (self.folder / LOOKUP_SPEC_FILE).is_file():
            spec_json = (self.folder / LOOKUP_SPEC_FILE).read_text()
        else:
            raise RequestError(
                "the feature server is configured but this model has no feature lookup spec "
                f"({LOOKUP_SPEC_FILE} or parameters.extra.lookup_spec)"
            )
        self._lookup = HttpLookup(
            self.options.feature_server_url or "",
            LookupSpec.from_json(spec_json),
            timeout_s=self.options.feature_timeout_s,
            fallback=self.options.feature_fallback,
            enforce_freshness=self.options.enforce_freshness,
            imputation=self.options.feature_imputation,
            metrics=_feature_metrics(),
        )
        return self._lookup


class _FeedCollector:
    """Prometheus collector of every loaded model's drift-feed counters, read at scrape time.

    Registered in prometheus_client's default registry, which MLServer's /metrics serves when
    parallel_workers is 0 (with workers, MLServer exports only multiprocess metrics).
    """

    def __init__(self) -> None:
        self._models: dict[str, MainsailRuntime] = {}
        self._registered = False

    def add(self, name: str, model: MainsailRuntime) -> None:
        if not self._registered:
            from prometheus_client import REGISTRY

            REGISTRY.register(self)
            self._registered = True
        self._models[name] = model

    def remove(self, name: str) -> None:
        self._models.pop(name, None)

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "mainsail_drift_feed_rows",
            "Served rows offered to the drift sidecar, by outcome "
            "(submitted, sent, dropped: queue full, failed: POST failed).",
            labels=["model", "version", "outcome"],
        )
        for name, model in list(self._models.items()):
            for key, value in model._feed.stats.snapshot().items():
                outcome = key.removesuffix("_rows")
                family.add_metric([name, model._registry_version, outcome], value)
        yield family

    def describe(self) -> list[Any]:
        return []  # no samples at registration time; collect() is called per scrape


_FEEDS = _FeedCollector()
_FEATURE_METRICS: Any = None
_LOOKUP_ERRORS: Any = None


def _private(message: str) -> str:
    """An error message for the client, with personal data it echoes redacted."""
    return redact(message, telemetry.STATE.redact)


def _feature_metrics() -> Any:
    """One `FeatureMetrics` in the default registry (MLServer's /metrics) for all models."""
    global _FEATURE_METRICS
    if _FEATURE_METRICS is None:
        from prometheus_client import REGISTRY

        from mainsail.features.metrics import FeatureMetrics

        _FEATURE_METRICS = FeatureMetrics(REGISTRY)
    return _FEATURE_METRICS


def _lookup_errors() -> Any:
    """`mainsail_feature_lookup_errors_total{model, error}`: entity requests answered 503."""
    global _LOOKUP_ERRORS
    if _LOOKUP_ERRORS is None:
        from prometheus_client import Counter

        _LOOKUP_ERRORS = Counter(
            "mainsail_feature_lookup_errors",
            "Entity-key requests refused because the feature lookup failed (HTTP 503)",
            ["model", "error"],
        )
    return _LOOKUP_ERRORS


# The numpy fast path hands a fitted-on-DataFrame estimator a plain array whose columns are in
# the schema order (checked at load); sklearn's feature-name warning is then noise.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


def _finite_known(frame: pd.DataFrame | np.ndarray) -> contextlib.AbstractContextManager[Any]:
    """scikit-learn's `assume_finite` while the model scores a float matrix whose values were
    all just checked to be finite: its own check of the same matrix (`_assert_all_finite`) cost
    about 8 us of a 32-row iris request (bench/bench_serving.py). A matrix with NaN (a nullable
    feature left empty) or a DataFrame is scored with scikit-learn's checks as configured;
    other libraries ignore the setting."""
    if isinstance(frame, np.ndarray) and np.isfinite(frame).all():
        return sklearn.config_context(assume_finite=True)
    return contextlib.nullcontext()


def _accepts_numpy(model: Any, schema: FeatureSchema, classification: bool) -> bool:
    """Whether the model scores a float64 matrix exactly as the DataFrame (all-numeric schemas).

    Building per-request pandas frames costs more than the prediction of a small model; a
    probe row proves the array path gives identical outputs before it is used. A model on the
    array path then forgets its fitted column names where that changes nothing
    (`_forget_fitted_names`).
    """
    if any(spec.kind != "numeric" for spec in schema.features):
        return False
    names = getattr(model, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != schema.names:
        return False
    probe = np.array([[_mid(spec.min, spec.max) for spec in schema.features]] * 2, dtype=np.float64)
    frame = pd.DataFrame(probe, columns=schema.names)
    method = model.predict_proba if classification else model.predict
    try:
        expected = np.asarray(method(frame))
        if not np.array_equal(expected, np.asarray(method(probe))):
            return False
    except Exception:  # any refusal of the array means: keep the DataFrame path
        return False
    _forget_fitted_names(model, lambda: np.array_equal(expected, np.asarray(method(probe))))
    return True


def _forget_fitted_names(model: Any, same: Callable[[], bool]) -> None:
    """Drop `feature_names_in_` from the estimators inside a model that will only ever score
    plain arrays, unless it then scores the probe differently (`same`), when it is put back.

    For an array, scikit-learn's only use of the fitted names is a warning on every request
    ("X does not have valid feature names"), filtered above but still built: about 8 us of a
    32-row iris request (bench/bench_serving.py). The names and their order were checked
    against the schema before the array path was chosen.
    """
    dropped = [
        (estimator, vars(estimator).pop("feature_names_in_"))
        for estimator in _estimators(model)
        if "feature_names_in_" in vars(estimator)
    ]
    try:
        kept = same()
    except Exception:  # a refusal without the names: keep them
        kept = False
    if not kept:
        for estimator, names in dropped:
            estimator.feature_names_in_ = names


def _estimators(model: Any) -> Iterator[Any]:
    """`model` and the scikit-learn estimators it holds (pipeline steps, fitted inner models,
    members of ensembles), found through their attributes and the lists, tuples and dicts in
    them; each once."""
    seen: set[int] = set()
    todo = [model]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (list, tuple)):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif hasattr(item, "get_params") and hasattr(item, "__dict__"):
            yield item
            todo.extend(vars(item).values())


def _feed_rows(
    frame: pd.DataFrame | np.ndarray, values: list[list[Any]] | None
) -> list[Any] | np.ndarray:
    """The drift feed's rows (values in schema order), on the request path: from the values
    `decode` checked when it has them, else the request's own matrix (new for each request
    and never changed after: the feed keeps it as it is), else from the frame. A request's
    frame is new, so reading it back (`frame.items()`, `to_dict("records")`, even one
    `to_numpy(dtype=object)`) builds pandas objects per column: ~0.05-0.5 ms for the 14 churn
    features against a few µs from the checked values (bench/bench_drift.py measures it)."""
    if values:
        return list(zip(*values, strict=True))
    if isinstance(frame, np.ndarray):
        return frame
    rows: list[Any] = frame.to_numpy(dtype=object).tolist()  # object arrays: as lists
    return rows


_DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}


def _metadata(
    schema: FeatureSchema, classification: bool
) -> tuple[list[MetadataTensor], list[MetadataTensor]]:
    """V2 model metadata: one input per feature ([-1] rows, its datatype; `parameters` say
    whether it may be null and, for a categorical one, its categories) and the outputs."""
    inputs = []
    for spec in schema.features:
        extra: dict[str, Any] = {"nullable": spec.nullable, "kind": spec.kind}
        if spec.kind == "categorical" and spec.categories and not spec.open_vocabulary:
            extra["categories"] = list(spec.categories)
        inputs.append(
            MetadataTensor(
                name=spec.name,
                datatype=_DATATYPES[spec.kind],
                shape=[-1],
                parameters=Parameters(**extra),
            )
        )
    if classification:
        outputs = [
            MetadataTensor(name="label", datatype="BYTES", shape=[-1]),
            MetadataTensor(name="probability", datatype="FP64", shape=[-1]),
            MetadataTensor(name="probabilities", datatype="FP64", shape=[-1, -1]),
        ]
    else:
        outputs = [MetadataTensor(name="value", datatype="FP64", shape=[-1])]
    return inputs, outputs


def _mid(low: float | None, high: float | None) -> float:
    if low is not None and high is not None:
        return (low + high) / 2
    if low is not None:
        return low
    return high if high is not None else 0.0


def _datatype(value: Any) -> str:
    return str(getattr(value, "value", value))


def _verifier(source: RegistryConfig | None, environ: Mapping[str, str]) -> Any:
    """The registry public keys of the environment (`registry.public_keys_env`); a registry
    source with `require_signature` and no keys is refused."""
    from mainsail.registry.signing import Verifier

    cfg = source or RegistryConfig()
    keys = environ.get(cfg.public_keys_env, "").strip()
    if keys:
        return Verifier.from_text(keys)
    if source is not None and source.require_signature:
        raise RegistryError(
            f"{cfg.public_keys_env} is not set: the model's signature cannot be checked"
        )
    return None


def _load_model(path: Path) -> Any:
    import joblib

    return joblib.load(path)
