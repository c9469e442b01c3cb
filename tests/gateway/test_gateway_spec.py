"""GatewaySpec from real MLflow models (column- and tensor-based signatures)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from home_mlops.errors import ExitCode, HomeMlopsError
from home_mlops.build.gateway_context import load_model_spec
from home_mlops.gateway.spec import GatewaySpec, SpecError, records_from_example, spec_from_mlmodel

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


@pytest.fixture(scope="module")
def logged_models(tmp_path_factory):
    """Train a tiny iris classifier, log it twice (DataFrame example, ndarray example)."""
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("sklearn")
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    exp_id = mlflow.create_experiment("gateway-spec", artifact_location=(tmp / "artifacts").as_uri())
    X, y = load_iris(return_X_y=True, as_frame=True)
    assert list(X.columns) == IRIS_COLUMNS
    model = LogisticRegression(max_iter=300).fit(X, y)
    # given, not inferred: inference loads each model in a subprocess (seconds of CPU each)
    from importlib.metadata import version

    reqs = [f"mlflow=={version('mlflow')}", f"scikit-learn=={version('scikit-learn')}"]
    with mlflow.start_run(experiment_id=exp_id) as run:
        df_info = mlflow.sklearn.log_model(
            model, name="model", input_example=X.head(3), serialization_format="cloudpickle",
            pip_requirements=reqs)
        np_model = LogisticRegression(max_iter=300).fit(X.to_numpy(), y)
        np_info = mlflow.sklearn.log_model(
            np_model, name="np-model", input_example=X.to_numpy()[:2], serialization_format="cloudpickle",
            pip_requirements=reqs)
    out = {}
    for key, info in (("dataframe", df_info), ("ndarray", np_info)):
        path = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(tmp / key))
        out[key] = (Path(path), info)
    mlflow.set_tracking_uri(None)
    return {"experiment_id": exp_id, "run_id": run.info.run_id, "X": X, **out}


def test_column_signature_from_real_mlmodel(logged_models, tmp_path):
    model_dir, info = logged_models["dataframe"]
    assert (model_dir / "MLmodel").is_file() and (model_dir / "input_example.json").is_file()
    spec = load_model_spec(model_dir, app="tabular-iris", experiment_id=logged_models["experiment_id"],
                           model_uri=info.model_uri)

    assert spec.input_kind == "columns"
    assert [c.name for c in spec.inputs] == IRIS_COLUMNS
    assert {c.type for c in spec.inputs} == {"double"}
    assert all(c.required for c in spec.inputs)
    # a classifier's output: one unnamed column of int64 labels
    assert spec.outputs is not None and [(c.name, c.type) for c in spec.outputs] == [(None, "long")]
    assert spec.run_id == logged_models["run_id"]
    assert spec.model_id == info.model_id and spec.model_id
    assert spec.experiment_id == logged_models["experiment_id"]
    assert spec.model_uri == info.model_uri
    # the DataFrame example (split orient in input_example.json) became records, in order
    expected = logged_models["X"].head(3).to_dict("records")
    assert spec.input_example == expected
    assert list(spec.input_example[0]) == IRIS_COLUMNS
    assert spec.raw_input_example is None

    # gateway-spec.json round-trips exactly
    path = spec.save(tmp_path)
    assert path.name == "gateway-spec.json"
    assert GatewaySpec.load(path) == spec
    assert json.loads(path.read_text())["inputs"][0] == {
        "name": "sepal length (cm)", "type": "double", "required": True}


def test_tensor_signature_is_passed_through(logged_models):
    model_dir, _info = logged_models["ndarray"]
    spec = load_model_spec(model_dir, app="tabular-iris")
    assert spec.input_kind == "tensor"
    assert len(spec.inputs) == 1 and spec.inputs[0].type == "tensor"
    tensor_spec = spec.inputs[0].model_extra["tensor-spec"]
    assert tensor_spec["shape"] == [-1, 4]
    assert spec.input_example is None
    raw = spec.raw_input_example
    rows = raw["inputs"] if isinstance(raw, dict) else raw
    assert rows == logged_models["X"].to_numpy()[:2].tolist()
    assert GatewaySpec.model_validate_json(spec.model_dump_json()) == spec


def test_missing_mlmodel_is_not_found(tmp_path):
    with pytest.raises(HomeMlopsError) as err:
        load_model_spec(tmp_path, app="x")
    assert err.value.code == ExitCode.NOT_FOUND


def test_hand_written_signature_types_and_optional():
    inputs = [
        {"type": "long", "name": "age", "required": True},
        {"type": "string", "name": "city", "required": True},
        {"type": "boolean", "name": "member", "required": False},
        {"type": "datetime", "name": "seen at", "required": True},
    ]
    mlmodel = {"run_id": "a" * 32, "model_id": "m-1",
               "signature": {"inputs": json.dumps(inputs), "outputs": None, "params": None}}
    spec = spec_from_mlmodel(mlmodel, {"columns": ["age", "city", "member", "seen at"],
                                       "data": [[3, "Paris", True, "2024-01-01T00:00:00"]]}, app="x")
    assert [(c.name, c.type, c.required) for c in spec.inputs] == [(i["name"], i["type"], i["required"]) for i in inputs]
    assert spec.run_id == "a" * 32 and spec.model_id == "m-1"
    assert spec.input_example == [{"age": 3, "city": "Paris", "member": True, "seen at": "2024-01-01T00:00:00"}]


def test_no_signature_and_bad_signatures():
    assert spec_from_mlmodel({"run_id": "r"}, None, app="x").input_kind == "none"
    with pytest.raises(SpecError):
        spec_from_mlmodel({"signature": {"inputs": '[{"type": "decimal", "name": "a"}]'}}, None, app="x")
    with pytest.raises(SpecError):
        spec_from_mlmodel({"signature": {"inputs": "not json"}}, None, app="x")


@pytest.mark.parametrize(
    "example",
    [
        {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4.5]]},
        {"columns": ["a", "b"], "index": [0, 1], "data": [[1, 2.5], [3, 4.5]]},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4.5]]}},
        {"dataframe_records": [{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}]},
        [{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}],
        {"a": [1, 3], "b": [2.5, 4.5]},
        {"inputs": [[1, 2.5], [3, 4.5]]},
        [[1, 2.5], [3, 4.5]],
    ],
)
def test_example_shapes_become_records(example):
    assert records_from_example(example, ["a", "b"]) == [{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}]


def test_example_single_record_and_unknown_shapes():
    assert records_from_example({"a": 1, "b": 2.5}, ["a", "b"]) == [{"a": 1, "b": 2.5}]
    assert records_from_example([[1, 2, 3]], ["a", "b"]) is None  # wrong width
    assert records_from_example([[[1.0]]], None) is None  # a tensor
    assert records_from_example(None, ["a"]) is None
