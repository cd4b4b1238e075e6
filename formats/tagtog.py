"""tagtog anndoc formats: ann.json (v3.6) and plain.html, as pure functions.

Reference: shared/docs/tagtog-api.md §3 (ann.json) and §4 (plain.html). Parsing is strict about the
structure prelabel relies on (metas and their confidence) and keeps everything else verbatim, so that
``build_annjson(parse_annjson(x)) == x`` for real tagtog exports.
"""
from __future__ import annotations

import enum
import html
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Mapping

from .errors import FormatError
from .strictjson import loads

VERBATIM_GENERATOR = "net.tagtog.anndoc.v3.parsers.general.VerbatimParser_v1_0_1"
ML_PREFIX = "ml:"
USER_PREFIX = "user:"


@dataclass(frozen=True)
class Confidence:
    state: str | None = ""
    who: tuple[str, ...] = ()
    prob: float | None = 1
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown keys, kept for round trips

    @property
    def is_ml(self) -> bool:
        return any(w.startswith(ML_PREFIX) for w in self.who)

    @property
    def is_user(self) -> bool:
        return any(w.startswith(USER_PREFIX) for w in self.who)


@dataclass(frozen=True)
class MetaValue:
    """One document label (``metas[m_N]``)."""

    value: Any
    confidence: Confidence
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnnDoc:
    """A parsed ann.json. ``entities``/``relations``/``sources`` are kept as raw JSON."""

    metas: Mapping[str, MetaValue]
    anncomplete: bool = False
    parts: tuple[str, ...] = ()
    sources: tuple[Any, ...] = ()
    entities: tuple[Any, ...] = ()
    relations: tuple[Any, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    annotatable_extra: Mapping[str, Any] = field(default_factory=dict)


class GroundTruthPolicy(str, enum.Enum):
    """Which labels of a document count as ground truth for training.

    ``anncomplete``: only labels of a confirmed document (``anncomplete: true``).
    ``anncomplete_or_user``: also labels set by a person (``who`` has a ``user:`` entry) on an unconfirmed
    document; real exports such as the BBC one carry human labels with ``anncomplete: false``.
    In both, a label whose ``who`` names a model (``ml:...``) never counts: that is a pre-label.
    """

    ANNCOMPLETE = "anncomplete"
    ANNCOMPLETE_OR_USER = "anncomplete_or_user"


def _parse_confidence(raw: Any, where: str) -> Confidence:
    if raw is None:
        return Confidence()
    if not isinstance(raw, dict):
        raise FormatError(f"{where}.confidence must be an object, got {type(raw).__name__}")
    who = raw.get("who", [])
    if isinstance(who, str):
        who = [who]
    if not isinstance(who, list) or not all(isinstance(w, str) for w in who):
        raise FormatError(f"{where}.confidence.who must be a list of strings")
    prob = raw.get("prob")
    if prob is not None and (isinstance(prob, bool) or not isinstance(prob, (int, float))):
        raise FormatError(f"{where}.confidence.prob must be a number")
    state = raw.get("state", "")
    if state is not None and not isinstance(state, str):
        raise FormatError(f"{where}.confidence.state must be a string")
    extra = {k: v for k, v in raw.items() if k not in ("state", "who", "prob")}
    return Confidence(state=state, who=tuple(who), prob=prob, extra=extra)


def parse_annjson(data: str | bytes | Mapping[str, Any]) -> AnnDoc:
    """Parse an ann.json document (text or already-decoded JSON)."""
    if isinstance(data, (str, bytes)):

        data = loads(data, "ann.json")
    if not isinstance(data, Mapping):
        raise FormatError("ann.json must be a JSON object")
    metas_raw = data.get("metas", {})
    if metas_raw in ([], None):  # seen in a WIP tagtog sample; means "no labels"
        metas_raw = {}
    if not isinstance(metas_raw, Mapping):
        raise FormatError("ann.json metas must be an object of m_N ids")
    metas: dict[str, MetaValue] = {}
    for mid, raw in metas_raw.items():
        if not isinstance(raw, Mapping) or "value" not in raw:
            raise FormatError(f"metas.{mid} must be an object with a value")
        extra = {k: v for k, v in raw.items() if k not in ("value", "confidence")}
        metas[mid] = MetaValue(raw["value"], _parse_confidence(raw.get("confidence"), f"metas.{mid}"), extra)
    anncomplete = data.get("anncomplete", False)
    if not isinstance(anncomplete, bool):
        raise FormatError("ann.json anncomplete must be a boolean")
    annotatable = data.get("annotatable") or {}
    if not isinstance(annotatable, Mapping):
        raise FormatError("ann.json annotatable must be an object")
    parts = annotatable.get("parts", [])
    known = {"annotatable", "anncomplete", "sources", "metas", "entities", "relations"}
    return AnnDoc(
        metas=metas,
        anncomplete=anncomplete,
        parts=tuple(parts or ()),
        sources=tuple(data.get("sources") or ()),
        entities=tuple(data.get("entities") or ()),
        relations=tuple(data.get("relations") or ()),
        extra={k: v for k, v in data.items() if k not in known},
        annotatable_extra={k: v for k, v in annotatable.items() if k != "parts"},
    )


def _build_confidence(c: Confidence) -> dict[str, Any]:
    return {"state": c.state, "who": list(c.who), "prob": c.prob, **c.extra}


def build_annjson(doc: AnnDoc) -> dict[str, Any]:
    """The JSON object of an ann.json, with every key present as tagtog writes it."""
    return {
        "annotatable": {"parts": list(doc.parts), **doc.annotatable_extra},
        "anncomplete": doc.anncomplete,
        "sources": list(doc.sources),
        "metas": {
            mid: {"value": m.value, "confidence": _build_confidence(m.confidence), **m.extra}
            for mid, m in doc.metas.items()
        },
        "entities": list(doc.entities),
        "relations": list(doc.relations),
        **doc.extra,
    }


def dump_annjson(doc: AnnDoc) -> str:
    """Serialise like tagtog's export: compact separators, UTF-8 kept."""
    return json.dumps(build_annjson(doc), separators=(",", ":"), ensure_ascii=False)


def empty_annjson() -> AnnDoc:
    return AnnDoc(metas={})


def with_prelabel(base: AnnDoc | None, label_id: str, value: Any, prob: float, who: str) -> AnnDoc:
    """``base`` with ``metas[label_id]`` set to a model's pre-label; the document stays unconfirmed.

    Every other annotation of ``base`` (entities, other labels) is kept, so an upload does not erase it.
    """
    if not who.startswith(ML_PREFIX):
        raise ValueError(f"a pre-label's who must start with {ML_PREFIX!r}, got {who!r}")
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"prob must be in (0, 1], got {prob}")
    base = base or empty_annjson()
    metas = dict(base.metas)
    metas[label_id] = MetaValue(value, Confidence(state="pre-added", who=(who,), prob=float(prob)))
    return AnnDoc(
        metas=metas, anncomplete=False, parts=base.parts, sources=base.sources, entities=base.entities,
        relations=base.relations, extra=base.extra, annotatable_extra=base.annotatable_extra,
    )


