"""The kserve V2 clients (REST and gRPC) against one server: run by the interop tests as
`.venv/clients/bin/python tests/support/kserve_client.py REST_URL [GRPC_ADDRESS] MODEL` in the
clients env (kserve's pins cannot share the pipeline env). It uses the clients' defaults
(binary tensor data, NaN for a missing value) and prints one JSON line of what it saw.
Standard library, numpy and kserve only: nothing of Mainsail is imported.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb


def _inputs(metadata: list[dict[str, Any]], rows: int) -> list[InferInput]:
    """One input per declared feature, `rows` rows of plausible values (a NaN in each numeric
    feature's first row: the clients' way to say missing)."""
    out = []
    for spec in metadata:
        name, datatype = spec["name"], spec["datatype"]
        tensor = InferInput(name, [rows], datatype)
        params = spec.get("parameters") or {}
        if datatype == "BYTES":
            categories = params.get("categories") or ["a"]
            values = np.array([categories[i % len(categories)] for i in range(rows)], dtype=object)
        elif datatype == "BOOL":
            values = np.array([i % 2 == 0 for i in range(rows)], dtype=bool)
        else:
            values = np.linspace(1.0, 5.0, rows)
            if params.get("nullable"):
                values[0] = np.nan
        tensor.set_data_from_numpy(values)  # binary_data=True: the default
        out.append(tensor)
    return out


def _values(output: Any) -> list[Any]:
    values = output.as_numpy().tolist()
    return [v.decode() if isinstance(v, bytes) else v for v in values]


async def main(rest: str, grpc_address: str | None, model: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        seen["rest_live"] = await client.is_server_live(rest)
        seen["rest_ready"] = await client.is_server_ready(rest)
        seen["rest_model_ready"] = await client.is_model_ready(rest, model)
        meta = (await client._client.get(f"{rest}/v2/models/{model}")).json()
        seen["rest_metadata_inputs"] = len(meta.get("inputs", []))
        request = InferRequest(model, _inputs(meta["inputs"], 3), request_id="kserve-rest-1")
        result = await client.infer(rest, request, model_name=model)
        seen["rest_outputs"] = {o.name: _values(o) for o in result.outputs}
    finally:
        await client.close()
    if grpc_address:
        gclient = InferenceGRPCClient(grpc_address, timeout=30)
        try:
            seen["grpc_live"] = await gclient.is_server_live()
            seen["grpc_model_ready"] = await gclient.is_model_ready(model)
            gmeta = await gclient._client_stub.ModelMetadata(pb.ModelMetadataRequest(name=model))
            # gRPC parameters cannot hold a list: the categories come from the REST metadata.
            rest_params = {m["name"]: m.get("parameters") or {} for m in meta["inputs"]}
            specs = [
                {"name": t.name, "datatype": t.datatype, "parameters": rest_params.get(t.name)}
                for t in gmeta.inputs
            ]
            seen["grpc_metadata_inputs"] = len(specs)
            request = InferRequest(model, _inputs(specs, 3), request_id="kserve-grpc-1")
            result = await gclient.infer(request)
            seen["grpc_outputs"] = {o.name: _values(o) for o in result.outputs}
            seen["grpc_parameters"] = {k: str(v) for k, v in (result.parameters or {}).items()}
        finally:
            await gclient.close()
    return seen


if __name__ == "__main__":
    args = sys.argv[1:]
    rest_url, grpc_addr, name = (
        (args + [""] * 3)[:3] if len(args) == 3 else (args[0], None, args[1])
    )
    print(json.dumps(asyncio.run(main(rest_url, grpc_addr or None, name)), default=str))
