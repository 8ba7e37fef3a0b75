"""Config section: Kubeflow Pipelines: image, resources, GPU placement, KubeRay, submission."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mainsail.config.base import StrictModel
from mainsail.core import naming

#: The pipeline steps, as named by components/<step>/ and by the tasks of the pipelines.
STEPS = (
    "validate",
    "split",
    "preprocess",
    "train-candidates",
    "tune",
    "evaluate",
    "compare-champion",
    "register",
    "deploy-canary",
)
GPU_STEPS = ("train-candidates", "tune")
"""Steps that may be placed on the GPU node pool."""
REGISTRY_STEPS = ("train-candidates", "tune", "compare-champion", "register", "deploy-canary")
"""Steps that reach the registry's S3 store (they need its keys): those that read or write the
registry, and the Ray steps, whose inputs and outputs a KubeRay job exchanges through it."""

_QUANTITY = r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE]|m)?$"


GpuStep = Literal["train-candidates", "tune"]


def _gpu_steps() -> list[GpuStep]:
    return ["train-candidates", "tune"]


class StepResources(StrictModel):
    """Kubernetes resource requests and limits of one step's container."""

    cpu_request: str = Field(default="500m", pattern=_QUANTITY)
    """CPU request, e.g. `500m` or `2`."""
    memory_request: str = Field(default="1Gi", pattern=_QUANTITY)
    """Memory request, e.g. `1Gi`."""
    cpu_limit: str | None = Field(default=None, pattern=_QUANTITY)
    """CPU limit; none when null (the node's spare CPU may be used)."""
    memory_limit: str | None = Field(default="4Gi", pattern=_QUANTITY)
    """Memory limit; a step above it is killed rather than starving the node."""


