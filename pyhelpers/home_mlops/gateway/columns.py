"""Values checked against the model signature, one column at a time (no dict, no model object per row).

Each column gets a pydantic-core validator for ``list[<its type>]`` in strict mode,
with the bounds that make a value survive the model server's cast to the column's
numpy dtype (int64 for ``long``, int32 for ``integer``, float32 for ``float``) and
stay finite. An int for a double column becomes a float (MLflow refuses int64 for
double). The errors name the row and the field, in row order, as ``/predict`` has
always answered: ``{"row", "field", "type", "message"}``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional

from pydantic import Field, Strict, TypeAdapter, ValidationError

from .envelope import MISSING, RawColumns
from .errors import MAX_ERRORS, InputError, short, summary
from .spec import GatewaySpec

PY_TYPES: dict[str, Any] = {
    "double": float,
    "float": float,
    "long": int,
    "integer": int,
    "boolean": bool,
    "string": str,
    "binary": str,  # base64 text in JSON, as MLflow's scoring server expects
}

FLOAT32_MAX = 3.4028234663852886e38
#: what a value must satisfy to survive the cast to the column's numpy dtype and be finite there
TYPE_BOUNDS: dict[str, dict[str, Any]] = {
    "double": {"allow_inf_nan": False},
    "float": {"allow_inf_nan": False, "ge": -FLOAT32_MAX, "le": FLOAT32_MAX},
    "long": {"ge": -(2**63), "le": 2**63 - 1},
    "integer": {"ge": -(2**31), "le": 2**31 - 1},
}


def value_type(col_type: str) -> Any:
    """The annotated Python type one value of an MLflow column type must have."""
    if col_type == "datetime":
        return Annotated[datetime, Field(strict=False)]  # ISO strings from JSON
    py = PY_TYPES.get(col_type)
    if py is None:  # array / object / map / any: passed through
        return Any
    return Annotated[py, Strict(), Field(**TYPE_BOUNDS.get(col_type, {}))]


class ColumnValidator:
    """Checks a request's columns against a column-based signature."""

    def __init__(self, spec: GatewaySpec):
        self.names = spec.column_names
        self.required = {name: col.required for name, col in zip(self.names, spec.inputs)}
        self.adapters = {
            name: TypeAdapter(list[value_type(col.type) if col.required else Optional[value_type(col.type)]])
            for name, col in zip(self.names, spec.inputs)
        }

    def validate(self, raw: RawColumns) -> dict[str, list]:
        """The typed columns, in signature order; InputError(422) naming each bad row and field."""
        out: dict[str, list] = {}
        errors: list[tuple[int, int, dict[str, Any]]] = []
        total = 0
        for index, name in enumerate(self.names):
            values = raw.columns[name]
            missing: set[int] = set()
            if MISSING in values:  # identity: a float never compares equal to the sentinel
                values, missing = self._fill_missing(name, index, values, errors)
            try:
                out[name] = self.adapters[name].validate_python(values)
            except ValidationError as exc:
                total += exc.error_count()
                for err in exc.errors(include_url=False, include_input=False, include_context=False)[:MAX_ERRORS]:
                    loc = err.get("loc", ())
                    row = loc[0] if loc and isinstance(loc[0], int) else None
                    if row in missing:  # the placeholder of a missing field, already reported
                        total -= 1
                        continue
                    field = short(".".join(str(x) for x in (name, *loc[1:])), 100)
                    errors.append((row if row is not None else -1, index,
                                   {"row": row, "field": field, "type": err.get("type"), "message": err.get("msg")}))
        if errors:
            total += sum(1 for e in errors if e[2]["type"] == "missing")  # not counted by pydantic
            ordered = [e[2] for e in sorted(errors, key=lambda e: (e[0], e[1]))][:MAX_ERRORS]
            raise InputError(422, summary(ordered, max(total, len(ordered))), ordered)
        return out

    def _fill_missing(self, name: str, index: int, values: list, errors: list) -> tuple[list, set[int]]:
        """None for an optional field left out; a "missing" error per row for a required one."""
        if not self.required[name]:
            return [None if v is MISSING else v for v in values], set()
        missing = {row for row, v in enumerate(values) if v is MISSING}
        for row in sorted(missing)[:MAX_ERRORS]:
            errors.append((row, index, {"row": row, "field": name, "type": "missing", "message": "Field required"}))
        return [None if v is MISSING else v for v in values], missing
