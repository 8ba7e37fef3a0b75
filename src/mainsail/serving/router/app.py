"""The canary router: an ASGI app that splits V2 inference traffic between model variants.

Served by the lean server of :mod:`mainsail.serving.router.server`, which calls
:meth:`Router.answer_infer` directly for inference and the ASGI app for every other route; any
ASGI server (uvicorn) can serve the app as well.

Routes
- `POST /v2/models/{name}/infer`: checked (V2 structure), assigned to champion or challenger by
  weight, forwarded to that variant's `/v2/models/{model}/infer`; the answer carries
  `x-request-id` (the caller's or a new one), `x-mainsail-variant` and `x-mainsail-model-version`
  of the variant that answered, and after a failover `x-mainsail-assigned-variant`.
  A caller is pinned to one variant by the sticky header (or the sticky key of the body) through
  a hash of its value. When a mirror is set, a share of requests is copied to it in the
  background; its answer is counted in the metrics, recorded in the feedback store under the
  request's id (so the promotion controller can pair it with the champion's answer: the shadow
  stage) and never returned.
- `GET /v2/models/{name}`, `GET /v2/models/{name}/ready`: forwarded to a healthy variant.
- `GET /v2/health/live`, `/v2/health/ready`, `/health`: the router's own liveness / readiness.
- `GET /metrics`: Prometheus metrics (see :mod:`mainsail.serving.router.metrics`).
- Admin API (bearer token, compared in constant time; refused while no token is configured):
  `GET /admin/state`, `PUT /admin/weights` (`{"champion": 90, "challenger": 10}`),
  `PUT /admin/variants/{role}` (`{"url", "model", "version", "weight"}`; for the mirror `weight`
  is the percent of requests copied), `DELETE /admin/variants/mirror`.

Failures: an active health check (`GET /v2/models/{model}/ready`) per variant takes a variant
out of rotation after `unhealthy_after` failures and puts it back after `healthy_after` passes.
A request is assigned by weight among the configured variants whether they are in rotation or not
(:meth:`Router.assign`); one assigned to a variant out of rotation is answered by another (a
failover), and the feedback store records both the assigned and the answering variant, so the
promotion controller tests the configured split on the assignment.
A request whose variant gives no answer (refused, reset) takes that variant out at once and is
re-sent once to another variant in rotation: V2 inference has no side effects, so a repeat is
safe. A variant that hangs is cut at `upstream_timeout_s` (a deadline well below a client's:
2 s by default against the 60 s of tritonclient and the kserve client) and the request is
re-sent once to the other variant; the timeout counts as one failed health check.

Client input: the body is bounded (`max_body_bytes`), depth-checked and structurally checked
(`mainsail.serving.router.v2`) before it is forwarded; a V2 `id` and an `x-request-id` header
must be valid request ids (`mainsail.core.limits`), else 400 naming the field. A request in the
binary tensor extension (`Inference-Header-Content-Length`) is decoded to JSON first. An
upstream's 4xx answer (the client's fault) is passed back and counted in the variant's
requests by status, never in its errors nor against its health.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mainsail.config.base import StrictModel
from mainsail.config.stack import RouterConfig
from mainsail.core import telemetry
from mainsail.core.asgi import Receive, Scope, Send, send_body
from mainsail.core.limits import LimitError, check_request_id, read_body
from mainsail.core.privacy import redact
from mainsail.serving.router.feedback import FeedbackRecorder
from mainsail.serving.router.metrics import RouterMetrics
from mainsail.serving.router.upstream import (
    ConnectError,
    ResponseError,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeoutError,
)
from mainsail.serving.router.v2 import (
    V2RequestError,
    check_infer_payload,
    parse_infer_request,
    sticky_value,
)

log = logging.getLogger("mainsail.router")

Role = Literal["champion", "challenger", "mirror"]
ROUTED: tuple[Role, ...] = ("champion", "challenger")


_INFER_PATH = re.compile(r"^/v2/models/([^/]+)/infer$")
_PASS_HEADERS = frozenset({b"content-type"})
_NONE: frozenset[str] = frozenset()


class VariantSpec(StrictModel):
    """Where one variant is served."""

    role: Role
    """champion, challenger or mirror."""
    url: str = Field(pattern=r"^http://[^/\s]+$")
    """Base URL of the V2 server, `http://host:port`."""
    model: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Model name on that server."""
    version: str = "unknown"
    """Registry version the variant serves (a metric label)."""
    weight: int = Field(default=0, ge=0, le=1_000_000)
    """Traffic weight; for the mirror, the percent (0-100) of requests copied to it."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with every request to this variant: behind Seldon Core 2's mesh,
    `{"Seldon-Model": "<Model name>"}`, the header Envoy routes by."""


