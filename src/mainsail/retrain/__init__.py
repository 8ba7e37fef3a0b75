"""The retrain trigger: Alertmanager's webhook turned into retraining runs.

- `trigger`: de-duplication per incident, cool-down per model, persisted state;
- `actions`: what a run is (a local command, or a Kubeflow Pipelines run);
- `rayjob`: a run as a KubeRay RayJob on the cluster, created through the Kubernetes API;
- `server`: the HTTP service (`mainsail trigger serve`).
"""
