"""Kubernetes backend with the chart's `serving.backend: mlserver`: variants' Deployments and
the gateway's admin API.

Each variant (champion, challenger) is a plain MLServer Deployment (`<release>-serving-<role>`)
whose `MAINSAIL_MODEL_VERSION` says which registry version it loads; the gateway
(`<release>-gateway`, the canary router) splits the traffic. A deploy:

1. sets each variant's Deployment to its version (champion: the registry's champion alias;
   challenger: the deployed version) and at least one replica: read, then replaced keeping its
   `resourceVersion` (read again on a 409 Conflict), nothing when it already serves it;
2. waits until the Deployment's rollout is complete (every replica updated and available, no
   old one left), so that the gateway never labels an old version's answers with the new one;
3. tells the gateway each variant's Service, model and version (`PUT /admin/variants/<role>`),
   waits until the gateway has it in rotation (its first check may still reach the old pod),
   and sets the split (`PUT /admin/weights`), with the admin token.

The Kubernetes verbs are get and update on those two Deployments, all the chart's Role grants
the deployer in this mode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from mainsail.config import ProjectConfig
from mainsail.core import kube, naming
from mainsail.deploy.admin import router_admin
from mainsail.deploy.kubernetes import DeployError, namespace

CONTAINER = "mlserver"


def gateway_url(cfg: ProjectConfig) -> str:
    """The gateway's base URL (`stack.kubernetes.gateway_url`, else its Service)."""
    kcfg = cfg.stack.kubernetes
    if kcfg.gateway_url:
        return kcfg.gateway_url.rstrip("/")
    name = naming.gateway_name(kcfg.release)
    return f"http://{name}.{namespace(cfg)}.svc.cluster.local:{naming.ROUTER_PORT}"


def variant_url(cfg: ProjectConfig, role: str) -> str:
    """The variant's MLServer Service, as the gateway calls it."""
    name = naming.serving_deployment(role, cfg.stack.kubernetes.release)
    return f"http://{name}.{namespace(cfg)}.svc.cluster.local:{naming.MLSERVER_HTTP_PORT}"


def served_version(deployment: Any) -> str | None:
    """`MAINSAIL_MODEL_VERSION` of the Deployment's `mlserver` container; None when unset."""
    for container in deployment.spec.template.spec.containers:
        if container.name == CONTAINER:
            for env in container.env or []:
                if env.name == naming.ENV_MODEL_VERSION:
                    return str(env.value) if env.value else None
    return None