class RouterSettings(StrictModel):
    """Everything a router process needs: written by the stack, read by `python -m ...router`."""

    model_name: str = Field(min_length=1)
    """Public model name callers use in `/v2/models/{name}/infer`."""
    variants: list[VariantSpec]
    """Champion, optional challenger, optional mirror."""
    router: RouterConfig = Field(default_factory=lambda: RouterConfig())
    """Router behaviour (health checks, sticky header, limits, token variable)."""
    seed: int = 42
    """Seed of the random split (the project seed unless router.seed is set)."""
    feedback_url: str | None = None
    """Feedback store URL (SQLAlchemy); when set, predictions are recorded and `POST /feedback`
    accepts ground truth (see :mod:`mainsail.serving.router.feedback`)."""
    problem_type: Literal["classification", "regression"] = "classification"
    """How to read predictions for the feedback store."""
    positive_label: str = "1"
    """Positive class label (binary classification quality)."""
    state_file: str | None = None
    """Where admin changes (weights, variants) are kept, so that a restarted router resumes the
    split it had instead of the one it was started with."""


class Variant:
    """Run-time state of one variant."""

    def __init__(self, spec: VariantSpec) -> None:
        self.role: Role = spec.role
        self.url = spec.url
        self.model = spec.model
        self.version = spec.version
        self.weight = spec.weight
        self.pool = UpstreamPool(spec.url)
        self.healthy = False
        self.ok_streak = 0
        self.fail_streak = 0
        self.infer_path = f"/v2/models/{spec.model}/infer"
        self.header_map = dict(spec.headers)
        self.headers = [(k.lower().encode(), v.encode()) for k, v in spec.headers.items()]
        # Answer headers and metric children built once, not per request.
        self.tags = [
            (b"x-mainsail-variant", self.role.encode()),
            (b"x-mainsail-model-version", self.version.encode()),
        ]
        self.latency: Any = None
        self.by_status: dict[int, Any] = {}

    def bind(self, metrics: RouterMetrics) -> None:
        """Pre-bind this variant's latency histogram child (its labels never change)."""
        self.latency = metrics.child(metrics.latency, *self.labels())

    def labels(self) -> tuple[str, str, str]:
        return (self.role, self.model, self.version)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "role": self.role,
            "url": self.url,
            "model": self.model,
            "version": self.version,
            "weight": self.weight,
            "healthy": self.healthy,
        }
        if self.header_map:  # behind Seldon's mesh: the Seldon-Model header
            state["headers"] = self.header_map
        return state


def _unit_hash(value: str) -> float:
    """A stable number in [0, 1) for a sticky key."""
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(payload, status_code=status, headers=headers)


