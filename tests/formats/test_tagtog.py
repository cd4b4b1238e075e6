"""formats.tagtog against the real tagtog export in shared/data/tagtog_bbc_news."""
from __future__ import annotations

import json

import pytest

from formats.tagtog import (
    AnnDoc, Confidence, FormatError, GroundTruthPolicy, MetaValue, build_annjson, build_plain_html, dump_annjson,
    ground_truth_labels, has_human_label, parse_annjson, parse_plain_html, parse_webhook, with_prelabel,
)

from ..conftest import BBC_DIR

ANN_FILES = sorted((BBC_DIR / "ann.json").rglob("*.ann.json"))
HTML_FILES = sorted((BBC_DIR / "plain.html").rglob("*.plain.html"))


def test_export_is_there() -> None:
    assert len(ANN_FILES) == 1439 and len(HTML_FILES) == 2123


def test_annjson_round_trip_every_file() -> None:
    for f in ANN_FILES:
        raw = f.read_text(encoding="utf-8")
        doc = parse_annjson(raw)
        assert build_annjson(doc) == json.loads(raw), f
        assert dump_annjson(doc) == raw.strip(), f


def test_plain_html_round_trip_every_file() -> None:
    for f in HTML_FILES:
        raw = f.read_text(encoding="utf-8")
        p = parse_plain_html(raw)
        assert f.name == p.docid + ".plain.html"
        assert [pid for pid, _ in p.parts] == ["s1v1"]
        assert build_plain_html(p.docid, p.text, p.origid, p.generator) == raw, f


def test_plain_html_unescapes_entities() -> None:
    hits = [f for f in HTML_FILES if "&amp;" in f.read_text(encoding="utf-8")]
    assert hits, "the export has escaped ampersands"
    p = parse_plain_html(hits[0].read_text(encoding="utf-8"))
    assert "&" in p.text and "&amp;" not in p.text


def test_build_plain_html_escapes_markup() -> None:
    html = build_plain_html("aX-1.txt", "a <b> & c", "1.txt")
    assert "a &lt;b&gt; &amp; c" in html
    assert parse_plain_html(html).text == "a <b> & c"


def test_bbc_labels_are_human_but_unconfirmed() -> None:
    doc = parse_annjson(ANN_FILES[0].read_text())
    assert not doc.anncomplete
    assert ground_truth_labels(doc, GroundTruthPolicy.ANNCOMPLETE) == {}
    assert set(ground_truth_labels(doc, GroundTruthPolicy.ANNCOMPLETE_OR_USER)) == {"m_1"}
    assert has_human_label(doc)


def test_ml_prelabel_never_counts_even_when_confirmed() -> None:
    doc = with_prelabel(None, "m_1", True, 0.7, "ml:prelabel-v1")
    confirmed = AnnDoc(metas=doc.metas, anncomplete=True)
    for policy in GroundTruthPolicy:
        assert ground_truth_labels(doc, policy) == {}
        assert ground_truth_labels(confirmed, policy) == {}
    assert not has_human_label(doc)


def test_prelabel_shape_and_keeps_other_annotations() -> None:
    base = parse_annjson(ANN_FILES[0].read_text())
    base = AnnDoc(metas={"m_2": MetaValue("x", Confidence(who=("user:bob",)))}, entities=({"classId": "e_1"},))
    out = build_annjson(with_prelabel(base, "m_1", "sport", 0.61, "ml:prelabel-v3"))
    assert out["anncomplete"] is False
    assert out["metas"]["m_1"] == {"value": "sport", "confidence": {"state": "pre-added", "who": ["ml:prelabel-v3"],
                                                                    "prob": 0.61}}
    assert out["metas"]["m_2"]["value"] == "x" and out["entities"] == [{"classId": "e_1"}]


@pytest.mark.parametrize("prob,who", [(0.0, "ml:x"), (1.5, "ml:x"), (0.5, "user:alice")])
def test_prelabel_rejects_bad_values(prob: float, who: str) -> None:
    with pytest.raises(ValueError):
        with_prelabel(None, "m_1", True, prob, who)


@pytest.mark.parametrize("raw,needle", [
    ("{not json", "not valid JSON"), ("[]", "JSON object"), ('{"metas": {"m_1": {}}}', "metas.m_1"),
    ('{"metas": {"m_1": {"value": 1, "confidence": {"who": 3}}}}', "who"), ('{"anncomplete": "yes"}', "anncomplete"),
])
def test_annjson_errors_name_the_field(raw: str, needle: str) -> None:
    with pytest.raises(FormatError, match=needle):
        parse_annjson(raw)


def test_plain_html_errors() -> None:
    with pytest.raises(FormatError, match="html id"):
        parse_plain_html("<html><body><pre id='s1v1'>x</pre></body></html>")
    with pytest.raises(FormatError, match="part"):
        parse_plain_html("<html id='a'><body><pre>x</pre></body></html>")


def test_webhook_parse() -> None:
    body = json.dumps({"owner": "alice", "project": "spam", "tagtogID": "aX-1.txt"}).encode()
    p = parse_webhook({"X-tagtog-onPushSave-source": "GUI", "X-tagtog-onPushSave-status": "updated"}, body)
    assert (p.owner, p.project, p.docid, p.member, p.source, p.status) == ("alice", "spam", "aX-1.txt", "master",
                                                                          "GUI", "updated")
    p = parse_webhook({}, json.dumps({"owner": "a", "project": "b", "docid": "d", "member": "bob"}).encode())
    assert (p.docid, p.member, p.source) == ("d", "bob", "")


@pytest.mark.parametrize("body,needle", [
    (b"not json", "JSON"), (b"[1]", "object"), (b'{"owner": "a", "project": "b"}', "tagtogID"),
    (b'{"project": "b", "tagtogID": "x"}', "owner"), (b'{"owner": 1, "project": "b", "tagtogID": "x"}', "owner"),
])
def test_webhook_bad_bodies(body: bytes, needle: str) -> None:
    with pytest.raises(FormatError, match=needle):
        parse_webhook({}, body)


def test_webhook_bad_header() -> None:
    with pytest.raises(FormatError, match="source"):
        parse_webhook({"X-tagtog-onPushSave-source": "CLI"}, b'{"owner":"a","project":"b","tagtogID":"x"}')
