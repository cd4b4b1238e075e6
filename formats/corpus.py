"""Corpus files for pre-labelling: csv (a text column) or txt (one text per line). Pure: bytes in, texts out."""
from __future__ import annotations

import io

import pandas as pd

from .errors import FormatError


def parse_corpus(data: bytes, filename: str, text_column: str = "text") -> list[str]:
    """The non-empty texts of a corpus file, in file order."""
    name = filename.lower()
    if name.endswith(".txt"):
        try:
            texts = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise FormatError(f"{filename}: not valid UTF-8 (byte {exc.start})") from None
    elif name.endswith(".csv"):
        try:
            df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as exc:
            raise FormatError(f"{filename}: not a readable CSV: {exc}") from None
        if text_column not in df.columns:
            raise FormatError(f"{filename}: no column {text_column!r}; columns: {list(df.columns)}")
        texts = df[text_column].tolist()
    else:
        raise FormatError(f"{filename}: corpus must be .csv or .txt")
    return [t for t in (str(x).strip() for x in texts) if t]
