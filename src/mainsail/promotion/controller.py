"""The promotion controller: look at the evidence, then ramp, promote or roll back a challenger.

One `step()` reads each variant's outcomes (labels from the feedback store, errors and latency as
recorded by the router), runs the always-valid A/B analysis, acts through a traffic backend
(the local router's admin API, or a Seldon Experiment patch on a cluster) and logs the decision
with its evidence. Its state lives in the feedback store, so a restarted controller continues
the same experiment where it stopped and never repeats or forgets a decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mainsail.config import ProjectConfig
from mainsail.feedback.store import FeedbackStore
from mainsail.promotion.ab import ABPolicy, Decision, analyse


class TrafficBackend(Protocol):
    """What the controller needs from a deployer backend."""

    def current(self, model: str) -> tuple[str, str | None, int]:
        """(champion version, challenger version or None, challenger weight in percent)."""
        ...

    def set_weight(self, model: str, weight: int) -> None:
        """Send `weight` percent of traffic to the challenger."""
        ...

    def promote(self, model: str) -> None:
        """Make the challenger the champion (move the alias) and send it all traffic."""
        ...

    def rollback(self, model: str) -> None:
        """Send all traffic back to the champion and retire the challenger."""
        ...


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

    def experiment_key(self, champion: str, challenger: str) -> str:
        return f"{self.model}:{champion}->{challenger}"

    def step(self) -> Decision | None:
        """One look. Returns the decision, or None when no challenger is deployed."""
        champion, challenger, weight = self.backend.current(self.model)
        if challenger is None:
            return None
        key = self.experiment_key(champion, challenger)
        saved = self.store.load_state(key) or {"started": time.time(), "states": {}}
        since = float(saved["started"])
        a = self.store.outcomes(
            self.model, "champion", self.problem_type, self.positive_label, since
        )
        b = self.store.outcomes(
            self.model, "challenger", self.problem_type, self.positive_label, since
        )
        decision = analyse(a, b, policy=self.policy, current_weight=weight, states=saved["states"])
        evidence: dict[str, Any] = {
            "experiment": key,
            "champion_version": champion,
            "challenger_version": challenger,
            "weight_before": weight,
            **decision.to_dict(),
        }
        # Persist the tests' state before acting: if we crash in between, the next step acts again
        # on the same evidence rather than losing it.
        self.store.save_state(key, {"started": since, "states": decision.states})
        if decision.action == "keep_testing":
            return decision
        if decision.action == "ramp" and decision.next_weight is not None:
            self.backend.set_weight(self.model, decision.next_weight)
        elif decision.action == "promote":
            self.backend.promote(self.model)
        elif decision.action == "rollback":
            self.backend.rollback(self.model)
        self.store.append_decision(self.model, decision.action, decision.reason, evidence)
        if self.on_decision is not None:
            self.on_decision(self.model, challenger, decision)
        return decision

    def watch(
        self,
        interval_s: float,
        *,
        until_final: bool = True,
        timeout_s: float | None = None,
        report: Callable[[Decision | None], None] | None = None,
    ) -> Decision | None:
        """Step every `interval_s` until a promote/rollback (or the timeout)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: Decision | None = None
        while True:
            last = self.step()
            if report is not None:
                report(last)
            if until_final and last is not None and last.action in ("promote", "rollback"):
                return last
            if deadline is not None and time.monotonic() >= deadline:
                return last
            time.sleep(interval_s)


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
    )


def build_controller(
    cfg: ProjectConfig, log: Callable[[str], None] | None = None, api_client: Any = None
) -> PromotionController:
    """The controller for `stack.backend`: the local router, or Seldon Core 2 on a cluster
    (`api_client`: a kubernetes ApiClient, else the environment's kube config)."""
    from mainsail.feedback.store import store_url
    from mainsail.promotion.backends import (
        LocalRouterBackend,
        SeldonBackend,
        append_decision_to_card,
    )

    store = FeedbackStore(store_url(cfg))
    backend: LocalRouterBackend | SeldonBackend
    if cfg.stack.backend == "kubernetes":
        backend = SeldonBackend(cfg, api_client=api_client)
    else:
        backend = LocalRouterBackend(cfg)

    def on_decision(model: str, challenger: str, decision: Decision) -> None:
        card = append_decision_to_card(cfg, backend.registry, challenger, decision)
        if log is not None:
            log(f"decision appended to {card}")

    return PromotionController(
        model=cfg.name,
        store=store,
        backend=backend,
        policy=policy_from_config(cfg),
        problem_type=cfg.data.problem_type or "classification",
        positive_label=cfg.positive_label(),
        on_decision=on_decision,
    )
