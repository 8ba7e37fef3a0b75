"""Seldon Core 2 v2.10.2's `mlserver` ServerConfig, as far as Mainsail's Server merges with it.

The operator merges a Server's `spec.podSpec` over the ServerConfig's pod (mergo with
WithOverride and WithAppendSlice: containers by name, every other list appended, scalars and
structs overridden field by field). The offline chart checks (tests/k8s/test_seldon.py) and the
container tests' pod runner (tests/support/pods.py, tests/support/containers.py) use the same
facts, from operator/config/serverconfigs/mlserver.yaml of seldon-core v2.10.2.
"""

from __future__ import annotations

import copy
from typing import Any

# seldon-core-v2-setup 2.10.2, ServerConfig `mlserver`, container `mlserver` and its pod.
SERVERCONFIG_PORTS = [
    {"containerPort": 9500, "name": "server-grpc", "protocol": "TCP"},
    {"containerPort": 9000, "name": "server-http", "protocol": "TCP"},
    {"containerPort": 8082, "name": "server-metrics"},
]
SERVERCONFIG_ENV = [
    {"name": "MLSERVER_PARALLEL_WORKERS", "value": "1"},
    {"name": "MLSERVER_DEBUG", "value": "false"},
    {"name": "MLSERVER_HTTP_PORT", "value": "9000"},
    {"name": "MLSERVER_GRPC_PORT", "value": "9500"},
    {"name": "MLSERVER_MODELS_DIR", "value": "/mnt/agent/models"},
    {"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"},
    {"name": "MLSERVER_GRPC_MAX_MESSAGE_LENGTH", "value": "1048576000"},
]
SERVERCONFIG_MOUNTS = [
    {"mountPath": "/mnt/agent", "name": "mlserver-models", "readOnly": True},
    {"mountPath": "/mnt/certs", "name": "downstream-ca-certs", "readOnly": True},
]
SERVERCONFIG_POD_SECURITY: dict[str, int] = {"fsGroup": 1000, "runAsUser": 1000, "runAsGroup": 1000}
"""What a Server's pod runs as unless its podSpec says otherwise (rclone's and the agent's files
are 1000's)."""
SERVERCONFIG_VOLUMES = {"downstream-ca-certs", "config-volume", "tracing-config-volume"}


def merge_container(override: dict[str, Any]) -> dict[str, Any]:
    """The `mlserver` container as Seldon's operator makes it from the ServerConfig's."""
    merged: dict[str, Any] = {
        "name": "mlserver",
        "ports": copy.deepcopy(SERVERCONFIG_PORTS),
        "env": copy.deepcopy(SERVERCONFIG_ENV),
        "volumeMounts": copy.deepcopy(SERVERCONFIG_MOUNTS),
    }
    for key, value in override.items():
        if isinstance(value, list):
            merged[key] = merged.get(key, []) + copy.deepcopy(value)  # WithAppendSlice
        else:
            merged[key] = copy.deepcopy(value)  # WithOverride
    return merged
