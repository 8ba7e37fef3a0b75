"""The drift sidecar in the local stack (`mainsail up`): registered as a stack provider.

Imported by :mod:`mainsail.stack.providers` (pipeline env). The sidecar itself runs in the drift
env; its settings travel as a JSON file in the stack's data dir. An `s3://` reference is read
from the local SeaweedFS unless the registry names another endpoint.
"""

from __future__ import annotations

import os

from mainsail.drift.process import drift_python, sidecar_argv
from mainsail.stack.process import ProcessSpec
from mainsail.stack.providers import (
    StackContext,
    register_provider,
    seaweedfs_credentials,
    serving_path_env,
    stack_token,
)


def drift_specs(ctx: StackContext) -> list[ProcessSpec]:
    """The sidecar process of the local stack."""
    cfg = ctx.config.drift
    folder = ctx.data_dir / "drift"
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "drift.json"
    settings.write_text(cfg.model_dump_json(indent=2))
    argv = sidecar_argv(drift_python(), host=ctx.host, port=cfg.port, reference=cfg.reference)
    argv += ["--settings-json", str(settings)]
    env: dict[str, str] = {}
    if cfg.reference.startswith("s3://"):
        reg = ctx.config.registry
        endpoint = reg.endpoint or f"{ctx.host}:{ctx.config.stack.s3_port}"
        scheme = "https" if reg.secure else "http"
        access, secret = (
            (os.environ.get(reg.access_key_env, ""), os.environ.get(reg.secret_key_env, ""))
            if reg.endpoint
            else seaweedfs_credentials(ctx)
        )
        argv += ["--s3-endpoint", f"{scheme}://{endpoint}"]
        env = {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
    env.update(serving_path_env(ctx))
    env[cfg.token_env] = stack_token(ctx, "drift", cfg.token_env)
    return [
        ProcessSpec(
            name="drift-sidecar",
            argv=argv,
            env=env,
            port=cfg.port,
            health_url=f"http://{ctx.host}:{cfg.port}/healthz",
            cwd=str(folder),
        )
    ]


# After the model servers and the router (30, 40), before monitoring (60+).
register_provider("drift", drift_specs, order=50)
