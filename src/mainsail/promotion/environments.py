"""Moving a version between deployment environments (`mainsail promote-env`) through the target
environment's gate.

Each environment (`environments.<name>` in the config) has its own registry aliases, namespace,
overlay, stack folder and decision log. `promote_environment(cfg, registry, model, "staging",
"production")` takes the version that staging serves (its champion alias, or `version`), runs the
checks of production's gate (`GateConfig`) on evidence from staging, and moves the version, i.e.
points production's champion alias at it, only when every check passes:

    card_complete        the version's model card has every required field filled
    beat_champion        its primary-metric CI lies beyond the target champion's test value
    load_within_budget   latency p95 and throughput measured in the source environment (the
                         deployed card's `deployment` fields) are within the card's `budget`
    rollout              the source environment's decision log holds a passed shadow (the
                         shadow gate ramped the version) and/or canary (the canary promoted it)

Every move and every refusal is appended to the target environment's decision log (the
feedback store's `decisions` table, where the promotion controller logs its own), with each
check and its evidence.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mainsail.config import ProjectConfig
from mainsail.config.base import suggest

if TYPE_CHECKING:
    from mainsail.config.environments import EnvironmentConfig
    from mainsail.registry.store import ModelRegistry

#: Card fields a complete card fills (dotted paths); `status` must also be `selected`.
REQUIRED_CARD_FIELDS = (
    "model_name",
    "version",
    "problem_type",
    "intended_use",
    "limitations",
    "features",
    "metrics.primary.name",
    "metrics.primary.test",
    "metrics.primary.test_ci.low",
    "metrics.primary.test_ci.high",
    "training_data.size",
    "training_data.source_sha256",
    "lineage.config_sha256",
    "lineage.data_sha256",
    "lineage.model_sha256",
    "lineage.seed",
    "budget.latency_p95_ms",
    "budget.throughput_rps",
)


class EnvironmentPromotionError(ValueError):
    """A promotion that cannot even be judged (unknown environment, no version to move)."""


@dataclass(frozen=True)
class GateCheck:
    """One check of a gate."""

    name: str
    passed: bool
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnvironmentMove:
    """What `promote_environment` decided."""

    model: str
    source: str | None
    target: str
    version: int
    alias: str
    moved: bool
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        """What failed, one line per failed check."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the decision log's evidence)."""
        out = asdict(self)
        out["reasons"] = self.reasons
        return out


def environment(cfg: ProjectConfig, name: str) -> EnvironmentConfig:
    """The environment called `name`; an error naming the known ones otherwise."""
    try:
        return cfg.environments[name]
    except KeyError:
        known = ", ".join(sorted(cfg.environments))
        raise EnvironmentPromotionError(
            f"unknown environment {name!r}{suggest(name, cfg.environments)}; "
            f"the config defines {known}"
        ) from None


def environment_stack_dir(cfg: ProjectConfig, name: str) -> Path:
    """The environment's local stack folder (its feedback store and deployed cards)."""
    environment(cfg, name)
    return cfg.for_environment(name).stack.data_dir.resolve()


def environment_store_url(cfg: ProjectConfig, name: str) -> str:
    """The environment's feedback store, which holds its decision log (the one `mainsail
    promote --env NAME` writes its decisions to)."""
    from mainsail.feedback.store import store_url

    environment(cfg, name)
    url = store_url(cfg.for_environment(name))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def deployed_card(cfg: ProjectConfig, name: str, version: int) -> Path:
    """Where the environment keeps the deployed copy of a version's card (the load figures
    `mainsail deploy --env NAME --measure-s S` writes)."""
    from mainsail.evaluate.card import deployed_card_path

    environment(cfg, name)
    return deployed_card_path(cfg.for_environment(name), version)


def _get(card: dict[str, Any], dotted: str) -> Any:
    value: Any = card
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def card_gaps(card: dict[str, Any]) -> list[str]:
    """The required fields a card leaves empty (and a status other than `selected`)."""
    gaps = [f for f in REQUIRED_CARD_FIELDS if _get(card, f) in (None, "", [])]
    if card.get("status") != "selected":
        gaps.insert(0, f"status is {card.get('status')!r}, not 'selected'")
    return gaps


def _read_version_card(registry: ModelRegistry, model: str, version: int, cache: Path) -> Any:
    from mainsail.evaluate.card import CARD_FILE, read_card

    local = registry.download(model, version, cache)
    path = local.path / CARD_FILE
    return read_card(path) if path.exists() else {}


