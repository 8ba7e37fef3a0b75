"""kfp component `split`: leakage-safe train/valid/test split.

Wraps mainsail.pipeline.steps.split_step.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def split(
    config_json: str, dataset: Input[Dataset], splits: Output[Dataset], metrics: Output[Metrics]
) -> None:
    """Split indices, split summary and the class-imbalance plan (`splits`); side sizes."""
    from mainsail.pipeline.steps import record_metrics, split_step

    record_metrics(metrics, split_step(config_json, dataset.path, splits.path))
