"""`python -m mainsail.drift serve --config CONFIG`: run the drift sidecar (drift env).

The drift env has no Typer, so this entry point uses argparse. S3 credentials for an `s3://`
reference come from `--s3-endpoint` or the environment (MAINSAIL_S3_ENDPOINT,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): this is the entry point, where the environment is read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mainsail.config import ConfigError, load_config
from mainsail.config.drift import DriftConfig
from mainsail.drift.reference import ReferenceError, ReferenceLoader
from mainsail.drift.server import DriftSidecar
from mainsail.registry.errors import RegistryError


def _s3_client(endpoint: str | None) -> Any:
    if not endpoint:
        return None
    from minio import Minio

    from mainsail.registry.store import s3_address

    host, secure = s3_address(endpoint)
    return Minio(
        host,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        secure=secure,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mainsail.drift", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the drift sidecar")
    serve.add_argument("--config", help="project config (its `drift` section is used)")
    serve.add_argument(
        "--settings-json", help="a JSON file with the drift settings (instead of --config)"
    )
    serve.add_argument("--host", help="bind address (overrides drift.host)")
    serve.add_argument("--port", type=int, help="TCP port (overrides drift.port)")
    serve.add_argument(
        "--reference", help="reference location template (overrides drift.reference)"
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a drift setting, e.g. --set window_rows=500 (repeatable)",
    )
    serve.add_argument("--s3-endpoint", default=os.environ.get("MAINSAIL_S3_ENDPOINT"))
    serve.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from mainsail.core import telemetry

    # The sidecar works per batch of many requests' rows: JSON log lines naming the batch's
    # request ids, no spans of its own.
    telemetry.setup("mainsail-drift", traces=False)
    try:
        if args.settings_json:
            base = DriftConfig.model_validate_json(Path(args.settings_json).read_text())
        elif args.config:
            base = load_config(args.config).drift
        else:
            base = DriftConfig()
        values = base.model_dump()
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep or key not in DriftConfig.model_fields:
                parser.error(f"--set {item!r}: expected KEY=VALUE with KEY a drift setting")
            values[key] = value
        for key in ("host", "port", "reference"):
            if getattr(args, key) is not None:
                values[key] = getattr(args, key)
        cfg = DriftConfig.model_validate(values)
        loader = ReferenceLoader(
            cfg.reference, cfg.reference_file, cfg.schema_file, s3=_s3_client(args.s3_endpoint)
        )
    except (ConfigError, ReferenceError, RegistryError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # Import alibi-detect (seconds) before answering /healthz, so the first batch of rows is
    # not held up by it and a ready sidecar is really ready.
    import alibi_detect.cd  # noqa: F401

    sidecar = DriftSidecar(cfg, loader, token=os.environ.get(cfg.token_env))
    sidecar.start()
    print(f"mainsail drift sidecar listening on {sidecar.url}", flush=True)
    sidecar.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