def check_card(card: dict[str, Any]) -> GateCheck:
    """card_complete."""
    gaps = card_gaps(card)
    if gaps:
        return GateCheck("card_complete", False, "model card incomplete: " + "; ".join(gaps))
    return GateCheck("card_complete", True, "every required field is filled")


def check_champion(card: dict[str, Any], champion: dict[str, Any] | None, alias: str) -> GateCheck:
    """beat_champion: the version's CI beyond the champion's test value."""
    from mainsail.evaluate.metrics import greater_is_better

    if champion is None:
        return GateCheck("beat_champion", True, f"no {alias!r} yet: nothing to beat")
    metric = _get(card, "metrics.primary.name")
    low, high = (
        _get(card, "metrics.primary.test_ci.low"),
        _get(card, "metrics.primary.test_ci.high"),
    )
    theirs = _get(champion, "metrics.primary.test")
    evidence = {
        "metric": metric,
        "ci": [low, high],
        "champion": theirs,
        "champion_version": champion.get("version"),
    }
    if metric is None or low is None or high is None:
        return GateCheck("beat_champion", False, "the card has no primary-metric CI", evidence)
    if _get(champion, "metrics.primary.name") != metric or theirs is None:
        return GateCheck(
            "beat_champion",
            False,
            f"the champion's card has no {metric} test value to compare with",
            evidence,
        )
    better = low > theirs if greater_is_better(str(metric)) else high < theirs
    side = "low" if greater_is_better(str(metric)) else "high"
    bound = low if side == "low" else high
    relation = "above" if greater_is_better(str(metric)) else "below"
    detail = (
        f"{metric} CI [{low:.4f}, {high:.4f}]: {side} end {'' if better else 'not '}{relation} "
        f"the champion's {theirs:.4f}"
    )
    evidence["bound"] = bound
    return GateCheck("beat_champion", bool(better), detail, evidence)


def check_load(card: dict[str, Any], deployed: Path | None, source: str | None) -> GateCheck:
    """load_within_budget: p95 and throughput measured in the source (its deployed copy of the
    card at `deployed`), within the card's budget."""
    from mainsail.evaluate.card import read_card

    budget_p95 = _get(card, "budget.latency_p95_ms")
    budget_rps = _get(card, "budget.throughput_rps")
    if source is None or deployed is None:
        return GateCheck("load_within_budget", False, "no source environment measured the load")
    if not deployed.exists():
        return GateCheck(
            "load_within_budget",
            False,
            f"latency and throughput were not measured in {source} (no deployed card at "
            f"{deployed}; `mainsail deploy` with its load run fills it)",
        )
    measured = read_card(deployed).get("deployment") or {}
    p95, rps = measured.get("latency_p95"), measured.get("throughput")
    evidence = {"latency_p95_ms": p95, "throughput_rps": rps, "budget": card.get("budget")}
    if p95 is None or rps is None:
        return GateCheck(
            "load_within_budget",
            False,
            f"latency p95 and throughput were not measured in {source}",
            evidence,
        )
    if budget_p95 is None or budget_rps is None:
        return GateCheck("load_within_budget", False, "the card states no budget", evidence)
    problems = []
    if float(p95) > float(budget_p95):
        problems.append(f"latency p95 {p95} ms in {source} exceeds the budget {budget_p95} ms")
    if float(rps) < float(budget_rps):
        problems.append(f"throughput {rps} requests/s in {source} is below the budget {budget_rps}")
    if problems:
        return GateCheck("load_within_budget", False, "; ".join(problems), evidence)
    return GateCheck(
        "load_within_budget",
        True,
        f"latency p95 {p95} ms <= {budget_p95} ms, throughput {rps} >= {budget_rps} requests/s "
        f"in {source}",
        evidence,
    )


def rollout_passes(decisions: list[dict[str, Any]], version: int) -> dict[str, bool]:
    """Whether the decision log shows a passed shadow / canary of `version`."""
    shadow = canary = False
    for row in decisions:
        evidence = row.get("evidence") or {}
        if str(evidence.get("challenger_version")) != str(version):
            continue
        if row.get("action") == "ramp" and evidence.get("stage") == "shadow":
            shadow = True
        if row.get("action") == "promote":
            canary = True
    return {"shadow": shadow, "canary": canary}