def is_ground_truth(doc: AnnDoc, meta: MetaValue, policy: GroundTruthPolicy) -> bool:
    """Whether one label of ``doc`` counts as ground truth under ``policy`` (see GroundTruthPolicy)."""
    if meta.confidence.is_ml:
        return False
    if doc.anncomplete:
        return True
    return policy is GroundTruthPolicy.ANNCOMPLETE_OR_USER and meta.confidence.is_user


def ground_truth_labels(doc: AnnDoc, policy: GroundTruthPolicy) -> dict[str, Any]:
    """``{m_N: value}`` of the labels that count as ground truth."""
    return {mid: m.value for mid, m in doc.metas.items() if is_ground_truth(doc, m, policy)}


def carries_suggestion(doc: AnnDoc, marks: Mapping[str, Any], who_prefix: str) -> bool:
    """True when ``doc`` is unconfirmed and already shows these values (``{m_N: value}``) as a model's pre-label whose
    ``who`` starts with ``who_prefix``: uploading the same suggestion again would change nothing for the annotator."""
    if doc.anncomplete or not marks:
        return False
    for lid, value in marks.items():
        m = doc.metas.get(lid)
        if m is None or m.value != value or type(m.value) is not type(value) or not m.confidence.who or not all(
                w.startswith(who_prefix) for w in m.confidence.who):
            return False
    return True


def has_human_label(doc: AnnDoc) -> bool:
    """True when a person has touched any document label, or confirmed the document."""
    return doc.anncomplete or any(not m.confidence.is_ml for m in doc.metas.values())


# --- plain.html -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlainHtml:
    docid: str
    origid: str
    parts: tuple[tuple[str, str], ...]  # (part id, unescaped text) in document order
    generator: str = VERBATIM_GENERATOR

    @property
    def text(self) -> str:
        """The document's text: its parts joined by blank lines (one part for verbatim docs)."""
        return "\n\n".join(t for _, t in self.parts)


