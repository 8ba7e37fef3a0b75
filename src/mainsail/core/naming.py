"""The one source of Kubernetes names, labels, namespaces, images, ports and metric names.

The Helm chart (helm/mainsail), the Kubernetes deployer (Seldon Core 2 custom resources) and the
KFP submission all address the same objects; they take the names from here so that a resource
created by one is found by the others. tests/k8s checks that the chart's values and rendered
objects agree with these constants.

Only the standard library is imported: this module loads in every runtime environment.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

PROJECT: Final = "mainsail"
"""Value of the `app.kubernetes.io/part-of` label on every object of the platform."""

DEFAULT_NAMESPACE: Final = "mainsail"
"""Namespace of the platform release and of the per-model Seldon resources."""
KFP_NAMESPACE: Final = "kubeflow"
"""Namespace where Kubeflow Pipelines is installed (its API service lives there)."""
KFP_HOST: Final = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
"""In-cluster address of the KFP API server."""
MONITORING_NAMESPACE: Final = "monitoring"
"""Namespace of Prometheus and Grafana (kube-prometheus-stack); scrapes are allowed from it."""
SELDON_SYSTEM_NAMESPACE: Final = "seldon-system"
"""Namespace of the Seldon Core 2 operator."""
RELEASE_NAME: Final = "mainsail"
"""Helm release name used for `manifests/base` and by the kind scripts."""

# Recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_VERSION: Final = "app.kubernetes.io/version"
RECOMMENDED_LABELS: Final = (
    LABEL_NAME,
    LABEL_INSTANCE,
    LABEL_COMPONENT,
    LABEL_PART_OF,
    LABEL_MANAGED_BY,
)
"""Labels every object of the chart and of the deployer carries."""

LABEL_MODEL: Final = "mainsail.io/model"
"""Project (model) name of a per-model resource, e.g. `churn`."""
LABEL_VARIANT: Final = "mainsail.io/variant"
"""`champion` or `challenger`: the role of a Seldon Model in its Experiment."""
LABEL_MODEL_VERSION: Final = "mainsail.io/model-version"
"""Registry version that a Seldon Model serves."""
LABEL_POOL: Final = "mainsail.io/pool"
"""Node label (and taint key) of the node pools: `cpu` or `gpu`."""
POOL_CPU: Final = "cpu"
POOL_GPU: Final = "gpu"
GPU_RESOURCE: Final = "nvidia.com/gpu"
"""Extended resource requested by GPU workers (NVIDIA device plugin); GPU node pools usually
carry a NoSchedule taint of the same key too (GKE's, the kind cluster's)."""
LABEL_RAY_CLIENT: Final = "mainsail.io/ray-client"
"""Pod label (value `"true"`) that the chart's NetworkPolicy lets reach the Ray head's Jobs API
(8265) and client port (10001) from the release namespace, e.g. a RayJob's submitter."""

Component = Literal[
    "pipeline",
    "minio",
    "s3",
    "s3-rclone",
    "auth",
    "redis",
    "feast",
    "ray",
    "serving",
    "drift",
    "retrain-trigger",
    "gateway",
    "seldon-agent",
    "deployer",
    "alerts",
    "dashboards",
    "network",
]
COMPONENTS: Final[tuple[Component, ...]] = get_args(Component)
"""Values of `app.kubernetes.io/component` used by the chart and the KFP runs (pipeline;
s3: credentials, auth: service tokens, network: NetworkPolicies, alerts: the PrometheusRule)."""

Variant = Literal["champion", "challenger"]
VARIANTS: Final[tuple[Variant, ...]] = get_args(Variant)

# Images: one per runtime environment (images/<env>/Dockerfile).
ImageEnv = Literal["pipeline", "serving", "drift"]
IMAGE_ENVS: Final[tuple[ImageEnv, ...]] = ("pipeline", "serving", "drift")
IMAGE_REGISTRY: Final = "ghcr.io/mainsail-mlops"
"""Default registry of the released images; kind loads them under the same names."""
IMAGE_TAG: Final = "0.1.0"
"""Default tag: the package version."""

