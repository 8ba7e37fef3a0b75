"""kfp component `tune`: hyperparameter search on Ray (wraps mainsail.pipeline.steps.tune_step)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def tune(
    config_json: str, prepared: Input[Dataset], tuned: Output[Model], metrics: Output[Metrics]
) -> None:
    """Best hyperparameters per tuned family and the experiment log (`tuned`); best scores.

    The Ray work runs on the KubeRay cluster when `pipelines.kuberay` names one, else locally.
    """
    from mainsail.pipeline.steps import record_metrics, tune_step

    record_metrics(metrics, tune_step(config_json, prepared.path, tuned.path))
