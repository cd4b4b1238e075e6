"""HTTP client for Label Studio's REST API (shared/docs/labelstudio.md §1, §3, §4).

Authentication: a legacy API token (``Authorization: Token <key>``), or a personal access token (a JWT refresh
token), exchanged at ``/api/token/refresh/`` for an access token that lives 5 minutes and is renewed on expiry or
on a 401. Every call has a timeout; connection errors, timeouts and 5xx answers are retried with exponential
backoff (tenacity); 4xx answers raise at once.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any, Sequence

import requests

from .errors import AuthError, NotFound, PlatformError, json_of
from .transport import send

logger = logging.getLogger(__name__)


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, or None when ``token`` is not one (a legacy token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else 0.0


class LabelStudioClient:
    """One Label Studio server and one API token (legacy or personal access token)."""

    platform = "labelstudio"

    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0, connect_timeout: float = 5.0,
                 retries: int = 4, backoff: float = 0.5, max_backoff: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = session or requests.Session()
        self._token = token
        self._pat = _jwt_expiry(token) is not None  # a JWT is a personal access token (refresh token)
        self._access: tuple[str, float] | None = None  # (access JWT, expiry)
        self._lock = threading.Lock()

    # -- auth
    def _auth_header(self, renew: bool = False) -> str:
        if not self._pat:
            return f"Token {self._token}"
        with self._lock:
            if renew or self._access is None or self._access[1] - 30 < time.time():
                r = self._send("POST", "/api/token/refresh/", json={"refresh": self._token}, auth=None)
                if r.status_code in (400, 401, 403):
                    raise AuthError(r.status_code, "Label Studio refused the personal access token "
                                                   "(POST /api/token/refresh/)", r.text)
                if r.status_code >= 400:
                    raise PlatformError(r.status_code, "Label Studio token refresh failed", r.text)
                access = json_of(r, "Label Studio token refresh").get("access", "")
                self._access = (access, _jwt_expiry(access) or time.time() + 240)
            return f"Bearer {self._access[0]}"

    # -- transport
    def _send(self, method: str, path: str, *, auth: str | None, idempotent: bool = True,
              **kwargs: Any) -> requests.Response:
        return send(self.session, method, f"{self.base_url}{path}", what=f"Label Studio {method} {path}",
                    timeout=self.timeout, retries=self.retries, backoff=self.backoff, max_backoff=self.max_backoff,
                    idempotent=idempotent, headers={"Authorization": auth} if auth else {}, **kwargs)

    def _request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        r = self._send(method, path, auth=self._auth_header(), idempotent=idempotent, **kwargs)
        if r.status_code == 401 and self._pat:  # the access token expired early: renew once
            r = self._send(method, path, auth=self._auth_header(renew=True), idempotent=idempotent, **kwargs)
        if r.status_code >= 400:
            cls = {401: AuthError, 403: AuthError, 404: NotFound}.get(r.status_code, PlatformError)
            raise cls(r.status_code, f"Label Studio {method} {path}", r.text)
        return r

    # -- reads
    def get_project(self, project_id: int) -> dict[str, Any]:
        return json_of(self._request("GET", f"/api/projects/{int(project_id)}/"),
                       f"Label Studio project {int(project_id)}")

    def get_task(self, task_id: int) -> dict[str, Any]:
        """A task with its annotations (``completed_by`` is an object here, an id in exports)."""
        return json_of(self._request("GET", f"/api/tasks/{int(task_id)}/"), f"Label Studio task {int(task_id)}")

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its annotations, labelled or not (the export API, in one call)."""
        r = self._request("GET", f"/api/projects/{int(project_id)}/export",
                          params={"exportType": "JSON", "download_all_tasks": "true"})
        tasks = json_of(r, f"Label Studio export of project {int(project_id)}")
        if not isinstance(tasks, list):
            raise PlatformError(r.status_code, f"Label Studio export of project {project_id} is not a list")
        return tasks

    def model_versions(self, project_id: int) -> dict[str, int]:
        """Model versions with predictions in the project, and how many each has."""
        return json_of(self._request("GET", f"/api/projects/{int(project_id)}/model-versions/"),
                       "Label Studio model versions")

    # -- writes
    def create_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        """Add predictions (``task``, ``result``, ``score``, ``model_version``) in one call; returns how many.
        Not retried once sent: a retry could add the same prediction twice."""
        if not predictions:
            return 0
        r = self._request("POST", f"/api/projects/{int(project_id)}/import/predictions", json=list(predictions),
                          idempotent=False)
        return int(json_of(r, "Label Studio predictions import").get("created", len(predictions)))

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Select the model version whose predictions the UI shows (it must already have predictions)."""
        self._request("PATCH", f"/api/projects/{int(project_id)}/", json={"model_version": model_version})
