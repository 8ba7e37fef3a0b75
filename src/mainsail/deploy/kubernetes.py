"""Kubernetes backend: Seldon Core 2 `Model` and `Experiment` resources for a canary.

Each registry version becomes a `mlops.seldon.io/v1alpha1` Model (`storageUri` = the version's
folder in MinIO, `requirements` = what a Server must offer), and one Experiment per model splits
its traffic between champion and challenger by weight, with the champion as `default` (so
requests to the champion's name are split) and an optional `mirror`. Names and labels come from
:mod:`mainsail.core.naming`. Objects are applied with the kubernetes client's CustomObjectsApi:
created, or replaced (keeping `resourceVersion`, read again on a 409 Conflict) when they exist;
the verbs are get, create and update, all the chart's Role grants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mainsail.config import ProjectConfig
from mainsail.core import kube, naming

GROUP = "mlops.seldon.io"
API_VERSION = "v1alpha1"
PLURALS = {"Model": "models", "Experiment": "experiments"}
MANAGED_BY = "mainsail-deployer"


class DeployError(RuntimeError):
    """A deployment that cannot be rendered or applied; the message says which object and why."""


def storage_uri(cfg: ProjectConfig, version: int) -> str:
    """Where Seldon's agent downloads a version from: `s3://bucket/<prefix><model>/versions/N/`
    (the same layout as :meth:`mainsail.registry.ModelRegistry.version_uri`)."""
    prefix = cfg.stack.kubernetes.storage_uri_prefix
    if prefix is None:
        prefix = f"s3://{cfg.registry.bucket}/{cfg.registry.prefix}"
    if not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{cfg.name}/versions/{version}/"


def namespace(cfg: ProjectConfig) -> str:
    """Namespace of the per-model Seldon resources."""
    return naming.check_dns_label(cfg.stack.kubernetes.namespace or naming.DEFAULT_NAMESPACE)


def render_model(cfg: ProjectConfig, version: int, variant: str | None) -> dict[str, Any]:
    """The Seldon Model of one registry version."""
    kcfg = cfg.stack.kubernetes
    spec: dict[str, Any] = {
        "storageUri": storage_uri(cfg, version),
        "requirements": list(kcfg.requirements),
        "replicas": kcfg.replicas,
    }
    if kcfg.server:
        spec["server"] = kcfg.server
    if kcfg.secret_name:
        spec["secretName"] = kcfg.secret_name
    if kcfg.memory:
        spec["memory"] = kcfg.memory
    role = variant if variant in naming.VARIANTS else None
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "Model",
        "metadata": {
            "name": naming.model_resource_name(cfg.name, version),
            "namespace": namespace(cfg),
            "labels": naming.labels(
                "serving",
                managed_by=MANAGED_BY,
                model=cfg.name,
                variant=role,
                model_version=version,
            ),
        },
        "spec": spec,
    }


def render_experiment(
    cfg: ProjectConfig,
    champion: int,
    challenger: int,
    canary: int,
    mirror: int | None = None,
    mirror_percent: int = 100,
) -> dict[str, Any]:
    """The Experiment that sends `canary` percent to the challenger and the rest to the champion."""
    if not 0 <= canary <= 100:
        raise DeployError(f"--canary must be a percent between 0 and 100, got {canary}")
    if not 1 <= mirror_percent <= 100:
        raise DeployError(f"mirror percent must be between 1 and 100, got {mirror_percent}")
    if champion == challenger:
        raise DeployError(
            f"champion and challenger are both version {champion}; deploy a different version"
        )
    champ_name = naming.model_resource_name(cfg.name, champion)
    spec: dict[str, Any] = {
        "default": champ_name,
        "candidates": [
            {"name": champ_name, "weight": 100 - canary},
            {"name": naming.model_resource_name(cfg.name, challenger), "weight": canary},
        ],
    }
    if mirror is not None:
        spec["mirror"] = {
            "name": naming.model_resource_name(cfg.name, mirror),
            "percent": mirror_percent,
        }
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "Experiment",
        "metadata": {
            "name": naming.experiment_name(cfg.name),
            "namespace": namespace(cfg),
            "labels": naming.labels("serving", managed_by=MANAGED_BY, model=cfg.name),
        },
        "spec": spec,
    }


def render(
    cfg: ProjectConfig,
    champion: int,
    challenger: int,
    canary: int,
    mirror: int | None = None,
    mirror_percent: int = 100,
) -> list[dict[str, Any]]:
    """Models (champion, challenger, optional mirror) followed by their Experiment."""
    objects = [
        render_model(cfg, champion, "champion"),
        render_model(cfg, challenger, "challenger"),
    ]
    if mirror is not None and mirror not in (champion, challenger):
        objects.append(render_model(cfg, mirror, None))
    objects.append(render_experiment(cfg, champion, challenger, canary, mirror, mirror_percent))
    return objects


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream, as `--dry-run` prints it."""
    return yaml.safe_dump_all(objects, sort_keys=False)