# Ports.
MLSERVER_HTTP_PORT: Final = 9000
"""MLServer's HTTP port inside a Seldon Core 2 Server pod (set by Seldon's ServerConfig)."""
MLSERVER_GRPC_PORT: Final = 9500
"""MLServer's gRPC port inside a Seldon Core 2 Server pod."""
MLSERVER_METRICS_PORT: Final = 8082
"""MLServer's Prometheus endpoint (default MLSERVER_METRICS_PORT); our runtime's metrics too."""
DRIFT_PORT: Final = 8010
"""Drift sidecar: `POST /v1/rows` from the runtime over loopback, `/metrics`, `/healthz`."""
FEAST_PORT: Final = 6566
"""Feast feature server (`feast serve`)."""
REDIS_PORT: Final = 6379
S3_PORT: Final = 9000
"""MinIO S3 API."""
S3_CONSOLE_PORT: Final = 9001
TRIGGER_PORT: Final = 8090
"""Retrain trigger: Alertmanager webhook receiver and /metrics."""
ROUTER_PORT: Final = 8080
"""Local canary router (Seldon's Envoy takes its place in a cluster)."""
RAY_CLIENT_PORT: Final = 10001
RAY_DASHBOARD_PORT: Final = 8265
RAY_GCS_PORT: Final = 6379
RAY_METRICS_PORT: Final = 8080
SELDON_MESH_SERVICE: Final = "seldon-mesh"
"""Seldon Core 2's inference entry (Envoy) Service in the model namespace."""

# Environment variables that the chart sets and the code reads (tests/k8s checks that every
# MAINSAIL_* variable of the render is one of them, or one the project config names, and that
# the code reads each of them).
ENV_S3_ENDPOINT: Final = "MAINSAIL_S3_ENDPOINT"
"""The registry's S3 API, `http(s)://host:port` or `host:port`; used where the project config
leaves `registry.endpoint` unset (the registry, the drift sidecar's reference loader)."""
ENV_S3_BUCKET: Final = "MAINSAIL_S3_BUCKET"
"""The registry's bucket; used where the project config leaves `registry.bucket` unset."""
ENV_DRIFT_URL: Final = "MAINSAIL_DRIFT_URL"
"""The serving runtime's `drift_url` where a model's settings leave it unset (the chart: the
sidecar on loopback, http://127.0.0.1:8010; empty: no feed)."""
ENV_FEATURE_SERVER_URL: Final = "MAINSAIL_FEATURE_SERVER_URL"
"""The serving runtime's `feature_server_url` where a model's settings leave it unset."""
ENV_FEATURES_TOKEN: Final = "MAINSAIL_FEATURES_TOKEN"
"""Bearer token of Mainsail's feature server (`mainsail features serve --engine mainsail`);
`HttpLookup` sends it when set (`feast serve` ignores it)."""
ENV_TRIGGER_TOKEN: Final = "MAINSAIL_TRIGGER_TOKEN"
"""Bearer token of the retrain trigger's webhook (`monitor.trigger.token_env`'s default); the
chart takes it from the Secret `<release>-auth` (key `trigger-token`)."""
ENV_DRIFT_TOKEN: Final = "MAINSAIL_DRIFT_TOKEN"
"""Bearer token of the drift sidecar's `/v1/window` and `/v1/check` (`drift.token_env`'s
default); the chart takes it from the Secret `<release>-auth` (key `drift-token`)."""
ENV_JSON_LOGS: Final = "MAINSAIL_JSON_LOGS"
"""`1`: the serving path's processes write JSON log lines with request ids
(`observability.json_logs`; the chart's `observability.jsonLogs`)."""
ENV_TRACING: Final = "MAINSAIL_TRACING"
"""Span exporter of the serving path (`otlp`, `file`, `console`; empty: no tracing)."""
ENV_TRACE_SAMPLE: Final = "MAINSAIL_TRACE_SAMPLE"
"""Share of requests traced (`observability.sample_ratio`)."""
ENV_REDACT: Final = "MAINSAIL_REDACT"
"""`hash` or `drop`: personal data in log lines and error answers (`privacy.redact`)."""
ENV_ROUTER_TOKEN: Final = "MAINSAIL_ROUTER_TOKEN"
"""Bearer token of the router's admin API (`router.token_env`'s default); the chart's gateway
takes it from the Secret `<release>-auth` (key `gateway-token`)."""
ENV_MODEL_NAME: Final = "MAINSAIL_MODEL_NAME"
"""Registry model (and MLServer model name) a variant's MLServer Deployment serves
(serving.backend mlserver; `mainsail.serving.launch`)."""
ENV_MODEL_VERSION: Final = "MAINSAIL_MODEL_VERSION"
"""Registry version (number, `latest` or alias) that Deployment serves; `mainsail deploy`
replaces it."""
CHART_ENV: Final = (
    ENV_S3_ENDPOINT,
    ENV_S3_BUCKET,
    ENV_DRIFT_URL,
    ENV_FEATURE_SERVER_URL,
    ENV_FEATURES_TOKEN,
    ENV_TRIGGER_TOKEN,
    ENV_DRIFT_TOKEN,
    ENV_JSON_LOGS,
    ENV_TRACING,
    ENV_TRACE_SAMPLE,
    ENV_REDACT,
    ENV_ROUTER_TOKEN,
    ENV_MODEL_NAME,
    ENV_MODEL_VERSION,
)

