"""The Kubernetes API client every cluster-facing part of Mainsail uses (the deployer, the
promotion controller's Seldon backend, the retrain trigger's RayJob action)."""

from __future__ import annotations

from typing import Any


class KubeCredentialsError(RuntimeError):
    """No in-cluster service account and no usable kube config."""


def custom_objects_api(api_client: Any = None) -> Any:
    """A CustomObjectsApi on `api_client`, else on the environment's kube config (in-cluster
    service account, else ~/.kube/config)."""
    from kubernetes import client

    return client.CustomObjectsApi(_client(api_client))


def apps_api(api_client: Any = None) -> Any:
    """An AppsV1Api (Deployments) on `api_client`, else on the environment's kube config."""
    from kubernetes import client

    return client.AppsV1Api(_client(api_client))


def _client(api_client: Any) -> Any:
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as err:
                raise KubeCredentialsError(f"no Kubernetes credentials found: {err}") from None
        api_client = client.ApiClient()
    return api_client
