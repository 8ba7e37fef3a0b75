"""Config section: local stack and canary router: processes, ports, data dirs, weights, deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from mainsail.config.base import StrictModel
from mainsail.core import naming


class ModelServerConfig(StrictModel):
    """One local MLServer process (champion or challenger): ports and what it serves."""

    http: int = Field(ge=1, le=65535)
    """V2 REST port."""
    grpc: int = Field(ge=1, le=65535)
    """V2 gRPC port."""
    metrics: int = Field(ge=1, le=65535)
    """Prometheus metrics port of MLServer itself."""
    model_dir: Path | None = None
    """An MLServer model folder (with model-settings.json) to serve, e.g. a downloaded registry
    version; null = resolve the registry alias of this variant (needs a registered resolver)."""


class RouterConfig(StrictModel):
    """The canary router: the local stand-in for Seldon Core 2's Experiment."""

    port: int = Field(default=8080, ge=1, le=65535)
    """Port of the router's HTTP endpoint (V2 infer, admin API, /metrics)."""
    weights: dict[str, int] = Field(default_factory=lambda: {"champion": 100, "challenger": 0})
    """Relative traffic weight per variant (`champion`, `challenger`); need not sum to 100."""
    token_env: str = Field(default=naming.ENV_ROUTER_TOKEN, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the environment variable that holds the admin API bearer token; admin calls are
    refused while it is unset or empty."""
    sticky_header: str = "x-mainsail-session"
    """Request header whose value pins a caller to one variant (hash of the value)."""
    sticky_key: str | None = None
    """V2 request parameter or input name (e.g. the entity key) used for sticky assignment when
    the sticky header is absent; null assigns such requests at random by weight."""
    health_interval_s: float = Field(default=1.0, gt=0.0, le=300.0)
    """Seconds between active health checks of each variant."""
    health_timeout_s: float = Field(default=1.0, gt=0.0, le=60.0)
    """Timeout of one health check request."""
    unhealthy_after: int = Field(default=2, ge=1, le=100)
    """Consecutive failed checks that take a variant out of rotation (a request that finds the
    variant refusing connections takes it out at once)."""
    healthy_after: int = Field(default=2, ge=1, le=100)
    """Consecutive passed checks that put a variant back into rotation."""
    upstream_timeout_s: float = Field(default=2.0, gt=0.0, le=600.0)
    """Deadline of one forwarded inference request: a variant that has not answered by then is
    cut off and the request re-sent once to the other variant. Keep it well below your
    clients' own timeouts (tritonclient and the kserve client wait 60 s) and above the slowest
    legitimate request (`serving.max_rows` rows)."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    mirror_concurrency: int = Field(default=32, ge=1, le=10_000)
    """Mirrored requests in flight at once; further copies are dropped (and counted)."""
    seed: int | None = None
    """Seed of the random split; defaults to the project seed."""

    @model_validator(mode="after")
    def _check_weights(self) -> RouterConfig:
        unknown = sorted(set(self.weights) - {"champion", "challenger"})
        if unknown:
            raise ValueError(
                f"router.weights has unknown variant(s) {unknown}; use champion and challenger"
            )
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            raise ValueError(f"router.weights must be >= 0, got {bad}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("router.weights must give at least one variant a weight above 0")
        return self


class KubernetesDeployConfig(StrictModel):
    """How the Kubernetes backend renders Seldon Core 2 resources."""

    namespace: str | None = None
    """Namespace of the Model and Experiment resources; `mainsail.core.naming`'s when null."""
    server: str | None = None
    """Seldon `Server` that should load the models; Seldon schedules by `requirements` when null."""
    requirements: list[str] = Field(default_factory=lambda: ["mainsail"])
    """Capabilities a Server must offer to load the models (Model.spec.requirements)."""
    storage_uri_prefix: str | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]+(/.*)?$"
    )
    """`s3://bucket[/prefix]` under which registry versions live (`<model>/versions/<N>/` below
    it); null = the registry's bucket and prefix."""
    secret_name: str | None = None
    """Secret with the S3 credentials Seldon's agent uses to download artifacts (rclone config)."""
    memory: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$")
    """Memory a model needs on the server, e.g. `256Mi`."""
    replicas: int = Field(default=1, ge=1, le=100)
    """Replicas of each Model."""
    serving: Literal["seldon", "mlserver"] = "seldon"
    """How the chart serves (its `serving.backend`): `seldon`, a Model per version and the
    Experiment's weights; `mlserver`, each variant's MLServer Deployment set to its version and
    the gateway's variants and weights set through its admin API (token in the variable
    `stack.router.token_env` names, the Secret `<release>-auth` key `gateway-token`)."""
    release: str = Field(default="mainsail", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Helm release of the chart (names of the gateway and the variants' Deployments)."""
    gateway_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")
    """The gateway's base URL for `serving: mlserver`; null = its Service in the namespace
    (`http://<release>-gateway.<namespace>.svc.cluster.local:8080`)."""
    rollout_timeout_s: float = Field(default=300.0, gt=0.0, le=3600.0)
    """Seconds `serving: mlserver` waits for a variant's Deployment to serve its new version."""


class StackConfig(StrictModel):
    """Local stack and canary router: processes, ports, data dirs, weights, deployers."""

    data_dir: Path = Path(".stack")
    """Folder for the state file, logs and process data; relative to the working directory."""
    host: str = "127.0.0.1"
    """Address every local process binds to (loopback keeps the stack private)."""
    startup_timeout_s: float = Field(default=90.0, gt=0.0, le=3600.0)
    """Seconds `mainsail up` waits for each process's health check before giving up."""
    stop_timeout_s: float = Field(default=10.0, gt=0.0, le=600.0)
    """Seconds `mainsail down` waits after SIGTERM before it sends SIGKILL."""
    champion: ModelServerConfig = Field(
        default_factory=lambda: ModelServerConfig(http=8081, grpc=8091, metrics=8181)
    )
    """Ports of the MLServer that serves the champion."""
    challenger: ModelServerConfig = Field(
        default_factory=lambda: ModelServerConfig(http=8082, grpc=8092, metrics=8182)
    )
    """Ports of the MLServer that serves the challenger."""
    providers: list[str] | None = None
    """Parts of the stack to start, by provider name (`seaweedfs`, `feast`, `mlserver`, `router`,
    and those other modules register, e.g. `drift`, `monitoring`); null = every registered one."""
    seaweedfs: bool = True
    """Start SeaweedFS (S3) as part of the stack."""
    feature_server: bool = False
    """Start the Feast feature server (`feast serve`, host and port from `features`)."""
    s3_port: int = Field(default=8333, ge=1, le=65535)
    """S3 port of the local SeaweedFS (its internal ports are picked free at start)."""
    mlserver_command: list[str] | None = None
    """Command that runs MLServer (argv prefix, `start FOLDER` is appended), e.g.
    `[".venv/serving/bin/python", "-m", "mainsail.serving.guard"]`: MLServer's CLI behind
    Mainsail's guard (bounded requests, the repository API's token). A bare `mlserver` runs
    without the guard. Null = the guard in the serving venv beside the running venv or under
    the working dir, else beside the `mlserver` on PATH."""
    router: RouterConfig = Field(default_factory=lambda: RouterConfig())
    """The canary router."""
    backend: Literal["local", "kubernetes"] = "local"
    """Default deploy backend of `mainsail deploy`."""
    kubernetes: KubernetesDeployConfig = Field(default_factory=lambda: KubernetesDeployConfig())
    """Seldon Core 2 rendering for the Kubernetes backend."""

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackConfig:
        named = {
            "router.port": self.router.port,
            "champion.http": self.champion.http,
            "champion.grpc": self.champion.grpc,
            "champion.metrics": self.champion.metrics,
            "challenger.http": self.challenger.http,
            "challenger.grpc": self.challenger.grpc,
            "challenger.metrics": self.challenger.metrics,
        }
        if self.seaweedfs:
            named["s3_port"] = self.s3_port
        seen: dict[int, str] = {}
        for key, port in named.items():
            if port in seen:
                raise ValueError(
                    f"stack.{key} uses port {port}, already used by stack.{seen[port]}"
                )
            seen[port] = key
        return self
