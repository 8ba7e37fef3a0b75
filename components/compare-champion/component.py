"""kfp component `compare-champion`: new model vs the champion.

Wraps mainsail.pipeline.steps.compare_champion_step.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def compare_champion(
    config_json: str, prepared: Input[Dataset], model: Input[Model], metrics: Output[Metrics]
) -> bool:
    """True when the new model beats the registry's champion on the fresh window's test rows."""
    from mainsail.pipeline.steps import compare_champion_step, record_metrics

    result = compare_champion_step(config_json, prepared.path, model.path)
    record_metrics(metrics, result)
    return bool(result["wins"])
