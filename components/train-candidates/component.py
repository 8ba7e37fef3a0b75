"""kfp component `train-candidates`: fit every candidate.

Wraps mainsail.pipeline.steps.train_candidates_step.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def train_candidates(
    config_json: str,
    prepared: Input[Dataset],
    tuned: Input[Model],
    candidates: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """One fitted model per candidate family (`candidates`); validation scores.

    The Ray work (the PyTorch MLP's TorchTrainer) runs on the KubeRay cluster when configured.
    """
    from mainsail.pipeline.steps import record_metrics, train_candidates_step

    record_metrics(
        metrics, train_candidates_step(config_json, prepared.path, tuned.path, candidates.path)
    )
