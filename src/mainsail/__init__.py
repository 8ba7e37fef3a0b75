"""Mainsail: Kubernetes-native MLOps for tabular models.

Packages only (see README.md, "Layout"): `config` and `core` at the bottom, the libraries
(`data`, `features`, `train`, `tune`, `evaluate`, `registry`, `serving`, `drift`, `feedback`,
`promotion`, `retrain`, `monitor`, `deploy`, `stack`), `lifecycle` sequencing them for
`mainsail run` and for the kfp steps in `pipeline`, and `demos` and `cli` on top. No import
circle between modules or packages (tests/unit/test_import_graph.py).
"""
