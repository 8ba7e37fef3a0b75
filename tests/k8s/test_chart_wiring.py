"""What the chart hands the processes is what the code reads.

- Every MAINSAIL_* variable a rendered container gets is one the code reads (naming.CHART_ENV,
  or a key variable the registry config names), and every one of naming.CHART_ENV is read
  somewhere in the library. MAINSAIL_DRIFT_URL and MAINSAIL_FEATURE_SERVER_URL were set by the
  chart and read by nothing.
- The KFP steps that talk to the registry get their S3 keys from the chart's Secret under keys
  that Secret has (it holds AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the pipelines settings
  asked for accesskey / secretkey, so the step pods could not start).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mainsail.config import load_config
from mainsail.config.pipelines import PipelinesConfig
from mainsail.config.registry import RegistryConfig
from mainsail.core import naming
from mainsail.pipeline.runner import build_pipeline

from . import checks

pytestmark = pytest.mark.k8s

SRC = checks.ROOT / "src" / "mainsail"


def _rendered_env(objects: list[checks.Obj]) -> dict[str, set[str]]:
    """Variable name -> the containers (object/container) that get it."""
    found: dict[str, set[str]] = {}
    for obj in objects:
        for ref in checks.pod_specs(obj):
            for c in [*ref.spec.get("containers", []), *ref.spec.get("initContainers", [])]:
                for env in c.get("env", []):
                    found.setdefault(env["name"], set()).add(f"{checks.ident(obj)}/{c['name']}")
    return found


def test_every_mainsail_variable_of_the_render_is_read_by_the_code(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    registry = RegistryConfig()
    known = set(naming.CHART_ENV) | {
        registry.access_key_env,
        registry.secret_key_env,
        registry.public_keys_env,
        registry.signing_key_env,
    }
    for scenario, objects in scenario_objects.items():
        rendered = {k: v for k, v in _rendered_env(objects).items() if k.startswith("MAINSAIL_")}
        unread = {k: sorted(v) for k, v in rendered.items() if k not in known}
        assert unread == {}, f"scenario {scenario}: variables no code reads: {unread}"
    code = "\n".join(p.read_text() for p in sorted(SRC.rglob("*.py")) if p.name != "naming.py")
    constants = {name: getattr(naming, name) for name in dir(naming) if name.startswith("ENV_")}
    assert set(constants.values()) == set(naming.CHART_ENV)
    unused = sorted(n for n in constants if f"naming.{n}" not in code)
    assert unused == [], f"naming constants no module reads: {unused}"


def test_registry_steps_get_their_keys_from_the_charts_secret(
    default_objects: list[checks.Obj], tmp_path: Path
) -> None:
    from kfp import compiler

    secrets = {
        o["metadata"]["name"]: set(o.get("stringData", {})) | set(o.get("data", {}))
        for o in default_objects
        if o["kind"] == "Secret"
    }
    registry = RegistryConfig()
    cfg = load_config(checks.ROOT / "configs" / "churn.yaml")
    settings = PipelinesConfig(s3_secret=naming.s3_secret_name())
    for pipeline in ("training", "retraining"):
        package = tmp_path / f"{pipeline}.yaml"
        compiler.Compiler().compile(build_pipeline(pipeline, cfg, settings), str(package))
        _, platform = list(yaml.safe_load_all(package.read_text()))
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        mounted = [spec["secretAsEnv"] for spec in executors.values() if "secretAsEnv" in spec]
        assert mounted, f"{pipeline}: no step gets the registry's keys"
        for secret_env in mounted:
            for entry in secret_env:
                name = entry["secretName"]
                assert name in secrets, f"{pipeline}: Secret {name} is not rendered by the chart"
                for pair in entry["keyToEnv"]:
                    assert pair["secretKey"] in secrets[name], (
                        f"{pipeline}: key {pair['secretKey']!r} is not in Secret {name} "
                        f"(keys: {sorted(secrets[name])})"
                    )
                envs = {pair["envVar"] for pair in entry["keyToEnv"]}
                assert envs == {registry.access_key_env, registry.secret_key_env}


def test_observability_and_privacy_values_reach_the_gateway_the_runtime_and_the_sidecar(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    def env_of(objects: list[checks.Obj]) -> dict[str, dict[str, str]]:
        server = next(o for o in objects if o["kind"] == "Server")
        gateway = next(
            o
            for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-gateway")
        )
        return {
            c["name"]: {e["name"]: e.get("value", "") for e in c.get("env", [])}
            for obj in (server, gateway)
            for ref in checks.pod_specs(obj)
            for c in ref.spec["containers"]
        }

    on = env_of(scenario_objects["observability"])
    for container in ("gateway", "mlserver", "drift"):
        assert on[container][naming.ENV_JSON_LOGS] == "1"
        assert on[container][naming.ENV_TRACING] == "otlp"
        assert on[container][naming.ENV_TRACE_SAMPLE] == "0.1"
        assert on[container][naming.ENV_REDACT] == "drop"
        assert on[container]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4317")
    off = env_of(scenario_objects["default"])
    for container in ("gateway", "mlserver", "drift"):
        assert off[container][naming.ENV_REDACT] == "hash"
        assert naming.ENV_JSON_LOGS not in off[container]
        assert naming.ENV_TRACING not in off[container]


def test_alertmanager_config_routes_the_drift_alert_to_the_triggers_service_with_its_token(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    """monitoring.alertmanagerConfig (on for the kind cluster): the route of
    monitoring/alertmanager/alertmanager.yml (the local stack's), to the trigger's Service and
    port, with the bearer token from the key of the auth Secret the trigger checks."""
    assert not [o for o in scenario_objects["default"] if o["kind"] == "AlertmanagerConfig"]
    objs = scenario_objects["kind-mlserver"]
    (amc,) = [o for o in objs if o["kind"] == "AlertmanagerConfig"]
    assert amc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    local = yaml.safe_load((checks.ROOT / "monitoring/alertmanager/alertmanager.yml").read_text())
    (local_route,) = local["route"]["routes"]
    route = amc["spec"]["route"]
    assert [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in route["matchers"]] == local_route[
        "matchers"
    ]
    assert route["groupBy"] == local["route"]["group_by"]
    (receiver,) = amc["spec"]["receivers"]
    assert receiver["name"] == route["receiver"]
    (hook,) = receiver["webhookConfigs"]
    service = next(
        o
        for o in objs
        if o["kind"] == "Service" and o["metadata"]["name"].endswith("-retrain-trigger")
    )
    port = service["spec"]["ports"][0]["port"]
    ns = service["metadata"]["namespace"]
    assert (
        hook["url"] == f"http://{service['metadata']['name']}.{ns}.svc.cluster.local:{port}/alerts"
    )
    assert hook["sendResolved"] is True
    cred = hook["httpConfig"]["authorization"]["credentials"]
    trigger = next(
        o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-retrain-trigger")
    )
    env = {e["name"]: e for e in trigger["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MAINSAIL_TRIGGER_TOKEN"]["valueFrom"]["secretKeyRef"] == cred
    secret = next(
        o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == cred["name"]
    )
    assert cred["key"] in secret["stringData"]


def test_the_gateway_records_into_the_charts_postgres_with_the_password_from_its_secret(
    scenario_objects: dict[str, list[checks.Obj]],
) -> None:
    """postgres.enabled (the kind cluster): the gateway's feedback store is the chart's Postgres,
    its URL carries no password (PGPASSWORD comes from the Secret), the Secret is mounted into
    Postgres readable by its group only, and the database is UTF-8."""
    import json

    objs = scenario_objects["kind-mlserver"]
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    gateway_config = json.loads(by[("ConfigMap", "mainsail-gateway")]["data"]["router.json"])
    url = gateway_config["feedback_url"]
    assert url == (
        "postgresql+psycopg://mainsail@mainsail-postgres.mainsail.svc.cluster.local:5432/mainsail"
    )
    service = by[("Service", "mainsail-postgres")]
    assert service["spec"]["ports"][0]["port"] == 5432
    gateway = by[("Deployment", "mainsail-gateway")]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in gateway["containers"][0]["env"]}
    secret_ref = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret_ref == {"name": "mainsail-postgres", "key": "password"}
    # It waits for that Postgres in an init container (no liveness probe there), instead of
    # crash-looping while Postgres initialises: the same URL and password.
    (wait,) = gateway["initContainers"]
    assert wait["command"][:5] == ["python", "-m", "mainsail.feedback", "wait", url]
    assert wait["command"][5:] == ["--timeout", "300"]
    wait_env = {e["name"]: e for e in wait["env"]}
    assert wait_env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == secret_ref
    pg = by[("Deployment", "mainsail-postgres")]["spec"]["template"]["spec"]
    (volume,) = [v for v in pg["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "mainsail-postgres"
    assert volume["secret"]["defaultMode"] == 0o440  # not world-readable
    script = pg["containers"][0]["args"][0]
    assert "--encoding=UTF8" in script and "/etc/mainsail-postgres/password" in script
    assert pg["securityContext"]["runAsUser"] == 999
    # without the chart's Postgres the gateway keeps whatever feedbackUrl says (none here)
    default = json.loads(
        next(
            o
            for o in scenario_objects["default"]
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mainsail-gateway"
        )["data"]["router.json"]
    )
    assert "feedback_url" not in default
    plain = next(
        o
        for o in scenario_objects["default"]
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "mainsail-gateway"
    )
    assert "initContainers" not in plain["spec"]["template"]["spec"]
