"""The one error of formats/: malformed input, with a message naming the offending field."""
from __future__ import annotations


class FormatError(ValueError):
    """A document, payload or file is malformed; the message names the offending field."""
