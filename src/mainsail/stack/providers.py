"""Which processes the local stack runs: a registry of providers, each giving ProcessSpecs.

A provider is a function `(StackContext) -> list[ProcessSpec]` registered under a name with an
order (lower starts first, stops last). The built-in ones are SeaweedFS (10), the Feast feature
server (20), MLServer champion and challenger (30) and the router (40). Other parts of Mainsail
add theirs (Prometheus, Alertmanager, drift sidecar, retrain trigger) by calling
:func:`register_provider` in a module listed in :data:`PROVIDER_MODULES`, which the stack
imports before it starts anything.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mainsail.config import ProjectConfig
from mainsail.stack.process import ProcessSpec, StackError

PROVIDER_MODULES: list[str] = [
    "mainsail.stack.drift",
    "mainsail.stack.monitoring",
]
"""Modules imported before `up`; each may call :func:`register_provider` (absent: skipped)."""


@dataclass(frozen=True)
class StackContext:
    """What a provider needs: the project config and the stack's data dir (absolute)."""

    config: ProjectConfig
    data_dir: Path

    @property
    def host(self) -> str:
        """Address the stack's processes bind to."""
        return self.config.stack.host


Provider = Callable[[StackContext], list[ProcessSpec]]
ModelResolver = Callable[[StackContext, str], Path]

_PROVIDERS: dict[str, tuple[int, Provider]] = {}
_RESOLVERS: list[ModelResolver] = []


def register_provider(name: str, provider: Provider, order: int = 50) -> None:
    """Add (or replace) a provider of stack processes; lower `order` starts first."""
    _PROVIDERS[name] = (order, provider)


def unregister_provider(name: str) -> None:
    """Remove a provider (tests use this to run part of the stack)."""
    _PROVIDERS.pop(name, None)


def register_model_resolver(resolver: ModelResolver) -> None:
    """Add a function `(ctx, variant) -> model folder` used when `stack.<variant>.model_dir` is
    null (the registry registers one that downloads the version behind the alias)."""
    _RESOLVERS.append(resolver)


def load_provider_modules() -> None:
    """Import :data:`PROVIDER_MODULES` so they can register; a module that is absent is skipped."""
    for module in PROVIDER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not module.startswith(err.name):
                raise


def selected_providers(ctx: StackContext) -> list[tuple[str, Provider]]:
    """The providers `up` runs, in start order (filtered by `stack.providers` when set)."""
    wanted = ctx.config.stack.providers
    if wanted is not None:
        unknown = sorted(set(wanted) - set(_PROVIDERS))
        if unknown:
            raise StackError(
                f"stack.providers names unknown part(s) {unknown}; "
                f"registered: {', '.join(sorted(_PROVIDERS))}"
            )
    ordered = sorted(_PROVIDERS.items(), key=lambda item: item[1][0])
    return [(name, fn) for name, (_order, fn) in ordered if wanted is None or name in wanted]


def process_specs(ctx: StackContext) -> list[ProcessSpec]:
    """Every process of the stack in start order; names must be unique.

    `up` asks each provider only when the earlier ones run (a provider may need them, e.g. the
    model servers download from SeaweedFS); this all-at-once form is for inspection.
    """
    specs: list[ProcessSpec] = []
    for _name, provider in selected_providers(ctx):
        specs.extend(provider(ctx))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StackError(f"two stack processes share the name(s) {dupes}")
    return specs


def serving_path_env(ctx: StackContext) -> dict[str, str]:
    """Logs, traces and redaction of the serving path's processes (router, MLServers, drift
    sidecar) from `observability` and `privacy`; spans of the `file` exporter go to the stack's
    `traces/` folder unless `observability.trace_dir` names another."""
    from mainsail.core.telemetry import telemetry_env

    cfg = ctx.config
    return telemetry_env(cfg.observability, cfg.privacy, ctx.data_dir / "traces")


# -- built-in providers -----------------------------------------------------------------------


