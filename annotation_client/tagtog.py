"""HTTP client for tagtog's documents API v1 and settings API (shared/docs/tagtog-api.md §1, §2).

Every call has a timeout. Connection errors, timeouts and 5xx answers are retried with exponential backoff
(tenacity); 4xx answers raise at once with the status and tagtog's message.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import requests

from formats.tagtog import AnnDoc, dump_annjson, parse_annjson, parse_plain_html

from .errors import AuthError, NotFound, PlatformError, json_of
from .transport import send

logger = logging.getLogger(__name__)


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
        self.session = session or requests.Session()
        self.session.auth = (username, password)

    # -- transport
    def _request(self, method: str, path: str, params: dict[str, Any], *, idempotent: bool = True,
                 **kwargs: Any) -> requests.Response:
        r = send(self.session, method, f"{self.base_url}{path}", what=f"tagtog {method} {path}",
                 timeout=self.timeout, retries=self.retries, backoff=self.backoff, max_backoff=self.max_backoff,
                 idempotent=idempotent, params=params, **kwargs)
        if r.status_code >= 400:
            what = f"tagtog {method} {path} ({params.get('owner')}/{params.get('project')})"
            cls = {401: AuthError, 403: AuthError, 404: NotFound}.get(r.status_code, PlatformError)
            raise cls(r.status_code, what, r.text)
        return r

    def _docs(self, method: str, owner: str, project: str, **params: Any) -> requests.Response:
        files = params.pop("files", None)
        data = params.pop("data", None)
        idempotent = params.pop("idempotent", True)
        return self._request(method, "/-api/documents/v1", {"owner": owner, "project": project, **params},
                             files=files, data=data, idempotent=idempotent)

    # -- reads
    def get_annjson(self, owner: str, project: str, docid: str, member: str = "master") -> AnnDoc:
        r = self._docs("GET", owner, project, ids=docid, output="ann.json", member=member)
        return parse_annjson(r.content)

    def get_text(self, owner: str, project: str, docid: str) -> str:
        r = self._docs("GET", owner, project, ids=docid, output="text")
        r.encoding = r.encoding or "utf-8"
        return r.text

    def get_plain_html(self, owner: str, project: str, docid: str) -> str:
        r = self._docs("GET", owner, project, ids=docid, output="plain.html")
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
