"""`mainsail demo loop`: the whole lifecycle closing on itself, on real local processes.

1. Train a champion on history, publish it to the registry (SeaweedFS) and promote it.
2. Serve it: MLServer with the mainsail runtime behind the canary router; the runtime feeds
   served rows to the drift sidecar; Prometheus scrapes the sidecar and evaluates the rules.
3. Normal traffic with ground truth, then drifted traffic (the generator's drift knob, which
   also changes why customers churn): the drift alert fires, Alertmanager calls the retrain
   trigger, and the trigger runs `mainsail run` on the freshest labelled window.
4. The retrained model is published as the registry's candidate, and the promotion controller
   deploys it as the challenger in the shadow (promotion.deploy_candidates, as the chart's
   controller pod does on a cluster): the router mirrors every request to it and records its
   answers, which nobody sees.
5. Drifted traffic keeps coming, with ground truth fed back to the router by request id; the
   promotion controller looks after every batch: in the shadow it pairs the challenger's
   answers with the champion's (disagreement, loss on the labelled pairs, errors, latency) and
   either stops it there or moves it to a 10% canary; then it checks the split, ramps, and
   promotes (or rolls back), logging each decision with its evidence into the store and the
   model card. The controller's metrics are scraped by the demo's Prometheus.

`worse=True` retrains on a window whose classes a broken labelling job swapped: the model
looks fine offline, but its mirrored answers are worse on the labelled pairs, and it is stopped
at shadow before it serves anyone. Every step is printed with a timestamp.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mainsail.config import ProjectConfig, load_config
from mainsail.core.ports import free_port

REPO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "churn.yaml"
DRIFT = 0.8
BATCH_ROWS = 50


def _demo_overrides(workdir: Path, rows: int) -> dict[str, Any]:
    """Small budgets and private ports, so the demo runs in minutes beside anything else."""
    ports = {name: free_port() for name in ("router", "s3", "c1", "c2", "c3", "h1", "h2", "h3")}
    return {
        "data.path": str(workdir / "data" / "history.parquet"),
        "data.synthetic.rows": rows,
        "runs_dir": str(workdir / "runs"),
        "train.candidates": ["baseline", "linear", "tree"],
        "tune.num_trials": 4,
        "tune.time_budget_s": 60,
        "evaluate.cv_folds": 3,
        "evaluate.bootstrap": 200,
        "registry.cache_dir": str(workdir / "cache"),
        "stack.data_dir": str(workdir / "stack"),
        "stack.providers": ["mlserver", "router"],
        "stack.s3_port": ports["s3"],
        "stack.router.port": ports["router"],
        "stack.router.health_interval_s": 0.5,
        "stack.champion": {"http": ports["c1"], "grpc": ports["c2"], "metrics": ports["c3"]},
        "stack.challenger": {"http": ports["h1"], "grpc": ports["h2"], "metrics": ports["h3"]},
        # The retrained version is published as the registry's candidate, as the cluster's
        # RayJob publishes it, and the controller deploys it by itself.
        "promotion.deploy_candidates": True,
        "promotion.min_samples": 300,
        "promotion.step_samples": 300,
    }


class LoopDemo:
    """The demo's processes and steps; `run()` drives them and always cleans up."""

    def __init__(
        self,
        workdir: Path,
        *,
        base_config: Path = REPO_CONFIG,
        worse: bool = False,
        rows: int = 6000,
        echo: Callable[[str], None] = print,
        timeout_s: float = 900.0,
    ) -> None:
        self.workdir = workdir
        self.base_config = base_config
        self.worse = worse
        self.rows = rows
        self.echo = echo
        self.timeout_s = timeout_s
        self.t0 = time.monotonic()
        self.outcome: dict[str, Any] = {"decisions": []}
        self._cleanup: list[Callable[[], None]] = []
        self.metrics: Any = None
        """The promotion controller's metrics (started with the monitoring chain)."""

    def say(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        self.echo(f"[{stamp} +{time.monotonic() - self.t0:6.1f}s] {message}")

    # -- steps ------------------------------------------------------------------------------

    def configure(self) -> ProjectConfig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        overrides = _demo_overrides(self.workdir, self.rows)
        cfg = load_config(self.base_config, overrides)
        # The admin token of the router and the registry's keys travel as environment variables
        # to every process the demo starts (router, MLServer, `mainsail run` of the trigger).
        os.environ[cfg.stack.router.token_env] = secrets.token_hex(16)
        return cfg

    def start_registry(self, cfg: ProjectConfig) -> ProjectConfig:
        from mainsail.registry.seaweedfs import SeaweedS3, local_signing_keys

        s3 = SeaweedS3(self.workdir / "s3", port=cfg.stack.s3_port)
        endpoint = s3.start()
        self._cleanup.append(s3.stop)
        os.environ[cfg.registry.access_key_env] = endpoint.access_key
        os.environ[cfg.registry.secret_key_env] = endpoint.secret_key
        # The demo's own registry key pair (as `mainsail up` makes one): every publish, the
        # retrain trigger's included, is signed, and every load verifies it. Given back after.
        private, public = local_signing_keys(cfg.registry, cfg.stack.data_dir.resolve())
        for var, value in (
            (cfg.registry.signing_key_env, private),
            (cfg.registry.public_keys_env, public),
        ):
            self._cleanup.append(partial(_restore_env, var, os.environ.get(var)))
            os.environ[var] = value
        cfg.registry.endpoint = endpoint.endpoint
        self.say(f"registry: SeaweedFS S3 at {endpoint.endpoint}")
        return cfg

    def train(self, cfg: ProjectConfig, label: str) -> Path:
        from mainsail.lifecycle.run import run

        self.say(f"training the {label} on {cfg.data.path.name} ...")
        result = run(cfg)
        model_dir = result.run_dir / "model"
        if not (model_dir / "model.joblib").exists():
            raise RuntimeError(f"the {label} run chose no model (see {model_dir / 'metrics.json'})")
        metrics = result.summary.get("train", {})
        self.say(
            f"  {label} trained: {result.run_dir.name}, chose {metrics.get('chosen')}: "
            f"{metrics.get('reason', '')}"
        )
        return model_dir

    def publish(self, cfg: ProjectConfig, model_dir: Path, alias: str | None) -> int:
        from mainsail.registry import open_registry

        registry = open_registry(cfg)
        registry.ensure_bucket()
        info = registry.publish(cfg.name, model_dir)
        if alias:
            registry.promote(cfg.name, info.version, alias=alias)
        self.say(f"  published {cfg.name} v{info.version}" + (f" as {alias}" if alias else ""))
        # The sidecar reads each served version's reference sample from a folder per version.
        refs = self.workdir / "refs" / cfg.name / str(info.version)
        refs.mkdir(parents=True, exist_ok=True)
        for name in ("reference.parquet", "feature_schema.json"):
            shutil.copy2(model_dir / name, refs / name)
        return int(info.version)

    def start_monitoring(self, cfg: ProjectConfig, retrain_config: Path) -> Any:
        from prometheus_client import start_http_server

        from mainsail.monitor.chain import ChainSettings, MonitoringChain
        from mainsail.monitor.prometheus import PROMOTION_JOB, ScrapeTarget
        from mainsail.promotion.metrics import PromotionMetrics

        # The controller's metrics (split check, shadow report) are served from this process.
        self.metrics = PromotionMetrics()
        port = free_port()
        server, _ = start_http_server(port, "127.0.0.1", registry=self.metrics.registry)
        self._cleanup.append(server.shutdown)
        command = [sys.executable, "-m", "mainsail.cli", "run", str(retrain_config)]
        settings = ChainSettings(
            reference=str(self.workdir / "refs" / "{model}" / "{version}"),
            retrain_command=command,
            extra_targets=[
                ScrapeTarget(PROMOTION_JOB, [f"127.0.0.1:{port}"]),
                ScrapeTarget("mainsail-router", [f"{cfg.stack.host}:{cfg.stack.router.port}"]),
            ],
        )
        chain = MonitoringChain(self.workdir / "monitoring", settings).start()
        self._cleanup.append(chain.stop)
        self.say(
            f"monitoring: drift sidecar {chain.sidecar.url}, Prometheus {chain.prometheus.url}, "
            f"retrain trigger {chain.trigger_server.url}"
        )
        return chain

    def start_serving(self, cfg: ProjectConfig) -> None:
        from mainsail.stack import manager

        processes = manager.up(cfg, log=lambda line: self.say(f"  {line}"))

        def stop_serving() -> None:
            manager.down(cfg)

        self._cleanup.append(stop_serving)
        self.say(f"serving: {len(processes)} processes up; router on port {cfg.stack.router.port}")

    def traffic(
        self, cfg: ProjectConfig, frame: pd.DataFrame, feedback: bool = True
    ) -> dict[str, int]:
        """Send `frame` through the router in batches, then its ground truth by request id."""
        import httpx

        from mainsail.data.schema import FeatureSchema
        from mainsail.serving.v2client import v2_request

        schema = FeatureSchema.load(self.workdir / "schema.json")
        url = f"http://{cfg.stack.host}:{cfg.stack.router.port}"
        labels: dict[str, Any] = {}
        counts: dict[str, int] = {}
        with httpx.Client(base_url=url, timeout=30) as client:
            for start in range(0, len(frame), BATCH_ROWS):
                batch = frame.iloc[start : start + BATCH_ROWS]
                rid = uuid.uuid4().hex
                resp = client.post(
                    f"/v2/models/{cfg.name}/infer",
                    json=v2_request(batch, schema),
                    headers={"x-request-id": rid},
                )
                variant = resp.headers.get("x-mainsail-variant", f"status {resp.status_code}")
                counts[variant] = counts.get(variant, 0) + len(batch)
                if resp.status_code != 200:
                    raise RuntimeError(f"router answered {resp.status_code}: {resp.text[:300]}")
                truth = batch[cfg.data.target].tolist()
                if len(batch) == 1:
                    labels[rid] = truth[0]
                else:
                    labels.update({f"{rid}#{i}": v for i, v in enumerate(truth)})
            if feedback:
                answer = client.post(
                    "/feedback", json={"labels": {k: str(v) for k, v in labels.items()}}
                )
                answer.raise_for_status()
        return counts

    def wait_for_retraining(self, chain: Any, retrain_runs: Path) -> Path:
        deadline = time.monotonic() + self.timeout_s
        announced = False
        while time.monotonic() < deadline:
            runs = chain.trigger.runs()
            if runs and not announced:
                run_id, info = next(iter(runs.items()))
                self.say(
                    f"retrain trigger started run {run_id}: {' '.join(info.get('argv', [])[-2:])}"
                )
                announced = True
            if retrain_runs.exists():
                done = [p for p in retrain_runs.iterdir() if not p.name.startswith(".")]
                if done:
                    self.say(f"retraining finished: {done[0].name}")
                    return done[0] / "model"
            time.sleep(1.0)
        raise TimeoutError(f"no retraining run finished within {self.timeout_s:.0f} s")

    def restart_mid_experiment(self, cfg: ProjectConfig, controller: Any, decision: Any) -> Any:
        """Restart the router process and the controller: neither may lose feedback or state."""
        from mainsail.promotion.controller import build_controller
        from mainsail.stack import manager

        def labelled() -> int:
            return sum(
                int(controller.store.quality(cfg.name, v, "classification").get("labelled", 0))
                for v in ("champion", "challenger")
            )

        before = labelled()
        self.say("restarting the router and the promotion controller mid-experiment")
        manager.restart(cfg, "router")
        controller.store.close()
        controller = build_controller(cfg, log=lambda line: self.say(f"  {line}"))
        _, challenger, weight = controller.backend.current(cfg.name)
        after = labelled()
        self.outcome["restart"] = {
            "expected_weight": decision.next_weight,
            "weight_after": weight,
            "challenger_after": challenger,
            "labelled_before": before,
            "labelled_after": after,
        }
        self.say(
            f"  after the restart: challenger v{challenger} at {weight}% "
            f"(was set to {decision.next_weight}%), {after} labelled outcomes kept of {before}"
        )
        return controller

    def shadow_series(self, chain: Any, version: int, pairs: int) -> dict[str, float]:
        """The shadow gate's series as Prometheus scraped them after the gate's look."""
        deadline = time.monotonic() + 20
        found: dict[str, float] = {}
        while time.monotonic() < deadline and found.get("pairs") != pairs:
            for name, expr in (
                ("gate", f'mainsail_shadow_gate{{version="{version}"}}'),
                ("pairs", f'mainsail_shadow_pairs{{version="{version}"}}'),
                (
                    "disagreement",
                    f'mainsail_shadow_disagreement{{version="{version}", stat="estimate"}}',
                ),
            ):
                series = chain.query(expr)
                if series:
                    found[name] = float(series[0]["value"][1])
            time.sleep(0.5)
        self.say(f"  Prometheus has the shadow report: {found}")
        return found

    def sidecar_outage(self, cfg: ProjectConfig, chain: Any, rows: pd.DataFrame) -> None:
        """Stop the drift sidecar under load: serving must not notice, Prometheus must."""
        self.say("failure isolation: stopping the drift sidecar under load")
        chain.sidecar.stop()
        served = self.traffic(cfg, rows, feedback=False)  # raises on any non-200 answer
        self.say(f"  served {served} with the sidecar down, no errors")
        deadline = time.monotonic() + 60
        firing = False
        while time.monotonic() < deadline and not firing:
            alerts = chain.prometheus.alerts()
            firing = any(
                a["labels"]["alertname"] == "MainsailDriftSidecarDown" and a["state"] == "firing"
                for a in alerts
            )
            time.sleep(0.5)
        self.say(f"  alert MainsailDriftSidecarDown {'firing' if firing else 'did not fire'}")
        self.outcome["sidecar_outage"] = {"served": served, "alert_fired": firing}

    # -- the whole demo -----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from mainsail.data.synthetic import generate_churn
        from mainsail.promotion.controller import build_controller

        try:
            cfg = self.start_registry(self.configure())
            champion_dir = self.train(cfg, "champion")
            shutil.copy2(champion_dir / "feature_schema.json", self.workdir / "schema.json")
            self.publish(cfg, champion_dir, alias="champion")

            # The retraining job's input: the freshest labelled window (drifted).
            window = generate_churn(self.rows, drift=DRIFT, seed=cfg.seed + 1)
            if self.worse:
                # Looks like a fine training set (the model beats its baseline on it), but it
                # learns the opposite of the truth: only live feedback can catch it.
                window[cfg.data.target] = 1 - window[cfg.data.target]
                self.say("a broken labelling job swapped the classes of the fresh window")
            window_path = self.workdir / "data" / "window.parquet"
            window.to_parquet(window_path, index=False)
            retrain = cfg.model_dump(mode="json")
            retrain["data"]["path"] = str(window_path)
            retrain["data"]["synthetic"] = None
            retrain["runs_dir"] = str(self.workdir / "retrain-runs")
            retrain_config = self.workdir / "retrain.yaml"
            retrain_config.write_text(yaml.safe_dump(retrain, sort_keys=False))

            chain = self.start_monitoring(cfg, retrain_config)
            cfg.serving.drift_url = chain.sidecar.url
            self.start_serving(cfg)

            self.say("phase 1: normal traffic with ground truth")
            normal = generate_churn(1000, drift=0.0, seed=cfg.seed + 2)
            self.say(f"  served {self.traffic(cfg, normal)}")
            self.say(f"phase 2: drifted traffic (drift={DRIFT}) until the retraining starts")
            drifted = generate_churn(40_000, drift=DRIFT, seed=cfg.seed + 3)
            sent = 0

            def next_rows(n: int) -> pd.DataFrame:
                nonlocal sent
                idx = np.arange(sent, sent + n) % len(drifted)  # cycle through the stream
                sent += n
                return drifted.iloc[idx]

            deadline = time.monotonic() + self.timeout_s
            while not chain.trigger.runs() and time.monotonic() < deadline:
                self.traffic(cfg, next_rows(400))
                alerts = [a["labels"]["alertname"] for a in chain.prometheus.alerts()]
                self.say(f"  {sent} drifted rows served; alerts: {sorted(set(alerts)) or 'none'}")
                time.sleep(1.0)
            challenger_dir = self.wait_for_retraining(chain, self.workdir / "retrain-runs")
            # As `mainsail run --publish --candidate` (the cluster's retraining RayJob) does.
            version = self.publish(cfg, challenger_dir, alias=cfg.registry.candidate_alias)

            self.say("phase 3: shadow and canary analysis on drifted traffic with ground truth")
            controller = build_controller(
                cfg, log=lambda line: self.say(f"  {line}"), metrics=self.metrics
            )
            # No experiment runs: the controller's first look deploys the candidate
            # (promotion.deploy_candidates), in the shadow.
            deployed = controller.step()
            if deployed is None or deployed.action != "deploy":
                raise RuntimeError(
                    f"the controller did not deploy candidate v{version}: {deployed}"
                )
            self.outcome["deployed"] = deployed.to_dict()
            self.say(f"  {deployed.action}: {deployed.reason}")
            decision = controller.step()  # opens the first stage: its traffic counts from here
            while time.monotonic() < deadline:
                counts = self.traffic(cfg, next_rows(1000))
                decision = controller.step()
                if decision is None:
                    break
                self.outcome["decisions"].append(decision.to_dict())
                self.say(
                    f"  served {counts}; {decision.action}: {decision.reason} "
                    f"({_numbers(decision)})"
                )
                if decision.shadow is not None and decision.action != "keep_testing":
                    self.outcome["shadow"] = decision.shadow
                    self.outcome["shadow_series"] = self.shadow_series(
                        chain, version, decision.shadow["pairs"]
                    )
                if decision.action in ("promote", "rollback"):
                    break
                if decision.action == "ramp" and "restart" not in self.outcome:
                    controller = self.restart_mid_experiment(cfg, controller, decision)
            final = decision.action if decision is not None else "none"
            from mainsail.registry import open_registry

            aliases = open_registry(cfg).aliases(cfg.name)
            self.say(f"final: {final}; registry aliases {aliases}")
            self.outcome.update({"final": final, "aliases": aliases, "challenger": version})
            self.sidecar_outage(cfg, chain, drifted.iloc[:400])
            return self.outcome
        finally:
            for stop in reversed(self._cleanup):
                try:
                    stop()
                except Exception as err:  # keep stopping the rest
                    self.say(f"cleanup: {err}")
            self.say("stopped every process the demo started")


def _numbers(decision: Any) -> str:
    """The evidence of a decision in one line."""
    q = decision.quality
    if q is not None:
        return (
            f"loss champion {q.mean_champion:.4f} vs challenger {q.mean_challenger:.4f}, effect "
            f"{q.effect:+.4f} CI [{q.ci_low:.4f}, {q.ci_high:.4f}], p={q.p_value:.4f}"
        )
    shadow = decision.shadow
    if shadow is not None and shadow.get("disagreement"):
        d, loss = shadow["disagreement"], shadow.get("loss_delta")
        text = f"{shadow['pairs']} pairs, disagreement {d['estimate']:.1%}"
        if loss:
            text += f", loss delta {loss['estimate']:+.4f} on {loss['n']} labelled pairs"
        return text
    return "not enough evidence yet"


def run_loop_demo(
    *,
    workdir: Path | None = None,
    worse: bool = False,
    rows: int = 6000,
    echo: Callable[[str], None] = print,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Run the loop demo in `workdir` (a temporary folder, removed afterwards, when None)."""
    temp = None
    if workdir is None:
        temp = tempfile.mkdtemp(prefix="mainsail-loop-demo-")
        workdir = Path(temp)
    try:
        return LoopDemo(workdir, worse=worse, rows=rows, echo=echo, timeout_s=timeout_s).run()
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _restore_env(var: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(var, None)
    else:
        os.environ[var] = value
