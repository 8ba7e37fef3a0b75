"""The router's V2 request check names the field that is wrong."""

from __future__ import annotations

import json

import pytest

from mainsail.serving.router.v2 import V2RequestError, parse_infer_request, sticky_value


def _req(**tensor: object) -> bytes:
    base = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}
    base.update(tensor)
    return json.dumps({"inputs": [base]}).encode()


def test_valid_request_parses_including_nested_data() -> None:
    payload = parse_infer_request(_req(data=[[1.0, 2]]))
    assert payload["inputs"][0]["name"] == "x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "request body is empty"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1]", "must be a JSON object, got list"),
        (b'{"inputs": []}', "inputs: expected a non-empty list"),
        (b'{"inputs": [1]}', "inputs[0]: expected a JSON object"),
        (b'{"inputs": [{}]}', "inputs[0].name: expected a non-empty string"),
        (b'{"inputs": [], "foo": 1}', "unknown top-level field(s) ['foo']"),
        (_req(shape=[1, -2]), "inputs[0] ('x').shape: expected a non-empty list of integers >= 0"),
        (_req(shape="12"), "('x').shape"),
        (_req(datatype="FLOAT"), "('x').datatype: expected one of"),
        (_req(datatype=[]), "('x').datatype: expected one of"),  # found by the fuzz test
        (_req(datatype={"a": 1}), "('x').datatype: expected one of"),
        (_req(data=[1.0]), "shape [1, 2] needs 2 elements, got 1"),
        (_req(data=[1.0, "a"]), "FP32 needs numbers, got 'a'"),
        (_req(datatype="INT8", data=[1, 300]), "INT8 needs integers in [-128, 127], got 300"),
        (_req(datatype="BOOL", data=[True, 1]), "BOOL needs booleans, got 1"),
        (_req(datatype="BYTES", data=["a", 2]), "BYTES needs strings, got 2"),
        (_req(shape=[100000, 100000]), "exceed the limit"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', "('x').data: required"),
        (b'{"id": 5, "inputs": []}', "id: expected a string"),
        (b"[" * 100000, "nested too deeply"),
    ],
)
def test_malformed_requests_are_refused_with_the_field_named(body: bytes, message: str) -> None:
    with pytest.raises(V2RequestError) as err:
        parse_infer_request(body)
    assert message in str(err.value)


def test_duplicate_input_names_are_refused() -> None:
    tensor = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}
    with pytest.raises(V2RequestError, match=r"inputs\[1\].name: duplicate input 'x'"):
        parse_infer_request(json.dumps({"inputs": [tensor, tensor]}).encode())


def test_sticky_value_prefers_parameters_then_input() -> None:
    payload = {
        "parameters": {"customer_id": 42},
        "inputs": [{"name": "customer_id", "data": [["c9"]]}],
    }
    assert sticky_value(payload, "customer_id") == "42"
    del payload["parameters"]
    assert sticky_value(payload, "customer_id") == "c9"
    assert sticky_value(payload, "other") is None
