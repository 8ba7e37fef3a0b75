"""kfp component `validate`: ingest and validate the data.

Wraps mainsail.pipeline.steps.validate_step.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Metrics, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def validate(
    config_json: str,
    data_uri: str,
    data_digest: str,
    dataset: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> None:
    """Validated table + decisions (`dataset`), the validation report (`report`), row counts.

    `data_digest` identifies the data's content (sha256); it is part of the cache key, so the
    step re-runs when the file changes under the same `data_uri`.
    """
    from mainsail.pipeline.steps import record_metrics, validate_step

    record_metrics(metrics, validate_step(config_json, data_uri, dataset.path, report.path))
