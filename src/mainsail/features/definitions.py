"""Feast objects built from the project config and the sources' parquet schemas.

`build_definitions` is what `mainsail features apply` and feature_repo/definitions.py (for the
plain `feast apply`) use: entity, file sources, feature views with TTLs, an on-demand view for
the configured ratios, and the versioned FeatureService. Feast is imported inside functions so
the package imports without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from mainsail.config import ProjectConfig
from mainsail.features import feast_import  # noqa: F401 - before any Feast import: see there
from mainsail.features.errors import FeatureDefinitionError, FeatureSourceError
from mainsail.features.layout import RepoPlan, feast_project_name, plan_repo

if TYPE_CHECKING:
    from mainsail.data.schema import FeatureSchema


def read_source_schema(repo_dir: Path, view_name: str, source_path: str) -> pa.Schema:
    """The parquet schema of a view's source; FeatureSourceError when absent or unreadable."""
    path = repo_dir / source_path
    if not path.is_file():
        raise FeatureSourceError(
            f"feature view {view_name!r}: source file {path} does not exist; write the sources "
            "from the dataset first (`mainsail features apply` does)"
        )
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as err:
        raise FeatureSourceError(
            f"feature view {view_name!r}: source file {path} is not readable parquet: {err}"
        ) from None


def plan_from_sources(cfg: ProjectConfig, repo_dir: Path) -> RepoPlan:
    """The plan of a repository whose sources are written (`layout.plan_repo`, with the default
    view's columns read from its source when the config sets no views). Callers compute it once
    per operation and pass it down."""
    if cfg.features.views:
        return plan_repo(cfg)
    name = f"{feast_project_name(cfg)}_features"
    schema = read_source_schema(repo_dir, name, f"data/{name}.parquet")
    return plan_repo(cfg, schema.names)


def _feast_type(arrow: pa.DataType, where: str) -> Any:
    from feast import types as ft

    if pa.types.is_boolean(arrow):
        return ft.Bool
    if pa.types.is_int64(arrow) or pa.types.is_uint32(arrow):
        return ft.Int64
    if pa.types.is_integer(arrow):
        return ft.Int32
    if pa.types.is_float64(arrow):
        return ft.Float64
    if pa.types.is_floating(arrow):
        return ft.Float32
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return ft.String
    if pa.types.is_timestamp(arrow):
        return ft.UnixTimestamp
    raise FeatureDefinitionError(f"{where}: parquet type {arrow} has no Feast equivalent")


def entity_type(plan: RepoPlan, repo_dir: Path) -> str:
    """`string` or `int64`: the entity key's type in the first view's source."""
    view = plan.views[0]
    schema = read_source_schema(repo_dir, view.name, view.source_path)
    arrow = schema.field(plan.entity_key).type
    return "int64" if pa.types.is_integer(arrow) else "string"


def _ratio_udf(ratios: tuple[tuple[str, str, str], ...]) -> Any:
    """A python-mode on-demand transformation: name = numerator / denominator per row.

    Outputs use plain names: Feast does not rename python-mode outputs, so clients request
    plain (not view-prefixed) names, which the config keeps unique across views.
    """

    def derived_ratios(inputs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, num, den in ratios:
            nums, dens = inputs[num], inputs[den]
            if not isinstance(nums, list):  # singleton rows arrive as scalars
                nums, dens = [nums], [dens]
            col = [
                None if n is None or d is None or d == 0 or n != n or d != d else n / d
                for n, d in zip(nums, dens, strict=True)
            ]
            out[name] = col
        return out

    return derived_ratios


def build_definitions(
    cfg: ProjectConfig, repo_dir: Path, plan: RepoPlan | None = None
) -> list[Any]:
    """Entity, sources, views, on-demand view and FeatureService for `cfg` (and its `plan`,
    when the caller has it).

    Checks every configured column against the source's parquet schema (FeatureSourceError
    naming the view and file, FeatureDefinitionError naming the column).
    """
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Float64

    plan = plan or plan_from_sources(cfg, repo_dir)
    schemas = {v.name: read_source_schema(repo_dir, v.name, v.source_path) for v in plan.views}
    first = schemas[plan.views[0].name]
    if plan.entity_key not in first.names:
        raise FeatureSourceError(
            f"feature view {plan.views[0].name!r}: entity key {plan.entity_key!r} is not in "
            "its source"
        )
    key_is_int = pa.types.is_integer(first.field(plan.entity_key).type)
    entity = Entity(
        name=plan.entity_name,
        join_keys=[plan.entity_key],
        value_type=ValueType.INT64 if key_is_int else ValueType.STRING,
        description=f"{plan.entity_key} of project {plan.project}",
    )
    objects: list[Any] = [entity]
    views: dict[str, Any] = {}
    for view in plan.views:
        schema = schemas[view.name]
        for column in (plan.entity_key, plan.timestamp, *view.features):
            if column not in schema.names:
                raise FeatureSourceError(
                    f"feature view {view.name!r}: column {column!r} is not in its source "
                    f"{repo_dir / view.source_path}; rewrite the sources from the dataset"
                )
        source = FileSource(
            name=f"{view.name}_source",
            # Absolute: the DuckDB offline store resolves a relative path against the working
            # directory, not the repository (the file store against the repository).
            path=str((repo_dir / view.source_path).resolve()),
            timestamp_field=plan.timestamp,
        )
        fields = [
            Field(
                name=f,
                dtype=_feast_type(schema.field(f).type, f"feature view {view.name}: column {f}"),
            )
            for f in view.features
        ]
        fv = FeatureView(
            name=view.name,
            entities=[entity],
            ttl=view.ttl,
            schema=fields,
            source=source,
            online=True,
            description=view.description,
            tags={"mainsail.project": plan.project},
        )
        views[view.name] = fv
        objects += [source, fv]
    service_members: list[Any] = list(views.values())
    if plan.derived:
        inputs = sorted(
            {plan.view_of(c).name for d in plan.derived for c in (d.numerator, d.denominator)}
        )
        odfv = OnDemandFeatureView(
            name=plan.derived_view_name,
            sources=[views[name] for name in inputs],
            schema=[Field(name=d.name, dtype=Float64) for d in plan.derived],
            udf=_ratio_udf(
                tuple((d.name, d.numerator, d.denominator) for d in plan.derived),
            ),
            udf_string="ratios: numerator / denominator, None when the denominator is 0 or null",
            mode="python",
            description="Ratios computed at request time",
            tags={"mainsail.project": plan.project},
        )
        objects.append(odfv)
        service_members.append(odfv)
    objects.append(
        FeatureService(
            name=plan.service_name,
            features=service_members,
            description=f"Features of model {cfg.name}, version {cfg.features.service_version}",
            tags={"mainsail.project": plan.project},
        )
    )
    return objects


def check_against_schema(plan: RepoPlan, schema: FeatureSchema) -> None:
    """Raise FeatureDefinitionError when a model's input is not served by the feature service."""
    served = set(plan.feature_names)
    absent = [name for name in schema.names if name not in served]
    if absent:
        raise FeatureDefinitionError(
            f"feature service {plan.service_name!r} does not serve model inputs {absent}"
        )
