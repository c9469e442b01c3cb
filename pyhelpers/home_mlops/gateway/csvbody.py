"""A CSV body (``text/csv``, as ``pandas.DataFrame.to_csv(index=False)`` writes it) read into columns.

MLflow's scoring server reads CSV with ``pandas.read_csv`` and the signature's dtypes;
here the standard ``csv`` module reads it and each cell is converted by its column's
MLflow type, so the result goes through the same checks as JSON (``columns.py``).
An empty cell is a missing value (pandas reads it as NaN). Standard library only.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Callable

from .envelope import MISSING, RawColumns, Shape
from .errors import InputError, short

_TRUE = frozenset({"true", "True", "TRUE", "1"})
_FALSE = frozenset({"false", "False", "FALSE", "0"})


def _boolean(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)  # "3.0" as pandas writes an int column that held a NaN
        if not value.is_integer():
            raise
        return int(value)


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "double": float, "float": float, "long": _integer, "integer": _integer, "boolean": _boolean,
}


def read_csv(text: str, shape: Shape, types: dict[str, str]) -> RawColumns:
    """The CSV's columns by name (the header row names them); InputError naming the row and field."""
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows)
    except StopIteration:
        raise InputError(400, "the CSV body is empty; send a header row with the column names, then the rows") from None
    except csv.Error as exc:
        raise InputError(400, f"malformed CSV: {short(str(exc), 120)}") from None
    header = [h.strip() for h in header]
    if header and header[0] == "" and "" not in shape.known:  # the index column of to_csv() with index=True
        drop_first = True
        header = header[1:]
    else:
        drop_first = False
    shape.check_fields(header, "the CSV header")
    width = len(header) + drop_first
    cells: list[list[str]] = []
    try:
        for i, row in enumerate(rows):
            if not row:
                continue
            if len(row) != width:
                raise InputError(422, f"invalid input: CSV row {i} has {len(row)} values, expected {width}",
                                 [{"row": i, "field": None, "type": "row_length", "message": f"expected {width} values"}])
            cells.append(row[1:] if drop_first else row)
            if len(cells) > shape.max_rows:
                shape.check_row_count(len(cells))
    except csv.Error as exc:
        raise InputError(400, f"malformed CSV: {short(str(exc), 120)}") from None
    if not cells:
        raise InputError(422, "invalid input: no records")
    count = len(cells)
    by_name = dict(zip(header, map(list, zip(*cells))))
    columns: dict[str, list] = {}
    for name in shape.names:
        if name not in by_name:
            columns[name] = [MISSING] * count
            continue
        convert = CONVERTERS.get(types.get(name, "string"))
        columns[name] = [_cell(v, convert, row, name) for row, v in enumerate(by_name[name])]
    return RawColumns(columns, count)


def _cell(text: str, convert: Callable[[str], Any] | None, row: int, name: str) -> Any:
    if text == "":
        return MISSING
    if convert is None:
        return text
    try:
        return convert(text.strip())
    except ValueError:
        raise InputError(422, f"invalid input: row {row}, field {name!r}: {short(repr(text), 60)} is not a "
                              f"{convert.__name__.strip('_')}",
                         [{"row": row, "field": name, "type": "csv_value",
                           "message": f"{short(repr(text), 60)} is not a {convert.__name__.strip('_')}"}]) from None
