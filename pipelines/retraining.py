"""The retraining pipeline, triggered by drift: fresh window → train → beat the champion → canary.

    validate → split → preprocess → tune → train-candidates → evaluate
        → (a candidate was selected) compare-champion
        → (it beats the champion on the fresh window's test rows) register → deploy-canary

`data_uri` names the fresh data window (the retrain trigger passes it); the other parameters
are those of the training pipeline. Nothing is registered or deployed unless the new model
wins, so a drift alarm never replaces a better champion.
"""

from kfp import dsl
from kfp.dsl.base_component import BaseComponent

from mainsail.config.pipelines import PipelinesConfig
from mainsail.kfp_runner import PIPELINE_NAMES, configure_task, load_component


def build(settings: PipelinesConfig, model: str) -> BaseComponent:
    """The retraining pipeline for model `model` with these pipeline settings."""
    c = {
        step: load_component(step)
        for step in (
            "validate",
            "split",
            "preprocess",
            "tune",
            "train-candidates",
            "evaluate",
            "compare-champion",
            "register",
            "deploy-canary",
        )
    }

    def step(name: str, **kwargs: object) -> dsl.PipelineTask:
        task = c[name](**kwargs)
        configure_task(task, name, settings, model)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAMES["retraining"],
        description=f"Mainsail retraining of model {model} on a fresh data window: train, "
        "compare with the champion, register and deploy as canary only if it wins.",
    )
    def retraining(
        config_json: str,
        data_uri: str,
        data_digest: str = "",
        canary_weight: int = 10,
    ) -> None:
        validated = step(
            "validate", config_json=config_json, data_uri=data_uri, data_digest=data_digest
        )
        splits = step("split", config_json=config_json, dataset=validated.outputs["dataset"])
        prepared = step(
            "preprocess",
            config_json=config_json,
            dataset=validated.outputs["dataset"],
            splits=splits.outputs["splits"],
        ).outputs["prepared"]
        tuned = step("tune", config_json=config_json, prepared=prepared).outputs["tuned"]
        candidates = step(
            "train-candidates", config_json=config_json, prepared=prepared, tuned=tuned
        ).outputs["candidates"]
        evaluated = step(
            "evaluate",
            config_json=config_json,
            prepared=prepared,
            tuned=tuned,
            candidates=candidates,
        )
        with dsl.If(evaluated.outputs["Output"] != "", name="candidate-selected"):
            compared = step(
                "compare-champion",
                config_json=config_json,
                prepared=prepared,
                model=evaluated.outputs["model"],
            )
            with dsl.If(compared.outputs["Output"] == True, name="beats-champion"):  # noqa: E712
                registered = step(
                    "register", config_json=config_json, model=evaluated.outputs["model"]
                )
                step(
                    "deploy-canary",
                    config_json=config_json,
                    version=registered.outputs["Output"],
                    weight=canary_weight,
                )

    return retraining
