"""Feast definitions of this repository, generated from the Mainsail project config.

`feast apply` (run in this folder) imports this module and registers every Feast object
found at module level. Nothing here is hand-written per dataset: entity, file sources,
feature views with TTLs, the on-demand view and the versioned FeatureService all come from
`mainsail.features.definitions.build_definitions`, driven by the config named in the
MAINSAIL_CONFIG environment variable (default: ../configs/churn.yaml).

The usual path is `mainsail features apply`, which also writes the parquet sources under
data/ and this folder's feature_store.yaml from the same config.
"""

from __future__ import annotations

import os
from pathlib import Path

from mainsail.config import load_config
from mainsail.features.definitions import build_definitions

REPO_DIR = Path(__file__).resolve().parent
CONFIG = Path(os.environ.get("MAINSAIL_CONFIG", REPO_DIR.parent / "configs" / "churn.yaml"))

# Feast collects objects by scanning module attributes, so each one gets a module-level name.
for _obj in build_definitions(load_config(CONFIG), REPO_DIR):
    globals()[f"{type(_obj).__name__}_{_obj.name}"] = _obj
