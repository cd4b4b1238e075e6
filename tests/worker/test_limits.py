"""What the worker accepts from a platform (MAX_TEXT_BYTES, MAX_ANNOTATION_BYTES): a document over a limit fails
its event with the reason, is never stored (not even half: no text without its label), and the worker goes on;
its body is read no further than the limit, so a document of tens of megabytes costs no more memory than that."""
from __future__ import annotations

import threading
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from annotation_client import LabelStudioClient, LabelStudioPlatform, ProjectRef, TagtogClient, TooLarge
from emulator.tagtog import TagtogEmulator
from storage import Document, Label
from worker import jobs

from ..conftest import start_loop

LIMIT = 4096


@pytest.fixture
def env(tmp_path):
    emu = TagtogEmulator({"alice": "pw"}, seed=3)
    emu.add_project("alice", "spam", [("isSpam", "boolean", ()), ("note", "string", ())])
    p = emu.projects[("alice", "spam")]
    docs = {"small": emu._create(p, "small.txt", "pool", "win a prize now").docid,
            "long_text": emu._create(p, "long.txt", "pool", "free entry " * 1000).docid,  # 11,000 bytes
            "long_ann": emu._create(p, "ann.txt", "pool", "see you at noon").docid}
    server, store, loop, pid = start_loop(emu, tmp_path, "spam", "isSpam", max_text_bytes=LIMIT,
                                          max_annotation_bytes=LIMIT, tagtog_retries=1)
    yield server, store, loop, pid, docs
    server.stop()


def annotate(server, docid, labels):
    r = requests.post(f"{server.url}/-emulator/annotate", auth=("alice", "pw"),
                      json={"owner": "alice", "project": "spam", "docid": docid, "labels": labels, "confirm": True})
    r.raise_for_status()


def process(store, loop, pid, docid):
    eid, new = store.record_event(project_id=pid, platform="tagtog", doc_id=docid, member="master", source="GUI",
                                  kind="updated", dedup_key=f"{docid}-{len(store.list_events(limit=10000))}")
    assert new
    jobs._loop = loop
    try:
        return jobs.process_event.call_local(eid), store.get_event(eid)
    finally:
        jobs._loop = None


def stored(store, pid):
    with store.session() as s:
        docs = {d.platform_id for d in s.query(Document).filter_by(project_id=pid)}
        labels = s.query(Label).filter_by(project_id=pid).count()
    return docs, labels


def test_a_document_over_a_limit_fails_its_event_and_nothing_is_stored(env):
    server, store, loop, pid, docs = env
    annotate(server, docs["long_text"], {"isSpam": True})
    annotate(server, docs["long_ann"], {"isSpam": False, "note": "n" * 5000})  # ann.json over 4,096 bytes
    annotate(server, docs["small"], {"isSpam": True})

    out, ev = process(store, loop, pid, docs["long_text"])
    assert out == "failed" and ev["state"] == "failed"
    assert f"text of document {docs['long_text']}" in ev["error"] and f"MAX_TEXT_BYTES={LIMIT}" in ev["error"]
    out, ev = process(store, loop, pid, docs["long_ann"])
    assert out == "failed" and f"ann.json of document {docs['long_ann']}" in ev["error"]
    assert f"MAX_ANNOTATION_BYTES={LIMIT}" in ev["error"]
    assert stored(store, pid) == (set(), 0)  # the label was read before the text: not stored without it

    out, ev = process(store, loop, pid, docs["small"])  # the worker goes on
    assert out == "labelled true" and ev["state"] == "done"
    assert stored(store, pid) == ({docs["small"]}, 1)

    # a sync of the project imports what it can and skips the oversized ones, with the reason in the log
    loop.sync.sync_project(pid, force=True)
    assert stored(store, pid)[0] == {docs["small"]}

    # the same documents within larger limits are taken
    loop.settings = loop.settings.with_(max_text_bytes=1 << 20, max_annotation_bytes=1 << 20)
    out, _ = process(store, loop, pid, docs["long_text"])
    assert out == "labelled true"


class _Endless(BaseHTTPRequestHandler):
    """Answers any GET with ``size`` bytes of JSON-ish text in 64 KiB chunks, counting what it managed to send;
    ``declare`` sends a Content-Length (else the body is chunked)."""

    size = 50 << 20
    declare = False
    sent = 0

    def do_GET(self) -> None:
        chunk = b"a" * 65536
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if self.declare:
            self.send_header("Content-Length", str(self.size))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(self.size // len(chunk)):
                if self.declare:
                    self.wfile.write(chunk)
                else:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                type(self).sent += len(chunk)
            if not self.declare:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what the limit is for

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endless():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("declare", [False, True], ids=["chunked", "content-length"])
def test_a_50_mb_answer_is_read_no_further_than_the_limit(endless, declare):
    server, url = endless
    _Endless.declare, _Endless.sent = declare, 0
    tagtog = TagtogClient(url, "alice", "pw", retries=0)
    ls = LabelStudioClient(url, "token", retries=0)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match=r"text of document d1 \(alice/spam\) is over MAX_TEXT_BYTES=1048576"):
            tagtog.get_text("alice", "spam", "d1", max_bytes=1 << 20)
        with pytest.raises(TooLarge, match="task 7 is over MAX_TEXT_BYTES"):
            ls.get_task(7, max_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB held for a 1 MiB limit"  # 50 MiB if the body were read
    assert _Endless.sent < 2 * (16 << 20)  # the server stopped at what the sockets buffer, far from 2 x 50 MiB


class _LabelStudioExport:
    """A Label Studio client's two reads that reconciliation makes, answering with fixed tasks."""

    config = ('<View><Text name="text" value="$text"/><Choices name="c" toName="text">'
              '<Choice value="a"/><Choice value="b"/></Choices></View>')

    def __init__(self, tasks):
        self.tasks = tasks

    def get_project(self, project_id):
        return {"id": project_id, "label_config": self.config}

    def export_tasks(self, project_id):
        return self.tasks


def test_label_studio_task_over_a_limit_is_listed_as_invalid_and_the_others_are_read():
    def task(tid, text, choice="a"):
        return {"id": tid, "data": {"text": text}, "annotations": [
            {"id": tid, "completed_by": 1, "was_cancelled": False, "result": [
                {"from_name": "c", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]}]}

    long_ann = task(6, "hi")
    long_ann["annotations"][0]["result"][0]["meta"] = {"text": ["x" * LIMIT]}
    client = _LabelStudioExport([task(5, "é" * LIMIT), long_ann, task(7, "fine", "b")])  # é: 2 bytes in UTF-8
    platform = LabelStudioPlatform(client, max_text_bytes=LIMIT, max_annotation_bytes=LIMIT)
    ref = ProjectRef(1, "ls", "3")
    listed = platform.list_labelled(ref, platform.read_scheme(ref))
    assert listed["5"].reading.invalid == "text of task 5 is 8192 bytes, over MAX_TEXT_BYTES=4096; it is not stored"
    assert listed["6"].reading.invalid.startswith("annotations of task 6 are ")
    assert "over MAX_ANNOTATION_BYTES=4096" in listed["6"].reading.invalid
    assert listed["7"].reading.invalid == "" and listed["7"].reading.value == "b" and listed["7"].reading.text == "fine"
