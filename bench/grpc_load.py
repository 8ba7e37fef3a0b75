"""A closed-loop gRPC load for MLServer's V2 endpoint: `--concurrency` calls in flight, each
sending the next as soon as its answer arrived, for `--seconds`; prints req/s, p50/p99 (ms) and
errors as one JSON line. Runs in the serving venv (MLServer's generated stubs and grpcio).

    .venv/serving/bin/python bench/grpc_load.py HOST:PORT MODEL --rows 1 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def load(
    target: str, model: str, rows: list[list[float]], name: str, seconds: float, concurrency: int
) -> dict[str, float | int]:
    import grpc
    from mlserver.grpc import dataplane_pb2 as pb
    from mlserver.grpc import dataplane_pb2_grpc as stubs

    flat = [x for row in rows for x in row]
    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=name,
                datatype="FP64",
                shape=[len(rows), len(rows[0])],
                contents=pb.InferTensorContents(fp64_contents=flat),
            )
        ],
    )
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = stubs.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(request)  # warm
        end = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    await stub.ModelInfer(request)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000.0)

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[max(0, min(len(latencies) - 1, round(q * (len(latencies) - 1))))]

    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.5), 3),
        "p99_ms": round(pct(0.99), 3),
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("model")
    parser.add_argument("--rows-json", required=True, help="the request's rows, as JSON")
    parser.add_argument("--input-name", default="x")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = json.loads(args.rows_json)
    result = asyncio.run(
        load(args.target, args.model, rows, args.input_name, args.seconds, args.concurrency)
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