def stack_token(ctx: StackContext, name: str, env: str | None = None) -> str:
    """A service token of the local stack (`trigger`, `drift`, `repository`): the environment
    variable `env` when set, else generated once and kept (mode 0600) in
    `<stack data dir>/secrets/<name>.token`, so every process of the stack agrees on it."""
    import secrets as _secrets

    from mainsail.core.files import write_private

    if env and os.environ.get(env):
        return os.environ[env]
    path = ctx.data_dir / "secrets" / f"{name}.token"
    if path.exists():
        return path.read_text().strip()
    token = _secrets.token_hex(24)
    write_private(path, token)
    return token


def seaweedfs_credentials(ctx: StackContext) -> tuple[str, str]:
    """S3 keys of the stack's SeaweedFS (`mainsail.registry.seaweedfs.local_credentials`)."""
    from mainsail.registry.seaweedfs import local_credentials

    return local_credentials(ctx.config.registry, ctx.data_dir)


def _seaweedfs(ctx: StackContext) -> list[ProcessSpec]:
    if not ctx.config.stack.seaweedfs:
        return []
    from mainsail.registry.seaweedfs import find_weed, pick_ports, weed_argv, write_identities

    host, port = ctx.host, ctx.config.stack.s3_port
    root = ctx.data_dir / "seaweedfs"
    (root / "weed").mkdir(parents=True, exist_ok=True)
    identities = write_identities(root / "s3-identities.json", *seaweedfs_credentials(ctx))
    # Internal ports are picked free now, never one the config assigns to another process.
    st = ctx.config.stack
    taken = {port, st.router.port, ctx.config.features.server_port}
    taken |= {st.champion.http, st.champion.grpc, st.champion.metrics}
    taken |= {st.challenger.http, st.challenger.grpc, st.challenger.metrics}
    return [
        ProcessSpec(
            name="seaweedfs",
            argv=weed_argv(find_weed(), root, host, port, identities, pick_ports(host, taken)),
            port=port,
            health_url=f"http://{host}:{port}/healthz",
            cwd=str(root),
        )
    ]


def _feature_server(ctx: StackContext) -> list[ProcessSpec]:
    if not ctx.config.stack.feature_server:
        return []
    feats = ctx.config.features
    feast = Path(sys.executable).parent / "feast"
    repo = feats.repo_dir if feats.repo_dir.is_absolute() else Path.cwd() / feats.repo_dir
    if not (repo / "feature_store.yaml").exists():
        raise StackError(
            f"stack.feature_server is on but {repo / 'feature_store.yaml'} does not exist; "
            "apply the feature repository first"
        )
    return [
        ProcessSpec(
            name="feast",
            argv=[
                str(feast) if feast.exists() else "feast",
                "-c",
                str(repo),
                "serve",
                "-h",
                feats.server_host,
                "-p",
                str(feats.server_port),
                "--no-access-log",
            ],
            port=feats.server_port,
            health_url=f"http://{feats.server_host}:{feats.server_port}/health",
            cwd=str(repo),
        )
    ]


def mlserver_command(ctx: StackContext) -> list[str]:
    """How to run MLServer: config, else the serving venv beside this one or in cwd, else PATH;
    always MLServer's CLI behind Mainsail's guards (`python -m mainsail.serving.guard`)."""
    if ctx.config.stack.mlserver_command:
        return list(ctx.config.stack.mlserver_command)
    venv = Path(sys.prefix)
    guard = ["-m", "mainsail.serving.guard"]
    for candidate in (
        venv.parent / "serving" / "bin" / "mlserver",
        Path.cwd() / ".venv" / "serving" / "bin" / "mlserver",
    ):
        if candidate.exists():
            return [str(candidate.parent / "python"), *guard]
    found = shutil.which("mlserver")
    if found:
        return [str(Path(found).parent / "python"), *guard]
    raise StackError(
        "mlserver not found: build the serving env (.venv/serving) or set stack.mlserver_command"
    )


def model_dir(ctx: StackContext, variant: str) -> Path:
    """The model folder a variant serves: `stack.<variant>.model_dir` or a registered resolver."""
    server = getattr(ctx.config.stack, variant)
    if server.model_dir is not None:
        path = Path(server.model_dir)
        if not (path / "model-settings.json").exists():
            raise StackError(
                f"stack.{variant}.model_dir {path} has no model-settings.json; expected an "
                "MLServer model folder (e.g. a downloaded registry version)"
            )
        return path
    for resolver in _RESOLVERS:
        return resolver(ctx, variant)
    return registry_model_dir(ctx, variant)


