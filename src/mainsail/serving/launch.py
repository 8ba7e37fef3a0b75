"""`python -m mainsail.serving.launch`: MLServer serving one registry version (serving env).

The command of a variant's MLServer Deployment with the chart's `serving.backend: mlserver`
(no Seldon Core 2: nothing else writes a model repository into the pod). It reads what to serve
from the environment the Deployment sets, writes a model repository under the temporary
directory (an emptyDir; the root filesystem is read-only), and replaces itself with
`python -m mainsail.serving.guard start <repository>` (MLServer behind Mainsail's guards):

- `MAINSAIL_MODEL_NAME`: the registry model, also the MLServer model name (the gateway's
  public name); `MAINSAIL_MODEL_VERSION`: the version number (or `latest`, or an alias) that
  `mainsail deploy` sets;
- `MAINSAIL_S3_ENDPOINT`, `MAINSAIL_S3_BUCKET` and the keys in `MAINSAIL_S3_ACCESS_KEY` /
  `MAINSAIL_S3_SECRET_KEY`: the registry. The runtime downloads the version there and verifies
  every file's sha256, and the manifest's signature against `MAINSAIL_REGISTRY_PUBLIC_KEYS`,
  before it unpickles anything (`mainsail.serving.runtime`);
- `MAINSAIL_DRIFT_URL`, `MAINSAIL_FEATURE_SERVER_URL`: the drift sidecar in the pod and Feast's
  feature server (the runtime reads them itself).

MLServer listens on the ports of a Seldon Server pod (`mainsail.core.naming`: 9000 HTTP, 9500
gRPC, 8082 metrics) with `parallel_workers` 0, so that the runtime's collectors are on
`/metrics`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mainsail.core import naming
from mainsail.serving.mlserver import ServedModel, server_settings, write_repository

__all__ = ["LaunchError", "main", "served_model", "write"]

ENV_S3_ACCESS_KEY = "MAINSAIL_S3_ACCESS_KEY"
ENV_S3_SECRET_KEY = "MAINSAIL_S3_SECRET_KEY"
ENV_REGISTRY_PREFIX = "MAINSAIL_REGISTRY_PREFIX"


class LaunchError(ValueError):
    """The environment does not say what to serve; the message names the variable."""


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise LaunchError(f"{name} is not set: the Deployment must say what to serve")
    return value


def served_model(environ: Mapping[str, str], cache_dir: Path) -> ServedModel:
    """The model-settings of the version the environment names (see the module docstring)."""
    name = naming.check_dns_label(_required(environ, naming.ENV_MODEL_NAME))
    ref = _required(environ, naming.ENV_MODEL_VERSION)
    registry: dict[str, Any] = {
        "endpoint": _required(environ, naming.ENV_S3_ENDPOINT),
        "bucket": environ.get(naming.ENV_S3_BUCKET) or "mainsail-models",
        "prefix": environ.get(ENV_REGISTRY_PREFIX, ""),
        "model": name,
        "ref": ref,
        "access_key_env": ENV_S3_ACCESS_KEY,
        "secret_key_env": ENV_S3_SECRET_KEY,
        "cache_dir": str(cache_dir),
    }
    # A version number is MLServer's model version too (the answers' model_version).
    return ServedModel(name, version=ref if ref.isdigit() else None, extra={"registry": registry})


def write(
    environ: Mapping[str, str],
    folder: Path,
    cache_dir: Path,
    ports: tuple[int, int, int] = (
        naming.MLSERVER_HTTP_PORT,
        naming.MLSERVER_GRPC_PORT,
        naming.MLSERVER_METRICS_PORT,
    ),
) -> Path:
    """Write the repository (settings.json, `<model>/model-settings.json`) into `folder`; the
    runtime downloads the version into `cache_dir`, which must lie outside `folder` (a version
    folder holds a model-settings.json of its own, which MLServer would load as a second
    model after a container restart). The runtime validates the settings when it loads them
    (a bad value fails the model's load, naming the field). `ports`: HTTP, gRPC, metrics."""
    if cache_dir.resolve().is_relative_to(folder.resolve()):
        raise LaunchError(f"the download folder {cache_dir} lies inside the repository {folder}")
    model = served_model(environ, cache_dir)
    http, grpc, metrics = ports
    settings = server_settings(
        folder,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        parallel_workers=0,
        host="0.0.0.0",  # the pod's address: the NetworkPolicy limits the callers
    )
    return write_repository(folder, [model], settings)


def main(argv: list[str] | None = None) -> None:
    """Write the repository, then exec MLServer behind the guards on it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mainsail.serving.launch", description=__doc__)
    parser.add_argument("folder", nargs="?", help="repository folder (default: under TMPDIR)")
    parser.add_argument("--http-port", type=int, default=naming.MLSERVER_HTTP_PORT)
    parser.add_argument("--grpc-port", type=int, default=naming.MLSERVER_GRPC_PORT)
    parser.add_argument("--metrics-port", type=int, default=naming.MLSERVER_METRICS_PORT)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.gettempdir())
    folder = Path(args.folder) if args.folder else tmp / "mlserver-repository"
    ports = (args.http_port, args.grpc_port, args.metrics_port)
    try:
        write(os.environ, folder, tmp / "mainsail-models", ports)
    except (LaunchError, ValueError) as err:
        print(f"mainsail.serving.launch: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"mainsail.serving.launch: serving {folder}", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "mainsail.serving.guard", "start", str(folder)])


if __name__ == "__main__":
    main()
