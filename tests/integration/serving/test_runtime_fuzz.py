"""Fuzz: 2,000 malformed V2 requests against our runtime in a real MLServer: never a 5xx, the
process stays up, and its memory stays flat."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mainsail.data.schema import FeatureSchema
from mainsail.serving.mlserver import MLServerProcess
from tests.support.serving import churn_frame, v2_inputs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 2000
DATATYPES = [
    "BOOL",
    "UINT8",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
    "STRING",
    "",
    "fp64",
]

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutations(valid: list[dict[str, Any]], names: list[str]) -> st.SearchStrategy[Any]:
    """A valid one-row request with one to three things broken."""
    field_edit = st.one_of(
        st.tuples(st.just("name"), st.one_of(st.sampled_from(names), st.text(max_size=15))),
        st.tuples(
            st.just("shape"),
            st.one_of(
                st.lists(st.integers(min_value=-3, max_value=10**12), max_size=4), json_value
            ),
        ),
        st.tuples(st.just("datatype"), st.one_of(st.sampled_from(DATATYPES), json_value)),
        st.tuples(st.just("data"), json_value),
        st.tuples(st.just("parameters"), json_value),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        inputs = [dict(i) for i in valid]
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            action = draw(st.sampled_from(["edit", "edit", "edit", "drop", "dup", "extra"]))
            idx = draw(st.integers(min_value=0, max_value=len(inputs) - 1))
            if action == "edit":
                key, value = draw(field_edit)
                inputs[idx][key] = value
            elif action == "drop" and len(inputs) > 1:
                inputs.pop(idx)
            elif action == "dup":
                inputs.append(dict(inputs[idx]))
            else:
                inputs.append(
                    {
                        "name": draw(st.text(max_size=8)),
                        "shape": [1],
                        "datatype": "FP64",
                        "data": [1.0],
                    }
                )
        body: dict[str, Any] = {"inputs": inputs}
        if draw(st.booleans()):
            body[draw(st.sampled_from(["outputs", "parameters", "id"]))] = draw(json_value)
        return body

    return build()


def test_malformed_requests_never_5xx_and_memory_stays_flat(
    mlserver: MLServerProcess, sealed_artifact: Any
) -> None:
    schema = FeatureSchema.load(sealed_artifact / "feature_schema.json")
    valid = v2_inputs(churn_frame(400, seed=5).head(1).fillna({"payment_method": "card"}), schema)
    assert mlserver.proc is not None
    process = psutil.Process(mlserver.proc.pid)
    client = httpx.Client(base_url=mlserver.url, timeout=15)
    url = "/v2/models/churn/infer"
    statuses: dict[int, int] = {}
    server_errors: list[str] = []

    def send(payload: Any, raw: bool = False) -> None:
        content = payload if raw else json.dumps(payload).encode()
        response = client.post(url, content=content, headers={"content-type": "application/json"})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            server_errors.append(
                f"{response.status_code} {response.text[:200]} <- {content[:300]!r}"
            )

    requests = st.one_of(
        _mutations(valid, schema.names).map(lambda b: (b, False)),
        json_value.map(lambda b: (b, False)),
        st.binary(max_size=64).map(lambda b: (b, True)),
    )

    # Warm up allocator pools and caches, then take the baseline.
    for _ in range(100):
        send({"inputs": valid})
    rss_before = process.memory_info().rss

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def fuzz(item: tuple[Any, bool]) -> None:
        send(*item)

    fuzz()
    for _ in range(100):
        send({"inputs": valid})
    rss_after = process.memory_info().rss
    client.close()

    total = sum(statuses.values())
    print(f"statuses {sorted(statuses.items())}, rss {rss_before >> 20} -> {rss_after >> 20} MiB")
    assert total >= EXAMPLES + 200
    assert not server_errors, server_errors[:5]
    assert mlserver.alive()
    # Hundreds reached our validation, not just MLServer's parsing. The share moves between
    # runs (488 to 531 of 2000 seen, derandomized), so the bar is a fifth, not a quarter.
    assert statuses.get(400, 0) > EXAMPLES // 5
    assert rss_after - rss_before < 40 * 2**20
