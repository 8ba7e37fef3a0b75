"""kfp component `evaluate`: cross-validate, compare, select, document.

Wraps mainsail.pipeline.steps.evaluate_step.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from mainsail.core import naming


@dsl.component(base_image=naming.image("pipeline"), install_kfp_package=False)
def evaluate(
    config_json: str,
    prepared: Input[Dataset],
    tuned: Input[Model],
    candidates: Input[Model],
    model: Output[Model],
    report: Output[HTML],
    card: Output[Markdown],
    metrics: Output[Metrics],
) -> str:
    """The registry-ready model folder (`model`), the HTML report, the model card.

    Returns the chosen family, or "" when no candidate beat the baseline significantly.
    """
    from mainsail.pipeline.steps import evaluate_step, record_metrics

    result = evaluate_step(
        config_json, prepared.path, tuned.path, candidates.path, model.path, report.path, card.path
    )
    record_metrics(metrics, result)
    return str(result["chosen"])
