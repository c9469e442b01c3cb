"""Default BentoML service for any pyfunc-capable MLflow model (rendered by home-mlops).

POST /predict {"inputs": [record, ...]} -> [prediction, ...]
Records are checked against the MLflow signature before the model sees them, so a
missing or mistyped field is a 400 that names it, not a 500 from schema enforcement.
Health (/livez, /readyz) and Prometheus metrics (/metrics) come from BentoML.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import InvalidArgument

CONFIG = json.loads((Path(__file__).parent / "home_mlops_service.json").read_text())
MODEL_TAG = os.environ.get("HOME_MLOPS_MODEL_TAG") or CONFIG["model_tag"]
# MLflow column types -> the numpy dtype the model was trained with.
DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool", "string": "object"}
NUMERIC = {"double", "float", "long", "integer"}


def _check_records(records: list[dict[str, Any]], columns: list[dict[str, Any]]) -> None:
    known = {c["name"] for c in columns}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidArgument(f"row {index}: expected an object with fields {sorted(known)}")
        for column in columns:
            name = column["name"]
            if name not in record:
                if column.get("required", True):
                    raise InvalidArgument(f"row {index}: missing field {name!r}")
                continue
            value = record[name]
            if column["type"] in NUMERIC and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise InvalidArgument(f"row {index}: field {name!r} must be a number, got {value!r}")
        extra = set(record) - known
        if extra:
            raise InvalidArgument(f"row {index}: unknown field(s) {sorted(extra)}")


def _to_json(value: Any) -> list[Any]:
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records") if value.shape[1] > 1 else value.iloc[:, 0].tolist()
    if isinstance(value, pd.Series):
        return value.tolist()
    return np.asarray(value).tolist()


@bentoml.service(name=CONFIG["service_name"], traffic={"timeout": 60})
class ModelService:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.model_ref)
        self.columns = CONFIG.get("inputs") or []
        self.column_based = bool(self.columns) and all("name" in c for c in self.columns)

    # Adaptive batching. max_latency_ms is the deadline after which BentoML sheds a request
    # with 503: a tight value (20 ms was tried) rejects most requests under concurrent load.
    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=128, max_latency_ms=10_000)
    def predict(self, inputs: list[Any]) -> list[Any]:
        if self.column_based:
            _check_records(inputs, self.columns)
            frame = pd.DataFrame.from_records(inputs, columns=[c["name"] for c in self.columns])
            frame = frame.astype({c["name"]: DTYPES[c["type"]] for c in self.columns if c["type"] in DTYPES})
            data: Any = frame
        else:
            data = np.asarray(inputs)
        try:
            return _to_json(self.model.predict(data))
        except Exception as exc:  # schema enforcement and model errors: the caller's input
            raise InvalidArgument(f"the model rejected the input: {str(exc)[:300]}") from None
