"""Strict JSON decoding for everything prelabel receives: pure, one place.

``json.loads`` alone accepts duplicate keys (the last wins silently, so two readers of one body may disagree),
raises ``RecursionError`` (not ``ValueError``) on very deep nesting, and decodes lone surrogates. Here every
problem is a ``FormatError`` naming what is wrong.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import FormatError

MAX_DEPTH = 64  # platform payloads nest under 10 levels; anything far deeper is an attack or a bug


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise FormatError(f"duplicate key {k[:50]!r} in a JSON object")
        out[k] = v
    return out


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a recursive walk would be the attack's target itself)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
    return deepest


def loads(data: bytes | str, what: str = "body", max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``data`` (UTF-8 when bytes) as JSON; raises FormatError("<what> ...") when it is not valid UTF-8,
    not JSON, has a duplicate key, or nests deeper than ``max_depth``."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    except RecursionError:
        raise FormatError(f"{what} nests JSON deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise FormatError(f"{what} is not valid JSON: {exc}") from None
    if _depth(value) > max_depth:
        raise FormatError(f"{what} nests JSON deeper than {max_depth} levels")
    return value
