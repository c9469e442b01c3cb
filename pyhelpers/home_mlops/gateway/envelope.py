"""MLflow's scoring JSON, read into columns: the one parser of a scoring envelope.

Used by every front-door route that takes MLflow scoring JSON (``/predict``,
``/invocations``) and by the deploy's smoke test (``row_count``). Understands

- ``{"dataframe_split": {"columns": [...], "data": [[...]], "index": [...]}}``
- ``{"dataframe_records": [record, ...]}``
- ``{"instances" | "inputs": [record | row, ...]}`` or ``{... : {column: [values]}}``
- a bare list of records or rows, or a single flat record;
- ``"params"`` next to the envelope, where the caller allows it.

Rows are never turned into dicts: records are read column by column, rows are
transposed with ``zip``. Counts and field names are checked before any column is
built, so a 1 MiB body of junk keys or of tiny rows is refused for the cost of a
``len`` and a set lookup per key. Values are not checked here (``columns.py`` does
that, against the signature's types).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .errors import InputError, short

ENVELOPES = ("dataframe_records", "dataframe_split", "instances", "inputs")
#: a field a record left out (``columns.py`` says "Field required", or None where optional)
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


@dataclass(frozen=True)
class Shape:
    """What a request may hold: the signature's column names, the row limit, whether params may come."""

    names: list[str]
    max_rows: int
    allow_params: bool = False

    @cached_property
    def known(self) -> frozenset[str]:
        return frozenset(self.names)

    def check_row_count(self, count: int) -> None:
        if count > self.max_rows:
            raise InputError(413, f"too many rows: {count}, at most {self.max_rows} per request")

    def check_fields(self, fields: Any, where: str, row: int | None = None) -> None:
        """Refuse unknown fields before a row is built from them (10 000 junk keys cost one set lookup each)."""
        known = self.known
        unknown = [k for k in fields if k not in known]
        if unknown:
            shown = ", ".join(short(repr(k), 60) for k in unknown[:5])
            more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise InputError(
                422,
                f"invalid input: {where}: unknown field(s) {shown}{more}; the model takes {', '.join(self.names)}",
                [{"row": row, "field": short(str(unknown[0]), 100), "type": "extra_forbidden",
                  "message": "Extra inputs are not permitted"}],
            )


@dataclass(frozen=True)
class RawColumns:
    """A request read into columns (signature order, MISSING where a record left a field out), not yet typed."""

    columns: dict[str, list]
    rows: int
    params: dict | None = None


def envelope_key(payload: Any, names: list[str] | tuple[str, ...] = ()) -> str | None:
    """Which scoring envelope ``payload`` uses (None: a bare list or a flat record)."""
    if not isinstance(payload, dict):
        return None
    if names and set(payload) & set(names):  # a flat record whose column is called "inputs"
        return None
    return next((k for k in ENVELOPES if k in payload), None)


def row_count(payload: Any) -> int | None:
    """How many rows a scoring payload holds (None when it cannot tell): the deploy's smoke test check."""
    key = envelope_key(payload)
    value = payload.get(key) if key else payload
    if key == "dataframe_split":
        data = value.get("data") if isinstance(value, dict) else None
        return len(data) if isinstance(data, list) else None
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict) and key:
        if value and all(isinstance(v, list) for v in value.values()):  # a dict of columns
            lengths = {len(v) for v in value.values()}
            return lengths.pop() if len(lengths) == 1 else None
        return 1
    return None  # a flat record or junk: without the signature's names it cannot tell