# Prometheus metric names the alert rules (mainsail.monitor.rules, rendered into the chart's
# PrometheusRule) and dashboards reference; emitted by mainsail.serving.router.metrics,
# mainsail.drift.metrics, mainsail.features.metrics and mainsail.promotion.metrics. tests/k8s
# checks both directions.
METRIC_REQUESTS: Final = "mainsail_router_requests_total"
"""Counter of answered requests; labels: variant, model, version, code (HTTP status)."""
METRIC_ERRORS: Final = "mainsail_router_errors_total"
"""Counter of failed requests; labels: variant, model, version, reason."""
METRIC_LATENCY: Final = "mainsail_router_request_duration_seconds"
"""Histogram of upstream latency in seconds; labels: variant, model, version."""
METRIC_DRIFT: Final = "mainsail_drift_row_is_drift"
"""Gauge, 1 while the last whole-row drift check of a model version found drift."""
METRIC_DRIFT_CONSECUTIVE: Final = "mainsail_drift_consecutive_drifted_checks"
"""Gauge, drift checks in a row that found drift; labels: model, version."""
METRIC_PREDICTION_DRIFT: Final = "mainsail_drift_prediction_is_drift"
"""Gauge, 1 while the predictions' distribution differs from the reference."""
METRIC_DRIFT_HEARTBEAT: Final = "mainsail_drift_worker_heartbeat_timestamp_seconds"
"""Gauge, Unix time the sidecar's check worker last showed it is alive."""
METRIC_FEATURE_AGE: Final = "mainsail_feature_age_seconds"
"""Histogram of the age of served online feature values; labels: view."""
METRIC_DRIFT_CORRECTED_P: Final = "mainsail_drift_feature_corrected_p_value"
"""Gauge, a feature's p-value after the multiple-testing correction; labels: feature, test."""
METRIC_DRIFT_LEVEL: Final = "mainsail_drift_significance_level"
"""Gauge, the level corrected p-values are compared with; labels: correction."""
METRIC_DRIFT_DISTANCE: Final = "mainsail_drift_feature_distance"
"""Gauge, a feature's effect size (KS or total variation distance); labels: feature, test."""
METRIC_DRIFT_DISTANCE_FLOOR: Final = "mainsail_drift_feature_distance_threshold"
"""Gauge, the effect-size floor a drifted feature's distance must reach."""
METRIC_SRM_MISMATCH: Final = "mainsail_ab_srm_mismatch"
"""Gauge, 1 when a canary's split does not match its weight (experiment paused)."""
METRIC_SHADOW_GATE: Final = "mainsail_shadow_gate"
"""Gauge, the shadow gate of a challenger: 1 passed, 0 pending, -1 failed."""
METRIC_PERFORMANCE_ESTIMATE: Final = "mainsail_performance_estimate"
"""Gauge, a label-free estimate of a metric over the served window; labels: metric."""
METRIC_PERFORMANCE_VALIDATED: Final = "mainsail_performance_validated"
"""Gauge, the model card's validated value of a metric; labels: metric."""
METRIC_PERFORMANCE_RELIABLE: Final = "mainsail_performance_reliable"
"""Gauge, 1 when the estimate's calibration check passed."""
METRICS: Final = (
    METRIC_REQUESTS,
    METRIC_ERRORS,
    METRIC_LATENCY,
    METRIC_DRIFT,
    METRIC_DRIFT_CONSECUTIVE,
    METRIC_PREDICTION_DRIFT,
    METRIC_DRIFT_HEARTBEAT,
    METRIC_FEATURE_AGE,
    METRIC_DRIFT_CORRECTED_P,
    METRIC_DRIFT_LEVEL,
    METRIC_DRIFT_DISTANCE,
    METRIC_DRIFT_DISTANCE_FLOOR,
    METRIC_SRM_MISMATCH,
    METRIC_SHADOW_GATE,
    METRIC_PERFORMANCE_ESTIMATE,
    METRIC_PERFORMANCE_VALIDATED,
    METRIC_PERFORMANCE_RELIABLE,
)
"""Every metric name above; histograms also expose `<name>_bucket`, `_sum` and `_count`."""
DRIFT_SCRAPE_JOB: Final = "mainsail-drift"
"""Prometheus `job` label of the drift sidecar targets (mainsail.monitor.rules.DRIFT_JOB)."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_dns_label(name: str) -> str:
    """Return `name` if it is a valid RFC 1123 label (63 chars max), else raise ValueError."""
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ValueError(
            f"{name!r} is not a valid Kubernetes name: expected at most 63 lower-case letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    return name


def image(env: ImageEnv, registry: str = IMAGE_REGISTRY, tag: str = IMAGE_TAG) -> str:
    """Image reference of a runtime env, e.g. `ghcr.io/mainsail-mlops/mainsail-serving:0.1.0`."""
    if env not in IMAGE_ENVS:
        raise ValueError(f"unknown image env {env!r}; expected one of {', '.join(IMAGE_ENVS)}")
    if not tag or tag == "latest":
        raise ValueError("image tag must be an explicit version, not empty or 'latest'")
    return f"{registry.rstrip('/')}/{PROJECT}-{env}:{tag}"


def fullname(release: str, component: str) -> str:
    """Name of a chart object: `<release>-<component>` (the release alone if it already ends so)."""
    name = release if release.endswith(component) else f"{release}-{component}"
    return check_dns_label(name[:63].rstrip("-"))


def server_name(release: str = RELEASE_NAME) -> str:
    """The Seldon Core 2 Server that runs our MLServer image and the drift sidecar."""
    return fullname(release, "serving")


def serving_deployment(role: str, release: str = RELEASE_NAME) -> str:
    """The MLServer Deployment (and Service) of a variant with serving.backend mlserver, e.g.
    `mainsail-serving-challenger`."""
    return fullname(release, f"serving-{role}")


def gateway_name(release: str = RELEASE_NAME) -> str:
    """The gateway's Deployment and Service (the canary router in the cluster)."""
    return fullname(release, "gateway")


