"""Run what the Helm chart renders as containers on the real engine: a small, literal stand-in
for a kubelet, so the container tests configure every process only from the render.

- A `Cluster` is one docker network (the cluster network) plus one render of the chart
  (`manifests/render.py`, the real Helm engine). A pod is started from a rendered pod spec:
  its first container owns the pod's network namespace (every container port of the pod is
  published on 127.0.0.1), the others join it with `--network container:<first>`, as the
  containers of a pod share localhost. The Services that select the pod's labels become
  network aliases (`name`, `name.ns`, `name.ns.svc.cluster.local`), so the DNS names the chart
  writes into env vars and config files resolve as in the cluster.
- From each container spec: image, command and args (Kubernetes semantics: `command` replaces
  the image's entrypoint, `args` its CMD), env (`value`, `secretKeyRef` read from the rendered
  Secret; passed in a 0600 env file, never on a command line), volume mounts (`emptyDir` is a
  tmpfs volume with mode 1777 shared by the pod's containers, `configMap` a read-only folder of
  the rendered ConfigMap's files), the security context (runAsUser/runAsGroup, fsGroup,
  readOnlyRootFilesystem, dropped capabilities, no privilege escalation) and the resource
  limits (memory, CPU). A field this stand-in does not know fails the test rather than being
  silently left out.
- Readiness and liveness come from the rendered probes (`httpGet` on a named or numbered port).

Everything a test starts (containers, volumes, the network) is removed by `Cluster.close()`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.seldon import SERVERCONFIG_POD_SECURITY

#: Kubernetes probe defaults (seconds, count) where the render leaves a field out.
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "failureThreshold": 3}


class KubeError(AssertionError):
    """The render asks for something this stand-in cannot do, or a pod did not behave."""


def _quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


def _quantity_cpus(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass
class Engine:
    """The docker CLI on the engine that DOCKER_HOST names."""

    host: str

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.host}
        proc = subprocess.run(
            ["docker", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and proc.returncode != 0:
            raise KubeError(f"docker {' '.join(args[:3])} ... failed: {proc.stderr.strip()}")
        return proc

    def logs(self, container: str, tail: int = 60) -> str:
        proc = self.docker("logs", "--tail", str(tail), container, check=False)
        return (proc.stdout + proc.stderr).strip()

    def published(self, container: str, port: int) -> str:
        """`127.0.0.1:P` where the container's `port` is published."""
        out = self.docker("port", container, f"{port}/tcp").stdout.split()
        if not out:
            raise KubeError(f"container port {port} of {container} is not published")
        return out[0].replace("0.0.0.0", "127.0.0.1")

    def running(self, container: str) -> bool:
        proc = self.docker("inspect", "-f", "{{.State.Running}}", container, check=False)
        return proc.stdout.strip() == "true"

    def exit_code(self, container: str) -> int | None:
        proc = self.docker("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", container)
        running, code = proc.stdout.split()
        return None if running == "true" else int(code)


