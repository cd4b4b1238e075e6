"""Errors raised by annotation-platform clients. Messages carry ids and statuses, never credentials."""
from __future__ import annotations

from typing import Any


class PlatformError(Exception):
    """The platform answered with an error status (4xx); retrying the same call will not help."""

    def __init__(self, status: int, message: str, body: str = "") -> None:
        super().__init__(f"{message}: HTTP {status} {body[:300]}".rstrip())
        self.status = status
        self.body = body


class NotFound(PlatformError):
    """The project or document does not exist (HTTP 404)."""


class AuthError(PlatformError):
    """The platform rejected prelabel's credentials (HTTP 401/403)."""


class PlatformUnavailable(Exception):
    """The platform could not be reached, or kept answering 5xx, after all retries: try again later."""


class MalformedAnswer(PlatformError):
    """The platform answered 2xx with a body that is not the JSON it documents (cut off, HTML, garbage)."""


def json_of(r: Any, what: str) -> Any:
    """``r.json()``, or MalformedAnswer naming the call: the event fails with the reason instead of an internal
    error. The body is not repeated (it may hold anything)."""
    try:
        return r.json()
    except ValueError as exc:
        raise MalformedAnswer(r.status_code, f"{what}: the answer is not valid JSON ({exc})") from None


class WebhookRejected(Exception):
    """A webhook delivery refused before anything is stored: the HTTP status (401 credentials, 400 payload) and a
    message for the sender, plus headers to answer with (``WWW-Authenticate``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class EventRejected(Exception):
    """The document an event names cannot be used as it is (unknown label id, wrong value type, a label the
    scheme lacks): the event fails with this message; nothing else is affected."""


class TooLarge(EventRejected):
    """A platform's answer is over a size limit (MAX_TEXT_BYTES, MAX_ANNOTATION_BYTES): the document is refused
    and its event fails with this message. The body was read no further than the limit, so memory stays flat."""

    def __init__(self, message: str, limit: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
