"""The OpenAPI description of the front door's routes, from the model signature.

``/docs`` and ``/redoc`` render it: one record schema per signature (field names,
MLflow types, required fields, the model's input example), the scoring envelopes
around it, and every error status each route answers.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from .columns import PY_TYPES, TYPE_BOUNDS
from .rawbody import JSON
from .spec import GatewaySpec

CSV = "text/csv"


def build_record_model(spec: GatewaySpec) -> type[BaseModel]:
    """A strict pydantic model for one record of the signature (aliases = column names): its JSON schema."""
    fields: dict[str, Any] = {}
    for i, col in enumerate(spec.inputs):
        name = col.name if col.name is not None else str(i)
        if col.type == "datetime":
            py: Any = datetime
            extra: dict[str, Any] = {"strict": False}  # ISO strings from JSON
        else:
            py = PY_TYPES.get(col.type, Any)
            extra = dict(TYPE_BOUNDS.get(col.type, {}))
        info = {"alias": name, "title": name, "description": f"MLflow type: {col.type}", **extra}
        if col.required:
            fields[f"f{i}"] = (py, Field(**info))
        else:
            fields[f"f{i}"] = (Optional[py], Field(default=None, **info))
    config = ConfigDict(strict=True, extra="forbid", ser_json_inf_nan="constants", title="Record")
    return create_model("Record", __config__=config, **fields)


def _example_value(col_type: str) -> Any:
    return {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False,
            "string": "string", "binary": "", "datetime": "2024-01-01T00:00:00"}.get(col_type)


def scoring_request_body(spec: GatewaySpec, record_model: type[BaseModel] | None) -> dict[str, Any]:
    names = spec.column_names
    if record_model is None:
        any_schema: dict[str, Any] = {"description": "passed to the model server as {\"inputs\": ...}"}
        content: dict[str, Any] = {"schema": {"anyOf": [
            {"type": "object", "title": "inputs", "properties": {"inputs": any_schema}, "required": ["inputs"]},
            {"type": "object", "title": "instances", "properties": {"instances": any_schema}, "required": ["instances"]},
        ]}}
        if spec.raw_input_example is not None:
            content["example"] = {"inputs": spec.raw_input_example}
        return {"required": True, "content": {JSON: content}}

    record = record_model.model_json_schema(by_alias=True)
    record.pop("title", None)
    record["title"] = "Record"
    examples = spec.input_example or [{c.name or str(i): _example_value(c.type) for i, c in enumerate(spec.inputs)}]
    record["examples"] = examples[:1]
    row = {"type": "array", "description": f"values in column order: {', '.join(names)}"}
    records_or_rows = {"type": "array", "items": {"anyOf": [record, row]}}

    def envelope(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "title": key, "properties": {key: schema}, "required": [key],
                "additionalProperties": False}

    schema = {"anyOf": [
        envelope("dataframe_records", {"type": "array", "items": record}),
        envelope("dataframe_split", {
            "type": "object", "required": ["data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}, "default": names},
                "data": {"type": "array", "items": row},
            },
        }),
        envelope("instances", records_or_rows),
        envelope("inputs", records_or_rows),
        record,
    ]}
    media_examples = {
        "dataframe_records": {"summary": "the model's input example as records",
                              "value": {"dataframe_records": examples}},
        "dataframe_split": {"summary": "columns + rows", "value": {"dataframe_split": {
            "columns": names, "data": [[r.get(n) for n in names] for r in examples]}}},
        "inputs": {"summary": "rows in column order", "value": {"inputs": [[r.get(n) for n in names] for r in examples]}},
        "record": {"summary": "a single flat record", "value": examples[0]},
    }
    return {"required": True, "content": {JSON: {"schema": schema, "examples": media_examples}}}


_ERROR_SCHEMA = {"type": "object", "properties": {
    "detail": {"type": "string"},
    "errors": {"type": "array", "items": {"type": "object", "properties": {
        "row": {"type": ["integer", "null"]}, "field": {"type": ["string", "null"]},
        "type": {"type": "string"}, "message": {"type": "string"}}}},
}}


def scoring_responses() -> dict[int | str, dict[str, Any]]:
    err = {"content": {JSON: {"schema": _ERROR_SCHEMA}}}
    return {
        200: {"description": "the model's predictions, one per record",
              "content": {JSON: {"schema": {"type": "object", "properties": {
                  "predictions": {"type": "array", "items": {}}}, "required": ["predictions"]}}}},
        400: {"description": "malformed JSON, not UTF-8, or nested too deep", **err},
        413: {"description": "body or row count over the limit", **err},
        415: {"description": "the body is not declared as application/json (UTF-8)", **err},
        422: {"description": "a record does not match the model signature", **err},
        502: {"description": "the model server is unreachable or failed", **err},
        503: {"description": "overloaded: retry after the Retry-After seconds", **err},
        504: {"description": "the model server did not answer in time", **err},
    }



def invocations_request_body(spec: GatewaySpec, record_model: type[BaseModel] | None) -> dict[str, Any]:
    """MLflow's scoring JSON (plus ``params``) or CSV with a header row."""
    body = scoring_request_body(spec, record_model)
    names = spec.column_names
    examples = spec.input_example or []
    csv_example = ",".join(names) + "\n" + "\n".join(",".join("" if r.get(n) is None else str(r.get(n)) for n in names)
                                                      for r in examples[:3])
    body["content"][CSV] = {"schema": {"type": "string", "description": "a header row naming the columns, "
                                       "then one row per record (pandas.DataFrame.to_csv(index=False))"},
                            "example": csv_example}
    return body


MLFLOW_ERROR_SCHEMA = {"type": "object", "properties": {
    "error_code": {"type": "string"}, "message": {"type": "string"}}}


def invocations_responses() -> dict[int | str, dict[str, Any]]:
    err = {"content": {JSON: {"schema": MLFLOW_ERROR_SCHEMA}}}
    return {
        200: scoring_responses()[200],
        400: {"description": "malformed body, or a record that does not match the signature (BAD_REQUEST)", **err},
        413: {"description": "body or row count over the limit", **err},
        415: {"description": "neither application/json nor text/csv (UTF-8)", **err},
        502: {"description": "the model failed", **err},
        503: {"description": "overloaded: retry after the Retry-After seconds", **err},
        504: {"description": "the model did not answer in time", **err},
    }
