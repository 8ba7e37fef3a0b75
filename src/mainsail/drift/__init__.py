"""Drift monitoring of served traffic: the alibi-detect sidecar and the feed that serving uses.

* :mod:`mainsail.drift.client` — `DriftFeed`, standard library only (imported by serving);
* :mod:`mainsail.drift.server` — the sidecar HTTP service (drift env: alibi-detect, numpy<2);
* `python -m mainsail.drift serve --config CONFIG` — run the sidecar.

Nothing heavy is imported here, so `import mainsail.drift` works in every environment.
"""
