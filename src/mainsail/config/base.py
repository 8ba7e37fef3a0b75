"""What every config section shares: the strict base model, the error type, suggestions."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors; values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


ProblemType = Literal["classification", "regression"]


class ConfigError(ValueError):
    """A config file that cannot be used; the message says which key and why."""


def suggest(word: str, choices: Any) -> str:
    """`; did you mean 'x'?` for the closest of `choices`, or nothing."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""
