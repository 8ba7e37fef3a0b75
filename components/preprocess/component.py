"""kfp component `preprocess`: fit the preprocessor on train.

Wraps mainsail.pipeline.steps.preprocess_step.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def preprocess(
    config_json: str,
    dataset: Input[Dataset],
    splits: Input[Dataset],
    prepared: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """The complete data-stage artifact (`prepared`): frame, split, preprocessor, schema."""
    from mainsail.pipeline.steps import preprocess_step, record_metrics

    record_metrics(metrics, preprocess_step(config_json, dataset.path, splits.path, prepared.path))
