"""Helpers shared by the tests and the benchmarks (`from tests.support.<module> import ...`).

- `configs`: project configs (data-stage, small model settings, tiny pipeline overrides);
- `serving`: a complete churn model artifact, V2 request helpers;
- `router`: real HTTP servers for router tests (uvicorn, lean router, a V2 upstream);
- `kube`: a recorded stand-in for the Kubernetes API's custom-object endpoints;
- `stack`: local-stack configs on free ports with iris models;
- `feast`: churn frames with controlled timestamps and Feast configs (SQLite, Redis);
- `encoders`: run a snippet with orjson and without it (the two encoders write the same).
"""
