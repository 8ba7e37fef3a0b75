"""kfp component `deploy-canary`: serve a version as challenger.

Wraps mainsail.pipeline.steps.deploy_canary_step.
"""

from kfp import dsl
from kfp.dsl import Metrics, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def deploy_canary(config_json: str, version: int, weight: int, metrics: Output[Metrics]) -> None:
    """Challenger = `version` at `weight` percent of traffic (backend from `stack.backend`)."""
    from mainsail.pipeline.steps import deploy_canary_step, record_metrics

    record_metrics(metrics, deploy_canary_step(config_json, version, weight))
