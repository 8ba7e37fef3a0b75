"""The Mainsail pipelines, built by one function from the components in components/<step>/.

Both run the lifecycle's first six steps and differ only in what follows a selected candidate:

    validate → split → preprocess → tune → train-candidates → evaluate
    training     → (a candidate was selected) register → (deploy_canary) deploy-canary
    retraining   → (a candidate was selected) compare-champion
                 → (it beats the champion on the fresh window's test rows) register → deploy-canary

Parameters: `config_json` (the project config, see mainsail.config.config_to_json), `data_uri`
(where the step reads the data; for retraining, the fresh window the retrain trigger passes),
`data_digest` (the data's content hash: part of the cache key), `canary_weight`, and for
training `deploy_canary`. Nothing is registered or deployed by a retraining unless the new model
wins, so a drift alarm never replaces a better champion. Image, resources and GPU placement come
from the config's `pipelines` section; `mainsail.pipeline.runner` compiles, runs (kfp.local) and
submits the result.
"""

from typing import Any

from kfp import dsl
from kfp.dsl.base_component import BaseComponent

from mainsail.config.pipelines import PipelinesConfig
from mainsail.pipeline.runner import PIPELINE_NAMES, PipelineName, configure_task, load_component

SHARED_STEPS = ("validate", "split", "preprocess", "tune", "train-candidates", "evaluate")
"""The lifecycle up to the selected model: the same in both pipelines."""
TAIL_STEPS: dict[str, tuple[str, ...]] = {
    "training": ("register", "deploy-canary"),
    "retraining": ("compare-champion", "register", "deploy-canary"),
}
DESCRIPTIONS = {
    "training": "Mainsail training of model {model}: validate, split, preprocess, tune, train "
    "candidates, evaluate and select, register, optionally deploy as canary.",
    "retraining": "Mainsail retraining of model {model} on a fresh data window: train, compare "
    "with the champion, register and deploy as canary only if it wins.",
}


def build(pipeline: PipelineName, settings: PipelinesConfig, model: str) -> BaseComponent:
    """Pipeline `pipeline` (training or retraining) for model `model` with these settings."""
    components = {s: load_component(s) for s in (*SHARED_STEPS, *TAIL_STEPS[pipeline])}

    def step(name: str, **kwargs: Any) -> dsl.PipelineTask:
        task = components[name](**kwargs)
        configure_task(task, name, settings, model)
        return task

    def train_and_evaluate(config_json: Any, data_uri: Any, data_digest: Any) -> tuple[Any, Any]:
        """The shared steps; returns the prepared data and the evaluate task."""
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
        return prepared, evaluated

    def register_and_deploy(
        config_json: Any, model_dir: Any, canary_weight: Any, deploy_if: Any = None
    ) -> None:
        """Publish the model folder, then deploy it as the canary (when `deploy_if` holds)."""
        registered = step("register", config_json=config_json, model=model_dir)

        def deploy() -> None:
            step(
                "deploy-canary",
                config_json=config_json,
                version=registered.outputs["Output"],
                weight=canary_weight,
            )

        if deploy_if is None:
            deploy()
            return
        with dsl.If(deploy_if == True, name="deploy-requested"):  # noqa: E712
            deploy()

    decorate = dsl.pipeline(
        name=PIPELINE_NAMES[pipeline], description=DESCRIPTIONS[pipeline].format(model=model)
    )
    if pipeline == "training":

        @decorate
        def training(
            config_json: str,
            data_uri: str,
            data_digest: str = "",
            deploy_canary: bool = False,
            canary_weight: int = 10,
        ) -> None:
            _, evaluated = train_and_evaluate(config_json, data_uri, data_digest)
            with dsl.If(evaluated.outputs["Output"] != "", name="candidate-selected"):
                register_and_deploy(
                    config_json, evaluated.outputs["model"], canary_weight, deploy_canary
                )

        return training

    @decorate
    def retraining(
        config_json: str,
        data_uri: str,
        data_digest: str = "",
        canary_weight: int = 10,
    ) -> None:
        prepared, evaluated = train_and_evaluate(config_json, data_uri, data_digest)
        with dsl.If(evaluated.outputs["Output"] != "", name="candidate-selected"):
            compared = step(
                "compare-champion",
                config_json=config_json,
                prepared=prepared,
                model=evaluated.outputs["model"],
            )
            with dsl.If(compared.outputs["Output"] == True, name="beats-champion"):  # noqa: E712
                register_and_deploy(config_json, evaluated.outputs["model"], canary_weight)

    return retraining
