"""Structural checks of Open Inference Protocol (V2) REST infer requests.

The router rejects a malformed request itself, with a 400 that names the field, instead of
passing it to a model server that may answer it with a 500 (MLServer's stock runtimes do).
Only the protocol's structure is checked here; feature names, dtypes and ranges are the serving
runtime's job, since only it knows the model's schema.
"""

from __future__ import annotations

import math
from typing import Any

from mainsail.core.limits import LimitError, check_request_id, load_json, shown

# V2 tensor datatypes and the Python types their JSON elements may take.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
DATATYPES = frozenset({"BOOL", "BYTES", *_INT_RANGES, *_FLOAT_TYPES})

MAX_ELEMENTS = 10_000_000
"""Largest tensor (elements) accepted, so a tiny body cannot announce a huge shape."""


class V2RequestError(ValueError):
    """A request that is not a valid V2 infer request; the message names the field."""


#: Top-level fields of a V2 infer request; `model_name` / `model_version` are what the kserve
#: client (and gRPC's ModelInferRequest as JSON) adds, and MLServer accepts.
TOP_LEVEL = frozenset({"id", "parameters", "inputs", "outputs", "model_name", "model_version"})


def parse_infer_request(body: bytes) -> dict[str, Any]:
    """Parse and check a V2 infer request body; raise :class:`V2RequestError` when malformed.

    The JSON is depth-checked before it is parsed (`mainsail.core.limits`), and `id` must be a
    valid request id: MLServer copies it into response headers."""
    if not body:
        raise V2RequestError("request body is empty; expected a V2 infer request (JSON object)")
    try:
        payload = load_json(body, what="request body")
    except LimitError as err:
        raise V2RequestError(str(err)) from None
    return check_infer_payload(payload)


def check_infer_payload(payload: Any) -> dict[str, Any]:
    """Check a parsed V2 infer request (see :func:`parse_infer_request`)."""
    if not isinstance(payload, dict):
        raise V2RequestError(f"request body must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - TOP_LEVEL)
    if unknown:
        raise V2RequestError(f"unknown top-level field(s) {[u[:40] for u in unknown[:5]]}")
    for name in ("model_name", "model_version"):
        if name in payload and not isinstance(payload[name], str | None):
            raise V2RequestError(f"{name}: expected a string")
    if payload.get("id") is not None:
        try:
            check_request_id(payload["id"], "id")
        except LimitError as err:
            raise V2RequestError(str(err)) from None
    if "parameters" in payload and not isinstance(payload["parameters"], dict):
        raise V2RequestError("parameters: expected a JSON object")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2RequestError("inputs: expected a non-empty list of tensors")
    names: set[str] = set()
    for i, tensor in enumerate(inputs):
        _check_tensor(tensor, f"inputs[{i}]")
        if tensor["name"] in names:
            raise V2RequestError(f"inputs[{i}].name: duplicate input {shown(tensor['name'])}")
        names.add(tensor["name"])
    outputs = payload.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise V2RequestError("outputs: expected a list")
        for i, out in enumerate(outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise V2RequestError(f"outputs[{i}]: expected an object with a string name")
    return payload


def _check_tensor(tensor: Any, where: str) -> None:
    if not isinstance(tensor, dict):
        raise V2RequestError(f"{where}: expected a JSON object")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise V2RequestError(f"{where}.name: expected a non-empty string")
    where = f"{where} ({shown(name)})"
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise V2RequestError(f"{where}.shape: expected a non-empty list of integers >= 0")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise V2RequestError(
            f"{where}.datatype: expected one of {sorted(DATATYPES)}, got {shown(datatype)}"
        )
    expected = math.prod(shape)
    if expected > MAX_ELEMENTS:
        raise V2RequestError(f"{where}.shape: {expected} elements exceed the limit {MAX_ELEMENTS}")
    if "data" not in tensor:
        raise V2RequestError(f"{where}.data: required")
    if "parameters" in tensor and not isinstance(tensor["parameters"], dict):
        raise V2RequestError(f"{where}.parameters: expected a JSON object")
    data = tensor["data"]
    if isinstance(data, list) and len(data) <= expected and not any(type(x) is list for x in data):
        flat = data  # already flat (the usual V2 JSON): no element-by-element copy
    else:
        flat = []
        _flatten(data, flat, expected, where)
    if len(flat) != expected:
        raise V2RequestError(
            f"{where}.data: shape {shape} needs {expected} elements, got {len(flat)}"
        )
    _check_elements(flat, datatype, where)


def _flatten(data: Any, out: list[Any], limit: int, where: str) -> None:
    # Iterative: the body's depth is bounded, but a stack of lists costs no recursion anyway.
    stack = [iter([data])]
    while stack:
        item = next(stack[-1], _OK)
        if item is _OK:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            out.append(item)
            if len(out) > limit:
                raise V2RequestError(f"{where}.data: more elements than the shape allows ({limit})")


def _check_elements(flat: list[Any], datatype: str, where: str) -> None:
    # `null` marks a missing value (the mainsail runtime imputes it, or answers 400 for a feature
    # that may not be missing): the router lets it through for the model server to judge.
    if datatype in _FLOAT_TYPES and all(type(x) is float for x in flat):
        return  # the common case, in one pass
    flat = [x for x in flat if x is not None]
    if datatype == "BOOL":
        bad = next((x for x in flat if not isinstance(x, bool)), _OK)
        kind = "booleans"
    elif datatype == "BYTES":
        bad = next((x for x in flat if not isinstance(x, str)), _OK)
        kind = "strings"
    elif datatype in _FLOAT_TYPES:
        bad = next((x for x in flat if not isinstance(x, int | float) or isinstance(x, bool)), _OK)
        kind = "numbers"
    else:
        low, high = _INT_RANGES[datatype]
        bad = next(
            (
                x
                for x in flat
                if not isinstance(x, int) or isinstance(x, bool) or not low <= x <= high
            ),
            _OK,
        )
        kind = f"integers in [{low}, {high}]"
    if bad is not _OK:
        raise V2RequestError(f"{where}.data: {datatype} needs {kind}, got {shown(bad)}")


_OK = object()


def sticky_value(payload: dict[str, Any], key: str) -> str | None:
    """The value that pins a request to a variant: parameter `key`, else input `key`'s first
    element; None when the request has neither."""
    params = payload.get("parameters")
    if isinstance(params, dict) and key in params:
        return str(params[key])
    for tensor in payload.get("inputs", ()):
        if tensor.get("name") == key:
            data = tensor.get("data")
            while isinstance(data, list) and data:
                data = data[0]
            return None if isinstance(data, list) else str(data)
    return None