def registry_model_dir(ctx: StackContext, variant: str) -> Path:
    """Download the version behind the registry alias `variant` (verified) into the registry's
    cache; a missing challenger alias falls back to the champion (its weight is 0 until a
    deploy), a missing champion is an error."""
    from mainsail.registry import RegistryError, VersionNotFoundError, open_registry

    cfg = ctx.config
    cache = cfg.registry.cache_dir
    cache = cache if cache.is_absolute() else Path.cwd() / cache
    try:
        registry = open_registry(cfg)
        aliases = registry.aliases(cfg.name)
        alias = cfg.registry.alias(variant)  # the environment's own, e.g. `staging`
        ref = alias if alias in aliases or variant != "challenger" else cfg.registry.champion_alias
        return registry.download(cfg.name, ref, cache).path
    except VersionNotFoundError as err:
        raise StackError(
            f"stack.{variant}.model_dir is not set and the registry has no {variant!r} version "
            f"of {cfg.name!r} ({err}); publish and promote one, or set stack.{variant}.model_dir"
        ) from None
    except RegistryError as err:
        raise StackError(f"{variant}: cannot fetch the model from the registry: {err}") from None
    except Exception as err:  # minio's S3Error, urllib3's connection errors
        from mainsail.registry.errors import store_error_message

        message = store_error_message(err)
        if message is None:
            raise
        raise StackError(
            f"{variant}: cannot fetch the model from the registry: {message}; publish and "
            f"promote a version of {cfg.name!r} first, or set stack.{variant}.model_dir"
        ) from None


