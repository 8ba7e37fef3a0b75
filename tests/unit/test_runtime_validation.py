"""Request validation of the serving runtime: every bad input names the field at fault."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mainsail.data.schema import FeatureSchema, FeatureSpec
from mainsail.serving.validation import EntityRequest, RequestError, TensorIn, decode

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="tenure", kind="numeric", dtype="int64", nullable=False),
        FeatureSpec(name="charges", kind="numeric", dtype="float64", nullable=True),
        FeatureSpec(
            name="contract",
            kind="categorical",
            dtype="string",
            nullable=False,
            categories=["month-to-month", "one-year", "two-year"],
        ),
        FeatureSpec(name="paperless", kind="boolean", dtype="boolean", nullable=True),
    ],
    target="churned",
    problem_type="classification",
    classes=["0", "1"],
    entity_key="customer_id",
)


def _valid(n: int = 2) -> dict[str, TensorIn]:
    return {
        "tenure": TensorIn("tenure", [n], "INT64", list(range(1, n + 1))),
        "charges": TensorIn("charges", [n, 1], "FP64", [[10.5]] + [[None]] * (n - 1)),
        "contract": TensorIn("contract", [n], "BYTES", ["one-year"] + [b"two-year"] * (n - 1)),
        "paperless": TensorIn("paperless", [n], "BOOL", [True] + [None] * (n - 1)),
    }


def _with(**changes: Any) -> list[TensorIn]:
    inputs = _valid()
    for name, value in changes.items():
        if value is None:
            del inputs[name]
        else:
            inputs[name] = value
    return list(inputs.values())


def test_feed_values_are_the_checked_values_in_schema_order() -> None:
    values: list[list[Any]] = []
    frame = decode(list(reversed(_valid().values())), SCHEMA, feed_values=values)
    assert isinstance(frame, pd.DataFrame)
    assert len(values) == len(SCHEMA.names)
    tenure, charges, contract, paperless = values
    assert tenure == [1.0, 2.0] and charges[0] == 10.5 and math.isnan(charges[1])
    assert contract == ["one-year", "two-year"]  # bytes decoded, as in the frame
    assert paperless[0] is True and paperless[1] is pd.NA
    # Plain Python values (what the drift feed encodes without a fallback), not numpy ones.
    assert all(type(v) in (float, str, bool) for v in (*tenure, *charges, *contract, True))


def test_valid_request_gives_typed_frame_in_schema_order() -> None:
    frame = decode(list(reversed(_valid().values())), SCHEMA)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == SCHEMA.names
    assert frame["tenure"].dtype == "int64"
    assert frame["charges"].tolist()[0] == 10.5 and math.isnan(frame["charges"].tolist()[1])
    assert frame["contract"].dtype == "string"
    assert frame["contract"].tolist() == ["one-year", "two-year"]
    assert frame["paperless"].dtype == "boolean"
    assert frame["paperless"].isna().tolist() == [False, True]


@pytest.mark.parametrize(
    ("inputs", "field", "pattern"),
    [
        (_with(tenure=TensorIn("tenur", [2], "INT64", [1, 2])), "tenur", "did you mean 'tenure'"),
        (_with(paperless=None), "paperless", r"missing feature input\(s\) 'paperless'"),
        (_with(tenure=TensorIn("tenure", [2, 3], "INT64", [1] * 6)), "tenure", r"shape \[2, 3\]"),
        (
            _with(paperless=TensorIn("paperless", [3], "BOOL", [True] * 3)),
            "paperless",
            "has 3 rows but 'tenure' has 2",
        ),
        (_with(tenure=TensorIn("tenure", [2], "INT64", [1])), "tenure", "needs 2 values, got 1"),
        (_with(tenure=TensorIn("tenure", [2], "BYTES", ["1", "2"])), "tenure", "datatype BYTES"),
        (_with(tenure=TensorIn("tenure", [2], "INT64", [1, None])), "tenure", "row 1 is missing"),
        (
            _with(charges=TensorIn("charges", [2], "FP64", [1.0, "x"])),
            "charges",
            "row 1 holds 'x'",
        ),
        (
            _with(charges=TensorIn("charges", [2], "FP64", [1.0, float("inf")])),
            "charges",
            "not a finite number",
        ),
        (
            _with(contract=TensorIn("contract", [2], "BYTES", ["one-year", "weekly"])),
            "contract",
            r"value 'weekly' is not a known category.*'month-to-month'",
        ),
        (
            _with(contract=TensorIn("contract", [2], "BYTES", ["one-year", 3])),
            "contract",
            "row 1 holds 3",
        ),
        (
            _with(contract=TensorIn("contract", [2], "BYTES", ["one-year", None])),
            "contract",
            "row 1 is missing",
        ),
        (
            _with(contract=TensorIn("contract", [2], "BYTES", ["one-year", b"\xff"])),
            "contract",
            "not valid UTF-8",
        ),
        (
            _with(paperless=TensorIn("paperless", [2], "BOOL", [True, "yes"])),
            "paperless",
            "is boolean",
        ),
        (_with(tenure=TensorIn("tenure", [0], "INT64", [])), "tenure", "at least 1"),
        (
            [*_valid().values(), TensorIn("tenure", [2], "INT64", [1, 2])],
            "tenure",
            "more than once",
        ),
    ],
)
def test_bad_input_names_the_field(inputs: list[TensorIn], field: str, pattern: str) -> None:
    with pytest.raises(RequestError, match=pattern) as info:
        decode(inputs, SCHEMA)
    assert info.value.field == field
    assert repr(field) in str(info.value)


def test_empty_request_lists_the_expected_inputs() -> None:
    with pytest.raises(RequestError, match=r"no inputs.*'tenure'.*entity key 'customer_id'"):
        decode([], SCHEMA)


def test_row_limit_is_enforced() -> None:
    inputs = list(_valid(11).values())
    assert isinstance(decode(inputs, SCHEMA, max_rows=11), pd.DataFrame)
    with pytest.raises(RequestError, match=r"'tenure' has 11 rows; .* at most 10 per request"):
        decode(inputs, SCHEMA, max_rows=10)


def test_entity_key_request_is_recognised() -> None:
    got = decode([TensorIn("customer_id", [2], "BYTES", [b"C1", "C2"])], SCHEMA)
    assert got == EntityRequest("customer_id", ["C1", "C2"])


def test_entity_key_with_wrong_type_is_rejected() -> None:
    with pytest.raises(RequestError, match="entity key"):
        decode([TensorIn("customer_id", [1], "FP64", [1.5])], SCHEMA)


def test_integral_floats_keep_the_training_integer_dtype() -> None:
    inputs = _with(tenure=TensorIn("tenure", [2], "FP64", [3.0, 4.0]))
    frame = decode(inputs, SCHEMA)
    assert isinstance(frame, pd.DataFrame)
    assert frame["tenure"].dtype == "int64"


NUMERIC = FeatureSchema(
    features=[
        FeatureSpec(name="a", kind="numeric", dtype="float64", nullable=False),
        FeatureSpec(name="b", kind="numeric", dtype="int64", nullable=True),
    ],
    target="y",
    problem_type="regression",
)


def test_matrix_layout_for_numeric_models() -> None:
    t = TensorIn("features", [2, 2], "FP64", [[1.5, 2.0], [3.0, None]], {"columns": ["a", "b"]})
    matrix = decode([t], NUMERIC, as_matrix=True)
    assert matrix.tolist()[0] == [1.5, 2.0]  # type: ignore[union-attr]
    frame = decode([t], NUMERIC)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["a", "b"] and math.isnan(frame["b"].iloc[1])
    # Rows as lists and as plain values mix: the values are read in order either way.
    mixed = TensorIn("features", [3, 2], "FP64", [[1.5, 2.0], 3.0, 4.0, [5.0, 6.0]])
    assert decode([mixed], NUMERIC, as_matrix=True).tolist() == [  # type: ignore[union-attr]
        [1.5, 2.0],
        [3.0, 4.0],
        [5.0, 6.0],
    ]


@pytest.mark.parametrize(
    ("tensor", "schema", "pattern"),
    [
        (TensorIn("features", [1, 3], "FP64", [1, 2, 3]), NUMERIC, r"expected \[rows, 2\]"),
        (
            TensorIn("features", [1, 2], "FP64", [1, 2], {"columns": ["b", "a"]}),
            NUMERIC,
            "must be",
        ),
        (TensorIn("features", [1, 2], "FP64", [None, 2]), NUMERIC, "'a': row 0 is missing"),
        # an infinity in a nullable column is refused too (NaN is allowed there, inf never)
        (
            TensorIn("features", [2, 2], "FP64", [[1, None], [2, float("-inf")]]),
            NUMERIC,
            "'b': row 1 is not a finite number",
        ),
        (TensorIn("features", [1, 2], "BYTES", ["x", "y"]), NUMERIC, "datatype BYTES"),
        (TensorIn("features", [1, 4], "FP64", [1, 2, 3, 4]), SCHEMA, "all-numeric models"),
        # numpy would turn these into numbers; the fast path must send them to the checks
        (TensorIn("features", [1, 2], "FP64", [True, 2]), NUMERIC, r"'a' .* True \(bool\)"),
        (TensorIn("features", [1, 2], "FP64", ["1.5", 2]), NUMERIC, r"'a' .* '1.5' \(str\)"),
        (TensorIn("features", [2, 2], "FP64", [[1, 2], [3, [4]]]), NUMERIC, "nested too deeply"),
        (TensorIn("features", [2, 2], "FP64", [[1, 2], 3, [[4]]]), NUMERIC, "nested too deeply"),
    ],
)
def test_matrix_layout_errors(tensor: TensorIn, schema: FeatureSchema, pattern: str) -> None:
    with pytest.raises(RequestError, match=pattern):
        decode([tensor], schema)


def _in_serving_env(code: str, folder: Path) -> Any:
    """What a script run in the serving env (where MLServer, which the runtime imports, is
    installed) printed as JSON on its last line; `folder` is its argument."""
    python = Path(__file__).resolve().parents[2] / ".venv" / "serving" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", code, str(folder)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_model_skips_sklearns_finiteness_check_only_on_matrices_checked_finite(
    tmp_path: Path,
) -> None:
    # The runtime's decode has just checked a clean matrix; scikit-learn's own check of it cost
    # ~8 us of a 32-row request. A NaN (a nullable feature left empty) must still meet the
    # model's check: a model without an imputer refuses it (a 400) rather than scoring NaN as
    # a label. A real runtime loads a sealed folder and answers V2 requests, in the serving env
    # (where MLServer, which the runtime imports, is installed).
    code = """
