"""kfp component `register`: publish the model as a registry version.

Wraps mainsail.pipeline.steps.register_step.
"""

from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def register(config_json: str, model: Input[Model], metrics: Output[Metrics]) -> int:
    """Returns the new version number (the folder is uploaded, verified, then made visible)."""
    from mainsail.pipeline.steps import record_metrics, register_step

    result = register_step(config_json, model.path)
    record_metrics(metrics, result)
    return int(result["version"])
