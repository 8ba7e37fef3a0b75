"""Kubeflow Pipelines: the steps the components call, how steps hand over their results, the
kfp.local and KFP runner, and Ray work on KubeRay.

- `steps`: one function per component: load inputs, one `mainsail.lifecycle` call, save outputs;
- `handover`: each lifecycle result as files in a step's artifact, and back;
- `runner`: compile (pipelines/build.py), run with kfp.local, submit with kfp.Client;
- `ray_jobs`: a step's Ray work on local Ray or as a KubeRay job.

kfp and Ray are imported inside functions, so importing this package costs nothing.
"""
