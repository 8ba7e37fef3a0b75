"""The training pipeline: data → tune → train → evaluate → register → optional canary.

    validate → split → preprocess → tune → train-candidates → evaluate
        → (a candidate was selected) register → (deploy_canary) deploy-canary

Parameters: `config_json` (the project config, see mainsail.steps.config_to_json), `data_uri`
(where the step reads the data), `data_digest` (the data's content hash: part of the cache
key), `deploy_canary` and `canary_weight`. Built per project by :func:`build` so that image,
resources and GPU placement come from the config's `pipelines` section; `mainsail.kfp_runner`
compiles, runs (kfp.local) and submits it.
"""

from kfp import dsl
from kfp.dsl.base_component import BaseComponent

from mainsail.config.pipelines import PipelinesConfig
from mainsail.kfp_runner import PIPELINE_NAMES, configure_task, load_component


def build(settings: PipelinesConfig, model: str) -> BaseComponent:
    """The training pipeline for model `model` with these pipeline settings."""
    c = {
        step: load_component(step)
        for step in (
            "validate",
            "split",
            "preprocess",
            "tune",
            "train-candidates",
            "evaluate",
            "register",
            "deploy-canary",
        )
    }

    def step(name: str, **kwargs: object) -> dsl.PipelineTask:
        task = c[name](**kwargs)
        configure_task(task, name, settings, model)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAMES["training"],
        description=f"Mainsail training of model {model}: validate, split, preprocess, tune, "
        "train candidates, evaluate and select, register, optionally deploy as canary.",
    )
    def training(
        config_json: str,
        data_uri: str,
        data_digest: str = "",
        deploy_canary: bool = False,
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
            registered = step("register", config_json=config_json, model=evaluated.outputs["model"])
            with dsl.If(deploy_canary == True, name="deploy-requested"):  # noqa: E712
                step(
                    "deploy-canary",
                    config_json=config_json,
                    version=registered.outputs["Output"],
                    weight=canary_weight,
                )

    return training
