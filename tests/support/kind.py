"""Helpers of tests/cluster: the live kind cluster of `make kind-up` with Mainsail installed by
`scripts/kind/install.sh` (what `make kind-e2e` runs first).

Everything here talks to the real API server with the kubernetes client (the admin kubeconfig
of context `kind-<cluster>`) or `kubectl`, and to the pods through the real cluster network.
Short-lived pods that tests start get the Pod Security "restricted" context, the CPU pool, a
unique name, and are deleted when the test ends.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from mainsail.core import naming

REPO = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("CLUSTER", "mainsail")
CONTEXT = f"kind-{CLUSTER}"
NAMESPACE = os.environ.get("NAMESPACE", naming.DEFAULT_NAMESPACE)
RELEASE = naming.RELEASE_NAME
S3_NAMESPACE = "mainsail-s3"
#: Where the local mode's kind, kubectl and helm are (scripts/cluster/build.sh).
CLUSTER_TOOLS = (
    Path(os.environ.get("MAINSAIL_CLUSTER_CACHE", Path.home() / ".cache" / "mainsail" / "cluster"))
    / "bin"
    / "tools"
)
PIPELINE_IMAGE = naming.image("pipeline")
#: An image on every node with bash and curl (the CNI's), for probe pods.
TOOLS_IMAGE = "docker.io/cloudnativelabs/kube-router:v2.1.0"

#: The cluster's Prometheus and Alertmanager (named as kube-prometheus-stack's in both modes).
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_SERVICE = "service/kube-prometheus-stack-prometheus"
ALERTMANAGER_SERVICE = "service/kube-prometheus-stack-alertmanager"

T = TypeVar("T")


class ClusterMissingError(RuntimeError):
    """No cluster, or Mainsail not installed on it: says which command makes it."""


def kubectl_path() -> str:
    found = shutil.which("kubectl")
    if found is None and (CLUSTER_TOOLS / "kubectl").exists():
        found = str(CLUSTER_TOOLS / "kubectl")
    if found is None:
        raise ClusterMissingError("kubectl is not on PATH (make kind-up builds it in local mode)")
    return found


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> str:
    """`kubectl --context kind-<cluster> ARGS`; its stdout (stderr in the error)."""
    proc = subprocess.run(
        [kubectl_path(), "--context", CONTEXT, *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def api_client() -> Any:
    """An ApiClient with the admin credentials of the kubeconfig context."""
    from kubernetes import config

    try:
        return config.new_client_from_config(context=CONTEXT)
    except Exception as err:  # ConfigException, a missing file
        raise ClusterMissingError(
            f"no kubeconfig context {CONTEXT} ({err}): run `make kind-up` first"
        ) from None


def service_account_client(admin: Any, name: str, namespace: str = NAMESPACE) -> Any:
    """An ApiClient that authenticates as ServiceAccount `namespace/name` with a short-lived
    token from the TokenRequest API, exactly as a pod of that ServiceAccount would."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token = (
        client.CoreV1Api(admin)
        .create_namespaced_service_account_token(name, namespace, request)
        .status.token
    )
    cfg = client.Configuration()
    cfg.host = admin.configuration.host
    cfg.ssl_ca_cert = admin.configuration.ssl_ca_cert
    cfg.verify_ssl = True
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def wait_until(what: str, timeout_s: float, probe: Callable[[], T | None], every: float = 2) -> T:
    """Call `probe` until it returns something other than None (or False); fail after
    `timeout_s` naming `what`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


#: Grafana's variables of the dashboards' queries, as the cluster's tests evaluate them: rate
#: windows of four 30 s scrapes, every model and version.
DASHBOARD_VARIABLES = {
    "$__rate_interval": "2m",
    "$__range": "1h",
    "$model": ".*",
    "$version": ".*",
}


def prometheus_api(prometheus: str, path: str, **params: str) -> Any:
    """The `data` of an answer of Prometheus's HTTP API (`/api/v1/query`, `/api/v1/rules`, ...);
    ValueError with Prometheus's own error when it refuses the request."""
    body = httpx.get(f"{prometheus}{path}", params=params, timeout=30).json()
    if body.get("status") != "success":
        raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]


