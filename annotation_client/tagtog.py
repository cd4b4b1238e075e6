"""tagtog: the HTTP client of its documents API v1 and settings API (shared/docs/tagtog-api.md §1, §2), and
``TagtogPlatform``, prelabel's platform interface over it (webhooks §5, ann.json §3, plain.html §4).

Every call has a timeout. Connection errors, timeouts and 5xx answers are retried with exponential backoff
(tenacity); 4xx answers raise at once with the status and tagtog's message.
"""
from __future__ import annotations

from urllib.parse import quote

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from werkzeug.datastructures import Authorization

from formats.errors import FormatError
from formats.tagtog import (AnnDoc, GroundTruthPolicy, carries_suggestion, dump_annjson, has_human_label,
                            is_ground_truth, parse_annjson, parse_plain_html, parse_webhook, with_prelabel)

from .base import (Ignored, Listed, Plan, Platform, ProjectRef, Reading, Scheme, Suggestion, WebhookEvent, rejected,
                   utcnow)
from .errors import AuthError, EventRejected, NotFound, PlatformError, TooLarge, json_of
from .transport import new_session, send

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)
PRELABEL_WHO = "ml:prelabel-v"  # who prelabel's uploads carry (ml:prelabel-v<version>)


@dataclass(frozen=True)
class SearchHit:
    docid: str
    filename: str
    folder: str
    anncomplete: bool
    updated: str = ""  # when the document was last saved (reconciliation compares it)


@dataclass(frozen=True)
class LabelDef:
    id: str
    name: str
    type: str | None  # boolean | enum | string | number; None when only the legend is known
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnndocUpload:
    docid: str
    plain_html: str
    ann: AnnDoc


