"""The tagtog emulator itself: the parts of shared/docs/tagtog-api.md §8 the client tests do not reach."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from werkzeug.serving import make_server
from flask import Flask, request

from emulator.tagtog import EmulatorServer, TagtogEmulator, Webhook, parse_label_spec

from .conftest import BBC_DIR

AUTH = ("alice", "pw")


@pytest.fixture
def receiver():
    """A webhook endpoint that records what it receives."""
    got: list[dict] = []
    app = Flask("receiver")

    @app.post("/hook")
    def hook():
        got.append({"headers": dict(request.headers), "json": request.get_json(), "auth": request.authorization})
        return "", 204

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/hook", got
    srv.shutdown()


@pytest.fixture
def emu(receiver):
    url, _ = receiver
    e = TagtogEmulator({"alice": "pw"}, seed=5)
    e.load_export(BBC_DIR, "alice", "bbc")
    e.add_project("alice", "spam", parse_label_spec("isSpam:boolean"))
    e.add_webhook("alice", "spam", Webhook(url, ("hook", "hookpw")))
    s = EmulatorServer(e).start()
    yield s
    s.stop()


def api(emu, method="GET", **params):
    return requests.request(method, f"{emu.url}/-api/documents/v1", auth=AUTH,
                            params={"owner": "alice", "project": "bbc", **params})


def total(emu, q):
    return api(emu, search=q).json()["totalFound"]


def test_search_language(emu):
    assert total(emu, "*") == 2123
    assert total(emu, "folder:test") == 684 and total(emu, "folder:pool/train") == 1439
    assert total(emu, "folder:train AND -label:Category:sport") == 1439 - 342
    assert total(emu, "NOT folder:train") == 684
    assert total(emu, "label:Category:sport OR label:Category:tech") == 342 + 233
    assert total(emu, "(label:Category:sport OR label:Category:tech) AND folder:test") == 0
    assert total(emu, "filename:1187.txt") == 1
    assert total(emu, "anncomplete:true") == 0
    r = api(emu, search="folder:(")
    assert r.status_code == 400


def test_pages_of_50(emu):
    body = api(emu, search="folder:test", page=13).json()
    assert body["pages"] == {"current": 13, "previous": 12, "next": -1, "numPages": 14, "pageSize": 50}
    assert len(body["docs"]) == 684 - 13 * 50


def test_csv_and_delete(emu):
    lines = api(emu, search="*", output="csv").text.strip().splitlines()
    assert lines[0] == "docid,anncomplete" and len(lines) == 2124
    docid = api(emu, search="folder:train").json()["docs"][0]["id"]
    assert api(emu, "DELETE", ids=docid).text == "1"
    assert api(emu, "DELETE", ids=docid).text == "0"
    assert api(emu, "DELETE", search="folder:test").text == "684"
    assert total(emu, "*") == 2123 - 685
    assert api(emu, ids=docid, output="ann.json").status_code == 404


def test_member_fallback_sets_warning(emu):
    docid = api(emu, search="folder:train").json()["docs"][0]["id"]
    r = api(emu, ids=docid, output="ann.json", member="bob")
    assert "Warning" in r.headers and r.json()["metas"]["m_1"]["value"]
    assert api(emu, ids=docid, output="orig").content


def test_pairs_must_match(emu):
    r = requests.post(f"{emu.url}/-api/documents/v1", auth=AUTH, params={
        "owner": "alice", "project": "spam", "format": "anndoc"}, files=[("files", ("a.plain.html", b"x"))])
    assert r.status_code == 400 and "pairs" in r.text
    r = requests.post(f"{emu.url}/-api/documents/v1", auth=AUTH, params={
        "owner": "alice", "project": "spam", "format": "anndoc"},
        files=[("files", ("a.plain.html", b"x")), ("files", ("b.ann.json", b"{}"))])
    assert r.status_code == 400 and "pair" in r.text


def test_webhooks_fire_like_tagtog(emu, receiver):
    _, got = receiver
    r = requests.post(f"{emu.url}/-api/documents/v1", auth=AUTH, params={
        "owner": "alice", "project": "spam", "output": "null"}, data={"text": "hello"})
    docid = r.json()["items"][0]["docid"]
    requests.post(f"{emu.url}/-emulator/annotate", auth=AUTH, json={
        "owner": "alice", "project": "spam", "docid": docid, "labels": {"isSpam": False}, "confirm": True})
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (created, saved) = got
    assert created["headers"]["X-Tagtog-Onpushsave-Source"] == "API"
    assert created["headers"]["X-Tagtog-Onpushsave-Status"] == "created"
    assert saved["headers"]["X-Tagtog-Onpushsave-Source"] == "GUI"
    assert saved["headers"]["X-Tagtog-Onpushsave-Status"] == "updated"
    assert saved["json"] == {"owner": "alice", "project": "spam", "tagtogID": docid, "docid": docid,
                             "member": "master"}
    assert (saved["auth"].username, saved["auth"].password) == ("hook", "hookpw")


def test_annotate_validates_labels(emu):
    docid = api(emu, search="folder:test").json()["docs"][0]["id"]
    r = requests.post(f"{emu.url}/-emulator/annotate", auth=AUTH, json={
        "owner": "alice", "project": "bbc", "docid": docid, "labels": {"Category": "cooking"}})
    assert r.status_code == 400 and "not valid" in r.text
    r = requests.post(f"{emu.url}/-emulator/annotate", auth=AUTH, json={
        "owner": "alice", "project": "bbc", "docid": docid, "labels": {"Nope": "x"}})
    assert r.status_code == 400


def test_auth_and_params(emu):
    assert requests.get(f"{emu.url}/-api/documents/v1", params={"owner": "alice", "project": "bbc",
                                                                "search": "*"}).status_code == 401
    r = requests.get(f"{emu.url}/-api/documents/v1", auth=AUTH, params={"search": "*"})
    assert r.status_code == 400 and "owner" in r.text
