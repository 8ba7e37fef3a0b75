"""The project config: one typed, validated YAML file that drives the whole lifecycle.

Load it once at the entry point with :func:`load_config` and pass the object down; nothing below
the entry point reads files or environment variables for settings. Every model forbids unknown
keys, and :func:`load_config` turns pydantic's errors into messages that name the key, the file
and the closest valid spelling.

One module per section (`data`, `train`, `evaluate`, `features`, `registry`, `serving`, `stack`,
`drift`, `monitor`, `pipelines`, `promotion`), the whole in `project`, reading in `loading`.
The package imports only pydantic and PyYAML, so it loads in every runtime environment.
"""

from __future__ import annotations

from mainsail.config.base import ConfigError, ProblemType, StrictModel
from mainsail.config.loading import (
    config_from_json,
    config_to_json,
    format_validation_error,
    load_config,
    parse_config,
)
from mainsail.config.project import ProjectConfig

__all__ = [
    "ConfigError",
    "ProblemType",
    "ProjectConfig",
    "StrictModel",
    "config_from_json",
    "config_to_json",
    "format_validation_error",
    "load_config",
    "parse_config",
]