class TagtogClient:
    """One tagtog server (cloud, on-premises or the emulator), one set of Basic credentials."""

    platform = "tagtog"

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0,
                 connect_timeout: float = 5.0, retries: int = 4, backoff: float = 0.5, max_backoff: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._session = session
        self._auth = (username, password)
        if session is not None:
            session.auth = self._auth

    @property
    def session(self) -> "requests.Session":
        """Created on first use: the web process builds clients to parse webhooks and never calls a platform."""
        if self._session is None:
            self._session = new_session()
            self._session.auth = self._auth
        return self._session

    # -- transport
    def _request(self, method: str, path: str, params: dict[str, Any], *, idempotent: bool = True,
                 max_bytes: int | None = None, **kwargs: Any) -> requests.Response:
        r = send(self.session, method, f"{self.base_url}{path}", what=f"tagtog {method} {path}",
                 timeout=self.timeout, retries=self.retries, backoff=self.backoff, max_backoff=self.max_backoff,
                 idempotent=idempotent, max_bytes=max_bytes, params=params, **kwargs)
        if r.status_code >= 400:
            what = f"tagtog {method} {path} ({params.get('owner')}/{params.get('project')})"
            cls = {401: AuthError, 403: AuthError, 404: NotFound}.get(r.status_code, PlatformError)
            raise cls(r.status_code, what, r.text)
        return r

    def _docs(self, method: str, owner: str, project: str, **params: Any) -> requests.Response:
        files = params.pop("files", None)
        data = params.pop("data", None)
        idempotent = params.pop("idempotent", True)
        max_bytes = params.pop("max_bytes", None)
        return self._request(method, "/-api/documents/v1", {"owner": owner, "project": project, **params},
                             files=files, data=data, idempotent=idempotent, max_bytes=max_bytes)

    def _doc_output(self, owner: str, project: str, docid: str, output: str, max_bytes: int | None,
                    limit: str, **params: Any) -> requests.Response:
        """One document in one ``output`` format; TooLarge naming the document and the ``limit`` setting when
        its answer is over ``max_bytes``."""
        try:
            return self._docs("GET", owner, project, ids=docid, output=output, max_bytes=max_bytes, **params)
        except TooLarge as exc:
            raise TooLarge(f"{output} of document {docid} ({owner}/{project}) is over {limit}={exc.limit} bytes; "
                           "the document is not stored", exc.limit) from None

    # -- reads
    def get_annjson(self, owner: str, project: str, docid: str, member: str = "master",
                    max_bytes: int | None = None) -> AnnDoc:
        r = self._doc_output(owner, project, docid, "ann.json", max_bytes, "MAX_ANNOTATION_BYTES", member=member)
        return parse_annjson(r.content)

    def get_text(self, owner: str, project: str, docid: str, max_bytes: int | None = None) -> str:
        r = self._doc_output(owner, project, docid, "text", max_bytes, "MAX_TEXT_BYTES")
        r.encoding = r.encoding or "utf-8"
        return r.text

    def get_plain_html(self, owner: str, project: str, docid: str, max_bytes: int | None = None) -> str:
        r = self._doc_output(owner, project, docid, "plain.html", max_bytes, "MAX_TEXT_BYTES")
        r.encoding = "utf-8"
        return r.text

    def get_legend(self, owner: str, project: str) -> dict[str, str]:
        r = self._request("GET", "/-api/settings/v1/annotationsLegend", {"owner": owner, "project": project})
        return {k: v for k, v in json_of(r, "tagtog settings").items() if isinstance(v, str)}

    def get_label_defs(self, owner: str, project: str) -> list[LabelDef]:
        """Document labels with their types, from the settings export; falls back to the legend (no types)."""
        try:
            r = self._request("GET", "/-api/settings/v1/export", {"owner": owner, "project": project})
            metas = json_of(r, "tagtog annotations legend").get("metas", [])
            return [LabelDef(m["id"], m["name"], m.get("type"),
                             tuple(o.strip() for o in (m.get("description") or "").split(",") if o.strip())
                             if m.get("type") == "enum" else ()) for m in metas]
        except PlatformError as exc:
            if exc.status not in (400, 403, 404):
                raise
            logger.info("settings export unavailable (%s); using the legend", exc.status)
        return [LabelDef(k, v, None) for k, v in self.get_legend(owner, project).items() if k.startswith("m_")]

    def search(self, owner: str, project: str, query: str) -> Iterator[SearchHit]:
        """Every document matching ``query``, following pagination until ``pages.next == -1``."""
        page = 0
        while True:
            body = json_of(self._docs("GET", owner, project, search=query, output="search", page=page), "tagtog search")
            for d in body.get("docs", []):
                yield SearchHit(d["id"], d.get("filename", ""), d.get("folder", ""), bool(d.get("anncomplete")),
                                str(d.get("updated") or ""))
            nxt = body.get("pages", {}).get("next", -1)
            if nxt in (-1, None) or nxt <= page:
                return
            page = nxt

    # -- writes
    def create_text(self, owner: str, project: str, text: str, filename: str = "text.txt",
                    folder: str = "pool") -> tuple[str, str]:
        """Import a text as a new document; returns (docid, plain.html). Not retried once sent."""
        r = self._docs("POST", owner, project, output="html", folder=folder, filename=filename,
                       data={"text": text}, idempotent=False)
        r.encoding = "utf-8"
        return parse_plain_html(r.text).docid, r.text

    def upload_anndoc(self, owner: str, project: str, uploads: Sequence[AnndocUpload],
                      member: str = "master") -> list[dict[str, Any]]:
        """Replace annotations with ``format=anndoc`` pairs ``<docid>.plain.html`` + ``<docid>.ann.json``.

        Idempotent: tagtog matches each pair to its document by ``<html id>``, so a retry updates, not creates.
        """
        files = []
        for u in uploads:
            files.append(("files", (f"{u.docid}.plain.html", u.plain_html.encode("utf-8"))))
            files.append(("files", (f"{u.docid}.ann.json", dump_annjson(u.ann).encode("utf-8"))))
        r = self._docs("POST", owner, project, format="anndoc", output="null", member=member, files=files)
        return list(json_of(r, "tagtog import").get("items", []))

    def delete(self, owner: str, project: str, docid: str) -> int:
        return int(self._docs("DELETE", owner, project, idType="tagtogID", ids=docid).text or 0)