def validate(objects: list[dict[str, Any]], crd_dir: Path) -> None:
    """Check each object against the Seldon Core 2 CRD's openAPIV3Schema in `crd_dir`."""
    import jsonschema

    for obj in objects:
        kind = obj["kind"]
        path = crd_dir / f"{GROUP}_{PLURALS[kind]}.yaml"
        crd = yaml.safe_load(path.read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == API_VERSION)
        try:
            jsonschema.validate(obj, version["schema"]["openAPIV3Schema"])
        except jsonschema.ValidationError as err:
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            raise DeployError(
                f"{kind} {obj['metadata']['name']}: {where}: {err.message} (CRD {path.name})"
            ) from None


def custom_objects_api(api_client: Any = None) -> Any:
    """A CustomObjectsApi on `api_client`, else on the environment's kube config (in-cluster
    service account, else ~/.kube/config)."""
    try:
        return kube.custom_objects_api(api_client)
    except kube.KubeCredentialsError as err:
        raise DeployError(str(err)) from None


def read_experiment(cfg: ProjectConfig, api_client: Any = None) -> dict[str, Any] | None:
    """The project's Seldon Experiment as stored in the cluster; None when there is none."""
    from kubernetes.client.exceptions import ApiException

    api = custom_objects_api(api_client)
    try:
        found: dict[str, Any] = api.get_namespaced_custom_object(
            GROUP,
            API_VERSION,
            namespace(cfg),
            PLURALS["Experiment"],
            naming.experiment_name(cfg.name),
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise DeployError(f"reading the Experiment failed: {err.status} {err.reason}") from None
    return found


def apply(objects: list[dict[str, Any]], api_client: Any = None, *, attempts: int = 3) -> list[str]:
    """Create or replace each object through the kubernetes client; returns what was done.

    An object that exists is read and replaced with the `resourceVersion` it was read at, so a
    change made by someone else in between is never overwritten blindly: the API server answers
    409 Conflict, and the object is read again and replaced, up to `attempts` times.
    `api_client` defaults to the kube config of the environment (in-cluster service account,
    else ~/.kube/config).
    """
    from kubernetes.client.exceptions import ApiException

    api = custom_objects_api(api_client)
    done = []
    for obj in objects:
        plural, meta = PLURALS[obj["kind"]], obj["metadata"]
        what = f"{obj['kind']} {meta['namespace']}/{meta['name']}"
        try:
            api.create_namespaced_custom_object(GROUP, API_VERSION, meta["namespace"], plural, obj)
            done.append(f"created {what}")
            continue
        except ApiException as err:
            if err.status != 409:
                raise DeployError(f"creating {what} failed: {err.status} {err.reason}") from None
        for attempt in range(1, attempts + 1):
            try:
                current = api.get_namespaced_custom_object(
                    GROUP, API_VERSION, meta["namespace"], plural, meta["name"]
                )
                body = {
                    **obj,
                    "metadata": {
                        **meta,
                        "resourceVersion": current["metadata"]["resourceVersion"],
                    },
                }
                api.replace_namespaced_custom_object(
                    GROUP, API_VERSION, meta["namespace"], plural, meta["name"], body
                )
            except ApiException as err:
                if err.status == 409 and attempt < attempts:
                    continue  # changed since we read it: read it again
                raise DeployError(f"replacing {what} failed: {err.status} {err.reason}") from None
            done.append(f"replaced {what}" + (f" (attempt {attempt})" if attempt > 1 else ""))
            break
    return done
