"""Run Prometheus and Alertmanager (Debian packages) as local processes, for tests and demos.

Each gets its own config, data folder and port; Alertmanager's cluster listener is off so
several can run side by side. `start()` waits until `/-/ready` answers and fails with the tail
of the process log otherwise. The local stack uses the same command lines
(:func:`prometheus_argv`, :func:`alertmanager_argv`).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mainsail.core.child import HttpChild

__all__ = [
    "LocalAlertmanager",
    "LocalPrometheus",
    "MonitorProcessError",
    "alertmanager_argv",
    "find_binary",
    "prometheus_argv",
]


class MonitorProcessError(RuntimeError):
    """Prometheus or Alertmanager could not be found or started; the message says why."""


def find_binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise MonitorProcessError(
        f"none of {list(names)} is on PATH: install the Debian packages "
        "`prometheus prometheus-alertmanager` (make services)"
    )


def prometheus_argv(config: Path, data_dir: Path, host: str, port: int) -> list[str]:
    return [
        find_binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=15d",
    ]


def alertmanager_argv(config: Path, data_dir: Path, host: str, port: int) -> list[str]:
    return [
        find_binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={config}",
        f"--storage.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        # No gossip: a single local instance, and no clash on the default port 9094.
        "--cluster.listen-address=",
    ]


class _Process(HttpChild):
    ready_path = "/-/ready"
    error = MonitorProcessError

    def __init__(self, argv: list[str], log: Path, url: str) -> None:
        super().__init__(argv, log, url)
        self.what = Path(argv[0]).name

    def get_json(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=10) as resp:
            return json.loads(resp.read())


class LocalPrometheus(_Process):
    """`prometheus` with `config` on `host:port`, data under `workdir`."""

    def __init__(self, config: Path, workdir: Path, port: int, host: str = "127.0.0.1") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            prometheus_argv(config, workdir / "data", host, port),
            workdir / "prometheus.log",
            f"http://{host}:{port}",
        )

    def query(self, expr: str) -> dict[str, Any]:
        """`/api/v1/query`; returns `data` or raises with Prometheus' error message."""
        try:
            body = self.get_json("/api/v1/query", query=expr)
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise ValueError(f"query {expr!r} failed: {body.get('errorType')}: {body.get('error')}")
        data: dict[str, Any] = body["data"]
        return data

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get_json("/api/v1/alerts")["data"]["alerts"]
        return alerts


class LocalAlertmanager(_Process):
    """`alertmanager` with `config` on `host:port`, data under `workdir`."""

    def __init__(self, config: Path, workdir: Path, port: int, host: str = "127.0.0.1") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            alertmanager_argv(config, workdir / "data", host, port),
            workdir / "alertmanager.log",
            f"http://{host}:{port}",
        )

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get_json("/api/v2/alerts")
        return alerts
