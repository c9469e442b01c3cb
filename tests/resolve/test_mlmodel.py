"""resolve/mlmodel.read_mlmodel: MLmodel read through mlflow.models.Model, hostile files refused (exit 2)."""
from __future__ import annotations

import json

import pytest
import yaml

from home_mlops.errors import BadInput, NotFound
from home_mlops.resolve.mlmodel import parse_signature, read_mlmodel

INPUTS = [{"type": "double", "name": "sepal length (cm)", "required": True},
          {"type": "long", "name": "count", "required": True}]
MLMODEL = {
    "artifact_path": "model",
    "flavors": {"python_function": {"loader_module": "mlflow.sklearn", "python_version": "3.11.2",
                                    "env": {"virtualenv": "python_env.yaml"}, "model_path": "model.pkl"},
                "sklearn": {"pickled_model": "model.pkl", "sklearn_version": "1.5.2"}},
    "mlflow_version": "3.1.0",
    "model_id": "m-" + "a" * 32,
    "run_id": "b" * 32,
    "model_uuid": "c" * 32,
    "utc_time_created": "2026-11-25 10:00:00.000000",
    "signature": {"inputs": json.dumps(INPUTS), "outputs": json.dumps([{"type": "long", "required": True}]),
                  "params": None},
}


def _write(tmp_path, content) -> None:
    (tmp_path / "MLmodel").write_text(content if isinstance(content, str) else yaml.safe_dump(content))


def test_an_mlflow_mlmodel_reads_as_mlflow_writes_it(tmp_path):
    _write(tmp_path, MLMODEL)
    got = read_mlmodel(tmp_path)
    for key in ("flavors", "run_id", "model_id", "artifact_path", "utc_time_created"):
        assert got[key] == MLMODEL[key]
    assert parse_signature(got)["inputs"] == INPUTS


def test_a_signature_mlflow_cannot_parse_is_refused(tmp_path):
    bad = dict(MLMODEL, signature={"inputs": json.dumps([{"type": "no-such-type", "name": "x"}])})
    _write(tmp_path, bad)
    with pytest.raises(BadInput, match="not an MLmodel MLflow can read"):
        read_mlmodel(tmp_path)


@pytest.mark.parametrize("content", [
    "- a list\n- of things\n",
    "1: an integer key\n",
    "not-an-identifier: x\n",
    "flavors: [\n",
    "signature: {inputs: '[{\"type\": \"double\"'}\n",  # the JSON inside the YAML cut short
])
def test_hostile_files_are_bad_input(tmp_path, content):
    _write(tmp_path, content)
    with pytest.raises(BadInput):
        read_mlmodel(tmp_path)


def test_not_utf8_and_missing(tmp_path):
    with pytest.raises(NotFound):
        read_mlmodel(tmp_path)
    (tmp_path / "MLmodel").write_bytes(b"flavors: \xff\xfe\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        read_mlmodel(tmp_path)


def test_an_empty_file_is_an_empty_mlmodel(tmp_path):
    _write(tmp_path, "")
    assert read_mlmodel(tmp_path) == {}
