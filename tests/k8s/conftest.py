"""Session fixtures of the Kubernetes validation suite: chart renders, CRD schemas, checkov.

Everything here is offline: the chart is rendered by the real Helm engine (helm-python-sdk),
overlays are built by `kubectl kustomize`, and no API server is contacted. Custom resources are
validated against the upstream CRDs in ../shared/crds (beside the repository root).
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import yaml

from . import checks


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, maps merged key by key (as Helm merges two --values files)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


KIND_VALUES = yaml.safe_load((checks.ROOT / "scripts" / "kind" / "values.yaml").read_text())
MLSERVER_VALUES = yaml.safe_load(
    (checks.ROOT / "scripts" / "kind" / "values-mlserver.yaml").read_text()
)

# Values that exercise every optional branch of the chart.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "existing-s3": {
        "s3": {
            "existing": {
                "enabled": True,
                "endpoint": "https://s3.eu-west-1.amazonaws.com",
                "region": "eu-west-1",
                "secretName": "team-s3",
            },
            "rcloneSecretName": "team-s3-rclone",
        },
        "minio": {"enabled": False},
    },
    "gpu-pool": {
        "ray": {
            "autoscaling": True,
            "gpuWorkers": {"replicas": 2, "minReplicas": 1, "gpusPerWorker": 2},
        }
    },
    "observability": {
        "observability": {
            "jsonLogs": True,
            "tracing": "otlp",
            "otlpEndpoint": "http://otel-collector.monitoring.svc:4317",
            "sampleRatio": "0.1",
        },
        "privacy": {"redact": "drop"},
    },
    "redis-off": {
        "redis": {"enabled": False, "external": {"host": "redis.data.svc", "port": 6380}}
    },
    # the kind cluster's values (scripts/kind/install.sh): the cluster's S3 store, Feast off,
    # Ray sized for a 2-CPU node with a GPU worker
    "kind": KIND_VALUES,
    # the kind cluster in local mode (no Seldon Core 2): serving.backend mlserver, the variants'
    # MLServer Deployments behind the gateway, no version at install
    "kind-mlserver": _merged(KIND_VALUES, MLSERVER_VALUES),
    # serving.backend mlserver with versions: each variant's Deployment has a replica
    "mlserver": {"serving": {"backend": "mlserver"}},
    "minimal": {
        "serving": {"enabled": False},
        "ray": {"enabled": False},
        "drift": {"enabled": False},
        "retrainTrigger": {"enabled": False},
        "gateway": {"enabled": False},
        "monitoring": {
            "monitors": False,
            "prometheusRule": {"enabled": False},
            "dashboards": {"enabled": False},
        },
        "networkPolicy": {"enabled": False},
        "deployer": {"enabled": False},
    },
}


@pytest.fixture(scope="session")
def render() -> Any:
    """manifests/render.py: the same render code as `make render`."""
    return checks.load_render_module()


@pytest.fixture(scope="session")
def scenario_objects(render: Any) -> dict[str, list[checks.Obj]]:
    """Rendered objects of every scenario."""
    return {
        name: render.documents(render.render_chart(values)) for name, values in SCENARIOS.items()
    }


@pytest.fixture(scope="session")
def default_objects(scenario_objects: dict[str, list[checks.Obj]]) -> list[checks.Obj]:
    return scenario_objects["default"]


@pytest.fixture(scope="session")
def crds() -> checks.CrdSchemas:
    """Upstream CRD schemas from ../shared/crds; missing shared/ is a failure, not a skip."""
    root = checks.shared_dir() / "crds"
    if not (root / "SOURCES.md").exists():
        pytest.fail(f"upstream CRDs not found at {root} (shared/ must sit beside the repo root)")
    return checks.CrdSchemas(root)


@pytest.fixture(scope="session")
def overlay_objects() -> dict[str, list[checks.Obj]]:
    """Objects of every kustomize overlay, built by `kubectl kustomize`."""
    out = {}
    for name in checks.OVERLAYS:
        code, stdout, stderr = checks.kustomize(checks.MANIFESTS / "overlays" / name)
        assert code == 0, f"kubectl kustomize overlays/{name} failed: {stderr}"
        out[name] = checks.load_yaml_docs(stdout)
    return out


@pytest.fixture(scope="session")
def example_objects() -> dict[str, list[checks.Obj]]:
    """Objects of every example folder under manifests/examples."""
    out = {}
    for folder in sorted(p for p in (checks.MANIFESTS / "examples").iterdir() if p.is_dir()):
        code, stdout, stderr = checks.kustomize(folder)
        assert code == 0, f"kubectl kustomize examples/{folder.name} failed: {stderr}"
        out[folder.name] = checks.load_yaml_docs(stdout)
    return out


BROKEN_POD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
  namespace: mainsail
spec:
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: app
          image: example.org/app:latest
          securityContext:
            privileged: true
            allowPrivilegeEscalation: true
"""


@pytest.fixture(scope="session")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory, render: Any) -> dict[str, Any]:
    """One checkov run per session over the default render, the overlays, the examples and a
    deliberately broken Deployment, each in a folder of its own; results split by folder."""
    root = tmp_path_factory.mktemp("checkov")
    (root / "chart").mkdir()
    (root / "chart" / "mainsail.yaml").write_text(render.render_text())
    for name in checks.OVERLAYS:
        code, stdout, stderr = checks.kustomize(checks.MANIFESTS / "overlays" / name)
        assert code == 0, stderr
        (root / f"overlay-{name}").mkdir()
        (root / f"overlay-{name}" / "all.yaml").write_text(stdout)
    shutil.copytree(checks.MANIFESTS / "examples", root / "examples")
    for kustomization in (root / "examples").rglob("kustomization.yaml"):
        kustomization.unlink()  # scan the plain files, not a kustomize build
    (root / "broken").mkdir()
    (root / "broken" / "broken.yaml").write_text(BROKEN_POD)
    report = checks.run_checkov(root)

    def folder(entry: dict[str, Any]) -> str:
        return str(entry["file_path"]).lstrip("/").split("/")[0]

    out: dict[str, Any] = {}
    for key in ("failed", "skipped", "passed"):
        for entry in report[key]:
            bucket = out.setdefault(folder(entry), {"failed": [], "skipped": [], "passed": []})
            bucket[key].append(entry)
    return out
