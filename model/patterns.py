"""User-supplied regexes (``next?regex=``, AL_REGEX), compiled with RE2: matching takes time linear in the text,
whatever the pattern, so a pattern such as ``(a+)+$`` cannot pin a web thread or the worker.

RE2 accepts Python's usual syntax (classes, ``(?i)``, ``\\b``, ``{m,n}`` up to 1000, named groups ``(?P<n>...)``)
but not back-references (``\\1``) or look-arounds (``(?=``, ``(?!``, ``(?<=``, ``(?<!``); ``\\d``, ``\\w`` and
``\\s`` are ASCII-only (use ``\\pL``, ``\\p{Greek}``... for other scripts). A pattern it refuses gets a
``PatternError`` naming the pattern and RE2's reason; so does one whose compiled program is over MAX_PROGRAM_SIZE.
A filter looks at the first MAX_SCAN_CHARS characters of each text (there, ``$`` matches at that end).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

MAX_PATTERN_CHARS = 500  # a filter on a text corpus needs far less; bounds compile time and memory
# RE2 is linear in the text, but its factor is the compiled program's size: a counted repetition such as
# ``(.*a){1000}$`` (13 characters) compiles to ~11,000 instructions and took 17 s on one 200 KB text. A filter
# people write compiles to well under 1,000 (``(?i)prize`` is 9; ``(a|b){200}`` 604).
MAX_PROGRAM_SIZE = 1000
MAX_SCAN_CHARS = 10_000  # a pattern is matched against the first this many characters of each text

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
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(f"regex {pattern!r} does not compile: {reason} (RE2 syntax: linear-time matching, "
                           "no back-references or look-arounds)") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise PatternError(f"regex {pattern!r} compiles to {compiled.programsize} RE2 instructions; at most "
                           f"{MAX_PROGRAM_SIZE} are accepted (a counted repetition such as {{1000}} multiplies "
                           "the program: use a smaller count)")
    return compiled


def matches(compiled: Any, text: str) -> bool:
    """Whether a compiled pattern is found in ``text``'s first MAX_SCAN_CHARS characters (what a regex filter
    looks at: the work per document is bounded whatever its length)."""
    return compiled.search(text, 0, MAX_SCAN_CHARS) is not None