class TagtogPlatform(Platform):
    """tagtog projects: Basic-authenticated webhooks in format tagtogID, ground truth from ann.json document
    labels (``m_N``), pre-labels uploaded as anndoc with ``who: ml:prelabel-vN``."""

    name = "tagtog"
    can_create_documents = True
    client_class = TagtogClient

    def __init__(self, client: TagtogClient, *, webhook_username: str = "", webhook_password: str = "",
                 ignore_api_source: bool = True, member: str = "master", sync_query: str = "*",
                 policy: str = "anncomplete", prelabel_folder: str = "pool", max_text_bytes: int | None = None,
                 max_annotation_bytes: int | None = None) -> None:
        super().__init__(client)
        self.max_text_bytes, self.max_annotation_bytes = max_text_bytes, max_annotation_bytes
        self.webhook_username, self.webhook_password = webhook_username, webhook_password
        self.ignore_api_source = ignore_api_source
        self.member = member
        self.sync_query = sync_query
        self.policy = GroundTruthPolicy(policy)
        self.prelabel_folder = prelabel_folder
        self._defs: dict[int, list[LabelDef]] = {}  # project id -> label definitions, read once per process

    @classmethod
    def document_url(cls, settings: Any, owner: str, name: str, doc_id: str) -> str | None:
        # the web URL of a document: {DOMAIN}/{owner}/{project}/{folder}/{docid} (shared/docs/tagtog-api.md)
        return f"{settings.tagtog_base_url.rstrip('/')}/{owner}/{name}/pool/{quote(doc_id, safe='')}"

    @classmethod
    def from_settings(cls, settings: Any, client: Any = None) -> "TagtogPlatform":
        s = settings
        client = client or TagtogClient(s.tagtog_base_url, s.tagtog_username, s.tagtog_password,
                                        timeout=s.tagtog_timeout, retries=s.tagtog_retries)
        return cls(client, webhook_username=s.webhook_username, webhook_password=s.webhook_password,
                   ignore_api_source=s.ignore_api_source, member=s.tagtog_member, sync_query=s.tagtog_sync_query,
                   policy=s.ground_truth_policy, prelabel_folder=s.prelabel_folder,
                   max_text_bytes=s.max_text_bytes, max_annotation_bytes=s.max_annotation_bytes)

    @staticmethod
    def parse_project_spec(spec: str) -> tuple[str, str, str]:
        path, _, label = spec.strip().partition(":")
        owner, sep, name = path.partition("/")
        if not sep or not owner or not name:
            raise ValueError(f"project must look like owner/name[:label], got {spec!r}")
        return owner, name, label

    def not_served(self, owner: str, project: str) -> str:
        return f"project {owner}/{project} is not served by this prelabel (add it to TAGTOG_PROJECTS)"

    # -- webhooks --------------------------------------------------------------------------------------------
    def verify_webhook(self, headers: Mapping[str, str]) -> None:
        if not self.webhook_username:
            return
        auth = Authorization.from_header(headers.get("Authorization"))
        ok = auth is not None and auth.type == "basic"
        # compare both, always, in constant time: no early exit that tells which part was wrong
        user_ok = hmac.compare_digest((auth.username or "").encode() if ok else b"", self.webhook_username.encode())
        pass_ok = hmac.compare_digest((auth.password or "").encode() if ok else b"", self.webhook_password.encode())
        if not (ok and user_ok and pass_ok):
            raise rejected(401, "webhook credentials missing or wrong (HTTP Basic)",
                           **{"WWW-Authenticate": 'Basic realm="prelabel"'})

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent | Ignored:
        try:
            hook = parse_webhook(headers, body)
        except FormatError as exc:
            raise rejected(400, str(exc)) from None
        if hook.source == "API" and self.ignore_api_source:
            # prelabel's own uploads come back as API saves: acting on them would loop
            return Ignored("save made through the API (IGNORE_API_SOURCE=true)")
        key = hashlib.sha256(json.dumps(["tagtog", hook.owner, hook.project, hook.docid, hook.member, hook.source,
                                         hook.status]).encode() + b"\0" + body).hexdigest()
        return WebhookEvent(hook.owner, hook.project, hook.docid, hook.status, key, hook.member, hook.source)

    def plan_event(self, kind: str, ref: str, member: str) -> Plan:
        if kind == "reconcile":
            return Plan("reconcile")
        if member != self.member:
            return Plan("ignore", reason=f"ignored: member version {member!r} (prelabel reads {self.member!r})")
        return Plan("read", (ref,))

    # -- label definitions -----------------------------------------------------------------------------------
    def label_defs(self, project: ProjectRef, refresh: bool = False) -> list[LabelDef]:
        if refresh or project.id not in self._defs:
            self._defs[project.id] = self.client.get_label_defs(project.owner, project.name)
        return self._defs[project.id]

    def read_scheme(self, project: ProjectRef, refresh: bool = False) -> Scheme:
        """``a+b+c`` configures a multilabel scheme of those boolean labels; one name, a single label; nothing:
        several boolean labels (and nothing else) form a multilabel scheme, else the first label is used. The
        loop refreshes a multilabel scheme at each retrain: a label added on tagtog extends it."""
        p = project
        if not refresh and p.label_type == "multilabel" and p.label_ids:
            return Scheme("multilabel", tuple(i for i, _ in p.label_ids), tuple(n for _, n in p.label_ids), "boolean")
        if not refresh and p.label_id:
            return Scheme("single", (p.label_id,), (p.label_id,), p.label_type)
        defs = [d for d in self.label_defs(p, refresh=True) if d.id.startswith("m_")]
        spec = p.label_name
        if "+" in spec:
            wanted = [w.strip() for w in spec.split("+") if w.strip()]
            picks = [d for d in defs if d.name in wanted or d.id in wanted]
            missing = sorted(set(wanted) - {d.name for d in picks} - {d.id for d in picks})
            if missing:
                raise EventRejected(f"project {p.owner}/{p.name} has no document label(s) {missing}; "
                                    f"legend: {[d.name for d in defs]}")
            multi = True
        elif spec:
            picks, multi = [d for d in defs if d.name == spec or d.id == spec], False
        else:
            booleans = [d for d in defs if d.type == "boolean"]
            multi = len(booleans) >= 2 and len(booleans) == len(defs)
            picks = booleans if multi else defs[:1]
        if not picks:
            raise EventRejected(f"project {p.owner}/{p.name} has no document label "
                                f"{spec or '(any)'}; legend: {[d.name for d in defs]}")
        if multi:
            bad = [d.name for d in picks if d.type not in (None, "boolean")]
            if bad:
                raise EventRejected(f"a multilabel scheme needs boolean labels; {bad} are not")
            return Scheme("multilabel", tuple(d.id for d in picks), tuple(d.name for d in picks), "boolean",
                          record={"label_type": "multilabel", "label_id": None,
                                  "label_ids": [[d.id, d.name] for d in picks]})
        d = picks[0]
        if d.type not in (None, "boolean", "enum"):
            raise EventRejected(f"document label {d.name} ({d.id}) has type {d.type}; prelabel classifies "
                                "boolean and enum labels")
        return Scheme("single", (d.id,), (d.name,), d.type,
                      record={"label_type": d.type, "label_id": d.id, "label_ids": None})

    def allowed_classes(self, project: ProjectRef, scheme: Scheme) -> set[str] | None:
        if scheme.kind == "multilabel":  # the scheme's labels as tagtog defines them now
            return set(scheme.names)
        d = next((d for d in self.label_defs(project) if d.id == scheme.ids[0]), None)
        return set(d.options) if d is not None and d.type == "enum" and d.options else None

    # -- documents -------------------------------------------------------------------------------------------
    def ground_truth(self, ann: AnnDoc, scheme: Scheme) -> tuple[Any, str]:
        """The document's ground-truth value under ``scheme`` (None when it has none) and who set it.

        Multilabel: the sorted names of the scheme's labels set to true on a document that counts as ground
        truth (confirmed, or by policy touched by a person); labels left unset are false. A document still
        carrying a model's pre-label in the scheme does not count. Raises EventRejected on a non-boolean value.
        """
        if scheme.kind == "single":
            meta = ann.metas.get(scheme.ids[0])
            ok = meta is not None and is_ground_truth(ann, meta, self.policy)
            return (meta.value if ok else None), (",".join(meta.confidence.who) if meta is not None else "")
        metas = [(name, ann.metas.get(i)) for i, name in zip(scheme.ids, scheme.names)]
        present = [(n, m) for n, m in metas if m is not None]
        who = ",".join(sorted({w for _, m in present for w in m.confidence.who}))
        if any(m.confidence.is_ml for _, m in present):
            return None, who
        if not (ann.anncomplete or (self.policy is GroundTruthPolicy.ANNCOMPLETE_OR_USER
                                    and any(m.confidence.is_user for _, m in present))):
            return None, who
        for n, m in present:
            if not isinstance(m.value, bool):
                raise EventRejected(f"label {n} of a multilabel scheme is boolean; got {m.value!r} "
                                    f"({type(m.value).__name__})")
        return sorted(n for n, m in present if m.value is True), who

    def read_document(self, project: ProjectRef, doc_id: str, scheme: Scheme) -> Reading:
        try:
            ann = self.client.get_annjson(project.owner, project.name, doc_id, self.member,
                                          max_bytes=self.max_annotation_bytes)
        except FormatError as exc:
            raise FormatError(f"ann.json of {doc_id}: {exc}") from None
        defs = self.label_defs(project)
        unknown = [mid for mid in ann.metas if mid not in {d.id for d in defs}]
        if unknown:  # the legend may have grown since it was read
            defs = self.label_defs(project, refresh=True)
            unknown = [mid for mid in ann.metas if mid not in {d.id for d in defs}]
        if unknown:
            return Reading(doc_id, None, invalid=f"ann.json of {doc_id} has unknown label id(s) {unknown}; "
                                                 f"legend: {sorted(d.id for d in defs)}")
        try:
            value, who = self.ground_truth(ann, scheme)
        except EventRejected as exc:
            return Reading(doc_id, None, invalid=str(exc))
        d = next((d for d in defs if d.id == scheme.ids[0]), None) if scheme.kind == "single" else None
        if isinstance(value, str) and d is not None and d.type == "enum" and d.options and value not in d.options:
            return Reading(doc_id, None, who, invalid=f"label {d.id} has no option {value!r}; "
                                                      f"options: {list(d.options)}")
        return Reading(doc_id, value, who)

    def read_text(self, project: ProjectRef, doc_id: str, need_folder: bool) -> tuple[str, str | None]:
        text = self.client.get_text(project.owner, project.name, doc_id, max_bytes=self.max_text_bytes)
        if not need_folder:
            return text, None
        hits = [h for h in self.client.search(project.owner, project.name, f"docid:{doc_id}") if h.docid == doc_id]
        return text, (hits[0].folder if hits else None)

    def list_documents(self, project: ProjectRef) -> Iterable[Listed]:
        for hit in self.client.search(project.owner, project.name, self.sync_query):
            yield Listed(hit.docid, hit.updated, hit.filename, hit.folder)

    def list_labelled(self, project: ProjectRef, scheme: Scheme) -> dict[str, Listed]:
        return {h.docid: Listed(h.docid, h.updated, h.filename, h.folder)
                for h in self.client.search(project.owner, project.name, "anncomplete:true")}

    # -- writes ----------------------------------------------------------------------------------------------
    def upload_prelabels(self, project: ProjectRef, scheme: Scheme, suggestions: Sequence[Suggestion],
                         version: int, still_wanted: Callable[[str], bool],
                         uploaded: Callable[..., None]) -> int:
        """One anndoc upload per document. tagtog has no conditional update, so the window between the last read
        and the write is kept to one local check: plain.html is read first, then ann.json; a document a person has
        labelled or confirmed is never written, nor one whose person save is waiting in prelabel's queue (asked
        again right before the write), nor one that already shows the same suggestion (re-uploading it every
        round is what put the most uncertain documents under the annotators' hands). The annotations replaced are
        passed to ``uploaded`` (``before``), so a person's save that still lands in the window can be detected and
        what was there put back (``restore_overwritten``)."""
        who = f"{PRELABEL_WHO}{version}"
        name_to_id = dict(zip(scheme.names, scheme.ids))
        n = 0
        for sug in suggestions:
            if scheme.kind == "multilabel":  # every label of the scheme: true/false with its own probability
                marks = [(name_to_id[c], v, p) for c, v, p in sug.marks if c in name_to_id]
            else:
                marks = [(scheme.ids[0], json.loads(sug.value) if scheme.type == "boolean" else sug.value, sug.prob)]
            marks = [(lid, v, min(max(pr, 1e-6), 1.0)) for lid, v, pr in marks]  # tagtog's prob is in (0, 1]
            if not still_wanted(sug.doc_id):
                continue
            try:
                html = self.client.get_plain_html(project.owner, project.name, sug.doc_id, max_bytes=self.html_limit)
                read_at = utcnow()
                ann = self.client.get_annjson(project.owner, project.name, sug.doc_id, self.member,
                                              max_bytes=self.max_annotation_bytes)
                if has_human_label(ann):  # a person got there first: never overwrite
                    continue
                if carries_suggestion(ann, {lid: v for lid, v, _ in marks}, PRELABEL_WHO):
                    continue  # the annotator already sees this suggestion
                new = ann
                for lid, v, pr in marks:
                    new = with_prelabel(new, lid, v, pr, who)
                if not still_wanted(sug.doc_id):  # a person's save arrived while we read: leave it to them
                    continue
                self.client.upload_anndoc(project.owner, project.name, [AnndocUpload(sug.doc_id, html, new)],
                                          member=self.member)
            except NotFound:
                continue
            except TooLarge as exc:  # it grew on the platform since it was stored: leave it to the annotators
                logger.warning("pre-label of %s skipped: %s", sug.doc_id, exc)
                continue
            uploaded([sug], {sug.doc_id: (read_at, dump_annjson(ann))})
            n += 1
        return n

    def carries_upload(self, reading: Reading, version: int) -> bool:
        return f"{PRELABEL_WHO}{version}" in reading.who.split(",")

    def restore_overwritten(self, project: ProjectRef, doc_id: str, version: int, replaced: str) -> bool:
        """Put back the annotations an upload of ``version`` replaced, if the document still holds that upload
        and nothing a person made since."""
        ann = self.client.get_annjson(project.owner, project.name, doc_id, self.member,
                                      max_bytes=self.max_annotation_bytes)
        ours = f"{PRELABEL_WHO}{version}"
        if has_human_label(ann) or not any(ours in m.confidence.who for m in ann.metas.values()):
            return False
        html = self.client.get_plain_html(project.owner, project.name, doc_id, max_bytes=self.html_limit)
        self.client.upload_anndoc(project.owner, project.name, [AnndocUpload(doc_id, html, parse_annjson(replaced))],
                                  member=self.member)
        return True

    @property
    def html_limit(self) -> int | None:
        """plain.html holds the text escaped (``&amp;`` is 5 bytes for 1) in markup: the text limit, with room."""
        return None if self.max_text_bytes is None else 5 * self.max_text_bytes + 65536

    def create_document(self, project: ProjectRef, text: str, filename: str) -> str:
        found = [hit.docid for hit in self.client.search(project.owner, project.name, f"filename:{filename}")]
        if found:
            return found[0]
        return self.client.create_text(project.owner, project.name, text, filename, self.prelabel_folder)[0]
