"""What the gateway serves: the model's identity and its MLflow signature.

This module is copied into the gateway image with the rest of the package, so
it imports only the standard library and pydantic. ``spec_from_mlmodel`` takes
an already-parsed MLmodel (a dict), so it needs no YAML library either.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SPEC_FILENAME = "gateway-spec.json"

#: MLflow's column types (``mlflow.types.DataType``) the gateway validates.
SCALAR_TYPES = frozenset(
    {"double", "float", "long", "integer", "boolean", "string", "binary", "datetime"}
)


class Column(BaseModel):
    """One column of a column-based signature (or one tensor of a tensor-based one).

    ``type`` is MLflow's type string. Newer MLflow types (``array``, ``object``,
    ``map``, ``any``) and tensors keep their extra keys (``items``,
    ``properties``, ``tensor-spec``...) and are passed through unvalidated.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str | None = None
    type: str
    required: bool = True


class GatewaySpec(BaseModel):
    """Everything the gateway needs to know about the deployed model."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    app: str
    experiment_id: str = ""
    run_id: str = ""
    model_id: str | None = None
    model_uri: str | None = None
    title: str = ""
    #: ``columns`` (validated per field), ``tensor`` (passed through) or
    #: ``none`` (the model has no signature: passed through).
    input_kind: Literal["columns", "tensor", "none"] = "columns"
    inputs: list[Column] = Field(default_factory=list)
    outputs: list[Column] | None = None
    #: the model's input example as records (dicts keyed by column name)
    input_example: list[dict[str, Any]] | None = None
    #: the input example as MLflow saved it, when it is not records (tensors)
    raw_input_example: Any = None
    #: the signature's params schema (``[{"name", "type", "default", "shape"}]``), None when it has none:
    #: ``/invocations`` passes a request's ``params`` to the model only then, as MLflow's scoring server does
    params: list[dict[str, Any]] | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name if c.name is not None else str(i) for i, c in enumerate(self.inputs)]

    def display_title(self) -> str:
        return self.title or f"{self.app} gateway"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILENAME
        tmp = path.with_name(path.name + ".tmp")
        # no "params" key when the signature has none: a gateway from before params reads the file too
        exclude = {"params"} if self.params is None else None
        tmp.write_text(self.model_dump_json(indent=2, by_alias=True, exclude=exclude) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "GatewaySpec":
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILENAME
        return cls.model_validate_json(path.read_bytes())


class SpecError(ValueError):
    """The MLmodel or the input example could not be turned into a spec."""


def _parse_schema(value: Any, what: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SpecError(f"the MLmodel signature's {what} is not valid JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise SpecError(f"the MLmodel signature's {what} should be a list of objects, got {type(value).__name__}")
    return value


def _schema_kind(columns: list[dict[str, Any]]) -> Literal["columns", "tensor"]:
    kinds = {"tensor" if c.get("type") == "tensor" else "columns" for c in columns}
    if len(kinds) > 1:
        raise SpecError("the MLmodel signature mixes tensors and columns")
    return kinds.pop() if kinds else "columns"


def records_from_example(example: Any, column_names: list[str] | None = None) -> list[dict[str, Any]] | None:
    """Turn an MLflow input example (as saved in ``input_example.json``) into records.

    Understands pandas ``split`` orient (``{"columns": [...], "data": [[...]]}``,
    MLflow's format for a DataFrame example), the scoring envelopes
    (``dataframe_split``, ``dataframe_records``, ``inputs``, ``instances``),
    a list of records, a single flat record, a dict of columns and, when the
    column names are known, a list of rows. Returns None for anything else
    (a tensor example, for instance).
    """
    names = list(column_names or [])
    if example is None:
        return None
    if isinstance(example, dict):
        for key in ("dataframe_split", "dataframe_records", "inputs", "instances"):
            if key in example and set(example) <= {key, "params"}:
                return records_from_example(example[key], names)
        if "data" in example and set(example) <= {"columns", "data", "index"}:
            data = example["data"]
            cols = example.get("columns") or names
            if not isinstance(data, list) or not cols:
                return None
            rows = []
            for row in data:
                if not isinstance(row, list) or len(row) != len(cols):
                    return None
                rows.append(dict(zip(cols, row)))
            return rows
        values = list(example.values())
        if values and all(isinstance(v, list) for v in values):
            lengths = {len(v) for v in values}
            if len(lengths) == 1:  # a dict of columns
                n = lengths.pop()
                return [{k: example[k][i] for k in example} for i in range(n)]
        if all(not isinstance(v, (list, dict)) for v in values):
            return [dict(example)]
        return None
    if isinstance(example, list):
        if not example:
            return None
        if all(isinstance(r, dict) for r in example):
            return [dict(r) for r in example]
        if names and all(isinstance(r, list) and len(r) == len(names) for r in example):
            return [dict(zip(names, r)) for r in example]
    return None


def spec_from_mlmodel(
    mlmodel: dict[str, Any],
    input_example: Any = None,
    *,
    app: str,
    experiment_id: str = "",
    run_id: str | None = None,
    model_id: str | None = None,
    model_uri: str | None = None,
    title: str | None = None,
) -> GatewaySpec:
    """Build a GatewaySpec from a parsed MLmodel file and its input example.

    ``mlmodel`` is the YAML of the model's ``MLmodel`` file as a dict; its
    ``signature.inputs`` / ``signature.outputs`` are JSON strings (MLflow's
    format) or already-parsed lists. ``input_example`` is the parsed content of
    ``input_example.json`` (or None). ``run_id`` and ``model_id`` default to
    the MLmodel's own.
    """
    if not isinstance(mlmodel, dict):
        raise SpecError(f"MLmodel should be a mapping, got {type(mlmodel).__name__}")
    signature = mlmodel.get("signature") or {}
    if not isinstance(signature, dict):
        raise SpecError("the MLmodel's signature should be a mapping")
    inputs = _parse_schema(signature.get("inputs"), "inputs")
    outputs = _parse_schema(signature.get("outputs"), "outputs")
    params = _parse_schema(signature.get("params"), "params")
    if inputs:
        kind = _schema_kind(inputs)
    else:
        kind = "none"
    columns = [Column.model_validate(c) for c in inputs or []]
    if kind == "columns":
        for c in columns:
            if c.type not in SCALAR_TYPES and c.type not in {"array", "object", "map", "any"}:
                raise SpecError(f"column {c.name!r} has an unknown MLflow type {c.type!r}")
    names = [c.name if c.name is not None else str(i) for i, c in enumerate(columns)]
    records = records_from_example(input_example, names) if kind == "columns" else None
    raw = input_example if records is None else None
    return GatewaySpec(
        app=app,
        experiment_id=str(experiment_id or ""),
        run_id=str(run_id if run_id is not None else mlmodel.get("run_id") or ""),
        model_id=model_id if model_id is not None else mlmodel.get("model_id"),
        model_uri=model_uri,
        title=title or "",
        input_kind=kind,
        inputs=columns,
        outputs=[Column.model_validate(c) for c in outputs] if outputs else None,
        input_example=records,
        raw_input_example=raw,
        params=[p for p in params if isinstance(p.get("name"), str)] or None if params else None,
    )