import asyncio, json, sys
from pathlib import Path
import joblib, numpy as np, pandas as pd, sklearn
from mlserver.errors import MLServerError
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest
from sklearn.linear_model import LogisticRegression
from mainsail.registry.manifest import seal_folder
from mainsail.serving.runtime import MainsailRuntime, _finite_known

seen = []
class Spy(LogisticRegression):  # pickled as __main__.Spy: loaded back in this process
    def predict_proba(self, X):
        seen.append(sklearn.get_config()["assume_finite"])
        return super().predict_proba(X)

folder = Path(sys.argv[1])
X = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
joblib.dump(Spy().fit(X, ["no", "yes", "no", "yes"]), folder / "model.joblib")
features = [
    {"name": "a", "kind": "numeric", "dtype": "float64", "nullable": False},
    {"name": "b", "kind": "numeric", "dtype": "float64", "nullable": True},
]
schema = {"features": features, "target": "y", "problem_type": "classification"}
(folder / "feature_schema.json").write_text(json.dumps(schema))
seal_folder(folder, "spy", 1)

def body(rows):
    return InferenceRequest.model_validate(
        {"inputs": [{"name": "features", "shape": [len(rows), 2], "datatype": "FP64",
                     "data": rows}]}
    )

async def main():
    settings = ModelSettings(
        name="spy", implementation=MainsailRuntime, parameters=ModelParameters(uri=str(folder))
    )
    runtime = MainsailRuntime(settings)
    await runtime.load()
    assert runtime._numpy_fast, "the matrix path is what this test is about"
    seen.clear()  # (load's probe of the matrix path scored too)
    answer = await runtime.predict(body([[0.0, 1.0], [1.0, 0.0]]))
    refused = None
    try:
        await runtime.predict(body([[1.0, None]]))
    except MLServerError as err:
        refused = (err.status_code, str(err))
    frame = pd.DataFrame(X, columns=["a", "b"])
    with _finite_known(frame):
        frame_flag = sklearn.get_config()["assume_finite"]
    print(json.dumps({"seen": seen, "labels": answer.outputs[0].data.root,
                      "refused": refused, "frame": frame_flag}))

