"""Training rows from Feast: the data stage's path when the config has a `features` section.

The data file holds feature observations (every row, labelled or not) and labels (the rows
with a target). The stage writes the observations as the feature views' sources, applies the
repository, and asks Feast for the point-in-time join (`get_historical_features` on the
feature service) of the label rows; validation, split and preprocessing then run on what Feast
returned. So no feature value observed after a label row's event time can reach that row.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mainsail.config import ProjectConfig
from mainsail.features import feast_import  # noqa: F401 - before any Feast import: see there

if TYPE_CHECKING:
    from mainsail.data.validate import ValidatedData

#: How long the stage waits for another writer of the same feature repository (another run,
#: `mainsail features apply`); the Feast part of a run takes a few seconds.
LOCK_TIMEOUT_S = 120.0

#: Issues of the first validation (of the data file) that the report of the training rows keeps.
_CARRIED_ISSUES = ("duplicate_rows", "missing_target")


def feast_enabled(cfg: ProjectConfig) -> bool:
    """True when the training rows come from Feast (`features.training_set`)."""
    return cfg.features.training_set is True


@dataclass
class FeastTraining:
    """The training rows Feast returned, validated, and where they came from."""

    checked: ValidatedData
    lineage: dict[str, Any]
    """Feature service, registry (path and sha256), views with TTLs, row counts, seconds."""


#: Lineage entries left out of the split summary: they vary run to run or are for machines.
_NOT_SUMMARISED = ("registry_sha256", "seconds", "lookup_spec")


def split_summary(lineage: dict[str, Any]) -> dict[str, Any]:
    """The part of `FeastTraining.lineage` that the split summary shows."""
    return {k: v for k, v in lineage.items() if k not in _NOT_SUMMARISED}


def observations(raw: pd.DataFrame, cfg: ProjectConfig) -> pd.DataFrame:
    """The data file's rows as feature observations: timestamps parsed, exact duplicates
    dropped, rows without a target kept (their features were observed all the same)."""
    from mainsail.data.validate import observations_without_duplicates

    data = cfg.data
    # The first validation already checked these columns; its notes are not repeated here.
    stamps = [name for name in (data.event_timestamp, data.label_timestamp) if name]
    return observations_without_duplicates(raw, stamps)


def missing_by_view(frame: pd.DataFrame, views: dict[str, list[str]]) -> dict[str, int]:
    """Rows in which every feature of a view is missing: Feast found no observation of that
    view at or before the row's event time within the view's TTL (or one with no values)."""
    out: dict[str, int] = {}
    for view, features in views.items():
        present = [f for f in features if f in frame.columns]
        if present:
            out[view] = int(frame[present].isna().all(axis=1).sum())
    return out


def _like(joined: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Feast's columns in the data file's order and dtypes, where that loses nothing.

    Feast returns categories as strings and appends the label columns first; restoring the
    file's layout keeps the training rows identical to the file's when every label row has
    its own observation, so the preprocessing and models see the same inputs either way.
    """
    order = [c for c in reference.columns if c in joined.columns]
    order += [c for c in joined.columns if c not in reference.columns]
    out = joined[order].copy()
    for name in order:
        if name not in reference.columns or out[name].dtype == reference[name].dtype:
            continue
        try:
            cast = out[name].astype(reference[name].dtype)
        except (TypeError, ValueError):
            continue  # e.g. integers that came back with missing values stay floats
        if int(cast.isna().sum()) == int(out[name].isna().sum()):
            out[name] = cast
    return out


def _sha256(path: Path) -> str:
    from mainsail.core.files import sha256_file

    return sha256_file(path) if path.is_file() else ""


