"""The promotion controller: look at the evidence, then ramp, promote or roll back a challenger.

The ramp is shadow -> 10 -> 25 -> 50 -> 100 (`promotion.ramp`, shadow when `promotion.shadow.
enabled`). In the shadow stage (challenger deployed, weight 0, answering mirrored copies) one
`step()` pairs the challenger's answers with the champion's (:mod:`mainsail.promotion.shadow`)
and moves it to the first canary step when the shadow gate passes, or stops it (rollback) when
it fails. In a canary stage it counts the requests per variant since the stage began and tests
the split against the configured weight (:mod:`mainsail.promotion.srm`; a mismatch pauses the
experiment until `resume()`), then reads each variant's outcomes (labels from the feedback
store, errors and latency as recorded by the router) and runs the always-valid A/B analysis.

How failovers count (a request assigned to one variant and answered by the other, because the
assigned one was out of rotation, refused the connection, timed out or did not serve the model):
- the sample-ratio check tests the ASSIGNMENT: the router assigns by weight whatever is in
  rotation, so a challenger pod killed mid-experiment leaves the tested split intact (testing
  the answering variant saw 0.42% challenger at a 25% canary on kind, and paused);
- the quality comparison, the error-rate and the latency guardrails read only requests answered
  by their assigned variant: a failover carries no answer of the assigned model, and the
  answer it carries (the other model's) would dilute the effect if counted for the assigned
  side and over-weight the outage period if counted for the answering side;
- failovers are not errors of the assigned variant. The error-rate guardrail compares how often
  each MODEL's answers fail (a 5xx from its server); a failover delivered an answer, and its
  cause is mostly the pod's lifecycle (deleted, rescheduled, still loading), which Kubernetes
  and the router's health metrics watch, not the model. Counting it would let one pod restart
  at a 10% canary roll back a better model. A stage whose challenger answered nothing has no
  challenger outcomes and cannot ramp (`step_samples` counts answered requests);
- failovers are reported: every canary decision carries `failovers` (per assigned variant:
  requests assigned, failed over, share, reasons) and `mainsail_ab_failovers` exports them.
  A challenger that times out is one limit of this rule: its slow requests fail over and so
  miss the latency guardrail; their count (reason `timeout`) is in that report.
It acts through a traffic backend (the local router's admin API, or a Seldon Experiment patch
on a cluster) and logs each decision with its evidence. Its state lives in the feedback store,
so a restarted controller continues the same experiment where it stopped and never repeats or
forgets a decision.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mainsail.config import ProjectConfig
from mainsail.feedback.store import FeedbackStore
from mainsail.promotion.ab import ABPolicy, Decision, analyse
from mainsail.promotion.candidates import CandidateDeployer, experiment_key
from mainsail.promotion.metrics import PromotionMetrics
from mainsail.promotion.shadow import ShadowPolicy, shadow_look


class TrafficBackend(Protocol):
    """What the controller needs from a deployer backend."""

    def current(self, model: str) -> tuple[str, str | None, int]:
        """(champion version, challenger version or None, challenger weight in percent); a
        challenger at weight 0 is in the shadow (it answers mirrored copies only)."""
        ...

    def set_weight(self, model: str, weight: int) -> None:
        """Send `weight` percent of traffic to the challenger (and end its shadow)."""
        ...

    def promote(self, model: str) -> None:
        """Make the challenger the champion (move the alias) and send it all traffic."""
        ...

    def rollback(self, model: str) -> None:
        """Send all traffic back to the champion and retire the challenger."""
        ...


#: Looks of the shadow stage kept for its report's plot.
MAX_HISTORY = 500

#: Called after each acted-on decision, e.g. to append it to the model card.
DecisionHook = Callable[[str, str, Decision], None]


@dataclass
class PromotionController:
    """Runs the analysis for one model and acts on it."""

    model: str
    store: FeedbackStore
    backend: TrafficBackend
    policy: ABPolicy
    problem_type: Literal["classification", "regression"]
    positive_label: str = "1"
    on_decision: DecisionHook | None = None
    shadow_policy: ShadowPolicy | None = None
    """Gate of the shadow stage (None: the defaults)."""
    metrics: PromotionMetrics | None = None
    """Where each look is exported for Prometheus (None: not exported)."""
    candidates: CandidateDeployer | None = None
    """Deploys a retraining run's candidate when no challenger is deployed
    (`promotion.deploy_candidates`; None: a look without a challenger decides nothing)."""

    def experiment_key(self, champion: str, challenger: str) -> str:
        return experiment_key(self.model, champion, challenger)

    def step(self) -> Decision | None:
        """One look. Returns the decision, or None when no challenger is deployed (and no
        candidate was deployed as one)."""
        champion, challenger, weight = self.backend.current(self.model)
        if challenger is None:
            return self._candidate_step(champion)
        key = self.experiment_key(champion, challenger)
        now = time.time()
        saved = self.store.load_state(key) or {"started": now, "states": {}}
        since = float(saved["started"])
        stage = saved.get("stage")
        if stage is None or int(stage["weight"]) != weight:
            # A new ramp stage (or the first look): its split is tested from here on.
            stage = {"weight": weight, "started": now}
        paused = saved.get("paused")
        counts: dict[str, int] | None = None
        if paused:
            # Paused by a sample-ratio mismatch: nothing is decided on biased data until a
            # person has looked (`mainsail promote --resume`).
            decision = Decision(
                "pause", f"paused: {paused['reason']}", None, states=saved["states"]
            )
            self._export(challenger, weight, decision, counts, paused=True, acted=False)
            return decision
        if weight == 0:
            decision = self._shadow_step(saved, float(stage["started"]))
        else:
            counts = self.store.requests_per_variant(self.model, since=float(stage["started"]))
            split = (counts.get("champion", 0), counts.get("challenger", 0))
            a = self.store.outcomes(
                self.model, "champion", self.problem_type, self.positive_label, since
            )
            b = self.store.outcomes(
                self.model, "challenger", self.problem_type, self.positive_label, since
            )
            decision = analyse(
                a,
                b,
                policy=self.policy,
                current_weight=weight,
                states=saved["states"],
                split=split,
            )
            decision.failovers = self.store.failovers(self.model, since=float(stage["started"]))
        evidence: dict[str, Any] = {
            "experiment": key,
            "champion_version": champion,
            "challenger_version": challenger,
            "weight_before": weight,
            "stage": "shadow" if weight == 0 else f"canary {weight}%",
            **decision.to_dict(),
        }
        state: dict[str, Any] = {
            "started": since,
            "states": decision.states,
            "stage": stage,
            "shadow_states": saved.get("shadow_states", {}),
            "shadow_history": saved.get("shadow_history", []),
        }
        if decision.shadow is not None:
            state["shadow_states"] = decision.shadow.pop("states", {})
            history = [*state["shadow_history"], _history_point(decision.shadow)]
            state["shadow_history"] = history[-MAX_HISTORY:]
            decision.shadow["history"] = state["shadow_history"]
            evidence["shadow"] = decision.shadow
        if decision.action == "pause":
            state["paused"] = {"reason": decision.reason, "at": now}
        # Persist the tests' state before acting: if we crash in between, the next step acts again
        # on the same evidence rather than losing it.
        self.store.save_state(key, state)
        acted = decision.action != "keep_testing"
        self._export(challenger, weight, decision, counts, paused="paused" in state, acted=acted)
        if not acted:
            return decision
        if decision.action == "ramp" and decision.next_weight is not None:
            self.backend.set_weight(self.model, decision.next_weight)
            state["stage"] = {"weight": decision.next_weight, "started": time.time()}
            self.store.save_state(key, state)
        elif decision.action == "promote":
            self.backend.promote(self.model)
        elif decision.action == "rollback":
            self.backend.rollback(self.model)
        self.store.append_decision(self.model, decision.action, decision.reason, evidence)
        if self.on_decision is not None:
            self.on_decision(self.model, challenger, decision)
        return decision

    def _candidate_step(self, champion: str) -> Decision | None:
        """No experiment runs: deploy the registry's candidate, if there is one."""
        if self.candidates is None:
            return None
        found = self.candidates.look(self.model, champion)
        if found is None:
            return None
        candidate, decision = found
        weight = decision.next_weight or 0
        self._export(candidate, weight, decision, None, paused=False, acted=True)
        if self.on_decision is not None and decision.action == "deploy":
            self.on_decision(self.model, candidate, decision)
        return decision

    def _shadow_step(self, saved: dict[str, Any], stage_started: float) -> Decision:
        """The shadow stage: pair, report, gate."""
        pairs = self.store.shadow_pairs(self.model, since=stage_started)
        report, states = shadow_look(
            pairs,
            self.shadow_policy or ShadowPolicy(),
            problem_type=self.problem_type,
            positive_label=self.positive_label,
            states=saved.get("shadow_states"),
        )
        shadow = {**report.to_dict(), "states": states}
        if report.gate == "pass":
            first = self.policy.ramp[0]
            return Decision(
                "ramp",
                f"{report.reason}: ramping to {first}%",
                None,
                next_weight=first,
                states=saved["states"],
                shadow=shadow,
            )
        if report.gate == "fail":
            return Decision(
                "rollback",
                f"stopped at shadow: {report.reason}",
                None,
                next_weight=0,
                states=saved["states"],
                shadow=shadow,
            )
        return Decision("keep_testing", report.reason, None, states=saved["states"], shadow=shadow)

    def resume(self) -> bool:
        """Lift a pause: the experiment starts afresh from now (its earlier data are biased).
        Returns False when there was nothing paused."""
        champion, challenger, weight = self.backend.current(self.model)
        if challenger is None:
            return False
        key = self.experiment_key(champion, challenger)
        saved = self.store.load_state(key)
        if not saved or not saved.get("paused"):
            return False
        now = time.time()
        self.store.save_state(
            key, {"started": now, "states": {}, "stage": {"weight": weight, "started": now}}
        )
        self.store.append_decision(
            self.model,
            "resume",
            f"resumed after: {saved['paused']['reason']}",
            {"experiment": key, "weight": weight, "paused": saved["paused"]},
        )
        return True

    def _export(
        self,
        challenger: str,
        weight: int,
        decision: Decision,
        counts: dict[str, int] | None,
        *,
        paused: bool,
        acted: bool,
    ) -> None:
        if self.metrics is not None:
            self.metrics.record(
                self.model,
                challenger,
                weight,
                decision,
                counts=counts,
                paused=paused,
                acted=acted,
            )

    def watch(
        self,
        interval_s: float,
        *,
        until_final: bool = True,
        timeout_s: float | None = None,
        report: Callable[[Decision | None], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Decision | None:
        """Step every `interval_s` until a promote/rollback (or the timeout); with
        `until_final` false, until the timeout only. With `on_error`, a look that raises (the
        store or the gateway briefly unreachable) is reported there and the next look comes as
        usual: its state was saved before acting, so the next look takes up the same evidence.

        Setting `stop` (a signal handler does, in the controller's pod) ends the watch between
        two looks: a look in progress finishes, none starts after it, and the wait for the next
        one is cut short. A pod being replaced thus stops acting at once rather than at the
        grace period's kill, when its successor may already be looking."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: Decision | None = None
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                last = self.step()
            except Exception as err:
                if on_error is None:
                    raise
                on_error(err)
                last = None
            else:
                if report is not None:
                    report(last)
            if until_final and last is not None and last.action in ("promote", "rollback"):
                return last
            if deadline is not None and time.monotonic() >= deadline:
                return last
            stop.wait(interval_s)
        return last


def _history_point(report: dict[str, Any]) -> dict[str, Any]:
    """What the shadow report's plot needs from one look."""
    d = report.get("disagreement") or {}
    return {
        "pairs": report["pairs"],
        "disagreement": d.get("estimate"),
        "ci_low": d.get("ci_low"),
        "ci_high": d.get("ci_high"),
        "gate": report["gate"],
    }


def shadow_policy_from_config(cfg: ProjectConfig, tau_loss: float) -> ShadowPolicy:
    """The shadow gate of the project config."""
    s = cfg.promotion.shadow
    return ShadowPolicy(
        min_pairs=s.min_pairs,
        max_pairs=s.max_pairs,
        max_disagreement=s.max_disagreement,
        regression_tolerance=s.regression_tolerance,
        max_error_increase=s.max_error_increase,
        latency_tolerance=s.latency_tolerance,
        min_labelled=s.min_labelled,
        min_requests=s.min_requests,
        warmup_requests=s.warmup_requests,
        alpha=cfg.promotion.alpha,
        tau_disagreement=s.tau_disagreement,
        tau_loss=tau_loss,
    )


def policy_from_config(cfg: ProjectConfig, champion_loss: float | None = None) -> ABPolicy:
    """The A/B policy of the project config (tau defaults by problem type, see PromotionConfig)."""
    p = cfg.promotion
    tau = p.tau
    if tau is None:
        regression = cfg.data.problem_type == "regression"
        tau = 0.1 * champion_loss if regression and champion_loss else 0.05
    return ABPolicy(
        alpha=p.alpha,
        tau=tau,
        min_samples=p.min_samples,
        max_samples=p.max_samples,
        latency_tolerance=p.latency_tolerance,
        ramp=tuple(p.ramp),
        step_samples=p.step_samples,
        promote_from=p.promote_from,
        srm_alpha=p.srm_alpha,
        srm_concentration=p.srm_concentration,
    )


def build_controller(
    cfg: ProjectConfig,
    log: Callable[[str], None] | None = None,
    api_client: Any = None,
    metrics: PromotionMetrics | None = None,
) -> PromotionController:
    """The controller for `stack.backend`: the local router, or on a cluster Seldon Core 2 or
    (`stack.kubernetes.serving: mlserver`) the gateway in front of the variants' Deployments
    (`api_client`: a kubernetes ApiClient, else the environment's kube config). Each acted-on
    decision is appended to the deployed model card; shadow decisions also write the promotion
    report with its plots next to it."""
    from mainsail.feedback.store import store_url
    from mainsail.promotion.backends import (
        GatewayBackend,
        LocalRouterBackend,
        SeldonBackend,
        append_decision_to_card,
    )

    store = FeedbackStore(store_url(cfg))
    backend: LocalRouterBackend | SeldonBackend | GatewayBackend
    if cfg.stack.backend == "kubernetes" and cfg.stack.kubernetes.serving == "mlserver":
        backend = GatewayBackend(cfg, api_client=api_client)
    elif cfg.stack.backend == "kubernetes":
        backend = SeldonBackend(cfg, api_client=api_client)
    else:
        backend = LocalRouterBackend(cfg)

    def on_decision(model: str, challenger: str, decision: Decision) -> None:
        if decision.shadow is not None:
            from mainsail.evaluate.card import deployed_card_path
            from mainsail.promotion.report import write_shadow_report

            card = deployed_card_path(cfg, challenger)
            path = card.with_name(card.name.replace("model_card.yaml", "shadow-report.html"))
            write_shadow_report(
                path,
                model,
                challenger,
                decision.shadow,
                decision.reason,
                cfg.promotion.shadow.max_disagreement,
            )
            decision.shadow["report"] = str(path)
            if log is not None:
                log(f"shadow report with its plot: {path}")
        card = append_decision_to_card(cfg, backend.registry, challenger, decision)
        if log is not None:
            log(f"decision appended to {card}")

    policy = policy_from_config(cfg)
    candidates = None
    if cfg.promotion.deploy_candidates:
        from mainsail.promotion.candidates import candidate_deployer

        candidates = candidate_deployer(
            cfg, backend.registry, store, api_client=api_client, log=log or (lambda _line: None)
        )
    return PromotionController(
        model=cfg.name,
        store=store,
        backend=backend,
        policy=policy,
        problem_type=cfg.data.problem_type or "classification",
        positive_label=cfg.positive_label(),
        on_decision=on_decision,
        shadow_policy=shadow_policy_from_config(cfg, policy.tau),
        metrics=metrics,
        candidates=candidates,
    )