class _PartsParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.html_attrs: dict[str, str | None] = {}
        self.generator = ""
        self.in_body = False
        self.stack: list[tuple[str, str | None]] = []  # (tag, part id) of open elements in body
        self.parts: dict[str, list[str]] = {}
        self.order: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.html_attrs = a
        elif tag == "meta" and a.get("name") == "generator":
            self.generator = a.get("content") or ""
        elif tag == "body":
            self.in_body = True
        elif self.in_body and tag not in ("br", "img", "hr", "meta"):
            pid = a.get("id")
            if pid:
                self.parts[pid] = []
                self.order.append(pid)
            self.stack.append((tag, pid))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.in_body = False
        while self.stack:  # tolerate unclosed children
            open_tag, _ = self.stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        # Text belongs to the innermost open part (offsets in tagtog are relative to that element).
        for _, pid in reversed(self.stack):
            if pid:
                self.parts[pid].append(data)
                return


def parse_plain_html(text: str | bytes) -> PlainHtml:
    """Parse a tagtog plain.html into its docid and (part id, text) pairs."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"plain.html is not valid UTF-8 (byte {exc.start})") from None
    p = _PartsParser()
    try:
        p.feed(text)
        p.close()
    except Exception as exc:  # html.parser raises assorted errors on garbage
        raise FormatError(f"plain.html could not be parsed: {exc}") from None
    docid = p.html_attrs.get("id")
    if not docid:
        raise FormatError("plain.html has no <html id> (the document id)")
    if not p.order:
        raise FormatError("plain.html has no annotatable part (no element with an id in <body>)")
    return PlainHtml(
        docid=docid,
        origid=p.html_attrs.get("data-origid") or "",
        parts=tuple((pid, "".join(p.parts[pid])) for pid in p.order),
        generator=p.generator or VERBATIM_GENERATOR,
    )


def build_plain_html(docid: str, text: str, origid: str = "text.txt", generator: str = VERBATIM_GENERATOR) -> str:
    """A verbatim plain.html: the whole text in one ``<pre id="s1v1">``, laid out exactly as tagtog does."""
    a = lambda s: html.escape(s, quote=True)  # noqa: E731 - attribute values
    body = html.escape(text, quote=False)
    return (
        "<!DOCTYPE html >\n"
        f'<html id="{a(docid)}" data-origid="{a(origid)}" class="anndoc" data-anndoc-version="3.6" lang="" '
        'xml:lang="" xmlns="http://www.w3.org/1999/xhtml">\n'
        "  <head>\n"
        '    <meta charset="UTF-8"/>\n'
        f'    <meta name="generator" content="{a(generator)}"/>\n'
        f"    <title>{a(docid)}</title>\n"
        "  </head>\n"
        "  <body>\n"
        "    <article>\n"
        '      <section data-type="">\n'
        '        <div class="content">\n'
        f'          <pre id="s1v1">{body}</pre>\n'
        "        </div>\n"
        "      </section>\n"
        "    </article>\n"
        "  </body>\n"
        "</html>\n"
    )


# --- webhooks ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookPayload:
    """A tagtog webhook delivery in format ``tagtogID`` (shared/docs/tagtog-api.md §5)."""

    owner: str
    project: str
    docid: str
    member: str  # "master" when absent or ""
    source: str  # GUI | API | "" when the header is missing
    status: str  # created | updated | ""


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookPayload:
    """Validate a webhook body and headers; raises FormatError naming what is wrong."""

    try:
        data = loads(body, "body")
    except FormatError as exc:
        raise FormatError(f"{exc} (expected JSON with owner, project and tagtogID: webhook format "
                          "'tagtogID')") from None
    if not isinstance(data, dict):
        raise FormatError("body must be a JSON object")
    docid = data.get("tagtogID") or data.get("docid")
    missing = [k for k, v in (("owner", data.get("owner")), ("project", data.get("project")), ("tagtogID", docid))
               if not v]
    if missing:
        raise FormatError(f"missing field(s): {', '.join(missing)}")
    for k in ("owner", "project"):
        if not isinstance(data[k], str):
            raise FormatError(f"{k} must be a string")
    if not isinstance(docid, str) or len(docid) > 512:
        raise FormatError("tagtogID must be a string of at most 512 characters")
    member = data.get("member") or "master"
    if not isinstance(member, str):
        raise FormatError("member must be a string")
    lower = {k.lower(): v for k, v in headers.items()}
    source = lower.get("x-tagtog-onpushsave-source", "").strip().upper()
    status = lower.get("x-tagtog-onpushsave-status", "").strip().lower()
    if source not in ("", "GUI", "API"):
        raise FormatError("header X-tagtog-onPushSave-source must be GUI or API")
    if status not in ("", "created", "updated"):
        raise FormatError("header X-tagtog-onPushSave-status must be created or updated")
    return WebhookPayload(data["owner"], data["project"], docid, member, source, status)
