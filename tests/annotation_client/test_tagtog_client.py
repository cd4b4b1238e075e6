"""annotation_client.tagtog against the emulator (real HTTP on 127.0.0.1)."""
from __future__ import annotations

import socket

import pytest
import requests

from annotation_client import (AnndocUpload, AuthError, NotFound, PlatformError, PlatformUnavailable, TagtogClient,
                               make_client)
from emulator.tagtog import EmulatorServer, TagtogEmulator
from formats.tagtog import with_prelabel

from ..conftest import BBC_DIR


@pytest.fixture(scope="module")
def emu():
    e = TagtogEmulator({"alice": "pw", "eve": "evepw"}, seed=1)
    e.load_export(BBC_DIR, "alice", "bbc")
    e.add_project("alice", "spam", [("isSpam", "boolean", ())])
    server = EmulatorServer(e).start()
    yield server
    server.stop()


@pytest.fixture
def client(emu):
    return TagtogClient(emu.url, "alice", "pw", retries=2, backoff=0.01)


def test_legend_and_label_defs(client):
    assert client.get_legend("alice", "bbc") == {"m_1": "Category"}
    (d,) = client.get_label_defs("alice", "bbc")
    assert (d.id, d.name, d.type) == ("m_1", "Category", "enum")
    assert set(d.options) == {"business", "entertainment", "politics", "sport", "tech"}
    assert [(d.name, d.type) for d in client.get_label_defs("alice", "spam")] == [("isSpam", "boolean")]


def test_search_paginates_over_all_pages(client):
    hits = list(client.search("alice", "bbc", "folder:test"))
    assert len(hits) == 684 and len({h.docid for h in hits}) == 684
    assert all(h.folder == "pool/test" for h in hits)
    sport = list(client.search("alice", "bbc", "label:Category:sport AND folder:train"))
    assert len(sport) == 342


def test_get_document_outputs(client):
    docid = next(client.search("alice", "bbc", "folder:train")).docid
    ann = client.get_annjson("alice", "bbc", docid)
    assert ann.metas["m_1"].confidence.who == ("user:ashishnarwal",)
    text = client.get_text("alice", "bbc", docid)
    assert len(text) > 100
    assert f'<html id="{docid}"' in client.get_plain_html("alice", "bbc", docid)


def test_create_and_prelabel_upload(client, emu):
    docid, html = client.create_text("alice", "spam", "WIN a prize now & claim <free>", "x1.txt", "pool")
    assert docid.endswith("-x1.txt") and "&amp; claim &lt;free&gt;" in html
    ann = with_prelabel(None, "m_1", True, 0.83, "ml:prelabel-v1")
    items = client.upload_anndoc("alice", "spam", [AnndocUpload(docid, html, ann)])
    assert [(i["docid"], i["result"]) for i in items] == [(docid, "updated")]
    got = client.get_annjson("alice", "spam", docid)
    assert got.metas["m_1"].value is True and got.metas["m_1"].confidence.prob == 0.83
    assert not got.anncomplete
    # the emulator matched by <html id>: no second document was created
    assert sum(1 for _ in client.search("alice", "spam", "filename:x1.txt")) == 1


def test_upload_with_wrong_value_type_is_a_clear_4xx(client):
    docid, html = client.create_text("alice", "spam", "hello", "x2.txt")
    with pytest.raises(PlatformError) as exc:
        client.upload_anndoc("alice", "spam", [AnndocUpload(docid, html, with_prelabel(None, "m_1", "yes", 0.5,
                                                                                         "ml:x"))])
    assert exc.value.status == 400 and "boolean" in str(exc.value)


def test_not_found_and_auth_errors(client, emu):
    with pytest.raises(NotFound):
        client.get_annjson("alice", "bbc", "a-nope.txt")
    with pytest.raises(NotFound):
        client.get_legend("alice", "nope")
    with pytest.raises(AuthError) as exc:
        TagtogClient(emu.url, "alice", "wrong").get_legend("alice", "bbc")
    assert "wrong" not in str(exc.value).split(":")[0]  # no password echoed in the message prefix
    with pytest.raises(AuthError):  # a valid user without access to the project
        TagtogClient(emu.url, "eve", "evepw").get_legend("alice", "bbc")


def test_5xx_is_retried_then_succeeds(client, emu):
    requests.post(f"{emu.url}/-emulator/faults", json={"status": 503, "count": 2}, auth=("alice", "pw"))
    assert client.get_legend("alice", "bbc") == {"m_1": "Category"}  # 2 faults, 3 attempts


def test_5xx_beyond_retries_raises_unavailable(client, emu):
    requests.post(f"{emu.url}/-emulator/faults", json={"status": 502, "count": 3}, auth=("alice", "pw"))
    with pytest.raises(PlatformUnavailable, match="502"):
        client.get_legend("alice", "bbc")


def test_connection_refused_raises_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = TagtogClient(f"http://127.0.0.1:{port}", "a", "b", retries=1, backoff=0.01)
    with pytest.raises(PlatformUnavailable, match="unreachable"):
        c.get_legend("alice", "bbc")


def test_registry():
    c = make_client("tagtog", base_url="http://x", username="u", password="p")
    assert isinstance(c, TagtogClient)
    with pytest.raises(ValueError, match="unknown platform"):
        make_client("nope")
