"""Label Studio: the HTTP client of its REST API (shared/docs/labelstudio.md §1, §3, §4), and
``LabelStudioPlatform``, prelabel's platform interface over it.

Webhook bodies are never trusted for labels: an event only names a task, and the worker reads the task back from
Label Studio with prelabel's own token. A replayed, forged or out-of-order webhook therefore converges to what
Label Studio holds.

Authentication: a legacy API token (``Authorization: Token <key>``), or a personal access token (a JWT refresh
token), exchanged at ``/api/token/refresh/`` for an access token that lives 5 minutes and is renewed on expiry or
on a 401. Every call has a timeout; connection errors, timeouts and 5xx answers are retried with exponential
backoff (tenacity); 4xx answers raise at once.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping, Sequence


from formats.errors import FormatError
from formats.labelstudio import (AUDIT_CLUSTER, QUEUE_SAMPLING, QUEUE_VERSION, QUEUE_VIEWS, LabelConfig,
                                 build_prediction, parse_label_config, queue_view,
                                 parse_webhook, task_label)

from .base import Ignored, Listed, Plan, Platform, ProjectRef, Reading, Scheme, Suggestion, WebhookEvent, rejected
from .errors import AuthError, EventRejected, NotFound, PlatformError, TooLarge, json_of
from .transport import new_session, send

if TYPE_CHECKING:
    import requests

OWNER = "ls"  # Label Studio projects have no owner: stored as ls/<project id>

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
        self._session = session
        self._token = token
        self._pat = _jwt_expiry(token) is not None  # a JWT is a personal access token (refresh token)
        self._access: tuple[str, float] | None = None  # (access JWT, expiry)
        self._lock = threading.Lock()

    @property
    def session(self) -> "requests.Session":
        """Created on first use: the web process builds clients to parse webhooks and never calls a platform."""
        if self._session is None:
            self._session = new_session()
        return self._session

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

    def get_task(self, task_id: int, max_bytes: int | None = None) -> dict[str, Any]:
        """A task with its annotations (``completed_by`` is an object here, an id in exports); TooLarge when its
        answer is over ``max_bytes``."""
        try:
            r = self._request("GET", f"/api/tasks/{int(task_id)}/", max_bytes=max_bytes)
        except TooLarge as exc:
            raise TooLarge(f"task {int(task_id)} is over MAX_TEXT_BYTES + MAX_ANNOTATION_BYTES = {exc.limit} bytes; "
                           "it is not stored", exc.limit) from None
        return json_of(r, f"Label Studio task {int(task_id)}")

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

    def update_project(self, project_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH project fields (``model_version``, ``sampling``); the project as it is now."""
        return json_of(self._request("PATCH", f"/api/projects/{int(project_id)}/", json=dict(fields)),
                       f"Label Studio project {int(project_id)}")

    def create_prediction(self, prediction: Mapping[str, Any]) -> int:
        """One prediction through ``POST /api/predictions``, the only call that keeps its ``cluster`` (the bulk
        import drops it); its id. Not retried once sent."""
        r = self._request("POST", "/api/predictions/", json=dict(prediction), idempotent=False)
        return int(json_of(r, "Label Studio prediction").get("id", 0))

    def delete_task_predictions(self, project_id: int, task_ids: Sequence[int], chunk: int = 1000) -> int:
        """Delete every prediction of these tasks, ``chunk`` tasks a call (the Data Manager action
        ``delete_tasks_predictions``); how many predictions went. Idempotent: a retry deletes nothing more."""
        gone = 0
        for i in range(0, len(task_ids), chunk):
            r = self._request("POST", "/api/dm/actions", params={"id": "delete_tasks_predictions",
                                                                  "project": int(project_id)},
                              json={"selectedItems": {"all": False, "included": [int(t) for t in
                                                                                 task_ids[i:i + chunk]]}})
            gone += int(json_of(r, "Label Studio delete predictions").get("processed_items", 0))
        return gone

    def views(self, project_id: int) -> list[dict[str, Any]]:
        """The project's Data Manager tabs."""
        out = json_of(self._request("GET", "/api/dm/views/", params={"project": int(project_id)}),
                      "Label Studio views")
        return out if isinstance(out, list) else []

    def create_view(self, project_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
        """A Data Manager tab (``data``: ``title``, ``ordering``, ``filters``)."""
        return json_of(self._request("POST", "/api/dm/views/", json={"project": int(project_id), "data": dict(data)},
                                     idempotent=False), "Label Studio view")


QUEUE_CHUNK = 1000  # predictions per import call (Label Studio itself processes an import 500 at a time)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class LabelStudioPlatform(Platform):
    """Label Studio projects: webhooks with a secret header (sent once, 1 s timeout, no retries: the periodic
    reconciliation takes over what is lost), ground truth from each task's latest annotation under the project's
    label config, pre-labels as predictions (they never overwrite annotations) on every pool task, served by
    the project's own labeling stream (``upload_queue``)."""

    name = "labelstudio"
    noun = "task"
    client_class = LabelStudioClient
    listing_is_complete = True  # the export lists every task: one missing was deleted
    retrain_on_scheme_change = True
    queues_pool = True  # Community Edition has no active-learning loop: prelabel's suggestions and its sampling are it

    def __init__(self, client: LabelStudioClient, *, webhook_secret: str = "",
                 webhook_header: str = "X-Prelabel-Secret", max_webhook_bytes: int | None = None,
                 max_text_bytes: int | None = None, max_annotation_bytes: int | None = None) -> None:
        super().__init__(client)
        self.max_text_bytes, self.max_annotation_bytes = max_text_bytes, max_annotation_bytes
        self.webhook_secret, self.webhook_header = webhook_secret, webhook_header
        self.max_webhook_bytes = max_webhook_bytes  # TASKS_CREATED carries every imported task
        self._configs: dict[int, LabelConfig] = {}  # re-read on PROJECT_UPDATED, at each reconcile, on unknown choices

    @classmethod
    def document_url(cls, settings: Any, owner: str, name: str, doc_id: str) -> str | None:
        # the Data Manager with the task open: {LABELSTUDIO_URL}/projects/{id}/data?task={task id}
        return f"{settings.labelstudio_url.rstrip('/')}/projects/{name}/data?task={doc_id}"

    @classmethod
    def from_settings(cls, settings: Any, client: Any = None) -> "LabelStudioPlatform":
        s = settings
        client = client or LabelStudioClient(s.labelstudio_url, s.labelstudio_token, timeout=s.labelstudio_timeout,
                                             retries=s.labelstudio_retries)
        return cls(client, webhook_secret=s.labelstudio_webhook_secret, webhook_header=s.labelstudio_webhook_header,
                   max_webhook_bytes=s.labelstudio_max_body_bytes, max_text_bytes=s.max_text_bytes,
                   max_annotation_bytes=s.max_annotation_bytes)

    @staticmethod
    def parse_project_spec(spec: str) -> tuple[str, str, str]:
        pid, _, control = spec.strip().partition(":")  # "<project id>[:<Choices name>]"
        if not pid.strip().isdigit():
            raise ValueError(f"Label Studio project must look like <id>[:<Choices name>], got {spec!r}")
        return OWNER, str(int(pid)), control.strip()

    def describe_value(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    def not_served(self, owner: str, project: str) -> str:
        return (f"Label Studio project {project} is not served by this prelabel (add its id to "
                "LABELSTUDIO_PROJECTS)")

    # -- webhooks --------------------------------------------------------------------------------------------
    def secret_ok(self, headers: Mapping[str, str]) -> bool:
        """True when no secret is configured, or the configured header carries it (constant-time compare)."""
        if not self.webhook_secret:
            return True
        got = headers.get(self.webhook_header) or ""
        return hmac.compare_digest(got.encode("utf-8", "replace"), self.webhook_secret.encode("utf-8"))

    def verify_webhook(self, headers: Mapping[str, str]) -> None:
        if not self.secret_ok(headers):
            raise rejected(401, f"webhook secret missing or wrong (header {self.webhook_header})")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | Ignored:
        """Skipped annotations (``was_cancelled`` or an empty result) are not labels and are ignored when created.
        Deliveries are de-duplicated by annotation id and ``updated_at``; bulk imports (TASKS_CREATED) become one
        reconcile of the project, coalesced while one is waiting."""
        try:
            hook = parse_webhook(body)
        except FormatError as exc:
            raise rejected(400, str(exc)) from None
        if hook.project_id is None:
            return Ignored(f"action {hook.action} is not used by prelabel")
        pid = hook.project_id
        once = False
        if hook.action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            if hook.skipped and hook.action == "ANNOTATION_CREATED":
                return Ignored("skipped task (was_cancelled or empty result): not a label", OWNER, str(pid))
            kind, ref, once = hook.action, str(hook.task_id), True
            key = _key("labelstudio", pid, "annotation", hook.annotation_id, hook.updated_at)
        elif hook.action == "ANNOTATIONS_DELETED":
            ref = "annotations:" + ",".join(str(i) for i in sorted(hook.annotation_ids))
            kind, once = hook.action, True
            key = _key("labelstudio", pid, "deleted", sorted(hook.annotation_ids))
            if len(ref) > 600:  # too many ids to keep on the event: compare everything instead
                kind, ref, once = "reconcile", "*", False
                key = _key("labelstudio", pid, "reconcile")
        elif hook.action == "TASKS_CREATED":  # imported tasks may carry annotations, which send no other event
            kind, ref, key = "reconcile", "*", _key("labelstudio", pid, "reconcile")
        elif hook.action == "PROJECT_UPDATED":
            kind, ref = hook.action, "*"
            key = _key("labelstudio", pid, "project", hashlib.sha256(hook.label_config.encode()).hexdigest())
        else:  # START_TRAINING
            kind, ref, key = hook.action, "*", _key("labelstudio", pid, "train")
        return WebhookEvent(OWNER, str(pid), ref, kind, key, once=once)

    def plan_event(self, kind: str, ref: str, member: str) -> Plan:
        if kind in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            return Plan("read", (ref,))
        if kind == "ANNOTATIONS_DELETED":
            return Plan("read_annotated", annotation_ids=tuple(i for i in ref.removeprefix("annotations:").split(",")
                                                               if i))
        if kind == "reconcile":
            return Plan("reconcile")
        if kind == "PROJECT_UPDATED":
            return Plan("refresh_scheme")
        if kind == "START_TRAINING":
            return Plan("retrain")
        raise EventRejected(f"unknown Label Studio event kind {kind!r}")

    # -- label definitions -----------------------------------------------------------------------------------
    def config(self, project: ProjectRef, refresh: bool = False) -> LabelConfig:
        if refresh or project.id not in self._configs:
            ls_id = int(project.name)
            answer = self.client.get_project(ls_id)
            try:
                self._configs[project.id] = parse_label_config(answer.get("label_config") or "", project.label_name)
            except FormatError as exc:
                raise EventRejected(f"Label Studio project {ls_id}: {exc}") from None
        return self._configs[project.id]

    def read_scheme(self, project: ProjectRef, refresh: bool = False) -> Scheme:
        """``single`` (one class per task, binary or multiclass) or ``multilabel`` (choice="multiple")."""
        cfg = self.config(project, refresh)
        record = {"label_id": cfg.from_name, "label_type": "multilabel" if cfg.multiple else "enum",
                  "label_ids": [[c, c] for c in cfg.choices]}
        if cfg.multiple:
            return Scheme("multilabel", cfg.choices, cfg.choices, "boolean", record=record)
        return Scheme("single", (cfg.from_name,), (cfg.from_name,), "enum", record=record)

    def allowed_classes(self, project: ProjectRef, scheme: Scheme) -> set[str] | None:
        return set(self.config(project).choices)

    # -- documents -------------------------------------------------------------------------------------------
    def _reading(self, task: Mapping[str, Any], cfg: LabelConfig) -> Reading:
        tl = task_label(task, cfg)
        if too_large := self.oversized(task, tl.text):
            return Reading(str(tl.task_id), None, invalid=too_large)
        return Reading(str(tl.task_id), tl.value, tl.who, str(tl.annotation_id) if tl.annotation_id else None,
                       tl.text, tl.invalid)

    def oversized(self, task: Mapping[str, Any], text: str | None) -> str:
        """Why ``task`` is over MAX_TEXT_BYTES or MAX_ANNOTATION_BYTES ("" when it is not): such a task is never
        stored (an export lists it whatever its size)."""
        tid = task.get("id")
        size = len(text.encode("utf-8")) if text else 0
        if self.max_text_bytes is not None and size > self.max_text_bytes:
            return f"text of task {tid} is {size} bytes, over MAX_TEXT_BYTES={self.max_text_bytes}; it is not stored"
        if self.max_annotation_bytes is not None:
            size = len(json.dumps(task.get("annotations") or []).encode("utf-8"))
            if size > self.max_annotation_bytes:
                return (f"annotations of task {tid} are {size} bytes, over MAX_ANNOTATION_BYTES="
                        f"{self.max_annotation_bytes}; it is not stored")
        return ""

    def read_document(self, project: ProjectRef, doc_id: str, scheme: Scheme) -> Reading:
        limit = None if self.max_text_bytes is None or self.max_annotation_bytes is None else \
            self.max_text_bytes + self.max_annotation_bytes + 65536  # the task's other fields: ids, dates, meta
        return self._reading(self.client.get_task(int(doc_id), max_bytes=limit), self.config(project))

    def read_text(self, project: ProjectRef, doc_id: str, need_folder: bool) -> tuple[str, str | None]:
        reading = self.read_document(project, doc_id, self.read_scheme(project))
        if reading.invalid and reading.text is None:  # e.g. over MAX_TEXT_BYTES: never stored as an empty text
            raise EventRejected(reading.invalid)
        return reading.text or "", None

    def list_documents(self, project: ProjectRef) -> Iterable[Listed]:
        return self.list_labelled(project, self.read_scheme(project)).values()

    def list_labelled(self, project: ProjectRef, scheme: Scheme) -> dict[str, Listed]:
        """Every task with its annotations, in one export call; a task that cannot be read is listed as invalid."""
        cfg = self.config(project)
        out: dict[str, Listed] = {}
        for task in self.client.export_tasks(int(project.name)):
            try:
                r = self._reading(task, cfg)
            except FormatError as exc:
                tid = task.get("id") if isinstance(task, Mapping) else None
                logger.warning("Label Studio project %s: task %s unreadable: %s", project.name, tid, exc)
                if isinstance(tid, int) and not isinstance(tid, bool):
                    out[str(tid)] = Listed(str(tid), reading=Reading(str(tid), None, invalid=str(exc)))
                continue
            out[r.doc_id] = Listed(r.doc_id, reading=r)
        return out

    # -- writes ----------------------------------------------------------------------------------------------
    def upload_prelabels(self, project: ProjectRef, scheme: Scheme, suggestions: Sequence[Suggestion],
                         version: int, still_wanted: Callable[[str], bool],
                         uploaded: Callable[[Sequence[Suggestion]], None]) -> int:
        """A batch written as the queue writes it (one current suggestion per task, under QUEUE_VERSION); the
        worker calls ``upload_queue`` for Label Studio (``queues_pool``), this serves the common interface."""
        return self._write(project, suggestions, (), still_wanted, uploaded)

    def upload_queue(self, project: ProjectRef, scheme: Scheme, suggestions: Sequence[Suggestion], *, mode: str,
                     audit: Collection[str], still_wanted: Callable[[str], bool],
                     uploaded: Callable[..., None]) -> int:
        """Label Studio Community's active-learning queue: ``_write`` the changed suggestions, then the project's
        ``sampling`` follows PRELABEL_MODE (learn, mixed: "Uncertainty sampling", lowest score first; review:
        sequential, with the "surest first" tab) and the two prelabel tabs are created if missing."""
        n = self._write(project, suggestions, audit, still_wanted, uploaded)
        self._queue_settings(int(project.name), QUEUE_SAMPLING.get(mode, QUEUE_SAMPLING["learn"]), n > 0)
        return n

    def _write(self, project: ProjectRef, suggestions: Sequence[Suggestion], audit: Collection[str],
               still_wanted: Callable[[str], bool], uploaded: Callable[..., None]) -> int:
        """Each task's predictions are deleted (one Data Manager action per 1,000 tasks) and its new suggestion
        imported (one call per 1,000) under QUEUE_VERSION, so a task carries exactly one current suggestion with
        its calibrated score; a random document for the estimate (``audit``) goes in one call of its own, the only
        one that keeps its ``cluster`` (AUDIT_CLUSTER: served early). Returns how many were written."""
        todo = [s for s in suggestions if still_wanted(s.doc_id)]
        if not todo:
            return 0
        ls_id = int(project.name)
        cfg = self.config(project)
        self.client.delete_task_predictions(ls_id, [int(s.doc_id) for s in todo])
        bulk = [s for s in todo if s.doc_id not in audit]
        for i in range(0, len(bulk), QUEUE_CHUNK):
            part = bulk[i:i + QUEUE_CHUNK]
            self.client.create_predictions(ls_id, [build_prediction(cfg, s.value, s.prob, QUEUE_VERSION,
                                                                    int(s.doc_id)) for s in part])
            uploaded(part)
        for s in todo:
            if s.doc_id in audit:
                self.client.create_prediction({**build_prediction(cfg, s.value, s.prob, QUEUE_VERSION,
                                                                  int(s.doc_id)), "cluster": AUDIT_CLUSTER})
                uploaded([s])
        return len(todo)

    def _queue_settings(self, ls_id: int, sampling: str, wrote: bool) -> None:
        """Select QUEUE_VERSION and ``sampling`` where the project differs (a model_version no prediction
        carries is refused, hence ``wrote``), and create the prelabel tabs that are missing."""
        current = self.client.get_project(ls_id)
        change: dict[str, Any] = {}
        if current.get("sampling") != sampling:
            change["sampling"] = sampling
        if current.get("model_version") != QUEUE_VERSION and (wrote or QUEUE_VERSION in self.client.model_versions(
                ls_id)):
            change["model_version"] = QUEUE_VERSION
        if change:
            self.client.update_project(ls_id, change)
            logger.info("Label Studio project %s: %s", ls_id, ", ".join(f"{k} = {v}" for k, v in change.items()))
        have = {(v.get("data") or {}).get("title") for v in self.client.views(ls_id)}
        for title in QUEUE_VIEWS:
            if title not in have:
                self.client.create_view(ls_id, queue_view(title))
                logger.info("Label Studio project %s: created the tab %r", ls_id, title)