def secret_data(admin: Any, name: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """A Secret's keys and values, decoded, in memory only."""
    from kubernetes import client

    found = client.CoreV1Api(admin).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}


# ------------------------------------------------------------------------------------ pods

RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def s3_env() -> list[dict[str, Any]]:
    """The S3 environment the chart gives its workloads (scripts/kind/values.yaml)."""
    ref = naming.s3_secret_name()
    env: list[dict[str, Any]] = [
        {
            "name": naming.ENV_S3_ENDPOINT,
            "value": f"http://seaweedfs-s3.{S3_NAMESPACE}.svc.cluster.local:8333",
        },
    ]
    for var, key in (
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ("MAINSAIL_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
        ("MAINSAIL_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"),
    ):
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": ref, "key": key}}})
    return env


#: The registry's signing key pair (keys `signing-key`, `public-key`), made by install.sh.
SIGNING_SECRET = "mainsail-registry-signing"
POSTGRES_SECRET = "mainsail-postgres"
"""The chart's Postgres password (key `password`), made by scripts/kind/install.sh."""


def public_keys_env() -> dict[str, Any]:
    """The registry public key a loader checks signatures with, as the chart gives it."""
    ref = {"name": SIGNING_SECRET, "key": "public-key"}
    return {"name": "MAINSAIL_REGISTRY_PUBLIC_KEYS", "valueFrom": {"secretKeyRef": ref}}


def pod_manifest(
    name: str,
    command: list[str],
    *,
    image: str = PIPELINE_IMAGE,
    labels: dict[str, str] | None = None,
    env: list[dict[str, Any]] | None = None,
    namespace: str = NAMESPACE,
    service_account: str | None = None,
    pool: str = naming.POOL_CPU,
    run_as: int = 10001,
) -> dict[str, Any]:
    """A one-shot pod under Pod Security "restricted" on a node pool, with an emptyDir /tmp."""
    pod_sc = {**RESTRICTED_POD, "runAsUser": run_as, "runAsGroup": run_as, "fsGroup": run_as}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": service_account is not None,
        "securityContext": pod_sc,
        "nodeSelector": {naming.LABEL_POOL: pool},
        "containers": [
            {
                "name": "main",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                "env": [{"name": "HOME", "value": "/tmp"}, *(env or [])],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "128Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "securityContext": RESTRICTED_CONTAINER,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "mainsail-e2e", **(labels or {})},
        },
        "spec": spec,
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@dataclass
class PodResult:
    phase: str
    exit_code: int | None
    logs: str
    node: str | None


@contextlib.contextmanager
def _created(admin: Any, manifest: dict[str, Any]) -> Iterator[Any]:
    """The pod created; deleted when the block ends. Yields a function that reads it."""
    from kubernetes import client

    core = client.CoreV1Api(admin)
    meta = manifest["metadata"]
    core.create_namespaced_pod(meta["namespace"], manifest)
    try:
        yield lambda: core.read_namespaced_pod(meta["name"], meta["namespace"])
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0)


def run_pod(admin: Any, manifest: dict[str, Any], timeout_s: float = 300) -> PodResult:
    """Create the pod, wait until it ends, return its phase, exit code and logs; delete it."""
    from kubernetes import client

    meta = manifest["metadata"]
    with _created(admin, manifest) as read:

        def ended() -> Any:
            pod = read()
            return pod if pod.status.phase in ("Succeeded", "Failed") else None

        pod = wait_until(f"pod {meta['name']} to end", timeout_s, ended)
        state = pod.status.container_statuses[0].state
        code = state.terminated.exit_code if state.terminated else None
        logs = client.CoreV1Api(admin).read_namespaced_pod_log(meta["name"], meta["namespace"])
        return PodResult(pod.status.phase, code, logs, pod.spec.node_name)


@contextlib.contextmanager
def running_pod(admin: Any, manifest: dict[str, Any], timeout_s: float = 180) -> Iterator[str]:
    """A long-running pod (e.g. `sleep infinity`), Ready; yields its name; deleted after."""
    meta = manifest["metadata"]
    with _created(admin, manifest) as read:

        def ready() -> bool:
            conditions = read().status.conditions or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        wait_until(f"pod {meta['namespace']}/{meta['name']} Ready", timeout_s, ready)
        yield meta["name"]


def exec_in(pod: str, command: list[str], namespace: str = NAMESPACE) -> tuple[int, str]:
    """Run a command in a pod (kubectl exec); its exit code and output."""
    proc = subprocess.run(
        [kubectl_path(), "--context", CONTEXT, "-n", namespace, "exec", pod, "--", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- port-forward


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def port_forward(target: str, port: int, namespace: str = NAMESPACE) -> Iterator[int]:
    """`kubectl port-forward TARGET LOCAL:PORT`; yields the local port once it answers."""
    local = _free_port()
    proc = subprocess.Popen(
        [
            kubectl_path(),
            "--context",
            CONTEXT,
            "-n",
            namespace,
            "port-forward",
            target,
            f"{local}:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"kubectl port-forward {target} exited: {out}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                return True
            return False

        wait_until(f"port-forward to {namespace}/{target}:{port}", 30, listening, every=0.5)
        yield local
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()


def parse_json_line(text: str, marker: str) -> dict[str, Any]:
    """The JSON object printed after `marker` on one line of a pod's output."""
    match = re.search(rf"^{re.escape(marker)}(.*)$", text, flags=re.M)
    if match is None:
        raise AssertionError(f"no line starting with {marker!r} in:\n{text[-3000:]}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


# ---------------------------------------------------------------------------------- RBAC

_API_PATH = re.compile(
    r"^/apis?/(?:(?P<group>[^/]+)/)?(?P<version>v[^/]+)/namespaces/(?P<ns>[^/]+)/"
    r"(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)


@dataclass(frozen=True)
class Call:
    """One request the kubernetes client made, as RBAC sees it."""

    verb: str
    group: str
    resource: str
    namespace: str
    status: int

    @property
    def resource_ref(self) -> str:
        """`plural.group` as `kubectl auth can-i` takes it (`plural` for the core group)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


def _call(method: str, url: str, status: int) -> Call:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    match = _API_PATH.match(parts.path)
    if match is None:
        raise AssertionError(f"not a namespaced resource request: {method} {parts.path}")
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, "get"
    )
    if method == "GET" and match["name"] is None:
        verb = "watch" if parse_qs(parts.query).get("watch") else "list"
    group = match["group"] if parts.path.startswith("/apis/") else ""
    return Call(verb, group or "", match["plural"], match["ns"], status)


@contextlib.contextmanager
def recorded_calls() -> Iterator[list[Call]]:
    """Every request the kubernetes client makes inside the block (any ApiClient), with the
    verb RBAC checks for it and the status the API server answered."""
    from kubernetes.client import rest

    calls: list[Call] = []
    original = rest.RESTClientObject.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            response = original(self, method, url, *args, **kwargs)
        except rest.ApiException as err:
            calls.append(_call(method, url, int(err.status)))
            raise
        calls.append(_call(method, url, int(response.status)))
        return response

    rest.RESTClientObject.request = request  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        rest.RESTClientObject.request = original  # type: ignore[method-assign]


def service_account_user(name: str, namespace: str = NAMESPACE) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def can_i(service_account: str, verb: str, resource: str, namespace: str = NAMESPACE) -> bool:
    """`kubectl auth can-i VERB RESOURCE -n NS --as=system:serviceaccount:NS:SA`."""
    proc = subprocess.run(
        [
            kubectl_path(),
            "--context",
            CONTEXT,
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            f"--as={service_account_user(service_account, namespace)}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    answer = proc.stdout.strip()
    if answer not in ("yes", "no"):
        raise AssertionError(f"kubectl auth can-i {verb} {resource}: {proc.stderr.strip()}")
    return answer == "yes"


def signed_registry(s3_client: Any, admin: Any, bucket: str) -> Any:
    """The cluster's registry as a publisher there sees it: versions signed with the key pair
    install.sh made (the runtime and the deployer refuse unsigned ones)."""
    from mainsail.registry.signing import Signer, Verifier
    from mainsail.registry.store import ModelRegistry

    keys = secret_data(admin, SIGNING_SECRET)
    return ModelRegistry(
        s3_client,
        bucket,
        signer=Signer(keys["signing-key"]),
        verifier=Verifier.from_text(keys["public-key"]),
        require_signature=True,
    )


def feedback_store_url(admin: Any) -> str:
    """The feedback store the chart gave the gateway (its ConfigMap's router.json): the chart's
    Postgres, without the password (clients get PGPASSWORD from its Secret)."""
    from kubernetes import client

    name = naming.gateway_name(RELEASE)
    config = client.CoreV1Api(admin).read_namespaced_config_map(name, NAMESPACE)
    url = json.loads(config.data["router.json"]).get("feedback_url")
    if not url:
        raise AssertionError(f"ConfigMap {name} gives the gateway no feedback store")
    return str(url)


@contextlib.contextmanager
def feedback_store(admin: Any) -> Iterator[Any]:
    """The chart's feedback store (Postgres) through a port-forward, with its Secret's
    password: what the gateway records and the promotion controller decides from."""
    import sqlalchemy as sa

    from mainsail.feedback.store import FeedbackStore

    password = secret_data(admin, POSTGRES_SECRET)["password"]
    url = sa.engine.make_url(feedback_store_url(admin))
    service = f"service/{str(url.host).split('.', 1)[0]}"
    with port_forward(service, 5432) as pg:
        local = url.set(host="127.0.0.1", port=pg, password=password)
        store = FeedbackStore(local.render_as_string(hide_password=False))
        try:
            yield store
        finally:
            store.close()


_SEEDS = itertools.count(1_000_000)


def fresh_bodies(artifact: Path, rows: int, count: int) -> list[dict[str, Any]]:
    """`count` V2 request bodies of `rows` churn rows each (`generate_churn`'s, for the
    artifact's schema), none of them sent before in this session: each body has a seed of its
    own. Rows sent again and again are a distribution of their own, which the served version's
    drift sidecar rightly flags; its alert would start a retraining beside the tests, whose
    candidate the promotion controller would then deploy (tests/cluster/test_training.py drives
    the stage's one drift alert, with drifted rows)."""
    return [body for body, _ in fresh_labelled(artifact, rows, count)]


def fresh_labelled(artifact: Path, rows: int, count: int) -> list[tuple[dict[str, Any], list[str]]]:
    """:func:`fresh_bodies` with each body's ground truth (the rows' classes, as text)."""
    from tests.support.containers import v2_labelled

    return [v2_labelled(artifact, rows, next(_SEEDS)) for _ in range(count)]


# ---------------------------------------------------------------- the promotion controller

#: The chart's promotion controller Deployment (`promotionController`): scripts/kind/values.yaml
#: installs it with no replica; the tests that watch it scale it to one pod.
PROMOTION_CONTROLLER = naming.fullname(RELEASE, "promotion-controller")


def promotion_controller_pods(admin: Any, *, terminating: bool = False) -> list[Any]:
    """The controller's pods that are not on their way out (with `terminating`, those too)."""
    from kubernetes import client

    selector = f"{naming.LABEL_COMPONENT}=promotion-controller"
    pods = client.CoreV1Api(admin).list_namespaced_pod(NAMESPACE, label_selector=selector)
    return [p for p in pods.items if terminating or p.metadata.deletion_timestamp is None]


def scale_promotion_controller(admin: Any, replicas: int) -> None:
    from kubernetes import client

    client.AppsV1Api(admin).patch_namespaced_deployment_scale(
        PROMOTION_CONTROLLER, NAMESPACE, {"spec": {"replicas": replicas}}
    )


@contextlib.contextmanager
def promotion_controller_running(admin: Any) -> Iterator[str]:
    """The chart's controller scaled to one pod and Ready; scaled back to none (and its pod
    gone) on the way out. Yields the pod's name."""

    def ready() -> str | None:
        for pod in promotion_controller_pods(admin):
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            if conditions.get("Ready") == "True":
                return str(pod.metadata.name)
        return None

    scale_promotion_controller(admin, 1)
    try:
        yield wait_until("the promotion controller's pod to be Ready", 180, ready)
    finally:
        scale_promotion_controller(admin, 0)
        # Gone, not only terminating: a terminating pod still looks and acts until it exits
        # (2026-12-06: the pod that had deployed a candidate decided the experiment the next
        # pod was started for), and a pod scaled up at once does not wait for it.
        wait_until(
            "the controller's pod to go",
            120,
            lambda: not promotion_controller_pods(admin, terminating=True) or None,
        )


def controller_log_with(pod: str, line: str, timeout_s: float = 60) -> str:
    """The controller pod's log once it holds `line` (whitespace as one space). The pod prints
    a look's decision after the look has stored it: a log read right after the stored decision
    may end one line short (2026-12-06, twice)."""

    def logged() -> str | None:
        log = kubectl("-n", NAMESPACE, "logs", pod, "-c", "promotion-controller")
        return log if line in " ".join(log.split()) else None

    return wait_until(f"the controller's pod to log {line!r}", timeout_s, logged, every=1)


# ------------------------------------------------------------------------- the gateway

#: Where the cluster tests put the gateway's admin token for the code that reads it from the
#: environment (`stack.router.token_env`): `mainsail deploy` and the promotion controller.
GATEWAY_TOKEN_ENV = "MAINSAIL_E2E_GATEWAY_TOKEN"


def gateway_config(gateway_url: str, overrides: dict[str, Any] | None = None) -> Any:
    """The churn config as the deployer and the promotion controller see the cluster with
    `serving.backend: mlserver`: backend kubernetes, the gateway at `gateway_url` (a
    port-forward), its token from :data:`GATEWAY_TOKEN_ENV`."""
    from mainsail.config import load_config

    return load_config(
        REPO / "configs" / "churn.yaml",
        {
            "stack.backend": "kubernetes",
            "stack.kubernetes.namespace": NAMESPACE,
            "stack.kubernetes.serving": "mlserver",
            "stack.kubernetes.gateway_url": gateway_url,
            "stack.kubernetes.rollout_timeout_s": 600,
            "stack.router.token_env": GATEWAY_TOKEN_ENV,
            **(overrides or {}),
        },
    )


def deploy_as_deployer(
    admin: Any, cfg: Any, token: str, version: int, canary: int, registry: Any
) -> Any:
    """`mainsail deploy VERSION --canary CANARY` as the deployer's ServiceAccount: the variants'
    Deployments at the champion alias's and `version`, the gateway's split; its DeployResult."""
    from mainsail.deploy.service import deploy

    as_deployer = service_account_client(admin, naming.deployer_service_account(RELEASE))
    os.environ[GATEWAY_TOKEN_ENV] = token
    try:
        return deploy(cfg, version, canary, registry=registry, api_client=as_deployer)
    finally:
        os.environ.pop(GATEWAY_TOKEN_ENV, None)
        as_deployer.close()


def mlserver_mode(admin: Any) -> bool:
    """Whether the chart serves with `serving.backend: mlserver` (the variants' Deployments)."""
    from kubernetes import client

    names = {
        d.metadata.name for d in client.AppsV1Api(admin).list_namespaced_deployment(NAMESPACE).items
    }
    return naming.serving_deployment("champion", RELEASE) in names