def rolled_out(deployment: Any) -> bool:
    """Whether the Deployment's current spec is what all its pods run, and they are available."""
    status = deployment.status
    want = deployment.spec.replicas or 0
    return bool(
        (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        and (status.updated_replicas or 0) == want
        and (status.replicas or 0) == want
        and (status.available_replicas or 0) == want
    )


class GatewayDeployer:
    """Sets the variants' MLServer Deployments and the gateway (see the module docstring)."""

    def __init__(
        self,
        cfg: ProjectConfig,
        api_client: Any = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        apps: Any = None,
    ) -> None:
        """`apps`: an AppsV1Api to use instead of one on `api_client` (tests)."""
        self.cfg = cfg
        self.namespace = namespace(cfg)
        self.release = cfg.stack.kubernetes.release
        self.url = gateway_url(cfg)
        env_name = cfg.stack.router.token_env
        self.token = token if token is not None else os.environ.get(env_name, "")
        if not self.token:
            raise DeployError(
                f"the gateway's admin token is not set: export {env_name} (key gateway-token "
                f"of the Secret {naming.auth_secret_name(self.release)})"
            )
        self.timeout = timeout
        self.sleep = sleep
        if apps is not None:
            self.apps = apps
            return
        try:
            self.apps = kube.apps_api(api_client)
        except kube.KubeCredentialsError as err:
            raise DeployError(str(err)) from None

    # -- Deployments ------------------------------------------------------------------------

    def _read(self, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.apps.read_namespaced_deployment(name, self.namespace)
        except ApiException as err:
            hint = " (is the chart installed with serving.backend=mlserver?)" * (err.status == 404)
            raise DeployError(
                f"reading Deployment {self.namespace}/{name} failed: {err.status} {err.reason}"
                f"{hint}"
            ) from None

    def set_version(self, role: str, version: int, *, attempts: int = 3) -> str:
        """Point the variant's Deployment at `version` (and at least one replica)."""
        from kubernetes.client.exceptions import ApiException

        name = naming.serving_deployment(role, self.release)
        what = f"Deployment {self.namespace}/{name}"
        for attempt in range(1, attempts + 1):
            found = self._read(name)
            if served_version(found) == str(version) and (found.spec.replicas or 0) > 0:
                return f"kept {what} (v{version})"
            container = next(
                (c for c in found.spec.template.spec.containers if c.name == CONTAINER), None
            )
            if container is None:
                raise DeployError(f"{what} has no container {CONTAINER!r}")
            env = [e for e in container.env or [] if e.name != naming.ENV_MODEL_VERSION]
            from kubernetes import client

            env.insert(0, client.V1EnvVar(name=naming.ENV_MODEL_VERSION, value=str(version)))
            container.env = env
            found.spec.replicas = max(found.spec.replicas or 0, 1)
            try:
                self.apps.replace_namespaced_deployment(name, self.namespace, found)
            except ApiException as err:
                if err.status == 409 and attempt < attempts:
                    continue  # changed since we read it: read it again
                raise DeployError(f"replacing {what} failed: {err.status} {err.reason}") from None
            return f"replaced {what}: v{version}" + (f" (attempt {attempt})" if attempt > 1 else "")
        raise DeployError(f"replacing {what} failed after {attempts} attempts")  # pragma: no cover

    def wait_rollout(self, role: str, version: int) -> None:
        """Wait until every pod of the variant runs `version` and is ready (readiness: the
        version is downloaded, verified and loaded)."""
        name = naming.serving_deployment(role, self.release)
        deadline = time.monotonic() + self.cfg.stack.kubernetes.rollout_timeout_s
        while True:
            found = self._read(name)
            if served_version(found) != str(version):
                raise DeployError(
                    f"Deployment {self.namespace}/{name} was changed to "
                    f"{served_version(found)!r} while waiting for v{version}"
                )
            if rolled_out(found):
                return
            if time.monotonic() > deadline:
                status = found.status
                raise DeployError(
                    f"Deployment {self.namespace}/{name} did not serve v{version} within "
                    f"{self.cfg.stack.kubernetes.rollout_timeout_s:.0f} s (updated "
                    f"{status.updated_replicas or 0}, available {status.available_replicas or 0}"
                    f" of {found.spec.replicas}); see its pods' events and logs"
                )
            self.sleep(2.0)

    # -- the gateway ------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return router_admin(
            self.url, self.token, method, path, body, timeout=self.timeout, name="gateway"
        )

    def set_variant(self, role: str, version: int) -> dict[str, Any]:
        """Tell the gateway where the variant is served and which version it is."""
        body = {"url": variant_url(self.cfg, role), "model": self.cfg.name, "version": str(version)}
        return self._admin("PUT", f"/admin/variants/{role}", body)

    def wait_in_rotation(self, role: str, timeout_s: float = 60.0) -> None:
        """Wait until the gateway has the variant in rotation (its health check passed): right
        after a rollout its Service may still send the first check to the old pod."""
        deadline = time.monotonic() + timeout_s
        while not self.state()["variants"].get(role, {}).get("healthy"):
            if time.monotonic() > deadline:
                raise DeployError(
                    f"the gateway did not take the {role} into rotation within {timeout_s:.0f} s;"
                    f" see GET {self.url}/admin/state and the gateway's log"
                )
            self.sleep(1.0)

    def set_canary(self, canary: int) -> dict[str, Any]:
        """Send `canary` percent to the challenger and the rest to the champion."""
        if not 0 <= canary <= 100:
            raise DeployError(f"--canary must be a percent between 0 and 100, got {canary}")
        return self._admin(
            "PUT", "/admin/weights", {"champion": 100 - canary, "challenger": canary}
        )

    def state(self) -> dict[str, Any]:
        """The gateway's variants and weights (`GET /admin/state`)."""
        return self._admin("GET", "/admin/state")

    def serve(self, role: str, version: int) -> None:
        """`role`'s Deployment serves `version` and the gateway's `role` variant is that
        version, in rotation; the split is left as it is."""
        self.set_version(role, version)
        self.wait_rollout(role, version)
        self.set_variant(role, version)
        self.wait_in_rotation(role)

    def deploy(self, champion: int, challenger: int, canary: int) -> list[str]:
        """Serve `champion` and `challenger` on their Deployments, then split `canary` percent
        to the challenger at the gateway; returns what was done."""
        if champion == challenger:
            raise DeployError(
                f"champion and challenger are both version {champion}; deploy a different version"
            )
        done = []
        versions = {"champion": champion, "challenger": challenger}
        for role, version in versions.items():
            done.append(self.set_version(role, version))
        for role, version in versions.items():
            self.wait_rollout(role, version)
            done.append(f"{naming.serving_deployment(role, self.release)} serves v{version}")
        for role, version in versions.items():
            self.set_variant(role, version)
            self.wait_in_rotation(role)
            done.append(f"gateway: {role} -> v{version}")
        self.set_canary(canary)
        done.append(f"gateway: champion {100 - canary} / challenger {canary}")
        return done
