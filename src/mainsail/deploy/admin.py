"""The router's admin API (weights, variants, state), as the deployers call it: one bearer-token
HTTP call whose failures become `DeployError`s that name the router and what it answered. The
local stack's router and the cluster's gateway are the same router."""

from __future__ import annotations

from typing import Any

from mainsail.deploy.kubernetes import DeployError


def router_admin(
    url: str,
    token: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float,
    name: str = "router",
    hint: str = "",
) -> dict[str, Any]:
    """`method path` on the router at `url`; its JSON answer. `name` and `hint` word the error
    when it cannot be reached (e.g. "gateway"; "is the stack up?")."""
    import httpx

    try:
        resp = httpx.request(
            method,
            f"{url}{path}",
            json=body,
            headers={"authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except httpx.HTTPError as err:
        raise DeployError(f"{name} at {url} unreachable ({err}){hint}") from None
    if resp.status_code != 200:
        raise DeployError(f"{name} refused {method} {path}: {resp.status_code} {resp.text}")
    result: dict[str, Any] = resp.json()
    return result
