"""Feast bridge: sources, feature views, point-in-time training sets, online lookup.

Import the submodule you need; this package imports nothing heavy, so every env can load it:

- `layout` (pure): the repository plan derived from the project config.
- `sources`: parquet sources of the feature views, written from the dataset frame.
- `definitions`, `store`, `online`, `cli` (pipeline env, Feast): apply, materialize,
  `training_set`, `SdkLookup`.
- `freshness` and `http` (stdlib + httpx: also the serving env): `HttpLookup`, the
  freshness rules and the `FeatureVectors` result.
- `metrics` (prometheus_client): `FeatureMetrics`.
- `server`: run `feast serve` as a child process.
"""