class Router:
    """Variants, weights, health and forwarding: the ASGI app is :attr:`app`."""

    def __init__(self, settings: RouterSettings, token: str | None) -> None:
        self.settings = settings
        self.cfg = settings.router
        self.model_name = settings.model_name
        self._token = token.encode() if token else None
        self.metrics = RouterMetrics()
        self.variants: dict[str, Variant] = {}
        for spec in settings.variants:
            self._add(spec)
        self._restore()
        self._rng = random.Random(settings.seed)
        self._mirror_tasks: set[asyncio.Task[None]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self._sticky_header = self.cfg.sticky_header.lower().encode()
        self._rid_random = b""
        self._rid_at = 0
        self.feedback: FeedbackRecorder | None = None
        extra: list[Route] = []
        if settings.feedback_url:
            self.feedback = FeedbackRecorder(
                settings.feedback_url,
                settings.model_name,
                settings.problem_type,
                settings.positive_label,
                self.metrics.registry,
            )
            extra.append(Route("/feedback", self.feedback.endpoint, methods=["POST"]))
        self.app = Starlette(
            routes=[
                *extra,
                Route("/health", self._health_endpoint),
                Route("/v2/health/live", self._live),
                Route("/v2/health/ready", self._health_endpoint),
                Route("/v2/models/{name}", self._model_passthrough),
                Route("/v2/models/{name}/ready", self._model_passthrough),
                Route("/metrics", self._metrics_endpoint),
                Route("/admin/state", self._admin_state),
                Route("/admin/weights", self._admin_weights, methods=["PUT"]),
                Route("/admin/variants/{role}", self._admin_variant, methods=["PUT", "DELETE"]),
            ],
            lifespan=self.lifespan,
        )

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = _INFER_PATH.match(scope["path"])
            if match is not None:
                await self._infer(scope, receive, send, match.group(1))
                return
        await self.app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """Start-up (first health checks, health loop, feedback writer) and shut-down; the ASGI
        app runs it as its lifespan, the lean server around its serving."""
        await self.check_all()
        self._health_task = asyncio.create_task(self._health_loop())
        if self.feedback is not None:
            await self.feedback.start()
        try:
            yield
        finally:
            if self.feedback is not None:
                await self.feedback.stop()
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            for task in list(self._mirror_tasks):
                task.cancel()
            for variant in self.variants.values():
                await variant.pool.aclose()

    # -- variants ---------------------------------------------------------------------------

    def _add(self, spec: VariantSpec) -> Variant:
        if spec.role == "mirror" and spec.weight > 100:
            raise ValueError(f"mirror weight is a percent (0-100), got {spec.weight}")
        old = self.variants.get(spec.role)
        variant = Variant(spec)
        self.variants[spec.role] = variant
        if old is not None:
            self.metrics.forget(*old.labels())
            self.metrics.weight.remove(*old.labels())
            self.metrics.healthy.remove(*old.labels())
        variant.bind(self.metrics)
        self.metrics.weight.labels(*variant.labels()).set(variant.weight)
        self.metrics.healthy.labels(*variant.labels()).set(0)
        return variant

    def assign(self, key: str | None) -> Variant | None:
        """The variant a request is ASSIGNED to: by weight among the routed variants, in rotation
        or not; sticky by key. The split the sample-ratio check tests; when the assigned variant
        is out of rotation, :meth:`choose` picks the one that answers (a failover)."""
        pool = [v for role in ROUTED if (v := self.variants.get(role)) is not None and v.weight > 0]
        return self._pick(pool, key)

    def choose(self, key: str | None, exclude: frozenset[str] = frozenset()) -> Variant | None:
        """The variant for a request: by weight among healthy routed variants; sticky by key."""
        pool = [
            v
            for role in ROUTED
            if (v := self.variants.get(role)) is not None
            and v.healthy
            and v.weight > 0
            and role not in exclude
        ]
        if not pool and exclude:
            # A retry: any other healthy variant, even one at weight 0, beats failing.
            pool = [
                v
                for role in ROUTED
                if (v := self.variants.get(role)) is not None and v.healthy and role not in exclude
            ]
            return pool[0] if pool else None
        return self._pick(pool, key)

    def _pick(self, pool: list[Variant], key: str | None) -> Variant | None:
        if not pool:
            return None
        total = sum(v.weight for v in pool)
        point = (_unit_hash(key) if key is not None else self._rng.random()) * total
        for variant in pool:
            point -= variant.weight
            if point < 0:
                return variant
        return pool[-1]

    def _set_health(self, variant: Variant, ok: bool, passive: bool = False) -> None:
        if ok:
            variant.ok_streak += 1
            variant.fail_streak = 0
            if not variant.healthy and variant.ok_streak >= self.cfg.healthy_after:
                log.warning("variant %s (%s) back in rotation", variant.role, variant.url)
                variant.healthy = True
        else:
            variant.fail_streak += 1
            variant.ok_streak = 0
            if variant.healthy and (passive or variant.fail_streak >= self.cfg.unhealthy_after):
                log.warning("variant %s (%s) out of rotation", variant.role, variant.url)
                variant.healthy = False
        self.metrics.healthy.labels(*variant.labels()).set(1 if variant.healthy else 0)

    async def check(self, variant: Variant, first: bool = False) -> bool:
        """One health check of `variant`; updates its state."""
        try:
            resp = await variant.pool.request(
                "GET",
                f"/v2/models/{variant.model}/ready",
                headers=variant.headers,
                timeout=self.cfg.health_timeout_s,
            )
            ok = resp.status == 200
        except UpstreamError:
            ok = False
        if not ok:
            # A failed check drops the variant's kept-alive connections: on a cluster, one made
            # to a pod that has since been deleted (behind the variant's Service) kept the
            # variant out of rotation after its new pod was ready, until the pool was replaced
            # (tests/cluster/test_serving.py). Requests in flight keep their own connection.
            stale, variant.pool = variant.pool, UpstreamPool(variant.url)
            await stale.aclose()
        if first:
            # At start-up (or after a variant is replaced) one answer decides: no warm-up wait.
            variant.healthy = ok
            variant.ok_streak = int(ok)
            variant.fail_streak = int(not ok)
            self.metrics.healthy.labels(*variant.labels()).set(int(ok))
        else:
            self._set_health(variant, ok)
        return ok

    async def check_all(self, first: bool = True) -> None:
        """Check every variant at once."""
        await asyncio.gather(*(self.check(v, first) for v in list(self.variants.values())))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.health_interval_s)
            try:
                await self.check_all(first=False)
            except Exception:  # the loop must outlive any single bad check
                log.exception("health check round failed")

    # -- inference --------------------------------------------------------------------------

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """The infer route under an ASGI server (uvicorn); the lean server calls
        :meth:`answer_infer` directly."""
        headers = dict(scope["headers"])
        body = await read_body(receive, headers, self.cfg.max_body_bytes)
        status, out_headers, out = await self.answer_infer(scope["method"], name, headers, body)
        await send_body(send, status, out, out_headers)

    async def answer_infer(
        self, method: str, name: str, headers: dict[bytes, bytes], body: bytes | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Answer `METHOD /v2/models/{name}/infer`: (status, headers, body).

        `headers` are the request's (lower-case names); `body` is None when it was larger than
        `max_body_bytes`. The answer's headers carry no content-length (the server adds it).
        With JSON logs or tracing on (:mod:`mainsail.core.telemetry`), the request is one
        `router.infer` span and one log line with its request id."""
        if telemetry.STATE.tracer is None and not telemetry.STATE.json_logs:
            return await self._answer_infer(method, name, headers, body)
        given = headers.get(b"x-request-id")
        if given is None:
            headers = {**headers, b"x-request-id": self._new_request_id()}
            rid = headers[b"x-request-id"].decode("latin-1")
        else:
            rid = given.decode("latin-1")
            try:
                check_request_id(rid, "x-request-id")
            except LimitError:
                # Refused below (400); its line and span get an id of their own, never the
                # client's bad (or personal) one.
                rid = self._new_request_id().decode()
        token = telemetry.REQUEST_ID.set(rid)
        start = time.perf_counter()
        try:
            parent = (
                {"traceparent": headers[b"traceparent"].decode("latin-1")}
                if (b"traceparent" in headers)
                else None
            )
            with telemetry.span("router.infer", parent, model=name) as current:
                status, out_headers, out = await self._answer_infer(method, name, headers, body)
                tags = {k.decode(): v.decode("latin-1") for k, v in out_headers}
                variant = tags.get("x-mainsail-variant")
                if current is not None:
                    current.set_attribute("http.status_code", status)
                    if variant:
                        current.set_attribute("mainsail.variant", variant)
                telemetry.event(
                    log,
                    "request routed",
                    status=status,
                    variant=variant,
                    version=tags.get("x-mainsail-model-version"),
                    latency_ms=round((time.perf_counter() - start) * 1000, 3),
                )
            return status, out_headers, out
        finally:
            telemetry.REQUEST_ID.reset(token)

    async def _answer_infer(
        self, method: str, name: str, headers: dict[bytes, bytes], body: bytes | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        given = headers.get(b"x-request-id")
        if given is not None:
            try:
                check_request_id(given.decode("latin-1"), "x-request-id")
            except LimitError as err:
                self.metrics.rejected.labels("bad_request").inc()
                return _error(400, str(err), [])
        request_id = given or self._new_request_id()
        rid = [(b"x-request-id", request_id)]
        if method != "POST":
            return _error(405, "use POST for infer", [(b"allow", b"POST"), *rid])
        if body is None:
            self.metrics.rejected.labels("too_large").inc()
            return _error(413, f"request body exceeds {self.cfg.max_body_bytes} bytes", rid)
        if name != self.model_name:
            self.metrics.rejected.labels("unknown_model").inc()
            return _error(
                404,
                f"model {name!r} is not served here; this router serves {self.model_name!r}",
                rid,
            )
        try:
            encoding = headers.get(b"content-encoding")
            if encoding is not None:
                body = _inflate(body, encoding, self.cfg.max_body_bytes)
            binary = headers.get(b"inference-header-content-length")
            if binary is not None:
                # The binary tensor extension (tritonclient's and kserve's default): decoded to
                # V2 JSON here, and forwarded as JSON.
                payload = _decode_binary(body, binary)
                body = json.dumps(payload).encode()
            else:
                payload = parse_infer_request(body)
        except (V2RequestError, LimitError) as err:
            self.metrics.rejected.labels("bad_request").inc()
            status = getattr(err, "status", 400)
            return _error(status, str(err), rid)
        key: str | None = None
        sticky = headers.get(self._sticky_header)
        if sticky is not None:
            key = sticky.decode("latin-1")
        elif self.cfg.sticky_key is not None:
            key = sticky_value(payload, self.cfg.sticky_key)
        fwd_headers = [(b"content-type", b"application/json"), (b"x-request-id", request_id)]
        parent = telemetry.traceparent()
        if parent is not None:
            fwd_headers.append((b"traceparent", parent.encode()))
        self._maybe_mirror(body, fwd_headers, request_id)

        # The assignment is recorded whatever answers: with every variant in rotation it is the
        # variant that answers; otherwise the request fails over (`failover`: why).
        assigned = self.assign(key)
        failover: str | None = None
        if assigned is not None and not assigned.healthy:
            failover = "out_of_rotation"
        tried: set[str] = set()
        while True:
            if not tried and assigned is not None and failover is None:
                variant: Variant | None = assigned
            else:
                variant = self.choose(key, frozenset(tried) if tried else _NONE)
            if variant is None:
                reason = "no variant in rotation" if not tried else "every variant failed"
                self.metrics.rejected.labels("no_variant").inc()
                return _error(503, f"no model available: {reason}", rid)
            tried.add(variant.role)
            start = time.perf_counter()
            try:
                resp = await variant.pool.request(
                    "POST",
                    variant.infer_path,
                    body,
                    [*fwd_headers, *variant.headers] if variant.headers else fwd_headers,
                    timeout=self.cfg.upstream_timeout_s,
                )
            except UpstreamTimeoutError as err:
                # A hung variant: one failed health check, and the request goes to the other
                # variant once (inference is idempotent) within a deadline of its own.
                self.metrics.errors.labels(*variant.labels(), err.reason).inc()
                self._set_health(variant, ok=False)
                failover = failover or err.reason
                if self.choose(key, frozenset(tried)) is not None:
                    self.metrics.retries.labels(variant.role, err.reason).inc()
                    continue
                return _error(504, f"{variant.role} timed out: {err}", rid)
            except (ConnectError, ResponseError) as err:
                self.metrics.errors.labels(*variant.labels(), err.reason).inc()
                self._set_health(variant, ok=False, passive=True)
                failover = failover or err.reason
                if len(tried) < len(ROUTED):
                    self.metrics.retries.labels(variant.role, err.reason).inc()
                    continue
                return _error(502, f"{variant.role} gave no answer: {err}", rid)
            elapsed = time.perf_counter() - start
            if resp.status == 404:
                # The gateway asks each variant for its own model at a path the client cannot
                # change (an unknown model was refused above): a 404 means the variant does not
                # serve it now (a server unloading it while it stops, or still loading), never
                # the client's error. The variant fails its check; the request goes elsewhere.
                self.metrics.errors.labels(*variant.labels(), "model_not_served").inc()
                self._set_health(variant, ok=False, passive=True)
                failover = failover or "model_not_served"
                if len(tried) < len(ROUTED):
                    self.metrics.retries.labels(variant.role, "model_not_served").inc()
                    continue
                return _error(503, f"no model available: {variant.role} does not serve it", rid)
            variant.latency.observe(elapsed)
            self._count(variant, resp.status, resp.body)
            moved = assigned is not None and assigned.role != variant.role
            if moved and assigned is not None:
                self.metrics.child(
                    self.metrics.failovers, *variant.labels(), assigned.role, failover or "unknown"
                ).inc()
            if self.feedback is not None:
                self.feedback.observe(
                    request_id.decode("latin-1"),
                    variant.role,
                    variant.version,
                    resp.status,
                    resp.body,
                    elapsed,
                    assigned.role if moved and assigned is not None else None,
                    failover if moved else None,
                )
            out_headers = [(k, v) for k, v in resp.headers if k in _PASS_HEADERS]
            out_headers += rid
            out_headers += variant.tags
            if moved and assigned is not None:
                out_headers.append((b"x-mainsail-assigned-variant", assigned.role.encode()))
            return resp.status, out_headers, resp.body

    def _new_request_id(self) -> bytes:
        """32 random hex digits, like a uuid4's: unguessable, since feedback joins on them.
        Random bytes are drawn 256 ids at a time (one system call each, not one per request)."""
        if self._rid_at >= len(self._rid_random):
            self._rid_random, self._rid_at = secrets.token_bytes(16 * 256), 0
        start, self._rid_at = self._rid_at, self._rid_at + 16
        return self._rid_random[start : self._rid_at].hex().encode()

    def _count(self, variant: Variant, status: int, body: bytes) -> None:
        labels = variant.labels()
        counter = variant.by_status.get(status)
        if counter is None:
            counter = variant.by_status[status] = self.metrics.child(
                self.metrics.requests, *labels, str(status)
            )
        counter.inc()
        if status >= 500:
            # A 4xx is the client's fault: counted by status above, never as the variant's error.
            self.metrics.errors.labels(*labels, f"status_{status // 100}xx").inc()
        elif status == 200:
            self.metrics.observe_predictions(*labels, body)

    def _maybe_mirror(
        self, body: bytes, headers: list[tuple[bytes, bytes]], request_id: bytes
    ) -> None:
        mirror = self.variants.get("mirror")
        if mirror is None or mirror.weight <= 0 or not mirror.healthy:
            return
        if mirror.weight < 100 and self._rng.random() * 100 >= mirror.weight:
            return
        if len(self._mirror_tasks) >= self.cfg.mirror_concurrency:
            self.metrics.mirror_dropped.inc()
            return
        task = asyncio.create_task(self._mirror(mirror, body, headers, request_id))
        self._mirror_tasks.add(task)
        task.add_done_callback(self._mirror_tasks.discard)

    async def _mirror(
        self,
        mirror: Variant,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        request_id: bytes,
    ) -> None:
        labels = mirror.labels()
        start = time.perf_counter()
        try:
            resp = await mirror.pool.request(
                "POST",
                mirror.infer_path,
                body,
                [*headers, *mirror.headers],
                timeout=self.cfg.upstream_timeout_s,
            )
        except UpstreamError as err:
            self.metrics.errors.labels(*labels, err.reason).inc()
            if self.feedback is not None:
                elapsed = time.perf_counter() - start
                rid = request_id.decode("latin-1")
                self.feedback.observe_shadow(rid, mirror.version, 599, b"", elapsed)
            return
        elapsed = time.perf_counter() - start
        mirror.latency.observe(elapsed)
        self._count(mirror, resp.status, resp.body)
        if self.feedback is not None:
            rid = request_id.decode("latin-1")
            self.feedback.observe_shadow(rid, mirror.version, resp.status, resp.body, elapsed)

    async def _model_passthrough(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name != self.model_name:
            return _json(404, {"error": f"model {name!r} is not served here"})
        variant = self.choose(None) or next(
            (v for v in self.variants.values() if v.healthy and v.role != "mirror"), None
        )
        if variant is None:
            return _json(503, {"error": "no model available: no variant in rotation"})
        suffix = request.url.path.removeprefix(f"/v2/models/{name}")
        try:
            resp = await variant.pool.request(
                "GET",
                f"/v2/models/{variant.model}{suffix}",
                headers=variant.headers,
                timeout=self.cfg.health_timeout_s,
            )
        except UpstreamError as err:
            return _json(502, {"error": f"{variant.role} gave no answer: {err}"})
        ctype = dict(resp.headers).get(b"content-type", b"application/json").decode("latin-1")
        return Response(resp.body, status_code=resp.status, media_type=ctype)

    # -- health and metrics -----------------------------------------------------------------

    async def _live(self, _request: Request) -> Response:
        return _json(200, {"live": True})

    async def _health_endpoint(self, _request: Request) -> Response:
        ready = self.choose(None) is not None
        return _json(
            200 if ready else 503,
            {"ready": ready, "variants": [v.state() for v in self.variants.values()]},
        )

    async def _metrics_endpoint(self, _request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- admin ------------------------------------------------------------------------------

    def _deny(self, request: Request) -> Response | None:
        if self._token is None:
            return _json(
                403,
                {"error": f"admin API disabled: set {self.cfg.token_env} and restart the router"},
            )
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            return _json(
                401,
                {"error": "missing or wrong bearer token"},
                {"www-authenticate": 'Bearer realm="mainsail-router"'},
            )
        return None

    async def _admin_state(self, request: Request) -> Response:
        if (denied := self._deny(request)) is not None:
            return denied
        return _json(200, self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """Model name and every variant's state."""
        return {
            "model_name": self.model_name,
            "variants": {role: v.state() for role, v in self.variants.items()},
        }

    def _restore(self) -> None:
        """Re-apply the variants saved by the last admin change, when a state file exists."""
        path = Path(self.settings.state_file) if self.settings.state_file else None
        if path is None or not path.exists():
            return
        try:
            saved = json.loads(path.read_text())["variants"]
            specs = [VariantSpec.model_validate(v) for v in saved.values()]
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as err:
            log.error("ignoring unreadable router state %s: %s", path, err)
            return
        for spec in specs:
            self._add(spec)
        log.warning("restored variants from %s", path)

    def _persist(self) -> None:
        """Save the variants (atomically) after an admin change."""
        if not self.settings.state_file:
            return
        path = Path(self.settings.state_file)
        keep = ("role", "url", "model", "version", "weight", "headers")
        state = {
            "variants": {
                role: {k: v for k, v in variant.state().items() if k in keep}
                for role, variant in self.variants.items()
            }
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    async def _admin_weights(self, request: Request) -> Response:
        if (denied := self._deny(request)) is not None:
            return denied
        body = await _json_body(request)
        if not isinstance(body, dict) or not body:
            return _json(
                400, {"error": 'expected a JSON object like {"champion": 90, "challenger": 10}'}
            )
        for role, weight in body.items():
            if role not in ROUTED:
                return _json(
                    400, {"error": f"unknown variant {role!r}; use champion or challenger"}
                )
            if role not in self.variants:
                return _json(409, {"error": f"variant {role!r} is not configured"})
            if (
                not isinstance(weight, int)
                or isinstance(weight, bool)
                or not 0 <= weight <= 1_000_000
            ):
                return _json(
                    400,
                    {"error": f"weight of {role!r} must be an integer 0-1000000, got {weight!r}"},
                )
        merged = {r: body.get(r, v.weight) for r, v in self.variants.items() if r in ROUTED}
        if sum(merged.values()) <= 0:
            return _json(400, {"error": "at least one variant needs a weight above 0"})
        for role, weight in merged.items():
            variant = self.variants[role]
            variant.weight = weight
            self.metrics.weight.labels(*variant.labels()).set(weight)
        log.warning("weights set to %s", merged)
        self._persist()
        return _json(200, self.snapshot())

    async def _admin_variant(self, request: Request) -> Response:
        if (denied := self._deny(request)) is not None:
            return denied
        role = request.path_params["role"]
        if role not in ("champion", "challenger", "mirror"):
            return _json(
                404, {"error": f"unknown variant {role!r}; use champion, challenger or mirror"}
            )
        if request.method == "DELETE":
            if role != "mirror":
                return _json(400, {"error": "only the mirror can be removed"})
            old = self.variants.pop("mirror", None)
            if old is not None:
                self.metrics.weight.remove(*old.labels())
                self.metrics.healthy.remove(*old.labels())
                await old.pool.aclose()
            self._persist()
            return _json(200, self.snapshot())
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _json(400, {"error": "expected a JSON object with url, model, version, weight"})
        current = self.variants.get(role)
        merged = {"weight": current.weight if current else 0, **body, "role": role}
        try:
            spec = VariantSpec.model_validate(merged)
            if spec.role == "mirror" and spec.weight > 100:
                raise ValueError(f"mirror weight is a percent (0-100), got {spec.weight}")
        except (ValidationError, ValueError) as err:
            return _json(400, {"error": _first_error(err)})
        variant = self._add(spec)
        if current is not None:
            await current.pool.aclose()
        await self.check(variant, first=True)
        self._persist()
        return _json(200, self.snapshot())


def _inflate(body: bytes, encoding: bytes, limit: int) -> bytes:
    """A gzip body inflated within `limit` bytes (MLServer accepts gzip; forwarded inflated)."""
    from mainsail.serving.guard import GuardError, gunzip_bounded

    if encoding.strip().lower() != b"gzip":
        raise GuardError(f"content-encoding {encoding[:20].decode('latin-1')!r}", 415)
    return gunzip_bounded(body, limit)


def _decode_binary(body: bytes, header: bytes) -> dict[str, Any]:
    """A binary-extension request as checked V2 JSON (:class:`V2RequestError` when malformed)."""
    from mainsail.serving.guard import decode_binary_request

    if not header.isdigit():
        raise V2RequestError("Inference-Header-Content-Length: expected a byte count")
    return check_infer_payload(decode_binary_request(body, int(header)))


def _first_error(err: Exception) -> str:
    if isinstance(err, ValidationError):
        item = err.errors()[0]
        where = ".".join(str(p) for p in item["loc"]) or "body"
        return f"{where}: {item['msg']}"
    return str(err)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def _error(
    status: int, message: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    # An error may echo the client's input: personal data in it never goes back out raw.
    body = json.dumps({"error": redact(message, telemetry.STATE.redact)}).encode()
    return status, [(b"content-type", b"application/json"), *headers], body


def create_router(settings: RouterSettings, token: str | None = None) -> Router:
    """A router for `settings`; `token` enables the admin API (None or empty disables it)."""
    return Router(settings, token or None)