asyncio.run(main())
"""
    result = _in_serving_env(code, tmp_path)
    assert result["seen"] == [True, False]  # finite matrix: skipped; NaN matrix: checked
    assert result["labels"] == ["no", "yes"]
    status, message = result["refused"]
    assert status == 400 and "could not score the input" in message and "NaN" in message
    assert result["frame"] is False  # a DataFrame keeps scikit-learn's checks


def test_the_array_path_drops_fitted_column_names_only_when_scores_stay_the_same(
    tmp_path: Path,
) -> None:
    # A model fitted on a DataFrame and scored with the array path warns on every request
    # ("X does not have valid feature names"): ~8 us of a 32-row request to build and filter.
    # The runtime drops the names from the estimators inside, after the schema check, but only
    # when the probe still scores the same: a model that needs them keeps them.
    code = """
import asyncio, json, sys, warnings
from pathlib import Path
import joblib, numpy as np, pandas as pd
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from mainsail.registry.manifest import seal_folder
from mainsail.serving.runtime import MainsailRuntime

class NeedsNames(LogisticRegression):  # pickled as __main__.NeedsNames: loaded back here
    def predict_proba(self, X):
        if not hasattr(self, "feature_names_in_"):
            raise ValueError("fitted names are gone")
        return super().predict_proba(X)

