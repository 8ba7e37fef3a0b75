"""Kubeflow Pipelines runtime: compile, run locally with kfp.local, submit with kfp.Client.

The same pipelines (built by pipelines/build.py from the components in components/<step>/) are
compiled to IR YAML for the cluster and run here by kfp.local's SubprocessRunner in the current
(pipeline) virtual environment.

Pipeline environment only: kfp is imported inside the functions, so importing this module costs
nothing and works anywhere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import socket
import sys
import tempfile
import time
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from mainsail.config import ProjectConfig, config_to_json, load_config
from mainsail.config.pipelines import REGISTRY_STEPS, STEPS, PipelinesConfig
from mainsail.core import naming
from mainsail.core.files import sha256_file

if TYPE_CHECKING:
    from kfp.dsl import PipelineTask
    from kfp.dsl.base_component import BaseComponent

PipelineName = Literal["training", "retraining"]
LocalRunner = Literal["subprocess", "docker"]
"""kfp.local runners: steps as subprocesses of this venv, or as containers of the pipeline
image (mainsail.pipeline.containers)."""
PIPELINES: tuple[PipelineName, ...] = ("training", "retraining")
PIPELINE_NAMES: dict[PipelineName, str] = {
    "training": "mainsail-training",
    "retraining": "mainsail-retraining",
}
"""Names of the compiled pipelines (the `pipelineInfo.name` of the IR)."""

LIVE_STEPS = ("compare-champion", "deploy-canary")
"""Steps whose outcome depends on live state (registry aliases, serving): never cached."""

#: Where the repository's pipelines/ and components/ live; overridable for installed images.
ROOT_ENV = "MAINSAIL_PROJECT_ROOT"


class PipelineError(RuntimeError):
    """A pipeline could not be compiled, run or submitted; the message says why."""


class KfpUnreachableError(PipelineError):
    """No KFP API server answers at the given host."""


# --------------------------------------------------------------------------- settings & loading


def project_config(
    config: str | Path | ProjectConfig, overrides: dict[str, Any] | None = None
) -> ProjectConfig:
    """A private copy of an already loaded config (e.g. the CLI's, with its --set overrides), or
    the config file read with `overrides`."""
    if isinstance(config, ProjectConfig):
        if overrides:
            raise PipelineError("overrides apply to a config file, not to a loaded config")
        return config.model_copy(deep=True)
    return load_config(config, overrides)


def project_root() -> Path:
    """The folder that holds pipelines/ and components/ (a checkout or the image's /app)."""
    candidates = []
    if os.environ.get(ROOT_ENV):
        candidates.append(Path(os.environ[ROOT_ENV]))
    candidates += [Path(__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        if (root / "pipelines" / "build.py").is_file() and (root / "components").is_dir():
            return root
    raise PipelineError(
        "cannot find the pipeline definitions (pipelines/build.py and components/); "
        f"looked in {', '.join(str(c) for c in candidates)}; set {ROOT_ENV} to the project folder"
    )


def _load_module(path: Path, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_component(step: str) -> BaseComponent:
    """The kfp component defined in components/<step>/component.py."""
    if step not in STEPS:
        raise PipelineError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
    path = project_root() / "components" / step / "component.py"
    module = _load_module(path, f"mainsail_components.{step.replace('-', '_')}")
    attr = step.replace("-", "_")
    component = getattr(module, attr, None)
    if component is None:
        raise PipelineError(f"{path} defines no component function `{attr}`")
    return component


def build_pipeline(
    name: PipelineName, cfg: ProjectConfig, settings: PipelinesConfig | None = None
) -> BaseComponent:
    """The pipeline `name`, built for this project's settings (image, resources, placement);
    `settings` replaces the config's `pipelines` section when given."""
    if name not in PIPELINES:
        raise PipelineError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    module = _load_module(project_root() / "pipelines" / "build.py", "mainsail_pipelines.build")
    return module.build(name, settings or cfg.pipelines, cfg.name)


def configure_task(task: PipelineTask, step: str, settings: PipelinesConfig, model: str) -> None:
    """Image, resources, GPU placement, labels and caching of one pipeline task."""
    from kfp import kubernetes

    if task.container_spec is not None:
        task.container_spec.image = settings.image
    res = settings.resources_for(step)
    task.set_cpu_request(res.cpu_request).set_memory_request(res.memory_request)
    if res.cpu_limit:
        task.set_cpu_limit(res.cpu_limit)
    if res.memory_limit:
        task.set_memory_limit(res.memory_limit)
    if settings.gpu.enabled and step in settings.gpu.steps:
        gpu = settings.gpu
        task.set_accelerator_type(gpu.accelerator_type)
        task.set_accelerator_limit(gpu.accelerator_count)
        for key, value in sorted(gpu.node_selector.items()):
            kubernetes.add_node_selector(task, key, value)
        for tol in gpu.tolerations:
            kubernetes.add_toleration(
                task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect
            )
    labels = {
        **naming.labels("pipeline", managed_by="kubeflow-pipelines", model=model),
        "mainsail.io/step": step,
        **settings.labels,
    }
    for key, value in sorted(labels.items()):
        kubernetes.add_pod_label(task, key, value)
    if settings.shared_pvc:
        kubernetes.mount_pvc(task, pvc_name=settings.shared_pvc, mount_path=settings.shared_mount)
    if settings.s3_secret and step in REGISTRY_STEPS:
        kubernetes.use_secret_as_env(
            task, secret_name=settings.s3_secret, secret_key_to_env=settings.s3_secret_env
        )
    kubernetes.set_image_pull_policy(task, settings.image_pull_policy)
    # Steps that read or change live state (the champion, the serving split) never reuse a
    # cached result; the others are pure functions of their inputs.
    task.set_caching_options(enable_caching=settings.caching and step not in LIVE_STEPS)
    task.set_display_name(step)


# ------------------------------------------------------------------------------------ compile


def compile_pipeline(name: PipelineName, cfg: ProjectConfig, package_path: Path) -> Path:
    """Compile pipeline `name` for `cfg` to IR YAML at `package_path`."""
    from kfp import compiler

    package_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline_func=build_pipeline(name, cfg), package_path=str(package_path)
    )
    return package_path


def compiled_dir() -> Path:
    """pipelines/compiled: the checked-in IR YAML."""
    return project_root() / "pipelines" / "compiled"


def default_config_path() -> Path:
    """configs/churn.yaml: the config the checked-in IR is compiled from."""
    return project_root() / "configs" / "churn.yaml"


def compile_all(out_dir: Path | None = None, config_path: Path | None = None) -> list[Path]:
    """Compile every pipeline for the default config into `out_dir` (pipelines/compiled)."""
    cfg = load_config(config_path or default_config_path())
    out = out_dir or compiled_dir()
    return [compile_pipeline(name, cfg, out / f"{name}.yaml") for name in PIPELINES]


# ---------------------------------------------------------------------------------- arguments


def data_digest(cfg: ProjectConfig, data_uri: str | None = None) -> str:
    """What identifies the input data, so a cached step re-runs when the data changes.

    The file's sha256 when it exists here; otherwise the synthetic generator's settings (the
    file is generated by the validate step) or the URI itself (remote data).
    """
    location = data_uri or str(cfg.data.path)
    path = Path(location)
    if "://" not in location and path.is_file():
        return f"sha256:{sha256_file(path)}"
    if cfg.data.synthetic is not None and location == str(cfg.data.path):
        spec = json.dumps(
            {"synthetic": cfg.data.synthetic.model_dump(mode="json"), "seed": cfg.seed},
            sort_keys=True,
        )
        return "synthetic:" + hashlib.sha256(spec.encode()).hexdigest()
    return "uri:" + location


def pipeline_arguments(
    name: PipelineName,
    cfg: ProjectConfig,
    data_uri: str | None = None,
    deploy_canary: bool | None = None,
) -> dict[str, Any]:
    """The run parameters of pipeline `name` for this project."""
    settings = cfg.pipelines
    uri = data_uri or settings.data_uri or str(cfg.data.path)
    args: dict[str, Any] = {
        "config_json": config_to_json(cfg),
        "data_uri": uri,
        "data_digest": data_digest(cfg, uri),
        "canary_weight": settings.canary_weight,
    }
    if name == "training":
        args["deploy_canary"] = settings.deploy_canary if deploy_canary is None else deploy_canary
    return args


# ------------------------------------------------------------------------------ local runs


@dataclass
class LocalRunResult:
    """What a kfp.local run produced."""

    pipeline: str
    root: Path
    """kfp.local pipeline root (one sub-folder per run, one per task inside)."""
    run_dir: Path | None
    """This run's folder (`<root>/<pipeline>-<timestamp>`); None when every step was cached."""
    executed: list[str] = field(default_factory=list)
    """Steps that ran (the others were cached or skipped by a condition)."""
    seconds: float = 0.0

    def step_output(self, step: str) -> dict[str, Any]:
        """The parameters a step returned in this run (`Output`: e.g. register's version);
        empty when the step did not run here."""
        path = (self.run_dir / step / "executor_output.json") if self.run_dir else None
        if path is None or not path.is_file():
            return {}
        doc = json.loads(path.read_text())
        return dict(doc.get("parameterValues", {}))


def run_local(
    config: str | Path | ProjectConfig,
    pipeline: PipelineName = "training",
    *,
    root: Path | None = None,
    data_uri: str | None = None,
    deploy_canary: bool | None = None,
    caching: bool | None = None,
    overrides: dict[str, Any] | None = None,
    log_file: Path | None = None,
    runner: LocalRunner = "subprocess",
) -> LocalRunResult:
    """Run a pipeline end to end here with kfp.local.

    `config` is a config file (read with `overrides`) or an already loaded config.

    With the SubprocessRunner (`runner="subprocess"`, no containers) every step runs as a
    subprocess of this very interpreter (`use_venv=False`), so the pipeline venv must hold
    mainsail and its dependencies. With `runner="docker"` every step runs in the pipeline image
    on the container engine (see mainsail.pipeline.containers); its default `root` is
    `<runs_dir>/kfp-docker`, so the two runners never share a cache. Steps whose inputs are
    unchanged since an earlier run under the same `root` are taken from kfp.local's cache. The
    steps' output (kfp.local echoes each task's log) goes to `log_file` when given, else to stdout.
    """
    from kfp import local

    from mainsail.data.ingest import ensure_data_file

    cfg = project_config(config, overrides)
    if data_uri:
        cfg.data.path = Path(data_uri)
    # Materialise a synthetic dataset first, so the data digest (part of the cache key) is
    # the file's sha256 from the first run on, and unchanged data hits the cache.
    ensure_data_file(cfg.data, cfg.seed)
    kfp_runner: local.SubprocessRunner | local.DockerRunner
    if runner == "docker":
        from mainsail.pipeline.containers import (
            ContainerEngineError,
            docker_runner,
            exit_codes_read,
        )

        try:
            cfg, kfp_runner = docker_runner(cfg)
        except ContainerEngineError as err:
            raise PipelineError(str(err)) from None
        step_exits: contextlib.AbstractContextManager[None] = exit_codes_read()
    elif runner == "subprocess":
        kfp_runner = local.SubprocessRunner(use_venv=False)
        step_exits = contextlib.nullcontext()
    else:
        raise PipelineError(f"unknown kfp.local runner {runner!r}; choose subprocess or docker")
    settings = cfg.pipelines
    default_root = cfg.runs_dir / ("kfp-local" if runner == "subprocess" else "kfp-docker")
    root = (root or default_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=kfp_runner,
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=settings.caching if caching is None else caching,
        cache_root=str(root / ".kfp_cache"),
    )
    pipeline_fn = build_pipeline(pipeline, cfg)
    before = {p.name for p in root.iterdir()}
    started = time.perf_counter()
    sink = log_file.open("a") if log_file else None
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink or sys.stdout),
            step_exits,
        ):
            # Resource requests, node selectors and the image only matter on a cluster; kfp.local
            # warns about each of them on every step.
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
            warnings.filterwarnings("ignore", message=".*non-Python base image")
            task = pipeline_fn(
                **pipeline_arguments(pipeline, cfg, str(cfg.data.path), deploy_canary)
            )
    except RuntimeError as err:
        where = f"; step logs in {log_file}" if log_file else ""
        raise PipelineError(f"local run of pipeline {pipeline!r} failed: {err}{where}") from err
    finally:
        if sink is not None:
            sink.close()
    seconds = time.perf_counter() - started
    del task  # a pipeline without outputs returns nothing useful
    new = sorted(p for p in root.iterdir() if p.name not in before and p.is_dir())
    run_dir = new[-1] if new else None
    executed = sorted(p.name for p in run_dir.iterdir() if p.is_dir()) if run_dir else []
    return LocalRunResult(pipeline, root, run_dir, executed, seconds)


# ------------------------------------------------------------------------------- submission


@dataclass
class SubmitResult:
    """What `submit` created on the KFP server."""

    host: str
    experiment_id: str
    run_name: str
    run_id: str | None = None
    """Id of the one-off run (None for a recurring run)."""
    recurring_run_id: str | None = None
    """Id of the recurring run when a schedule was given."""
    parameters: dict[str, Any] = field(default_factory=dict)


_CRON_FIELD = re.compile(r"^[0-9*?/,LW#A-Z-]+$", re.IGNORECASE)


def kfp_cron(schedule: str) -> str:
    """A KFP cron expression (6 fields, seconds first) from a 5- or 6-field cron string."""
    fields = schedule.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
        raise PipelineError(
            f"schedule {schedule!r} is not a cron expression: expected 5 fields "
            "(minute hour day month weekday, e.g. '0 3 * * *') or 6 with seconds first"
        )
    return " ".join(fields)


def run_name_for(cfg: ProjectConfig, pipeline: PipelineName, now: dt.datetime | None = None) -> str:
    """`<model>-<pipeline>-<UTC timestamp>`: sortable and unique per second."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.name}-{pipeline}-{stamp}"


def _check_reachable(host: str, timeout_s: float) -> None:
    parsed = urllib.parse.urlparse(host if "://" in host else f"http://{host}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise KfpUnreachableError(f"KFP host {host!r} is not an http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise KfpUnreachableError(
            f"no Kubeflow Pipelines API server reachable at {host} ({err}); start one or "
            "port-forward it (kubectl -n kubeflow port-forward svc/ml-pipeline 8888:8888) and "
            "pass --host http://127.0.0.1:8888"
        ) from None


def submit(
    config: str | Path | ProjectConfig,
    host: str | None = None,
    experiment: str | None = None,
    namespace: str | None = None,
    schedule: str | None = None,
    *,
    pipeline: PipelineName = "training",
    data_uri: str | None = None,
    deploy_canary: bool | None = None,
    run_name: str | None = None,
    connect_timeout_s: float = 5.0,
    overrides: dict[str, Any] | None = None,
) -> SubmitResult:
    """Compile pipeline `pipeline` for this config and submit it to a KFP v2 server.

    `config` is a config file (read with `overrides`) or an already loaded config (the CLI's,
    with its --set overrides): the submitted `config_json` is that config. A one-off run, or a
    recurring run when `schedule` (cron) is given. `host`, `experiment` and `namespace` default
    to the config's `pipelines` section. Raises `KfpUnreachableError` when no server answers at
    `host`.
    """
    import kfp

    cfg = project_config(config, overrides)
    settings = cfg.pipelines
    host = host or settings.host or os.environ.get("KF_PIPELINES_ENDPOINT")
    if not host:
        raise PipelineError(
            "no KFP host: pass --host URL, set pipelines.host in the config, or set "
            "KF_PIPELINES_ENDPOINT"
        )
    experiment = experiment or settings.experiment
    namespace = namespace or settings.namespace
    cron = kfp_cron(schedule) if schedule else None
    _check_reachable(host, connect_timeout_s)
    name = run_name or run_name_for(cfg, pipeline)
    params = pipeline_arguments(pipeline, cfg, data_uri, deploy_canary)
    with tempfile.TemporaryDirectory(prefix="mainsail-kfp-") as tmp:
        package = compile_pipeline(pipeline, cfg, Path(tmp) / f"{pipeline}.yaml")
        try:
            with warnings.catch_warnings():
                # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later".
                warnings.simplefilter("ignore", FutureWarning)
                client = kfp.Client(host=host, namespace=namespace or "kubeflow")
            exp = client.create_experiment(
                name=experiment,
                description=f"Mainsail runs of model {cfg.name}",
                namespace=namespace,
            )
            common: dict[str, Any] = {
                "experiment_id": exp.experiment_id,
                "job_name": name,
                "pipeline_package_path": str(package),
                "params": params,
                "pipeline_root": settings.pipeline_root,
                "enable_caching": settings.caching,
                "service_account": settings.service_account,
            }
            if cron:
                recurring = client.create_recurring_run(
                    cron_expression=cron,
                    description=f"Scheduled {pipeline} of model {cfg.name} ({cron})",
                    max_concurrency=1,
                    no_catchup=True,
                    **common,
                )
                return SubmitResult(
                    host,
                    exp.experiment_id,
                    name,
                    recurring_run_id=recurring.recurring_run_id,
                    parameters=params,
                )
            run = client.run_pipeline(**common)
        except KfpUnreachableError:
            raise
        except Exception as err:
            # kfp_server_api raises ApiException with the server's status and body.
            status = getattr(err, "status", None)
            body = getattr(err, "body", None)
            detail = f"HTTP {status}: {body}" if status else f"{type(err).__name__}: {err}"
            raise PipelineError(f"KFP server at {host} refused the submission: {detail}") from err
    return SubmitResult(host, exp.experiment_id, name, run_id=run.run_id, parameters=params)


def main(argv: list[str] | None = None) -> int:
    """`python -m mainsail.pipeline.runner compile [OUT_DIR]`: refresh the checked-in IR YAML."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "compile" or len(args) > 2:
        print("usage: python -m mainsail.pipeline.runner compile [OUT_DIR]", file=sys.stderr)
        return 2
    for path in compile_all(Path(args[1]) if len(args) == 2 else None):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
