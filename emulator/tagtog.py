"""A local emulator of tagtog's documents API v1, settings legend and webhooks.

tagtog itself is unreachable; this server follows shared/docs/tagtog-api.md (checklist §8) so that prelabel's
client and end-to-end tests talk real HTTP to something that behaves like tagtog:

* HTTP Basic auth; projects keyed by (owner, project) with members.
* ``/-api/documents/v1``: text and file imports, pre-annotated pairs (``format=anndoc`` / ``*-plus-annjson``)
  matched by ``<html id>``, GET by ``ids`` with every output, search (pages of 50, ``output=csv``), DELETE.
* ``/-api/settings/v1/annotationsLegend`` and ``/-api/settings/v1/export``.
* Webhooks (format ``tagtogID``) fired after imports and saves, source ``API`` or ``GUI``.
* ``POST /-emulator/annotate``: the "annotator" — set labels and confirm as a person in the web editor would;
  fires the webhook with source ``GUI``. ``GET /-emulator/log``: what happened, for tests and benchmarks.

Run it: ``python -m emulator.tagtog --port 8090 --user alice:secret --load ../shared/data/tagtog_bbc_news=alice/bbc``.
"""
from __future__ import annotations

import argparse
import fnmatch
import hmac
import json
import logging
import random
import re
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import requests
from flask import Flask, Response, request
from werkzeug.serving import make_server

from formats.tagtog import FormatError, build_plain_html, parse_annjson, parse_plain_html

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
ID_CHARS = string.ascii_letters + string.digits + "._"
PAIR_FORMATS = {"anndoc", "default-plus-annjson", "verbatim-plus-annjson", "formatted-plus-annjson",
                "nativepdfv1-plus-annjson"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def empty_ann() -> dict[str, Any]:
    return {"annotatable": {"parts": []}, "anncomplete": False, "sources": [], "metas": {}, "entities": [],
            "relations": []}


@dataclass
class Doc:
    docid: str
    filename: str
    folder: str
    plain_html: str
    text: str
    orig: bytes
    ann: dict[str, dict[str, Any]] = field(default_factory=dict)  # member -> ann.json
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)


@dataclass
class LabelDef:
    id: str
    name: str
    type: str  # boolean | enum | string | number
    options: tuple[str, ...] = ()


@dataclass
class Webhook:
    url: str
    auth: tuple[str, str] | None = None
    only_gui: bool = False


@dataclass
class Project:
    owner: str
    name: str
    members: set[str] = field(default_factory=set)
    labels: dict[str, LabelDef] = field(default_factory=dict)  # m_N -> def
    folders: list[str] = field(default_factory=lambda: ["pool"])  # index = position
    docs: dict[str, Doc] = field(default_factory=dict)
    webhooks: list[Webhook] = field(default_factory=list)

    def legend(self) -> dict[str, str]:
        return {lid: d.name for lid, d in self.labels.items()}

    def folder_path(self, folder: str | None) -> str:
        """A folder given as index, full path or plain name -> its full path (created when new)."""
        if not folder:
            return "pool"
        if folder.isdigit():
            i = int(folder)
            if i >= len(self.folders):
                raise ApiError(400, f"unknown folder index {folder}")
            return self.folders[i]
        path = folder if folder == "pool" or folder.startswith("pool/") else None
        if path is None:
            named = [f for f in self.folders if f.rsplit("/", 1)[-1] == folder]
            path = named[0] if named else f"pool/{folder}"
        for i in range(1, len(path.split("/")) + 1):  # register the path and its parents
            p = "/".join(path.split("/")[:i])
            if p not in self.folders:
                self.folders.append(p)
        return path