class Toleration(StrictModel):
    """One Kubernetes toleration of a step pod."""

    key: str
    """Taint key, e.g. `mainsail.io/pool`."""
    operator: Literal["Equal", "Exists"] = "Equal"
    """`Equal` matches `value`; `Exists` matches any value of the key."""
    value: str | None = None
    """Taint value to match (with `Equal`)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"
    """Taint effect to tolerate; all effects when null."""


class GpuPlacement(StrictModel):
    """Put the train and tune steps on the GPU node pool."""

    enabled: bool = False
    """Request accelerators and schedule the `steps` onto the GPU pool."""
    steps: list[GpuStep] = Field(default_factory=_gpu_steps)
    """Steps that go to the GPU pool when enabled."""
    accelerator_type: str = naming.GPU_RESOURCE
    """Extended resource name of the accelerator (`nvidia.com/gpu`)."""
    accelerator_count: int = Field(default=1, ge=1, le=16)
    """Accelerators per step pod."""
    node_selector: dict[str, str] = Field(
        default_factory=lambda: {naming.LABEL_POOL: naming.POOL_GPU}
    )
    """Node labels the step pods must match."""
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [
            Toleration(key=naming.LABEL_POOL, value=naming.POOL_GPU),
            Toleration(key=naming.GPU_RESOURCE, operator="Exists"),
        ]
    )
    """Tolerations of the GPU pool's taints: the pool's own, and `nvidia.com/gpu`, which GPU
    node pools usually carry (GKE's do, and the kind cluster's)."""


class KubeRayConfig(StrictModel):
    """A KubeRay RayCluster that runs the Ray work of the train and tune steps."""

    dashboard_url: str | None = None
    """Ray Jobs API address of the cluster head, e.g.
    `http://mainsail-ray-head-svc.mainsail.svc:8265`; local Ray when null."""
    working_dir: str | None = None
    """Where step inputs and outputs are exchanged with the Ray job: null (the default) stages
    them in the registry's S3 store (`s3://<registry.bucket>/<registry.prefix>ray-jobs/`, which
    the chart's step and Ray pods both reach with the same keys); an `s3://bucket/prefix` URL
    (same endpoint and keys); or a folder that the step pods and the Ray pods both mount (a
    ReadWriteMany volume)."""
    token_env: str = Field(default="RAY_AUTH_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable that holds the cluster's Ray auth token (Ray's token
    authentication); when unset, the token file `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`
    is used if present, else requests go without a token."""
    poll_interval_s: float = Field(default=2.0, gt=0.0, le=60.0)
    """Seconds between job status polls."""
    timeout_s: float = Field(default=3600.0, gt=0.0, le=7 * 24 * 3600.0)
    """Give up (and stop the Ray job) after this many seconds."""

    @field_validator("dashboard_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                "kuberay.dashboard_url must be the Ray Jobs API URL (http://host:8265), "
                f"got {value!r}"
            )
        return value


class PipelinesConfig(StrictModel):
    """Kubeflow Pipelines: image, resources, GPU placement, KubeRay, submission."""

    image: str = naming.image("pipeline")
    """Container image of every step (the pipeline runtime image)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of the step containers (`Never` for images loaded into kind)."""
    resources: StepResources = Field(default_factory=lambda: StepResources())
    """Default requests and limits of every step."""
    step_resources: dict[str, StepResources] = Field(
        default_factory=lambda: {
            "train-candidates": StepResources(
                cpu_request="2", memory_request="4Gi", memory_limit="8Gi"
            ),
            "tune": StepResources(cpu_request="2", memory_request="4Gi", memory_limit="8Gi"),
        }
    )
    """Per-step overrides of `resources`, keyed by step name."""
    gpu: GpuPlacement = Field(default_factory=lambda: GpuPlacement())
    """GPU node-pool placement of the train and tune steps."""
    kuberay: KubeRayConfig = Field(default_factory=lambda: KubeRayConfig())
    """KubeRay cluster for the Ray work; local Ray when not configured."""
    host: str | None = None
    """KFP API endpoint used by `mainsail submit` when `--host` is not given."""
    experiment: str = "mainsail"
    """KFP experiment that receives the runs."""
    namespace: str | None = None
    """Kubeflow profile namespace (multi-user installs); none for single-user installs."""
    pipeline_root: str | None = None
    """Where the cluster stores step artifacts (e.g. `minio://mlpipeline/v2/artifacts`); the
    KFP install's default when null."""
    service_account: str | None = None
    """ServiceAccount of the step pods; the KFP default when null."""
    data_uri: str | None = None
    """Where the step pods read the data on the cluster (a path on `shared_pvc`, e.g.
    `/mnt/mainsail/data/churn.parquet`); `data.path` when null (right for local runs only)."""
    shared_pvc: str | None = None
    """PersistentVolumeClaim (ReadWriteMany) mounted into every step at `shared_mount`: the data,
    and, if `kuberay.working_dir` names a folder on it, the folder shared with the KubeRay pods
    (by default they exchange files through the registry's S3 store instead)."""
    shared_mount: str = "/mnt/mainsail"
    """Mount path of `shared_pvc` in the step containers."""
    s3_secret: str | None = None
    """Kubernetes Secret with the registry's S3 keys, exposed as environment variables to the
    steps that talk to the registry (register, compare-champion, deploy-canary); the chart's is
    `mainsail-s3`. Their S3 endpoint is `registry.endpoint` (a URL such as
    `http://mainsail-minio.mainsail.svc.cluster.local:9000` works)."""
    s3_secret_env: dict[str, str] = Field(
        default_factory=lambda: {
            "AWS_ACCESS_KEY_ID": "MAINSAIL_S3_ACCESS_KEY",
            "AWS_SECRET_ACCESS_KEY": "MAINSAIL_S3_SECRET_KEY",
        }
    )
    """Secret key → environment variable (match `registry.access_key_env`/`secret_key_env`).
    The default keys are those of the chart's Secret (`mainsail-s3`) and of an existing S3's
    Secret as the chart documents it (`s3.existing.secretName`)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Extra pod labels on every step (added to the `app.kubernetes.io/*` and
    `mainsail.io/model` ones)."""
    caching: bool = True
    """Reuse a step's outputs when its inputs are unchanged (locally and on the cluster)."""
    deploy_canary: bool = False
    """Training pipeline: deploy the registered version as challenger at `canary_weight`."""
    canary_weight: int = Field(default=10, ge=1, le=100)
    """Share of traffic (percent) that the challenger gets when deployed as a canary."""

    @field_validator("step_resources")
    @classmethod
    def _known_steps(cls, value: dict[str, StepResources]) -> dict[str, StepResources]:
        unknown = sorted(set(value) - set(STEPS))
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}; steps are {', '.join(STEPS)}")
        return value

    @model_validator(mode="after")
    def _image_pinned(self) -> PipelinesConfig:
        tag = self.image.rsplit("/", 1)[-1]
        if "@" not in tag and (":" not in tag or tag.endswith(":latest")):
            raise ValueError(
                f"pipelines.image {self.image!r} must carry an explicit tag or digest "
                "(not 'latest'), so a run is reproducible"
            )
        return self

    def resources_for(self, step: str) -> StepResources:
        """The resources of `step`: its override, else the default."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
        return self.step_resources.get(step, self.resources)