def read_columns(payload: Any, shape: Shape) -> RawColumns:
    """The request's values as columns, whatever MLflow scoring format it used; InputError otherwise."""
    names = shape.names
    params = None
    if isinstance(payload, dict):
        key = envelope_key(payload, names)
        if key is not None:
            others = [k for k in payload if k != key and not (k == "params" and shape.allow_params)]
            if others:
                shown = ", ".join(short(repr(k), 60) for k in others[:5])
                raise InputError(422, f"invalid input: unexpected top-level keys next to {key!r}: {shown}")
            params = payload.get("params")
            if params is not None and not isinstance(params, dict):
                raise InputError(422, "invalid input: 'params' should be an object of parameter names and values")
            value = payload[key]
            if key == "dataframe_split":
                raw = _from_split(value, shape)
            else:
                raw = _from_value(value, key, shape)
            return RawColumns(raw.columns, raw.rows, params)
        if names and not (set(payload) & shape.known):
            raise InputError(
                422,
                "invalid input: expected one of dataframe_records, dataframe_split, instances, inputs, "
                f"or a record with the fields {', '.join(names)}",
            )
        return _from_records([payload], shape)
    if isinstance(payload, list):
        return _from_list(payload, names, shape)
    raise InputError(422, "invalid input: the body should be a JSON object or a list of records")


def _from_value(value: Any, key: str, shape: Shape) -> RawColumns:
    if isinstance(value, list):
        return _from_list(value, shape.names, shape)
    if isinstance(value, dict):
        values = list(value.values())
        if values and all(isinstance(v, list) for v in values):  # a dict of columns
            shape.check_fields(value, f"the columns under {key!r}")
            lengths = {len(v) for v in values}
            if len(lengths) != 1:
                raise InputError(422, f"invalid input: the columns under {key!r} have different lengths")
            count = lengths.pop()
            shape.check_row_count(count)
            if count == 0:
                raise InputError(422, "invalid input: no records")
            return RawColumns({n: list(value[n]) if n in value else [MISSING] * count for n in shape.names}, count)
        return _from_records([value], shape)
    raise InputError(422, f"invalid input: {key!r} should be a list of records or rows")


def _from_split(value: Any, shape: Shape) -> RawColumns:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise InputError(422, "invalid input: 'dataframe_split' should be {\"columns\": [...], \"data\": [[...]]}")
    columns = value.get("columns") or shape.names
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError(422, "invalid input: 'dataframe_split.columns' should be a list of column names")
    shape.check_fields(columns, "'dataframe_split.columns'")
    return _from_list(value["data"], columns, shape)


def _from_list(items: list[Any], order: list[str], shape: Shape) -> RawColumns:
    """Rows (lists in ``order``), records (dicts), or a mix of both."""
    shape.check_row_count(len(items))
    if not items:
        raise InputError(422, "invalid input: no records")
    n = len(order)
    if all(type(item) is list for item in items):
        for i, item in enumerate(items):
            if len(item) != n:
                raise _row_length(i, len(item), order)
        by_name = dict(zip(order, map(list, zip(*items)))) if n else {}
        count = len(items)
        return RawColumns({name: by_name.get(name, [MISSING] * count) for name in shape.names}, count)
    records = []
    for i, item in enumerate(items):
        if isinstance(item, list):
            if len(item) != n:
                raise _row_length(i, len(item), order)
            item = dict(zip(order, item))
        records.append(item)
    return _from_records(records, shape)


def _from_records(records: list[Any], shape: Shape) -> RawColumns:
    known, width = shape.known, len(shape.names)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(422, f"invalid input: row {i}: expected an object (a record) or a list of values "
                                  f"in column order ({', '.join(shape.names)})",
                             [{"row": i, "field": None, "type": "model_type",
                               "message": "Input should be an object or a list of values"}])
        if len(record) > width or not known.issuperset(record):
            shape.check_fields(record, f"row {i}", i)
    columns = {name: [r.get(name, MISSING) for r in records] for name in shape.names}
    return RawColumns(columns, len(records))


def _row_length(i: int, got: int, order: list[str]) -> InputError:
    n = len(order)
    return InputError(
        422,
        f"invalid input: row {i} has {got} values, expected {n} ({', '.join(order)})",
        [{"row": i, "field": None, "type": "row_length", "message": f"expected {n} values"}],
    )
