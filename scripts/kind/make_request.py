"""Print an Open Inference Protocol (V2) request with rows of the synthetic churn data.

Used by scripts/kind/smoke.sh: `python make_request.py --rows 200 --drift 0.8 > request.json`.
One input per feature column (MLServer's pandas codec), no target or timestamps.
"""

from __future__ import annotations

import argparse
import json

from mainsail.data.synthetic import generate_churn

DROP = ("churned", "event_timestamp", "label_timestamp")


def main() -> None:
    """Write the request JSON to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--drift", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    frame = generate_churn(rows=args.rows, drift=args.drift, seed=args.seed)
    frame = frame.drop(columns=list(DROP))
    inputs = []
    for name in frame.columns:
        col = frame[name]
        numeric = col.dtype.kind in "fiub"
        data = [None if v != v else v for v in col.astype(float if numeric else str).tolist()]
        inputs.append(
            {
                "name": name,
                "shape": [len(col), 1],
                "datatype": "FP64" if numeric else "BYTES",
                "data": data,
            }
        )
    print(json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}))


if __name__ == "__main__":
    main()