def training_rows(
    cfg: ProjectConfig,
    raw: pd.DataFrame,
    checked: ValidatedData,
    *,
    source: str,
    data_sha256: str,
    origin: str | None,
) -> FeastTraining:
    """Write the sources, apply the repository and join the label rows point-in-time.

    `checked` is the validation of `raw` (the data file); its rows with a target are the
    labels. Raises FeatureStoreError subclasses (definition, source, registry, online store)
    with the view, file or column at fault; nothing is written to the run folder then.
    """
    from mainsail.data.validate import validate_frame
    from mainsail.features import store
    from mainsail.features.definitions import entity_type
    from mainsail.features.layout import lookup_spec, plan_repo

    started = time.perf_counter()
    repo = cfg.features.repo_dir.resolve()
    obs = observations(raw, cfg)
    labels = store.training_labels(cfg, checked.frame)
    import feast  # noqa: F401 - seconds to import: outside the lock, so other writers wait less

    # One lock around sources, registry and join: a concurrent run on the same repository
    # must not swap the sources between this run's write and its join.
    with store.registry_lock(cfg, repo, timeout_s=LOCK_TIMEOUT_S):
        # One plan for the whole operation: the sources, the definitions and the join.
        plan = plan_repo(cfg, list(obs.columns))
        applied = store.apply(cfg, repo, obs, plan)
        spec = lookup_spec(plan, entity_type(plan, repo))
        joined = store.training_set(cfg, repo, labels, plan=plan)
        registry = store.registry_file(cfg, repo)
        registry_sha = _sha256(registry)
    joined = _like(joined, checked.frame)

    views = {v.name: list(v.features) for v in plan.views}
    if plan.derived:
        views[plan.derived_view_name] = [d.name for d in plan.derived]
    missing = missing_by_view(joined, {v.name: list(v.features) for v in plan.views})
    rows_missing = (
        int(
            np.logical_or.reduce(
                [joined[list(v.features)].isna().all(axis=1).to_numpy() for v in plan.views]
            ).sum()
        )
        if plan.views
        else 0
    )

    # The training rows hold no dropped columns: validate them with `data.drop` emptied.
    data_cfg = cfg.data.model_copy(update={"drop": []})
    final = validate_frame(
        joined,
        cfg.model_copy(update={"data": data_cfg}),
        source=source,
        data_sha256=data_sha256,
        origin=origin,
    )
    _carry_file_checks(final, checked, len(raw))
    final.report.issues.append(_note_join(plan.service_name, registry, len(joined), len(obs)))
    if rows_missing:
        final.report.issues.append(_note_missing(missing, rows_missing, len(joined), applied))
    lineage: dict[str, Any] = {
        "project": plan.project,
        "feature_service": plan.service_name,
        "registry": str(registry),
        "registry_sha256": registry_sha,
        "repo_dir": str(repo),
        "online_store": cfg.features.online_store,
        "views": {
            name: {"features": feats, "ttl_s": applied.ttl_s.get(name)}
            for name, feats in views.items()
        },
        "observation_rows": len(obs),
        "label_rows": len(labels),
        "rows_missing_features": rows_missing,
        "missing_by_view": missing,
        "seconds": round(time.perf_counter() - started, 3),
        # What serving needs to fetch these features by entity key (feature_lookup.json).
        "lookup_spec": json.loads(spec.to_json()),
    }
    return FeastTraining(checked=final, lineage=lineage)


def _carry_file_checks(final: ValidatedData, checked: ValidatedData, rows_loaded: int) -> None:
    """The training rows' report also tells what the data file's validation removed."""
    report, first = final.report, checked.report
    report.rows_loaded = rows_loaded
    report.duplicate_rows_dropped = first.duplicate_rows_dropped
    report.missing_target_rows_dropped = first.missing_target_rows_dropped
    carried = [i for i in first.issues if i.code in _CARRIED_ISSUES]
    at = 1 if report.issues and report.issues[0].code == "data_source" else 0
    report.issues[at:at] = carried


def _note_join(service: str, registry: Path, labels: int, observations: int) -> Any:
    from mainsail.data.validate import Issue

    return Issue(
        severity="info",
        code="feast_training_set",
        message=(
            f"training rows: {labels} label rows joined point-in-time (get_historical_features) "
            f"with feature service {service!r} of registry {registry}, over {observations} "
            "feature observations; no value observed after a row's event time was used"
        ),
    )


def _note_missing(missing: dict[str, int], rows: int, total: int, applied: Any) -> Any:
    from mainsail.data.validate import Issue

    views = ", ".join(
        f"{name}: {n} (TTL {applied.ttl_s[name] / 86_400:g}d)" for name, n in missing.items() if n
    )
    return Issue(
        severity="warning" if rows / max(total, 1) > 0.05 else "info",
        code="feast_missing_features",
        message=(
            f"{rows} of {total} training rows got no feature values from at least one view "
            f"({views}): no observation of that entity at or before the row's event time "
            "within the view's TTL; those features are missing and imputed like any missing "
            "value. A longer TTL in features.views, or observations closer to the labels, "
            "would fill them"
        ),
    )
