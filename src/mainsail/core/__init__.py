"""Building blocks that every runtime environment imports (standard library only).

- `naming`: names, labels, ports and metric names shared with the Helm chart;
- `files`: sha256 of a file, JSON-safe values, atomic JSON writes;
- `ports`: free TCP ports for local processes;
- `child`: a child process with a log file and an HTTP readiness check;
- `http`: the base of the small JSON HTTP services (drift sidecar, retrain trigger).
"""
