"""Local backend: point a variant's MLServer at a model folder and set the router's split.

The variant's MLServer (started by `mainsail up`) gets the new model-settings in its model
repository and reloads it through MLServer's repository API (`POST
/v2/repository/models/{name}/load`: the new version loads, the old one is unloaded). The router
is then told the variant's version and the weights through its admin API (bearer token). A
shadow deployment gives the challenger weight 0 and makes the router mirror every request to
the challenger's MLServer (its answers are recorded and paired, never returned).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig
from mainsail.deploy.admin import router_admin
from mainsail.deploy.kubernetes import DeployError


class LocalDeployer:
    """Talks to the local stack's MLServers and router."""

    def __init__(
        self, cfg: ProjectConfig, token: str | None = None, timeout: float = 120.0
    ) -> None:
        self.cfg = cfg
        self.host = cfg.stack.host
        self.router_url = f"http://{self.host}:{cfg.stack.router.port}"
        env_name = cfg.stack.router.token_env
        self.token = token if token is not None else os.environ.get(env_name, "")
        if not self.token:
            raise DeployError(
                f"the router's admin token is not set: export {env_name} (the value the router "
                "was started with)"
            )
        self.timeout = timeout

    def _admin(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return router_admin(
            self.router_url, self.token, method, path, body,
            timeout=self.timeout, hint="; is the stack up?",
        )  # fmt: skip

    def load_model(self, variant: str, model_dir: Path) -> str:
        """Serve `model_dir` on the variant's MLServer; returns the version it declares."""
        import json

        import httpx

        from mainsail.serving.guard import ENV_REPOSITORY_TOKEN
        from mainsail.stack.providers import StackContext, stack_token, write_model_settings

        ctx = StackContext(config=self.cfg, data_dir=self.cfg.stack.data_dir.resolve())
        settings = write_model_settings(ctx, variant, model_dir)
        version = str(settings.get("parameters", {}).get("version") or variant)
        port = getattr(self.cfg.stack, variant).http
        url = f"http://{self.host}:{port}/v2/repository/models/{self.cfg.name}/load"
        # The stack's MLServers guard their repository API with the stack's token.
        token = stack_token(ctx, "repository", ENV_REPOSITORY_TOKEN)
        try:
            resp = httpx.post(
                url, headers={"authorization": f"Bearer {token}"}, timeout=self.timeout
            )
        except httpx.HTTPError as err:
            raise DeployError(f"{variant} MLServer at {url} unreachable: {err}") from None
        if resp.status_code != 200:
            raise DeployError(
                f"{variant} MLServer could not load {model_dir}: {resp.status_code} "
                f"{json.dumps(resp.json()) if resp.content else ''}"
            )
        return version

    def set_variant(self, variant: str, version: str) -> dict[str, Any]:
        """Tell the router which version the variant now serves."""
        port = getattr(self.cfg.stack, variant).http
        return self._admin(
            "PUT",
            f"/admin/variants/{variant}",
            {"url": f"http://{self.host}:{port}", "model": self.cfg.name, "version": version},
        )

    def set_canary(self, canary: int) -> dict[str, Any]:
        """Send `canary` percent to the challenger and the rest to the champion."""
        if not 0 <= canary <= 100:
            raise DeployError(f"--canary must be a percent between 0 and 100, got {canary}")
        return self._admin(
            "PUT", "/admin/weights", {"champion": 100 - canary, "challenger": canary}
        )

    def set_mirror(self, variant: str, version: str, percent: int = 100) -> dict[str, Any]:
        """Copy `percent` of the requests to the variant's MLServer (the shadow)."""
        port = getattr(self.cfg.stack, variant).http
        return self._admin(
            "PUT",
            "/admin/variants/mirror",
            {
                "url": f"http://{self.host}:{port}",
                "model": self.cfg.name,
                "version": version,
                "weight": percent,
            },
        )

    def remove_mirror(self) -> dict[str, Any]:
        """Stop mirroring (a no-op when nothing is mirrored)."""
        return self._admin("DELETE", "/admin/variants/mirror", {})

    def deploy(self, model_dir: Path, canary: int, shadow: bool = False) -> dict[str, Any]:
        """Serve `model_dir` as challenger at `canary` percent, or in the shadow (weight 0, every
        request mirrored to it); returns the router's state."""
        version = self.load_model("challenger", model_dir)
        self.set_variant("challenger", version)
        if shadow:
            self.set_canary(0)
            return self.set_mirror("challenger", version)
        state = self.set_canary(canary)
        if canary > 0:
            state = self.remove_mirror()
        return state
