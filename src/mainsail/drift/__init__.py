"""Drift monitoring of served traffic: the alibi-detect sidecar and the feed that serving uses.

* :mod:`mainsail.drift.client` — `LoopDriftFeed` (serving, on its event loop) and `DriftFeed`
  (a thread of its own, for everything else); standard library only;
* :mod:`mainsail.drift.server` — the sidecar HTTP service (drift env: alibi-detect, numpy<2);
* `python -m mainsail.drift serve --config CONFIG` — run the sidecar.

Nothing heavy is imported here, so `import mainsail.drift` works in every environment.
"""
