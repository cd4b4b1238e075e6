"""One HTTP call with a timeout and retries (tenacity), shared by the platform clients.

Connection errors (nothing was sent) are always retried; timeouts and 5xx answers only for idempotent calls.
After the last attempt the platform is reported unavailable, so the caller can try again later.
"""
from __future__ import annotations

import logging
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .errors import PlatformUnavailable

logger = logging.getLogger(__name__)


class _ServerError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def send(session: requests.Session, method: str, url: str, *, what: str, timeout: Any, retries: int,
         backoff: float, max_backoff: float, idempotent: bool = True, **kwargs: Any) -> requests.Response:
    """``session.request(method, url, ...)`` retried as above; ``what`` names the platform and path in errors
    and logs (never credentials). Answers below 500 are returned as they are."""

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, _ServerError):
            return idempotent
        if isinstance(exc, requests.ConnectionError):  # includes ConnectTimeout: nothing was sent
            return True
        return idempotent and isinstance(exc, requests.Timeout)

    def once() -> requests.Response:
        r = session.request(method, url, timeout=timeout, **kwargs)
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