def write_mlserver_repository(ctx: StackContext, variant: str) -> Path:
    """`<data_dir>/mlserver/<variant>/`: settings.json plus the model folder, named after the
    project so every variant answers `/v2/models/<project>/infer`."""
    cfg = ctx.config
    ports = getattr(cfg.stack, variant)
    root = ctx.data_dir / "mlserver" / variant
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    settings = {
        "host": ctx.host,
        "http_port": ports.http,
        "grpc_port": ports.grpc,
        "metrics_port": ports.metrics,
        # MLServer 1.7.1's inference workers die on start with uvloop>=0.22 ("There is no current
        # event loop"); in-process inference is also the fastest for small tabular models.
        "parallel_workers": cfg.serving.parallel_workers,
        "load_models_at_startup": True,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    write_model_settings(ctx, variant, model_dir(ctx, variant))
    return root


def write_model_settings(ctx: StackContext, variant: str, source: Path) -> dict[str, Any]:
    """Write the model-settings of `source` (an MLServer model folder) into the variant's model
    repository, renamed to the project and with its `uri` made absolute; returns them."""
    source = Path(source).resolve()
    try:
        model_settings = json.loads((source / "model-settings.json").read_text())
    except (OSError, ValueError) as err:
        raise StackError(f"{source}/model-settings.json is unusable: {err}") from None
    if not isinstance(model_settings, dict):
        raise StackError(f"{source}/model-settings.json must hold a JSON object")
    model_settings["name"] = ctx.config.name
    params = model_settings.setdefault("parameters", {})
    # The project's serving options (drift feed, feature server, limits) apply to every version.
    from mainsail.serving.mlserver import serving_options

    feats = ctx.config.features
    # With the stack's own `feast serve`, requests by entity key go to it unless the serving
    # section names another feature server.
    stack_features = (
        f"http://{feats.server_host}:{feats.server_port}"
        if ctx.config.stack.feature_server
        else None
    )
    params.setdefault("extra", {}).update(
        serving_options(ctx.config.serving, feats, stack_features)
    )
    uri = params.get("uri")
    params["uri"] = str((source / uri).resolve()) if isinstance(uri, str) else str(source)
    target = ctx.data_dir / "mlserver" / variant / ctx.config.name
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / ".model-settings.json.tmp"
    tmp.write_text(json.dumps(model_settings, indent=2))
    tmp.replace(target / "model-settings.json")
    return model_settings


def _mlservers(ctx: StackContext) -> list[ProcessSpec]:
    from mainsail.serving.guard import ENV_REPOSITORY_TOKEN

    specs = []
    command = mlserver_command(ctx)
    # The repository API (load/unload) answers only holders of the stack's token.
    token = {ENV_REPOSITORY_TOKEN: stack_token(ctx, "repository", ENV_REPOSITORY_TOKEN)}
    from mainsail.registry.seaweedfs import local_signing_keys

    reg = ctx.config.registry
    public = local_signing_keys(reg, ctx.data_dir)[1]
    for variant in ("champion", "challenger"):
        ports = getattr(ctx.config.stack, variant)
        root = write_mlserver_repository(ctx, variant)
        env = {**serving_path_env(ctx), **token}
        if ports.model_dir is None:
            # Served from the registry: the runtime checks the version's signature again with
            # the registry's public key (a folder named in stack.<variant>.model_dir is yours).
            env[reg.public_keys_env] = public
        specs.append(
            ProcessSpec(
                name=f"mlserver-{variant}",
                argv=[*command, "start", str(root)],
                env=env,
                port=ports.http,
                extra_ports=(ports.grpc, ports.metrics),
                health_url=f"http://{ctx.host}:{ports.http}/v2/models/{ctx.config.name}/ready",
                cwd=str(root),
            )
        )
    return specs


def router_settings(ctx: StackContext) -> dict[str, object]:
    """The router's settings mapping: champion and challenger on the stack's MLServers."""
    cfg = ctx.config
    weights = cfg.stack.router.weights
    return {
        "model_name": cfg.name,
        "seed": cfg.stack.router.seed if cfg.stack.router.seed is not None else cfg.seed,
        "router": cfg.stack.router.model_dump(mode="json"),
        # Predictions and ground truth go to the feedback store the promotion controller reads.
        "feedback_url": feedback_store_url(ctx),
        "state_file": str(router_state_file(ctx)),
        "problem_type": cfg.data.problem_type or "classification",
        "positive_label": cfg.positive_label(),
        "variants": [
            {
                "role": variant,
                "url": f"http://{ctx.host}:{getattr(cfg.stack, variant).http}",
                "model": cfg.name,
                "version": _served_version(ctx, variant),
                "weight": weights.get(variant, 0),
            }
            for variant in ("champion", "challenger")
        ],
    }


def router_state_file(ctx: StackContext) -> Path:
    """Where the router keeps admin changes across restarts (cleared by each `mainsail up`)."""
    return ctx.data_dir / "router-state.json"


def feedback_store_url(ctx: StackContext) -> str:
    """The feedback store the router records into (:func:`mainsail.feedback.store.store_url`)."""
    from mainsail.feedback.store import store_url

    return store_url(ctx.config, ctx.data_dir)


def _served_version(ctx: StackContext, variant: str) -> str:
    """`parameters.version` of the model-settings a variant's MLServer serves, else the variant."""
    path = ctx.data_dir / "mlserver" / variant / ctx.config.name / "model-settings.json"
    try:
        version = json.loads(path.read_text()).get("parameters", {}).get("version")
    except (OSError, ValueError):
        version = None
    return str(version) if version else variant


def _router(ctx: StackContext) -> list[ProcessSpec]:
    cfg = ctx.config.stack
    path = ctx.data_dir / "router.json"
    path.write_text(json.dumps(router_settings(ctx), indent=2))
    # A new `up` starts from the config's split; only a restart resumes the saved one.
    router_state_file(ctx).unlink(missing_ok=True)
    return [
        ProcessSpec(
            name="router",
            argv=[
                sys.executable,
                "-m",
                "mainsail.serving.router",
                "--settings",
                str(path),
                "--host",
                ctx.host,
                "--port",
                str(cfg.router.port),
            ],
            env=serving_path_env(ctx),
            port=cfg.router.port,
            health_url=f"http://{ctx.host}:{cfg.router.port}/v2/health/ready",
        )
    ]


register_provider("seaweedfs", _seaweedfs, order=10)
register_provider("feast", _feature_server, order=20)
register_provider("mlserver", _mlservers, order=30)
register_provider("router", _router, order=40)