root = Path(sys.argv[1])
frame = pd.DataFrame({"a": [0.0, 1.0, 0.0, 1.0, 0.2], "b": [1.0, 0.0, 0.0, 1.0, 0.7]})
y = ["no", "yes", "no", "yes", "no"]
models = {
    "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y),
    "needs_names": NeedsNames().fit(frame, y),
}
features = [{"name": n, "kind": "numeric", "dtype": "float64", "nullable": False, "min": 0.0,
             "max": 1.0} for n in ("a", "b")]
schema = {"features": features, "target": "y", "problem_type": "classification"}
rows = [[0.0, 1.0], [0.9, 0.1], [0.3, 0.3]]
body = InferenceRequest.model_validate(
    {"inputs": [{"name": "features", "shape": [3, 2], "datatype": "FP64", "data": rows}]}
)

async def serve(name, model):
    folder = root / name
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    (folder / "feature_schema.json").write_text(json.dumps(schema))
    seal_folder(folder, name, 1)
    settings = ModelSettings(
        name=name, implementation=MainsailRuntime, parameters=ModelParameters(uri=str(folder))
    )
    runtime = MainsailRuntime(settings)
    await runtime.load()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = await runtime.predict(body)
    inside = [runtime.model, *(step for _, step in getattr(runtime.model, "steps", []))]
    named = [type(e).__name__ for e in inside if "feature_names_in_" in vars(e)]
    return {
        "fast": runtime._numpy_fast,
        "named": named,
        "warnings": [str(w.message) for w in caught],
        "proba": answer.outputs[1].data.root,
        # The model as fitted, names and all, on the same array: the same bits expected.
        "expected": joblib.load(folder / "model.joblib").predict_proba(np.array(rows))
        .max(axis=1).tolist(),
    }

async def main():
    print(json.dumps({name: await serve(name, model) for name, model in models.items()}))

asyncio.run(main())
"""
    result = _in_serving_env(code, tmp_path)
    pipeline, needs_names = result["pipeline"], result["needs_names"]
    assert pipeline["fast"] and needs_names["fast"]
    # The pipeline's scaler (its first step) forgot the names and no request warns; the
    # probabilities are those of the model as fitted.
    assert pipeline["named"] == [] and pipeline["warnings"] == []
    assert pipeline["proba"] == pipeline["expected"]
    # Without its names this model refuses: they were put back, and it scores as fitted.
    assert needs_names["named"] == ["NeedsNames"]
    assert needs_names["proba"] == needs_names["expected"]
