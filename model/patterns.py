"""User-supplied regexes (``next?regex=``, AL_REGEX), compiled with RE2: matching takes time linear in the text,
whatever the pattern, so a pattern such as ``(a+)+$`` cannot pin a web thread or the worker.

RE2 accepts Python's usual syntax (classes, ``(?i)``, ``\\b``, ``{m,n}`` up to 1000, named groups ``(?P<n>...)``)
but not back-references (``\\1``) or look-arounds (``(?=``, ``(?!``, ``(?<=``, ``(?<!``); ``\\d``, ``\\w`` and
``\\s`` are ASCII-only (use ``\\pL``, ``\\p{Greek}``... for other scripts). A pattern it refuses gets a
``PatternError`` naming the pattern and RE2's reason.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

MAX_PATTERN_CHARS = 500  # a filter on a text corpus needs far less; bounds compile time and memory

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would write each refused pattern to stderr; the error carries the reason
_OPTIONS.max_mem = 8 << 20  # compiled program and DFA cache per pattern (RE2's default; explicit because it bounds)


class PatternError(ValueError):
    """A pattern that is too long, or that RE2 does not compile (bad syntax, or a construct it does not support)."""


@lru_cache(maxsize=64)  # the web checks a pattern then ranks with it; the worker uses AL_REGEX every round
def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (its ``search``/``match`` work as ``re``'s, and it is safe to share between
    threads); PatternError naming it otherwise."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"regex is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS} are accepted")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(f"regex {pattern!r} does not compile: {reason} (RE2 syntax: linear-time matching, "
                           "no back-references or look-arounds)") from None
