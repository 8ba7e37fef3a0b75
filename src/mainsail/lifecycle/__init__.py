"""The lifecycle, sequenced in one place for `mainsail run` and for the kfp steps.

- `data`: load and validate → split → prepare (the data stage);
- `training`: tune → fit the candidates;
- `evaluation`: cross-validate → test-set selection → model folder; compare with the champion;
- `run`: the local run (`mainsail run`): every stage in one process, one run folder;
- `lineage`: what data, config, code and libraries produced a run.

The kfp components call `mainsail.pipeline.steps`, which load their inputs, make one call into
this package and save the outputs, so a pipeline run and a local run decide identically.
"""
