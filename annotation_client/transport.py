"""One HTTP call with a timeout and retries (tenacity), shared by the platform clients.

Connection errors (nothing was sent) are always retried; timeouts and 5xx answers only for idempotent calls.
After the last attempt the platform is reported unavailable, so the caller can try again later. With
``max_bytes`` the body is streamed and reading stops past that many (decoded) bytes: an oversized document costs
no more memory than the limit.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .errors import PlatformUnavailable, TooLarge

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)


class _ServerError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


CHUNK = 64 * 1024


def _read_bounded(r: requests.Response, max_bytes: int, what: str) -> None:
    """Read ``r``'s body into ``r.content`` unless it is over ``max_bytes``: TooLarge, the connection closed."""
    declared = r.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes and "Content-Encoding" not in r.headers:
        r.close()
        raise TooLarge(f"{what}: the answer is {int(declared)} bytes, over the limit of {max_bytes}", max_bytes)
    body = bytearray()
    for chunk in r.iter_content(CHUNK):  # decoded: a compressed body is measured as it will be held
        body += chunk
        if len(body) > max_bytes:
            r.close()
            raise TooLarge(f"{what}: the answer is over the limit of {max_bytes} bytes", max_bytes)
    r._content = bytes(body)  # requests' own body cache: r.text and r.json() read it (requests has no setter)


def new_session() -> "requests.Session":
    """An HTTP session for a platform client. requests is imported here, not at module level: the web process
    parses webhooks with the platform classes but never calls a platform, and its workers stay ~5 MB smaller."""
    import requests  # noqa: PLC0415

    return requests.Session()


def send(session: requests.Session, method: str, url: str, *, what: str, timeout: Any, retries: int,
         backoff: float, max_backoff: float, idempotent: bool = True, max_bytes: int | None = None,
         **kwargs: Any) -> requests.Response:
    """``session.request(method, url, ...)`` retried as above; ``what`` names the platform and path in errors
    and logs (never credentials). Answers below 500 are returned as they are; with ``max_bytes``, TooLarge when
    the body is longer (not retried: the same document will be as large)."""
    import requests  # noqa: PLC0415 - see new_session

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, _ServerError):
            return idempotent
        if isinstance(exc, requests.ConnectionError):  # includes ConnectTimeout: nothing was sent
            return True
        return idempotent and isinstance(exc, requests.Timeout)

    def once() -> requests.Response:
        r = session.request(method, url, timeout=timeout, stream=max_bytes is not None, **kwargs)
        if max_bytes is not None:
            _read_bounded(r, max_bytes, what)
        if r.status_code >= 500:
            raise _ServerError(r.status_code, r.text)
        return r

    try:
        return Retrying(
            retry=retry_if_exception(retryable), stop=stop_after_attempt(retries + 1),
            wait=wait_exponential_jitter(multiplier=backoff, max=max_backoff), reraise=True,
            before_sleep=lambda rs: logger.warning("%s failed (%s); retry %d", what, rs.outcome.exception(),
                                                   rs.attempt_number),
        )(once)
    except _ServerError as exc:
        raise PlatformUnavailable(f"{what} answered HTTP {exc.status} after {retries + 1} attempts: "
                                  f"{exc.body[:200]}") from None
    except requests.RequestException as exc:
        raise PlatformUnavailable(f"{what} unreachable: {type(exc).__name__}") from None
