"""Tables for import and export: csv, xlsx and parquet (pandas with openpyxl and pyarrow). Pure: bytes in,
DataFrame out, and back.

A multilabel value is written as its labels joined by ``;`` (``joy;surprise``), the way the GoEmotions files and
spreadsheets carry it, and read back the same way.
"""
from __future__ import annotations

import io
from pathlib import PurePath
from typing import Any

import pandas as pd

from .errors import FormatError

SUFFIXES = (".csv", ".xlsx", ".parquet")
SEPARATOR = ";"


def table_kind(filename: str) -> str:
    """csv, xlsx or parquet, from the file name; anything else is a FormatError."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise FormatError(f"{filename}: a table must be .csv, .xlsx or .parquet, not {suffix or 'no suffix'!r}")
    return suffix[1:]


def read_table(data: bytes, filename: str) -> pd.DataFrame:
    """Every column as text (ids stay ``007``, not 7); empty cells are empty strings."""
    kind = table_kind(filename)
    try:
        if kind == "csv":
            df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        elif kind == "xlsx":
            df = pd.read_excel(io.BytesIO(data), dtype=str, keep_default_na=False, engine="openpyxl")
        else:
            df = pd.read_parquet(io.BytesIO(data)).astype(str).replace({"None": "", "nan": ""})
    except Exception as exc:  # each reader raises its own kinds; the message names the file
        raise FormatError(f"{filename}: not a readable {kind} file ({type(exc).__name__}: {exc})") from None
    df.columns = [str(c) for c in df.columns]
    return df


def require_columns(df: pd.DataFrame, filename: str, *columns: str) -> None:
    missing = [c for c in columns if c and c not in df.columns]
    if missing:
        raise FormatError(f"{filename}: no column {', '.join(map(repr, missing))}; columns: {list(df.columns)}")


def write_table(df: pd.DataFrame, filename: str) -> bytes:
    kind = table_kind(filename)
    buf = io.BytesIO()
    if kind == "csv":
        df.to_csv(buf, index=False)
    elif kind == "xlsx":
        df.to_excel(buf, index=False, engine="openpyxl")
    else:
        df.to_parquet(buf, index=False)
    return buf.getvalue()


def label_cell(value: Any) -> str:
    """A label value as a cell: a name, or a multilabel value's names joined by ``;``."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return SEPARATOR.join(sorted(str(v) for v in value))
    return "" if value is None else str(value)


def parse_label_cell(cell: str, multilabel: bool) -> Any:
    """The inverse of ``label_cell``: a tuple of names for a multilabel scheme, else the name ("" = none)."""
    cell = str(cell).strip()
    if multilabel:
        return tuple(sorted({c.strip() for c in cell.split(SEPARATOR) if c.strip()}))
    return cell
