"""Compact JSON encoders for the serving path, each built once (standard library; orjson where
the env has it).

Two callers: telemetry lines and spans (`core/spans.py`, for every span and log line) and the
drift feed's rows (`drift/client.py`, for every served request). `json.dumps` with options
builds a new `JSONEncoder`, and with it a new C encoder, on every call: most of the cost of a
small object. :func:`stdlib_encoder` makes that C encoder once. orjson (MLServer's own
dependency, pinned in every runtime env) is faster still; :data:`orjson` is None where the env
lacks it, and each caller keeps json's encoder as its fallback.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any

try:  # MLServer's own dependency, pinned in every runtime env; json's C encoder otherwise
    import orjson
except ImportError:  # pragma: no cover - exercised by the tests in a fresh interpreter
    orjson = None  # type: ignore[assignment]

__all__ = ["orjson", "stdlib_encoder"]


def stdlib_encoder(default: Callable[[Any], Any], *, allow_nan: bool) -> Callable[[Any], str]:
    """`json.dumps(value, default=default, separators=(",", ":"), allow_nan=allow_nan)`, ASCII
    output, with one C encoder made once. Values must hold no cycles: the circular-reference
    check is off (what the callers encode is flat or a tree they built)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the _json accelerator
        return json.JSONEncoder(default=default, separators=(",", ":"), allow_nan=allow_nan).encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
    # allow_nan): markers=None turns the circular-reference check off.
    chunks = make(
        None, default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, allow_nan
    )
    return lambda value: "".join(chunks(value, 0))