@dataclass
class Pod:
    """A started pod: container name -> container id, and where its ports are published."""

    name: str
    spec: dict[str, Any]
    containers: dict[str, str]
    engine: Engine
    started: float = field(default_factory=time.monotonic)
    """When its containers were started (time.monotonic)."""

    def container_spec(self, name: str) -> dict[str, Any]:
        for c in self.spec["containers"]:
            if c["name"] == name:
                return dict(c)
        raise KubeError(f"pod {self.name} has no container {name!r}")

    def port(self, container: str, port: str | int) -> int:
        """A container port by number or by name."""
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in self.container_spec(container).get("ports", []):
            if p.get("name") == port:
                return int(p["containerPort"])
        raise KubeError(f"container {container} of {self.name} has no port named {port!r}")

    def url(self, container: str, port: str | int, path: str = "") -> str:
        first = next(iter(self.containers.values()))
        return f"http://{self.engine.published(first, self.port(container, port))}{path}"

    def probe(self, container: str, kind: str = "readinessProbe") -> tuple[str, float]:
        """The probe's URL and its budget in seconds: initialDelaySeconds + failureThreshold x
        periodSeconds, the time after which Kubernetes gives up on the container (liveness:
        restarts it)."""
        spec = self.container_spec(container).get(kind)
        if not spec or "httpGet" not in spec:
            raise KubeError(f"container {container} of {self.name} has no httpGet {kind}")
        get = spec["httpGet"]
        b = {**PROBE_DEFAULTS, **spec}
        seconds = b["initialDelaySeconds"] + b["failureThreshold"] * b["periodSeconds"]
        return self.url(container, get["port"], get.get("path", "/")), float(seconds)

    def wait_probe(
        self, container: str, kind: str = "readinessProbe", timeout: float | None = None
    ) -> float:
        """Seconds from the pod's start until the probe answers 200; fails with the
        container's log when it does not within `timeout` of the start (default: the probe's
        own budget)."""
        url, budget = self.probe(container, kind)
        deadline = self.started + (timeout or budget)
        started = self.started
        last = "no answer"
        while time.monotonic() < deadline:
            cid = self.containers[container]
            if not self.engine.running(cid):
                raise KubeError(
                    f"container {container} of pod {self.name} exited "
                    f"(code {self.engine.exit_code(cid)}):\n{self.engine.logs(cid)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.25)
        logs = self.engine.logs(self.containers[container])
        raise KubeError(
            f"{kind} of {container} in pod {self.name} ({url}) not passing after "
            f"{timeout or budget:.0f}s (last: {last}):\n{logs}"
        )

    def logs(self, container: str, tail: int = 80) -> str:
        return self.engine.logs(self.containers[container], tail)


@dataclass
class Cluster:
    """A docker network standing for the cluster network, and the chart's render."""

    engine: Engine
    objects: list[dict[str, Any]]
    workdir: Path
    network: str = ""
    _containers: list[str] = field(default_factory=list)
    _volumes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.network = f"mainsail-test-{secrets.token_hex(4)}"
        self.engine.docker("network", "create", "--label", "io.mainsail.test=1", self.network)

    # -- the render -----------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise KubeError(f"the render has no {kind} {name}")

    def secret_value(self, name: str, key: str) -> str:
        secret = self.get("Secret", name)
        if key in secret.get("stringData", {}):
            return str(secret["stringData"][key])
        if key in secret.get("data", {}):
            return base64.b64decode(secret["data"][key]).decode()
        raise KubeError(f"Secret {name} has no key {key!r} (keys: {sorted(secret_keys(secret))})")

    def pod_spec(self, kind: str, name: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The pod spec and pod labels of a rendered workload."""
        obj = self.get(kind, name)
        if kind == "Server":  # Seldon Core 2: spec.podSpec, pods labelled by Seldon
            # The operator merges the podSpec over its mlserver ServerConfig's, whose pod
            # identity (uid/gid/fsGroup 1000) stays where the override sets none.
            spec = copy.deepcopy(obj["spec"]["podSpec"])
            spec["securityContext"] = {
                **SERVERCONFIG_POD_SECURITY,
                **spec.get("securityContext", {}),
            }
            return spec, dict(obj["metadata"].get("labels", {}))
        template = obj["spec"]["template"]
        return template["spec"], dict(template["metadata"].get("labels", {}))

    def gateway(self) -> str:
        """The host's address on this network (what a container reaches the host at)."""
        out = self.engine.docker(
            "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", self.network
        )
        return out.stdout.strip()

    def _aliases(self, labels: Mapping[str, str]) -> list[str]:
        aliases: list[str] = []
        for svc in (o for o in self.objects if o["kind"] == "Service"):
            selector = svc["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in svc["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                if isinstance(target, int) and target != port["port"]:
                    raise KubeError(
                        f"Service {svc['metadata']['name']} maps port {port['port']} to "
                        f"{target}; network aliases cannot remap ports"
                    )
            name, ns = svc["metadata"]["name"], svc["metadata"].get("namespace", "default")
            aliases += [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
        return aliases

    # -- pods -----------------------------------------------------------------------------

    def start_pod(
        self,
        name: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        *,
        host_volumes: Mapping[str, Path] | None = None,
    ) -> Pod:
        """Start every container of `spec`. `host_volumes` gives a host folder for volumes the
        render names but does not define (the volumes Seldon adds to its Server pods)."""
        spec = json.loads(json.dumps(spec))
        pod_sc = spec.get("securityContext", {})
        volumes = self._volumes_for(name, spec, host_volumes or {})
        started: dict[str, str] = {}
        first: str | None = None
        t0 = time.monotonic()
        all_ports = [
            int(p["containerPort"]) for c in spec["containers"] for p in c.get("ports", [])
        ]
        try:
            for container in spec["containers"]:
                args = self._run_args(name, container, pod_sc, volumes)
                if first is None:
                    args += ["--network", self.network, "--hostname", name]
                    for alias in self._aliases(labels or {}):
                        args += ["--network-alias", alias]
                    for port in all_ports:
                        args += ["-p", f"127.0.0.1::{port}"]
                else:
                    args += ["--network", f"container:{first}"]
                args += self._image_and_command(container)
                proc = self.engine.docker("run", "-d", *args, check=False)
                if proc.returncode != 0:
                    # A container the engine created but could not start still holds its volumes.
                    name_ = f"{self.network}-{name}-{container['name']}"
                    self.engine.docker("rm", "-f", name_, check=False)
                    raise KubeError(f"starting {container['name']} of {name}: {proc.stderr}")
                cid = proc.stdout.strip()
                self._containers.append(cid)
                started[container["name"]] = cid
                first = first or cid
        except Exception:
            for cid in started.values():
                with contextlib.suppress(Exception):
                    print(f"--- {cid[:12]}\n{self.engine.logs(cid)}")
            raise
        return Pod(name, spec, started, self.engine, t0)

    def _volumes_for(
        self, pod: str, spec: Mapping[str, Any], host_volumes: Mapping[str, Path]
    ) -> dict[str, list[str]]:
        """Volume name -> the `--mount` value (without the destination and read-only flag)."""
        out: dict[str, list[str]] = {}
        for vol in spec.get("volumes", []):
            name = vol["name"]
            if "emptyDir" in vol:
                # One tmpfs-backed volume per pod volume, mode 1777 like an emptyDir, shared by
                # every container of the pod that mounts it.
                vname = f"{self.network}-{pod}-{name}"
                self.engine.docker(
                    "volume", "create", "--label", "io.mainsail.test=1",
                    "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=mode=1777",
                    vname,
                )  # fmt: skip
                self._volumes.append(vname)
                out[name] = ["type=volume", f"source={vname}"]
            elif "configMap" in vol:
                cm = self.get("ConfigMap", vol["configMap"]["name"])
                folder = Path(tempfile.mkdtemp(prefix=f"cm-{name}-", dir=self.workdir))
                for key, text in (cm.get("data") or {}).items():
                    (folder / key).write_text(text)
                    (folder / key).chmod(0o644)
                folder.chmod(0o755)
                out[name] = ["type=bind", f"source={folder}"]
            else:
                raise KubeError(f"volume {name} of pod {pod}: {sorted(vol)} is not supported here")
        for name, folder in host_volumes.items():
            out[name] = ["type=bind", f"source={folder}"]
        return out

    def _run_args(
        self,
        pod: str,
        c: Mapping[str, Any],
        pod_sc: Mapping[str, Any],
        volumes: Mapping[str, list[str]],
    ) -> list[str]:
        known = {
            "name", "image", "imagePullPolicy", "command", "args", "env", "ports",
            "livenessProbe", "readinessProbe", "startupProbe", "resources",
            "securityContext", "volumeMounts", "workingDir", "lifecycle",
        }  # fmt: skip
        unknown = sorted(set(c) - known)
        if unknown:
            raise KubeError(f"container {c['name']} of {pod}: fields {unknown} not supported")
        sc = {**pod_sc, **c.get("securityContext", {})}
        args = ["--name", f"{self.network}-{pod}-{c['name']}", "--label", "io.mainsail.test=1"]
        user, group = sc.get("runAsUser"), sc.get("runAsGroup")
        if user is not None:
            args += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if sc.get("runAsNonRoot") and user in (None, 0):
            raise KubeError(f"container {c['name']}: runAsNonRoot without a non-root runAsUser")
        if "fsGroup" in pod_sc:
            args += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        for cap in sc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        limits = c.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(_quantity_bytes(str(limits["memory"])))]
        if "cpu" in limits:
            args += ["--cpus", f"{min(_quantity_cpus(limits['cpu']), os.cpu_count() or 1):g}"]
        env_lines = []
        for item in c.get("env", []):
            if "value" in item:
                value = str(item["value"])
            elif "secretKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["secretKeyRef"]
                value = self.secret_value(ref["name"], ref["key"])
            else:
                raise KubeError(f"env {item['name']} of {c['name']}: {item} is not supported")
            if "\n" in value:
                raise KubeError(f"env {item['name']} of {c['name']} has a newline")
            env_lines.append(f"{item['name']}={value}")
        if env_lines:
            fd, env_file = tempfile.mkstemp(prefix="env-", dir=self.workdir)  # mode 0600
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(env_lines) + "\n")
            args += ["--env-file", env_file]
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in volumes:
                raise KubeError(f"{c['name']} mounts {mount['name']}; the pod does not define it")
            spec = [*volumes[mount["name"]], f"destination={mount['mountPath']}"]
            if mount.get("readOnly"):
                spec.append("readonly")
            args += ["--mount", ",".join(spec)]
        if "workingDir" in c:
            args += ["-w", c["workingDir"]]
        return args

    @staticmethod
    def _image_and_command(c: Mapping[str, Any]) -> list[str]:
        """What follows the options of `docker run`: Kubernetes' `command` replaces the
        image's entrypoint, `args` its CMD."""
        command, cargs = list(c.get("command") or []), list(c.get("args") or [])
        if command:
            return ["--entrypoint", command[0], c["image"], *command[1:], *cargs]
        return [c["image"], *cargs]

    def run_to_end(
        self,
        name: str,
        spec: Mapping[str, Any],
        timeout: float = 300,
        *,
        host_volumes: Mapping[str, Path] | None = None,
    ) -> tuple[int, str]:
        """Start a one-container pod, wait until it exits; its exit code and its output."""
        if len(spec["containers"]) != 1:
            raise KubeError(f"run_to_end runs a one-container pod; {name} has more")
        pod = self.start_pod(name, spec, host_volumes=host_volumes)
        (cid,) = pod.containers.values()
        proc = self.engine.docker("wait", cid, check=False, timeout=timeout)
        code = int(proc.stdout.strip() or -1)
        out = self.engine.docker("logs", cid, check=False)
        self.stop(pod)
        return code, out.stdout + out.stderr

    def stop(self, pod: Pod) -> None:
        for cid in reversed(list(pod.containers.values())):
            self.engine.docker("rm", "-f", cid, check=False)
            if cid in self._containers:
                self._containers.remove(cid)

    def close(self) -> None:
        for cid in reversed(self._containers):
            self.engine.docker("rm", "-f", cid, check=False)
        for vol in self._volumes:
            self.engine.docker("volume", "rm", "-f", vol, check=False)
        self.engine.docker("network", "rm", self.network, check=False)


def secret_keys(secret: Mapping[str, Any]) -> set[str]:
    """Keys of a rendered Secret (stringData and data)."""
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))