def check_rollout(
    required: str, decisions: list[dict[str, Any]], version: int, source: str | None
) -> GateCheck:
    """rollout: the source's decision log holds the passed shadow and/or canary required."""
    if required == "none":
        return GateCheck("rollout", True, "no rollout required")
    if source is None:
        return GateCheck("rollout", False, f"a {required} must pass in a source environment")
    passed = rollout_passes(decisions, version)
    ok = {
        "shadow": passed["shadow"],
        "canary": passed["canary"],
        "shadow_or_canary": passed["shadow"] or passed["canary"],
    }[required]
    wanted = required.replace("_", " ")
    detail = (
        f"a passed {wanted} of v{version} is in {source}'s decision log"
        if ok
        else f"no passed {wanted} of v{version} in {source}'s decision log"
    )
    return GateCheck("rollout", ok, detail, passed)


def promote_environment(
    cfg: ProjectConfig,
    registry: ModelRegistry,
    model: str,
    source: str | None,
    target: str,
    *,
    version: int | None = None,
) -> EnvironmentMove:
    """Judge the version against the target's gate, move it when every check passes, and log
    the move or the refusal in the target's decision log. `source` None: the version comes
    straight from the registry (`version` required), with no evidence of a source environment."""
    from mainsail.feedback.store import FeedbackStore
    from mainsail.registry.errors import AliasError
    from mainsail.registry.store import ALIASES

    dst = environment(cfg, target)
    # A registry opened by `open_registry(cfg)` knows them already; one built by hand may not.
    extra = {a for a in cfg.environment_aliases() if a not in ALIASES}
    registry.extra_aliases = tuple(sorted(set(registry.extra_aliases) | extra))
    if source is not None:
        src = environment(cfg, source)
        if source == target:
            raise EnvironmentPromotionError(f"--from and --to are both {target!r}")
        if version is None:
            served = registry.aliases(model).get(src.champion_alias)
            if served is None:
                raise EnvironmentPromotionError(
                    f"{source} serves no version of {model!r}: its alias {src.champion_alias!r} "
                    f"is not set (move one there first: `mainsail promote-env {model} --to "
                    f"{source} --version N`)"
                )
            version = served
    elif version is None:
        raise EnvironmentPromotionError("give --from ENV or --version N: which version to move")
    try:
        version, _ = registry.resolve(model, version)
    except AliasError as err:
        raise EnvironmentPromotionError(str(err)) from None

    gate = dst.gate
    checks: list[GateCheck] = []
    with tempfile.TemporaryDirectory(prefix="mainsail-gate-") as tmp:
        card = _read_version_card(registry, model, version, Path(tmp) / "candidate")
        if gate.card_complete:
            checks.append(check_card(card))
        if gate.beat_champion:
            current = registry.aliases(model).get(dst.champion_alias)
            if current == version:
                detail = f"v{version} already is {target}'s {dst.champion_alias!r}"
                checks.append(GateCheck("beat_champion", True, detail))
            else:
                champion = (
                    None
                    if current is None
                    else _read_version_card(registry, model, current, Path(tmp) / "champion")
                )
                checks.append(check_champion(card, champion, dst.champion_alias))
    if gate.load_within_budget:
        deployed = deployed_card(cfg, source, version) if source else None
        checks.append(check_load(card, deployed, source))
    if gate.rollout != "none" and source is not None:
        src_store = FeedbackStore(environment_store_url(cfg, source))
        try:
            decisions = src_store.decisions(model)
        finally:
            src_store.close()
    else:
        decisions = []
    checks.append(check_rollout(gate.rollout, decisions, version, source))

    move = EnvironmentMove(
        model=model,
        source=source,
        target=target,
        version=version,
        alias=dst.champion_alias,
        moved=all(c.passed for c in checks),
        checks=checks,
    )
    if move.moved:
        registry.promote(model, version, dst.champion_alias)
    where = f"from {source} " if source else ""
    reason = (
        f"v{version} moved {where}to {target} ({dst.champion_alias} -> v{version})"
        if move.moved
        else f"v{version} refused {where}to {target}: " + "; ".join(move.reasons)
    )
    log = FeedbackStore(environment_store_url(cfg, target))
    try:
        log.append_decision(
            model, "promote-env" if move.moved else "refuse-env", reason, move.to_dict()
        )
    finally:
        log.close()
    return move