def parse_label_spec(spec: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """``isSpam:boolean,Category:enum:a|b|c`` -> [(name, type, options)]."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, rest = item.partition(":")
        typ, _, opts = (rest or "boolean").partition(":")
        if typ not in ("boolean", "enum", "string", "number"):
            raise ValueError(f"label type must be boolean, enum, string or number, got {typ!r}")
        out.append((name, typ, tuple(o for o in opts.split("|") if o)))
    return out


# --- search query language (shared/docs/tagtog-api.md §2.4) ----------------------------------------------

_TOKEN = re.compile(r'\(|\)|(?:[^\s()"]*"[^"]*")+[^\s()]*|[^\s()]+')


def _wild(pattern: str, value: str, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def compile_query(q: str, project: Project) -> Callable[[Doc], bool]:
    """Compile a search query into a predicate. Operators AND/OR/NOT/- (upper case), parentheses,
    implicit AND between terms."""
    tokens = _TOKEN.findall(q)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr() -> Callable[[Doc], bool]:
        left = conj()
        while peek() == "OR":
            take()
            right = conj()
            left = (lambda a, b: lambda d: a(d) or b(d))(left, right)
        return left

    def conj() -> Callable[[Doc], bool]:
        left = unary()
        while peek() not in (None, ")", "OR"):
            if peek() == "AND":
                take()
            right = unary()
            left = (lambda a, b: lambda d: a(d) and b(d))(left, right)
        return left

    def unary() -> Callable[[Doc], bool]:
        tok = peek()
        if tok is None:
            raise ApiError(400, f"incomplete search query: {q!r}")
        if tok == "NOT":
            take()
            inner = unary()
            return lambda d: not inner(d)
        if tok.startswith("-") and len(tok) > 1:
            tokens[pos] = tok[1:]
            inner = unary()
            return lambda d: not inner(d)
        if tok == "(":
            take()
            inner = expr()
            if peek() != ")":
                raise ApiError(400, f"unbalanced parentheses in search query: {q!r}")
            take()
            return inner
        return term(take())

    def term(tok: str) -> Callable[[Doc], bool]:
        if tok == "*":
            return lambda d: True
        key, sep, val = tok.partition(":")
        if not sep:
            word = tok.strip('"')
            return lambda d: _wild(f"*{word}*", d.text, case=False)
        val = val.strip('"') if key != "label" else val
        if key == "folder":
            path = project.folders[int(val)] if val.isdigit() and int(val) < len(project.folders) else None
            def in_folder(d: Doc) -> bool:
                if path is not None:
                    return d.folder == path or d.folder.startswith(path + "/")
                return val in d.folder.split("/") or d.folder == val or d.folder.startswith(val + "/")
            return in_folder
        if key == "anncomplete":
            want = val == "true"
            return lambda d: d.ann.get("master", {}).get("anncomplete", False) is want
        if key == "members_anncomplete":
            return lambda d: any(m != "master" and a.get("anncomplete") and (val == "*" or m == val)
                                 for m, a in d.ann.items())
        if key == "members_assigned":
            return lambda d: False  # the emulator does not distribute documents
        if key in ("docid", "id"):
            return lambda d: _wild(val, d.docid)
        if key == "filename":
            return lambda d: _wild(val, d.filename)
        if key == "label":
            name, _, want = val.partition(":")
            want = want.strip('"')
            ids = [lid for lid, ld in project.labels.items() if ld.name == name or lid == name]
            def has_label(d: Doc) -> bool:
                metas = d.ann.get("master", {}).get("metas", {})
                for lid in ids:
                    if lid in metas:
                        v = metas[lid].get("value")
                        v = json.dumps(v) if isinstance(v, bool) else str(v)
                        if want in ("", "*") or _wild(want, v):
                            return True
                return False
            return has_label
        raise ApiError(400, f"unsupported search field {key!r}")

    if not tokens:
        raise ApiError(400, "search query is empty")
    pred = expr()
    if pos != len(tokens):
        raise ApiError(400, f"could not parse search query near {tokens[pos]!r}")
    return pred


# --- the emulator ------------------------------------------------------------------------------------------

class TagtogEmulator:
    """State plus the Flask app. Thread-safe: one lock guards all state."""

    def __init__(self, users: dict[str, str], base_url: str = "http://127.0.0.1", webhook_timeout: float = 5.0,
                 webhook_retries: int = 0, seed: int | None = None) -> None:
        self.users = dict(users)
        self.projects: dict[tuple[str, str], Project] = {}
        self.lock = threading.RLock()
        self.base_url = base_url
        self.webhook_timeout = webhook_timeout
        self.webhook_retries = webhook_retries
        self.rng = random.Random(seed)
        self.log: list[dict[str, Any]] = []  # what happened, in order
        self.faults: list[int] = []  # statuses the next API calls answer with (fault injection)
        # a member without admin rights: GET settings/v1/export answers this status (403/404); None: served
        self.settings_export_status: int | None = None
        # a person's save injected between prelabel's read of a document and its write (set_race)
        self.race: dict[str, Any] | None = None
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhooks")  # keeps delivery order
        self.app = self._make_app()

    # -- setup
    def add_project(self, owner: str, name: str, labels: Iterable[tuple[str, str, tuple[str, ...]]] = (),
                    members: Iterable[str] = ()) -> Project:
        with self.lock:
            p = self.projects.setdefault((owner, name), Project(owner, name))
            p.members |= {owner, *members}
            for lname, typ, opts in labels:
                if lname not in (d.name for d in p.labels.values()):
                    lid = f"m_{len(p.labels) + 1}"
                    p.labels[lid] = LabelDef(lid, lname, typ, opts)
            return p

    def add_webhook(self, owner: str, name: str, hook: Webhook) -> None:
        with self.lock:
            self.projects[(owner, name)].webhooks.append(hook)

    def load_export(self, folder: Path, owner: str, name: str) -> int:
        """Load a tagtog project ZIP export (unzipped) such as shared/data/tagtog_bbc_news."""
        folder = Path(folder)
        legend = json.loads((folder / "annotations-legend.json").read_text())
        p = self.add_project(owner, name)
        html_files = sorted((folder / "plain.html").rglob("*.plain.html"))
        ann_files = sorted((folder / "ann.json").rglob("*.ann.json")) if (folder / "ann.json").exists() else []
        with self.lock:
            for f in html_files:
                rel = list(f.relative_to(folder / "plain.html").parent.parts)
                if rel[:1] == ["pool"]:
                    rel = rel[1:]
                html = f.read_text(encoding="utf-8")
                ph = parse_plain_html(html)
                path = p.folder_path("/".join(["pool", *rel]))
                p.docs[ph.docid] = Doc(ph.docid, ph.origid or ph.docid, path, html, ph.text,
                                       ph.text.encode("utf-8"))
            seen_values: dict[str, set[Any]] = {}
            for f in ann_files:
                rel = list(f.relative_to(folder / "ann.json").parent.parts)
                member = "master"
                if rel[:1] == ["master"]:
                    rel = rel[1:]
                elif rel[:1] == ["members"] and len(rel) > 1:
                    member, rel = rel[1], rel[2:]
                docid = f.name[: -len(".ann.json")]
                if docid not in p.docs:
                    logger.warning("ann.json without plain.html ignored: %s", f)
                    continue
                ann = json.loads(f.read_text(encoding="utf-8"))
                p.docs[docid].ann[member] = ann
                for lid, m in ann.get("metas", {}).items():
                    seen_values.setdefault(lid, set()).add(json.dumps(m.get("value")))
            for lid, lname in legend.items():
                if lid.startswith("m_") and lid not in p.labels:
                    vals = [json.loads(v) for v in seen_values.get(lid, ())]
                    typ = "boolean" if vals and all(isinstance(v, bool) for v in vals) else "enum"
                    opts = tuple(sorted(str(v) for v in vals)) if typ == "enum" else ()
                    p.labels[lid] = LabelDef(lid, lname, typ, opts)
        logger.info("loaded %d documents (%d annotated) into %s/%s", len(html_files), len(ann_files), owner, name)
        return len(html_files)

    # -- helpers
    def _auth(self) -> str:
        auth = request.authorization
        if auth is None or auth.type != "basic" or auth.username not in self.users:
            raise ApiError(401, "authentication required (HTTP Basic)")
        if not hmac.compare_digest((auth.password or "").encode(), self.users[auth.username].encode()):
            raise ApiError(401, "wrong username or password")
        return auth.username

    def _project(self, user: str) -> Project:
        owner, name = request.args.get("owner"), request.args.get("project")
        if not owner or not name:
            raise ApiError(400, "the query parameters owner and project are required")
        p = self.projects.get((owner, name))
        if p is None:
            raise ApiError(404, f"project {owner}/{name} not found")
        if user not in p.members:
            raise ApiError(403, f"user {user} has no access to {owner}/{name}")
        return p

    def _new_docid(self, p: Project, filename: str) -> str:
        while True:
            docid = "a" + "".join(self.rng.choice(ID_CHARS) for _ in range(27)) + "-" + filename
            if docid not in p.docs:
                return docid

    def _record(self, kind: str, p: Project, doc: Doc, member: str, **extra: Any) -> None:
        self.log.append({"seq": len(self.log) + 1, "t": time.time(), "kind": kind, "owner": p.owner,
                         "project": p.name, "docid": doc.docid, "member": member, **extra})

    def _validate_ann(self, p: Project, ann: dict[str, Any]) -> None:
        try:
            doc = parse_annjson(ann)
        except FormatError as exc:
            raise ApiError(400, str(exc)) from None
        for lid, m in doc.metas.items():
            ld = p.labels.get(lid)
            if ld is None:
                raise ApiError(400, f"unknown document label id {lid} (legend: {sorted(p.labels)})")
            ok = {"boolean": lambda v: isinstance(v, bool),
                  "enum": lambda v: isinstance(v, str) and (not ld.options or v in ld.options),
                  "string": lambda v: isinstance(v, str),
                  "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}[ld.type]
            if not ok(m.value):
                raise ApiError(400, f"value {m.value!r} is not valid for {ld.type} label {lid} ({ld.name})")

    def fire(self, p: Project, doc: Doc, member: str, source: str, status: str, wait: bool = False) -> None:
        """Send the project's webhooks (format tagtogID) in the background, in order (``wait``: now, in this
        thread, before it goes on)."""
        body = {"owner": p.owner, "project": p.name, "tagtogID": doc.docid, "docid": doc.docid, "member": member}
        for hook in list(p.webhooks):
            if hook.only_gui and source != "GUI":
                continue
            if wait:
                self._deliver(hook, body, source, status)
            else:
                self._hooks.submit(self._deliver, hook, body, source, status)

    def _deliver(self, hook: Webhook, body: dict[str, Any], source: str, status: str) -> None:
        headers = {"X-tagtog-onPushSave-source": source, "X-tagtog-onPushSave-status": status}
        for attempt in range(self.webhook_retries + 1):
            try:
                r = requests.post(hook.url, json=body, headers=headers, auth=hook.auth, timeout=self.webhook_timeout)
                ok = 200 <= r.status_code < 300
                with self.lock:
                    self.log.append({"seq": len(self.log) + 1, "t": time.time(), "kind": "webhook",
                                     "docid": body["docid"], "source": source, "status": status,
                                     "http_status": r.status_code})
                if ok:
                    return
                logger.warning("webhook %s answered %s: %s", hook.url, r.status_code, r.text[:200])
            except requests.RequestException as exc:
                logger.warning("webhook %s failed: %s", hook.url, exc)
            if attempt < self.webhook_retries:
                time.sleep(min(2 ** attempt, 30))

    # -- documents API
    def _import(self, user: str, p: Project) -> tuple[list[dict[str, Any]], Doc | None]:
        member = request.args.get("member") or "master"
        fmt = request.args.get("format") or request.form.get("format") or ""
        folder = p.folder_path(request.args.get("folder") or request.form.get("folder"))
        files = [(f.filename or name, f.read()) for name, f in request.files.items(multi=True)]
        text = request.form.get("text") or request.args.get("text")
        if text is None and request.is_json:
            text = (request.get_json(silent=True) or {}).get("text")
        if text is not None and files:
            raise ApiError(400, "send either text or files, not both")
        items: list[dict[str, Any]] = []
        events: list[tuple[Doc, str]] = []
        last: Doc | None = None
        if text is not None:
            filename = request.args.get("filename") or request.form.get("filename") or "text.txt"
            if not filename.endswith(".txt"):
                raise ApiError(400, "filename must end in .txt for text input")
            last = self._create(p, filename, folder, text)
            items.append(self._item(last, [filename], "created", len(text.encode())))
            events.append((last, "created"))
        elif files:
            if fmt in PAIR_FORMATS:
                for stem, content_name, content, ann_bytes in self._pairs(files):
                    try:
                        ann = json.loads(ann_bytes)
                    except ValueError:
                        raise ApiError(400, f"{stem}.ann.json is not valid JSON") from None
                    self._validate_ann(p, ann)
                    doc, result = self._upsert_pair(p, fmt, folder, content_name, content, stem)
                    if result == "updated" and member == "master" and self._race_due(doc, "write"):
                        self._race_save(p, doc)  # the upload below lands over it
                        events.append((doc, "race"))
                    ann.setdefault("annotatable", {})
                    if not ann["annotatable"].get("parts"):
                        ann["annotatable"]["parts"] = [pid for pid, _ in parse_plain_html(doc.plain_html).parts]
                    doc.ann[member] = ann
                    doc.updated = _now()
                    self._record("annotations", p, doc, member, by=user, result=result, metas=ann.get("metas", {}),
                                 anncomplete=ann.get("anncomplete", False))
                    items.append(self._item(doc, [f"{stem}.ann.json", content_name], result, len(content)))
                    events.append((doc, result))
                    last = doc
            elif fmt:
                if fmt not in ("verbatim", "default"):
                    raise ApiError(400, f"format {fmt!r} is not supported by the emulator for plain files")
            if fmt not in PAIR_FORMATS:
                if any(n.endswith(".ann.json") for n, _ in files):
                    raise ApiError(400, "ann.json files need format=anndoc or *-plus-annjson")
                for name, content in files:
                    try:
                        txt = content.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ApiError(400, f"{name}: only UTF-8 text files are supported by the emulator") from None
                    last = self._create(p, name, folder, txt, content)
                    items.append(self._item(last, [name], "created", len(content)))
                    events.append((last, "created"))
        else:
            raise ApiError(400, "nothing to import: send text, or files")
        for doc, result in events:
            if result == "race":  # the person's save, delivered after the upload that overwrote it
                self.fire(p, doc, "master", "GUI", "updated")
            else:
                self.fire(p, doc, member, "API", result)
        return items, last

    def _pairs(self, files: list[tuple[str, bytes]]) -> list[tuple[str, str, bytes, bytes]]:
        if len(files) % 2:
            raise ApiError(400, f"pre-annotated imports need pairs of files; got {len(files)} files")
        groups: dict[str, dict[str, tuple[str, bytes]]] = {}
        for name, content in files:
            if name.endswith(".ann.json"):
                groups.setdefault(name[: -len(".ann.json")], {})["ann"] = (name, content)
            else:
                stem = name[: -len(".plain.html")] if name.endswith(".plain.html") else name.rsplit(".", 1)[0]
                groups.setdefault(stem, {})["content"] = (name, content)
        out = []
        for stem, g in groups.items():
            if set(g) != {"ann", "content"}:
                raise ApiError(400, f"file {stem!r} has no matching pair (same name, .ann.json + content)")
            out.append((stem, g["content"][0], g["content"][1], g["ann"][1]))
        return out

    def _upsert_pair(self, p: Project, fmt: str, folder: str, name: str, content: bytes,
                     stem: str) -> tuple[Doc, str]:
        if fmt == "anndoc":
            try:
                ph = parse_plain_html(content)
            except FormatError as exc:
                raise ApiError(400, f"{name}: {exc}") from None
            doc = p.docs.get(ph.docid) or p.docs.get(stem)
            if doc is not None:
                return doc, "updated"
            docid = self._new_docid(p, ph.origid or "text.txt")
            html = build_plain_html(docid, ph.text, ph.origid or "text.txt")
            doc = Doc(docid, ph.origid or "text.txt", folder, html, ph.text, ph.text.encode())
            p.docs[docid] = doc
            return doc, "created"
        existing = [d for d in p.docs.values() if d.filename == name]
        if existing:
            return existing[0], "updated"
        return self._create(p, name, folder, content.decode("utf-8"), content), "created"

    def _create(self, p: Project, filename: str, folder: str, text: str, orig: bytes | None = None) -> Doc:
        docid = self._new_docid(p, filename)
        doc = Doc(docid, filename, folder, build_plain_html(docid, text, filename), text,
                  orig if orig is not None else text.encode())
        p.docs[docid] = doc
        self._record("created", p, doc, "master", filename=filename)
        return doc

    def _item(self, doc: Doc, names: list[str], result: str, size: int) -> dict[str, Any]:
        return {"origid": names[-1], "names": names, "filenames": names, "rawInputSizeInBytes": size,
                "parsedTextSizeInBytes": len(doc.text.encode()), "docid": doc.docid, "tagtogID": doc.docid,
                "result": result}

    def _output_doc(self, p: Project, doc: Doc, output: str, member: str) -> Response:
        if output == "ann.json":
            ann = doc.ann.get(member)
            headers = {}
            if ann is None and member != "master":
                headers["Warning"] = f'299 - "member {member} has no annotations; returning master"'
            ann = ann if ann is not None else doc.ann.get("master") or empty_ann()
            answer = Response(json.dumps(ann), 200, headers, mimetype="application/json")
            if member == "master" and self._race_due(doc, "read"):
                self._race_save(p, doc)  # after this read was answered: what the reader saw is now stale
                self.fire(p, doc, "master", "GUI", "updated", wait=True)
            return answer
        if output in ("plain.html", "html", "xml"):
            return Response(doc.plain_html, 200, mimetype="text/html")
        if output in ("txt", "text"):
            return Response(doc.text, 200, mimetype="text/plain")
        if output in ("orig", "original"):
            return Response(doc.orig, 200, {"Content-Disposition": f'inline; filename="{doc.filename}"'},
                            mimetype="application/octet-stream")
        url = f"{self.base_url}/{p.owner}/{p.name}/{doc.folder}/{doc.docid}"
        if output in ("weburl", "web", "web-editor-only"):
            return Response(url, 200, mimetype="text/plain")
        if output == "visualize":
            return Response(f'<html><body><a href="{url}">{doc.docid}</a></body></html>', 200, mimetype="text/html")
        raise ApiError(400, f"unsupported output {output!r}")

    def _search(self, p: Project) -> Response:
        q = request.args["search"]
        output = request.args.get("output") or "search"
        if output == "csv":
            rows = ["docid,anncomplete"] + [
                f"{d.docid},{json.dumps(d.ann.get('master', {}).get('anncomplete', False))}" for d in p.docs.values()]
            return Response("\n".join(rows) + "\n", 200, mimetype="text/csv")
        if output != "search":
            raise ApiError(400, f"unsupported search output {output!r}")
        try:
            page = int(request.args.get("page", "0"))
        except ValueError:
            raise ApiError(400, "page must be an integer") from None
        pred = compile_query(q, p)
        hits = [d for d in p.docs.values() if pred(d)]
        num_pages = max(1, -(-len(hits) // PAGE_SIZE))
        if page < 0:
            raise ApiError(400, "page must be >= 0")
        chunk = hits[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
        body = {
            "version": "0.7.0", "search": q, "totalFound": len(hits),
            "pages": {"current": page, "previous": page - 1 if page > 0 else -1,
                      "next": page + 1 if page + 1 < num_pages else -1, "numPages": num_pages, "pageSize": PAGE_SIZE},
            "docs": [{"id": d.docid, "filename": d.filename, "header": d.text[:60], "created": d.created,
                      "updated": d.updated, "anncomplete": d.ann.get("master", {}).get("anncomplete", False),
                      "members_anncomplete": sorted(m for m, a in d.ann.items()
                                                    if m != "master" and a.get("anncomplete")),
                      "members_assigned": [], "folder": d.folder} for d in chunk],
        }
        return Response(json.dumps(body), 200, mimetype="application/json")

    def set_race(self, count: int, at: str, labels: dict[str, Any], user: str, confirm: bool = True) -> None:
        """The next ``count`` times a document no person has touched is read (``at="read"``: after serving an API
        GET of its master ann.json) or written (``at="write"``: an anndoc upload over it), ``user`` saves it first
        with ``labels`` (by name) and ``confirm``, exactly as in the web editor. ``read``: the save's webhook is
        delivered before the read's answer returns (a prompt tagtog), so the writer can still see it;
        ``write``: the upload lands over the save and its webhook is delivered after the upload (the worst case,
        which tagtog's API cannot prevent: it has no conditional write)."""
        if at not in ("read", "write"):
            raise ApiError(400, "race at must be read or write")
        self.race = {"count": int(count), "at": at, "labels": dict(labels), "user": user, "confirm": bool(confirm),
                     "docids": []}

    def _race_due(self, doc: Doc, at: str) -> bool:
        r = self.race
        if not r or r["count"] <= 0 or r["at"] != at:
            return False
        ann = doc.ann.get("master") or empty_ann()
        touched = ann.get("anncomplete") or any(
            not any(str(w).startswith("ml:") for w in (m.get("confidence") or {}).get("who") or [])
            for m in (ann.get("metas") or {}).values())
        return not touched

    def _person_save(self, p: Project, doc: Doc, user: str, labels: dict[str, Any], confirm: bool | None,
                     member: str = "master", raw_metas: dict[str, Any] | None = None) -> dict[str, Any]:
        """A person's save in the web editor: labels set by name (``None`` removes one), optionally confirmed."""
        ann = json.loads(json.dumps(doc.ann.get(member) or empty_ann()))
        ann["annotatable"]["parts"] = ann["annotatable"].get("parts") or ["s1v1"]
        by_name = {d.name: lid for lid, d in p.labels.items()}
        for name, value in labels.items():
            lid = by_name.get(name, name if name in p.labels else None)
            if lid is None:
                raise ApiError(400, f"unknown label {name!r}")
            if value is None:
                ann["metas"].pop(lid, None)
            else:
                ann["metas"][lid] = {"value": value,
                                     "confidence": {"state": "", "who": [f"user:{user}"], "prob": 1}}
        if labels:
            self._validate_ann(p, ann)
        # Raw metas are not validated: they simulate a project whose legend changed under the document.
        for lid, raw in (raw_metas or {}).items():
            ann["metas"][lid] = raw
        if confirm is not None:
            ann["anncomplete"] = bool(confirm)
        doc.ann[member] = ann
        doc.updated = _now()
        self._record("annotations", p, doc, member, by=user, result="updated", metas=ann["metas"],
                     anncomplete=ann["anncomplete"], gui=True)
        return ann

    def _race_save(self, p: Project, doc: Doc) -> None:
        r = self.race
        assert r is not None
        r["count"] -= 1
        r["docids"].append(doc.docid)
        self._person_save(p, doc, r["user"], r["labels"], r["confirm"])
        self.log[-1]["race"] = r["at"]

    def _annotate(self, user: str) -> Response:
        """The annotator: set labels (by name) and/or confirm, as in the web editor; fires a GUI webhook."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "JSON body required")
        p = self.projects.get((body.get("owner"), body.get("project")))
        if p is None:
            raise ApiError(404, "project not found")
        if user not in p.members:
            raise ApiError(403, f"user {user} has no access")
        doc = p.docs.get(body.get("docid", ""))
        if doc is None:
            raise ApiError(404, f"document {body.get('docid')!r} not found")
        member = body.get("member") or "master"
        ann = self._person_save(p, doc, user, body.get("labels") or {}, body["confirm"] if "confirm" in body else None,
                                member, body.get("metas"))
        self.fire(p, doc, member, "GUI", "updated")
        return Response(json.dumps(ann), 200, mimetype="application/json")

    def _make_app(self) -> Flask:
        app = Flask("tagtog-emulator")

        @app.before_request
        def inject_fault() -> Response | None:
            if request.path.startswith("/-api/"):
                with self.lock:
                    if self.faults:
                        status = self.faults.pop(0)
                        return Response(f"injected fault {status}", status, mimetype="text/plain")
            return None

        @app.post("/-emulator/faults")
        def set_faults() -> Response:
            """Make the next ``count`` API calls answer ``status`` (e.g. 503): tagtog having a bad minute."""
            self._auth()
            body = request.get_json(silent=True) or {}
            with self.lock:
                self.faults = [int(body.get("status", 503))] * int(body.get("count", 1))
            return Response(json.dumps({"faults": len(self.faults)}), 200, mimetype="application/json")

        @app.post("/-emulator/switches")
        def switches() -> Response:
            """``settings_export_status`` (403/404, or null); ``race``: {count, at: read|write, labels, user,
            confirm} (see set_race), or null. Answers the race's documents so far."""
            user = self._auth()
            body = request.get_json(silent=True) or {}
            with self.lock:
                if "settings_export_status" in body:
                    st = body["settings_export_status"]
                    self.settings_export_status = None if st is None else int(st)
                if "race" in body:
                    r = body["race"]
                    self.race = None
                    if r is not None:
                        self.set_race(int(r.get("count", 1)), r.get("at", "write"), r.get("labels") or {},
                                      r.get("user") or user, bool(r.get("confirm", True)))
                return Response(json.dumps({"settings_export_status": self.settings_export_status,
                                            "race": self.race}), 200, mimetype="application/json")

        @app.errorhandler(ApiError)
        def api_error(exc: ApiError) -> Response:
            headers = {"WWW-Authenticate": 'Basic realm="tagtog"'} if exc.status == 401 else {}
            return Response(exc.message, exc.status, headers, mimetype="text/plain")

        @app.route("/-api/documents/v1", methods=["GET", "POST", "PUT", "DELETE"])
        def documents() -> Response:
            user = self._auth()
            with self.lock:
                p = self._project(user)
                member = request.args.get("member") or "master"
                if request.method in ("POST", "PUT") and "url" not in request.args:
                    items, last = self._import(user, p)
                    output = request.args.get("output") or "visualize"
                    if output == "null":
                        return Response(json.dumps({"ok": len(items), "errors": 0, "warnings": [], "items": items}),
                                        200, mimetype="application/json")
                    assert last is not None
                    return self._output_doc(p, last, output, member)
                if request.method == "DELETE":
                    if "search" in request.args:
                        pred = compile_query(request.args["search"], p)
                        gone = [d for d in p.docs if pred(p.docs[d])]
                    else:
                        ids = ",".join(request.args.getlist("ids"))
                        gone = [d for d in ids.split(",") if d in p.docs]
                    for d in gone:
                        del p.docs[d]
                    return Response(str(len(gone)), 200, mimetype="text/plain")
                if "search" in request.args:
                    return self._search(p)
                docid = request.args.get("ids")
                if not docid:
                    raise ApiError(400, "give ids=<docid> or search=<query>")
                if (request.args.get("idType") or "tagtogID") != "tagtogID":
                    raise ApiError(400, "the emulator supports idType=tagtogID only")
                doc = p.docs.get(docid)
                if doc is None:
                    raise ApiError(404, f"document {docid} not found")
                return self._output_doc(p, doc, request.args.get("output") or "visualize", member)

        @app.get("/-api/settings/v1/annotationsLegend")
        def legend() -> Response:
            user = self._auth()
            with self.lock:
                return Response(json.dumps(self._project(user).legend()), 200, mimetype="application/json")

        @app.get("/-api/settings/v1/export")
        def export() -> Response:
            user = self._auth()
            with self.lock:
                p = self._project(user)
                if self.settings_export_status is not None:  # the settings are for project admins
                    raise ApiError(self.settings_export_status, "you have no permission to export the settings")
                body = {"version": "1.6",
                        "folders": [{"index": i, "path": f} for i, f in enumerate(p.folders)],
                        "metas": [{"id": d.id, "name": d.name, "type": d.type, "description": ",".join(d.options),
                                   "oldnames": []} for d in p.labels.values()],
                        "entities": [], "fields": [], "relations": [],
                        "webhooks": {str(i): {"url": h.url, "format": "tagtogID", "onlyGUI": h.only_gui}
                                     for i, h in enumerate(p.webhooks)}}
                return Response(json.dumps(body), 200, mimetype="application/json")

        @app.post("/-emulator/annotate")
        def annotate() -> Response:
            user = self._auth()
            with self.lock:
                return self._annotate(user)

        @app.get("/-emulator/log")
        def get_log() -> Response:
            since = int(request.args.get("since", "0"))
            with self.lock:
                return Response(json.dumps(self.log[since:]), 200, mimetype="application/json")

        @app.get("/-emulator/healthz")
        def healthz() -> Response:
            return Response('{"ok": true}', 200, mimetype="application/json")

        return app


class EmulatorServer:
    """Run the emulator in a background thread (tests) or in the foreground (``main``)."""

    def __init__(self, emulator: TagtogEmulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.server = make_server(host, port, emulator.app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://{host}:{self.port}"
        emulator.base_url = self.url
        self._thread: threading.Thread | None = None

    def start(self) -> "EmulatorServer":
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.emulator._hooks.shutdown(wait=False)


def _user(s: str) -> tuple[str, str]:
    name, sep, pw = s.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return name, pw


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m emulator.tagtog",
        description="Local emulator of tagtog's documents API v1, settings legend and webhooks "
                    "(shared/docs/tagtog-api.md). Binds to 127.0.0.1.")
    ap.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090; 0 = any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--user", type=_user, action="append", default=[], metavar="USER:PASSWORD",
                    help="a user for HTTP Basic auth (repeatable); the first one owns projects by default")
    ap.add_argument("--project", action="append", default=[], metavar="OWNER/NAME[=LABELS]",
                    help="create an empty project; LABELS like 'isSpam:boolean' or 'Category:enum:a|b|c'")
    ap.add_argument("--load", action="append", default=[], metavar="EXPORT_DIR=OWNER/NAME",
                    help="load an unzipped tagtog project export (annotations-legend.json, ann.json/, plain.html/)")
    ap.add_argument("--member", action="append", default=[], metavar="OWNER/NAME:USER",
                    help="give USER access to a project (repeatable)")
    ap.add_argument("--webhook", action="append", default=[], metavar="OWNER/NAME=URL",
                    help="webhook (format tagtogID) for a project")
    ap.add_argument("--webhook-auth", type=_user, metavar="USER:PASSWORD",
                    help="Basic credentials the emulator sends to webhook endpoints")
    ap.add_argument("--only-gui", action="store_true", help="webhooks fire only for saves made in the GUI")
    ap.add_argument("--webhook-retries", type=int, default=0, help="retries of a failed webhook (default 0)")
    ap.add_argument("--seed", type=int, default=None, help="seed for generated document ids")
    ap.add_argument("--settings-export-status", type=int, choices=(403, 404), default=None,
                    help="answer GET settings/v1/export with this status (a member without admin rights)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s emulator %(message)s")
    if not args.user:
        ap.error("give at least one --user USER:PASSWORD")
    emu = TagtogEmulator(dict(args.user), webhook_retries=args.webhook_retries, seed=args.seed)
    emu.settings_export_status = args.settings_export_status
    for spec in args.project:
        name, _, labels = spec.partition("=")
        owner, _, pname = name.partition("/")
        emu.add_project(owner, pname, parse_label_spec(labels))
    for spec in args.load:
        folder, _, name = spec.rpartition("=")
        owner, _, pname = name.partition("/")
        emu.load_export(Path(folder), owner, pname)
    for spec in args.member:
        name, _, user = spec.rpartition(":")
        owner, _, pname = name.partition("/")
        emu.projects[(owner, pname)].members.add(user)
    for spec in args.webhook:
        name, _, url = spec.partition("=")
        owner, _, pname = name.partition("/")
        emu.add_webhook(owner, pname, Webhook(url, args.webhook_auth, args.only_gui))
    server = EmulatorServer(emu, args.host, args.port)
    logger.info("tagtog emulator listening on %s", server.url)
    print(f"tagtog emulator listening on {server.url}", flush=True)  # noqa: T201 - CLI entry point
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
