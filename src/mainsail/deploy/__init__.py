"""Deployers: `local` (the local stack's MLServers and the router's admin API) and `kubernetes`
(Seldon Core 2 Model and Experiment resources through the kubernetes client).

Entry point: :func:`mainsail.deploy.service.deploy`; the CLI is :mod:`mainsail.cli.deploy`.
Nothing heavy is imported here.
"""

from __future__ import annotations

from mainsail.deploy.kubernetes import DeployError

__all__ = ["DeployError"]
