"""Tables for import and export: csv, xlsx and parquet (pandas with openpyxl and pyarrow). Pure: bytes in,
DataFrame out, and back.

A multilabel value is written as its labels joined by ``;`` (``joy;surprise``), the way the GoEmotions files and
spreadsheets carry it, and read back the same way.

Exports never run code in a spreadsheet (texts come from whoever wrote the documents): a CSV cell that starts with
``= + - @``, a tab or a carriage return gets a leading apostrophe (OWASP's rule for CSV injection), and reading a CSV
takes it off again, so an export imports back to the same text; XLSX cells are written as text, never formulas.
"""
from __future__ import annotations

import io
from pathlib import PurePath
from typing import Any

import pandas as pd

from .errors import FormatError

SUFFIXES = (".csv", ".xlsx", ".parquet")
SEPARATOR = ";"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as the start of a formula


def neutralise(cell: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a leading apostrophe before ``= + - @``, tab or CR (also before
    apostrophes already leading such a cell, so ``unneutralise`` gives back exactly the original)."""
    if isinstance(cell, str) and cell.lstrip("'").startswith(FORMULA_START):
        return "'" + cell
    return cell


def unneutralise(cell: Any) -> Any:
    """The inverse of ``neutralise``, applied to every CSV cell read."""
    if isinstance(cell, str) and cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_START):
        return cell[1:]
    return cell


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
            df = df.map(unneutralise).rename(columns=unneutralise)
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
        # CRLF rows (RFC 4180): a cell holding a lone CR is quoted, not split into two rows
        df.map(neutralise).rename(columns=neutralise).to_csv(buf, index=False, lineterminator="\r\n")
    elif kind == "xlsx":
        _write_xlsx(df, buf)
    else:
        df.to_parquet(buf, index=False)
    return buf.getvalue()


def _write_xlsx(df: pd.DataFrame, buf: io.BytesIO) -> None:
    """Every string cell typed as text: openpyxl (and pandas through it) turns a string starting with ``=`` into a
    live formula (``HYPERLINK``, DDE ``cmd|...``)."""
    from openpyxl import Workbook  # noqa: PLC0415

    wb = Workbook(write_only=False)
    ws = wb.active
    for r, row in enumerate([list(map(str, df.columns)), *df.itertuples(index=False, name=None)], start=1):
        for c, value in enumerate(row, start=1):
            if value is None or (isinstance(value, float) and value != value):
                continue
            cell = ws.cell(row=r, column=c)
            cell.value = value.item() if hasattr(value, "item") else value  # (XML keeps a lone CR as LF)
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text, whatever it starts with
    wb.save(buf)


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