def s3_secret_name(release: str = RELEASE_NAME) -> str:
    """Secret with the S3 credentials (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""
    return fullname(release, "s3")


def auth_secret_name(release: str = RELEASE_NAME) -> str:
    """Secret with the service tokens (keys `trigger-token`, `drift-token`)."""
    return fullname(release, "auth")


def rclone_secret_name(release: str = RELEASE_NAME) -> str:
    """Secret with the rclone remote Seldon uses to download models (Model.spec.secretName)."""
    return fullname(release, "s3-rclone")


def deployer_service_account(release: str = RELEASE_NAME) -> str:
    """ServiceAccount allowed to create and patch Seldon Models and Experiments."""
    return fullname(release, "deployer")


def model_resource_name(model: str, version: str | int) -> str:
    """Seldon Model name of one registry version of a model, e.g. `churn-v3`."""
    v = str(version).lower().removeprefix("v")
    return check_dns_label(f"{model}-v{v}")


def experiment_name(model: str) -> str:
    """Seldon Experiment that splits the traffic of a model between champion and challenger."""
    return check_dns_label(f"{model}-canary")


def labels(
    component: str,
    release: str = RELEASE_NAME,
    *,
    managed_by: str = "Helm",
    model: str | None = None,
    variant: Variant | None = None,
    model_version: str | int | None = None,
) -> dict[str, str]:
    """The label set of an object; per-model objects add the model, variant and version."""
    out = {
        LABEL_NAME: PROJECT,
        LABEL_INSTANCE: release,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: PROJECT,
        LABEL_MANAGED_BY: managed_by,
    }
    if model is not None:
        out[LABEL_MODEL] = check_dns_label(model)
    if variant is not None:
        out[LABEL_VARIANT] = variant
    if model_version is not None:
        out[LABEL_MODEL_VERSION] = str(model_version)
    return out


def selector_labels(component: str, release: str = RELEASE_NAME) -> dict[str, str]:
    """The immutable subset of :func:`labels` used in Deployment and Service selectors."""
    return {LABEL_NAME: PROJECT, LABEL_INSTANCE: release, LABEL_COMPONENT: component}
