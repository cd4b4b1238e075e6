"""End to end against a real Label Studio 1.23.2 (its own virtualenv, see devtools/labelstudio_server.py) and
prelabel's web, worker and ML-backend processes, all on 127.0.0.1.

One Label Studio (one migrated database) and one prelabel stack serve the whole module; the tests run in order.
Without Label Studio installed they are skipped, unless PRELABEL_REQUIRE_LABELSTUDIO=1 (set by .ci/run) makes
that an error.
"""
from __future__ import annotations

import os
import time

import pandas as pd
import pytest
import requests

from annotation_client import AuthError, LabelStudioClient
from formats.labelstudio import QUEUE_VERSION
from devtools.labelstudio_server import TOKEN, LabelStudio, ensure_template, installed
from scripts.stack import Stack

from .conftest import SHARED, SMS_CSV

SECRET = "e2e-secret"
ADMIN = {"Authorization": "Bearer e2e-admin"}
N_TASKS, N_LABELLED = 600, 400
EMOTIONS = ("admiration", "amusement", "gratitude", "love", "neutral")

if not installed():
    if os.environ.get("PRELABEL_REQUIRE_LABELSTUDIO"):
        raise RuntimeError("Label Studio is required (PRELABEL_REQUIRE_LABELSTUDIO=1) but not installed: "
                           "python -m devtools.labelstudio_server --install")
    pytest.skip("Label Studio is not installed (python -m devtools.labelstudio_server --install)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def ls(tmp_path_factory):
    root = tmp_path_factory.mktemp("ls")
    server = LabelStudio(root / "server", template=ensure_template(root / "template")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def world(ls, tmp_path_factory):
    """A spam/ham project of 600 SMS (400 imported with annotations), prelabel connected by webhook."""
    df = pd.read_csv(SMS_CSV, keep_default_na=False).sample(n=N_TASKS, random_state=3)
    truth = dict(zip(df.text, df.label))
    tasks = [{"data": {"text": t}, **({"annotations": [{"result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [y]}}]}]}
        if i < N_LABELLED else {})} for i, (t, y) in enumerate(zip(df.text, df.label))]
    project = ls.create_project("sms spam e2e")
    # a second, multilabel project: choice="multiple" over GoEmotions comments
    emo = pd.read_csv(SHARED / "data" / "goemotions" / "goemotions_dev.csv", keep_default_na=False)
    rows = [(t, [e for e in x.split(";") if e in EMOTIONS]) for t, x in zip(emo.text, emo["labels"])]
    rows = [r for r in rows if r[1]][:200]
    multi = ls.create_project("emotions e2e", choices=EMOTIONS, multiple=True)
    work = tmp_path_factory.mktemp("prelabel")
    settings = {"LABELSTUDIO_URL": ls.url, "LABELSTUDIO_TOKEN": TOKEN,
                "LABELSTUDIO_PROJECTS": f"{project},{multi}",
                "LABELSTUDIO_WEBHOOK_SECRET": SECRET, "ADMIN_TOKEN": "e2e-admin", "RETRAIN_EVERY": "1",
                "PRELABEL_K": "10", "RECONCILE_INTERVAL_S": "3600", "ML_BASIC_AUTH_USER": "label-studio",
                "ML_BASIC_AUTH_PASS": "ml-pass", "CV_FOLDS": "2"}
    stack = Stack(work, work, tagtog=False, ml_backend=True, settings=settings, web_workers=1).start()
    try:
        ls.add_webhook(project, f"{stack.web_url}/webhooks/labelstudio", {"X-Prelabel-Secret": SECRET})
        ls.add_webhook(multi, f"{stack.web_url}/webhooks/labelstudio", {"X-Prelabel-Secret": SECRET})
        ls.import_tasks(project, tasks)  # only TASKS_CREATED: prelabel reconciles to find the annotations
        ls.import_tasks(multi, [{"data": {"text": t}, **({"annotations": [{"result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": labs}}]}]}
            if i < 150 else {})} for i, (t, labs) in enumerate(rows)])
        stack.settle(quiet_s=3, timeout=600)
        stack.settle(quiet_s=3, timeout=600, project=2)
        yield {"ls": ls, "stack": stack, "project": project, "truth": truth, "multi": multi}
    finally:
        stack.stop()


def export(ls: LabelStudio, project: int) -> list[dict]:
    return ls.tasks(project)


def unlabelled(w) -> list[dict]:
    return [t for t in export(w["ls"], w["project"]) if not t["annotations"]]


def events(w, n: int = 50) -> list[dict]:
    return w["stack"].api(f"/api/v1/projects/1/events?limit={n}")["events"]


def wait_event(w, pred, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in events(w):
            if pred(ev) and ev["state"] in ("done", "failed"):
                return ev
        time.sleep(0.2)
    raise TimeoutError(f"no such event within {timeout}s: {events(w, 10)}\n{w['stack'].log_tail('worker')}")


def queue_of(w, project: int | None = None) -> dict[int, list[dict]]:
    """Unlabelled task id -> its predictions of prelabel's queue version."""
    tasks = [t for t in export(w["ls"], project or w["project"]) if not t["annotations"]]
    return {t["id"]: [p for p in t["predictions"] if p["model_version"] == QUEUE_VERSION] for t in tasks}


def test_import_trains_and_fills_the_community_queue(world):
    """Label Studio Community Edition gets the loop: every pool task carries one suggestion with its calibrated
    score, the project serves them by uncertainty sampling ("Label All Tasks"), and the two prelabel tabs exist.
    The task Label Studio serves next is the one prelabel ranks first: a random document drawn for the estimate
    (served early through its cluster), else the least confident suggestion, which is prelabel's own top pick."""
    ls, project, stack = world["ls"], world["project"], world["stack"]
    summary = stack.api("/api/v1/projects/1")
    assert summary["labels"] == N_LABELLED  # every imported annotation, recovered without ANNOTATION_CREATED
    assert summary["label"]["type"] == "enum" and summary["label"]["id"] == "label"
    assert summary["champion"] is not None
    proj = ls.api("GET", f"/api/projects/{project}/").json()
    assert proj["model_version"] == QUEUE_VERSION and proj["sampling"] == "Uncertainty sampling"
    queue = queue_of(world)
    assert len(queue) == N_TASKS - N_LABELLED and all(len(ps) == 1 for ps in queue.values()), \
        "every pool task carries exactly one current suggestion"
    score = {t: ps[0]["score"] for t, ps in queue.items()}
    for ps in queue.values():
        assert 0.5 <= ps[0]["score"] <= 1.0 and ps[0]["result"][0]["value"]["choices"][0] in ("spam", "ham")
    tabs = {v["data"]["title"]: v["data"] for v in ls.api("GET", "/api/dm/views/", params={"project": project}).json()}
    assert tabs["prelabel: next to label"]["ordering"] == ["tasks:predictions_score"]
    assert tabs["prelabel: surest first"]["ordering"] == ["-tasks:predictions_score"]
    # the tab lists the unlabelled tasks, least confident first
    listed = ls.api("GET", "/api/tasks", params={"project": project, "view": next(
        v["id"] for v in ls.api("GET", "/api/dm/views/", params={"project": project}).json()
        if v["data"]["title"] == "prelabel: next to label"), "page_size": 1000}).json()["tasks"]
    assert [t["id"] for t in listed] and {t["id"] for t in listed} == set(queue)
    assert [score[t["id"]] for t in listed] == sorted(score.values())
    # "Label All Tasks"
    served = ls.api("GET", f"/api/projects/{project}/next").json()
    assert served["queue"] == "Active learning or random queue"
    audit = {t for t, ps in queue.items() if ps[0].get("cluster") == 1}
    first = min(audit or queue, key=score.__getitem__)
    assert score[served["id"]] == score[first] and (not audit or served["id"] in audit)
    top = stack.api("/api/v1/projects/1/next?n=1&strategy=least_confidence")["documents"][0]["docid"]
    assert score[int(top)] == min(score[t] for t in queue if t not in audit)  # prelabel's own first pick


def connect_ml_backend(w) -> int:
    """Connect prelabel's ML backend to the spam project in Label Studio (once); its id there."""
    if "ml_id" not in w:
        r = w["ls"].api("POST", "/api/ml", json={"project": w["project"], "url": w["stack"].ml_url,
                                                 "title": "prelabel", "auth_method": "BASIC_AUTH",
                                                 "basic_auth_user": "label-studio", "basic_auth_pass": "ml-pass"})
        w["ml_id"] = r.json()["id"]
    return w["ml_id"]


def test_ml_backend_answers_label_studios_batched_predict(world):
    """Connect the ML backend in Label Studio, then "Retrieve predictions" for every task: one batched /predict,
    one result per task, stored by Label Studio with the champion's version. The champion learned: macro F1 of
    those predictions on the 200 tasks it never saw labels of."""
    ls, project, stack = world["ls"], world["project"], world["stack"]
    ml_id = connect_ml_backend(world)
    champion = stack.api("/api/v1/projects/1")["champion"]["version"]
    # Label Studio waits up to ML_TIMEOUT_PREDICT (100 s) for the whole batch. As in use, an annotator opened a task
    # first: that /predict loads TensorFlow and the champion, and the 600-task batch only predicts (on a loaded
    # 2-core machine the two together took over 60 s)
    config = ls.api("GET", f"/api/projects/{project}/").json()["label_config"]
    one = {"project": f"{project}.0", "label_config": config, "tasks": [{"id": 0, "data": {"text": "warm up"}}]}
    assert requests.post(f"{stack.ml_url}/predict", json=one, auth=("label-studio", "ml-pass"), timeout=120).ok
    ls.api("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
           json={"selectedItems": {"all": True, "excluded": []}}, timeout=150)
    name = f"prelabel-v{champion}"
    tasks = export(ls, project)
    mine = {t["id"]: [p for p in t["predictions"] if p["model_version"] == name] for t in tasks}
    assert all(mine.values()), "every task got a prediction of the champion's version"
    from sklearn.metrics import f1_score
    held = [t for t in tasks if not t["annotations"]]
    y_true = [world["truth"][t["data"]["text"]] for t in held]
    y_pred = [mine[t["id"]][-1]["result"][0]["value"]["choices"][0] for t in held]
    assert f1_score(y_true, y_pred, average="macro") >= 0.80
    backend = ls.api("GET", f"/api/ml/{ml_id}").json()
    assert backend["model_version"] == name and backend["state"] in ("CO", "CONNECTED")
    # Label Studio asks the backend's /versions without a project: its model-version list is filled
    assert name in ls.api("GET", f"/api/ml/{ml_id}/versions").json()["versions"]


def test_annotations_updates_deletions_and_skips(world):
    ls, stack = world["ls"], world["stack"]
    before = stack.api("/api/v1/projects/1")
    task = unlabelled(world)[0]
    truth = world["truth"][task["data"]["text"]]
    ann = ls.annotate(task["id"], [truth])
    ev = wait_event(world, lambda e: e["doc_id"] == str(task["id"]) and e["kind"] == "ANNOTATION_CREATED")
    assert ev["outcome"] == f'labelled "{truth}"'
    other = "ham" if truth == "spam" else "spam"
    ls.api("PATCH", f"/api/annotations/{ann['id']}/", json={"result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [other]}}]})
    ev = wait_event(world, lambda e: e["doc_id"] == str(task["id"]) and e["kind"] == "ANNOTATION_UPDATED")
    assert ev["outcome"] == f'labelled "{other}"'
    ls.api("DELETE", f"/api/annotations/{ann['id']}/")
    ev = wait_event(world, lambda e: e["kind"] == "ANNOTATIONS_DELETED")
    assert ev["outcome"] == "1 task(s) re-read: label removed"
    skipped = unlabelled(world)[1]
    ls.annotate(skipped["id"], [], cancelled=True)  # acknowledged as ignored: no event
    after = stack.settle(quiet_s=2, timeout=300)
    assert after["labels"] == before["labels"]
    assert len(stack.api("/api/v1/projects/1/versions")["versions"]) > len(
        [v for v in [before["champion"]] if v])  # the annotations retrained


def test_label_not_in_config_fails_the_event_with_the_reason(world):
    ls = world["ls"]
    task = unlabelled(world)[2]
    ls.annotate(task["id"], ["maybe"])
    ev = wait_event(world, lambda e: e["doc_id"] == str(task["id"]))
    assert ev["state"] == "failed" and "['maybe'], not in the label config" in ev["error"]


def test_start_training_from_label_studio(world):
    ls, stack = world["ls"], world["stack"]
    n = len(stack.api("/api/v1/projects/1/versions")["versions"])
    ls.api("POST", f"/api/ml/{connect_ml_backend(world)}/train")
    ev = wait_event(world, lambda e: e["kind"] == "START_TRAINING")
    assert ev["outcome"] == "retrain requested"
    stack.settle(quiet_s=2, timeout=300)
    assert len(stack.api("/api/v1/projects/1/versions")["versions"]) > n


def test_reconcile_recovers_annotations_made_while_web_was_down(world):
    ls, stack = world["ls"], world["stack"]
    before = stack.settle(quiet_s=2, timeout=300)
    stack.stop_process("web")
    todo = unlabelled(world)[3:8]
    for t in todo:
        ls.annotate(t["id"], [world["truth"][t["data"]["text"]]])  # Label Studio logs "connection refused"
    stack.start_web()
    r = requests.post(f"{stack.web_url}/api/v1/projects/1/reconcile", headers=ADMIN, timeout=10)
    assert r.status_code == 202
    deadline = time.monotonic() + 120
    while stack.api("/api/v1/projects/1")["last_reconcile"] == before["last_reconcile"]:
        assert time.monotonic() < deadline, stack.log_tail("worker")
        time.sleep(0.3)
    after = stack.settle(quiet_s=2, timeout=300)
    # recovered by the reconcile the web's start queued, or by the one asked for here, whichever ran first
    assert after["labels"] == before["labels"] + len(todo)


def test_an_annotator_working_label_all_tasks_starts_from_suggestions(world):
    """An annotator works through "Label All Tasks": every task Label Studio serves carries prelabel's suggestion;
    after each new champion the pool still holds exactly one current suggestion per task (rewritten where it
    changed, never added beside the old one), and what the annotator kept is counted per kind of pick."""
    ls, project, stack = world["ls"], world["project"], world["stack"]
    before = stack.settle(quiet_s=2, timeout=300)
    reviewed = sum(c["reviewed"] for c in before["acceptance"]["by_mode"].values())
    kept = 0
    for _ in range(4):
        served = ls.api("GET", f"/api/projects/{project}/next").json()
        shown = [p for p in served["predictions"] if p["model_version"] == QUEUE_VERSION]
        assert len(shown) == 1, served["predictions"]  # the annotator starts from prelabel's suggestion
        truth = world["truth"][served["data"]["text"]]
        kept += shown[0]["result"][0]["value"]["choices"] == [truth]
        ls.annotate(served["id"], [truth])
        stack.settle(quiet_s=2, timeout=300)
    after = stack.api("/api/v1/projects/1")
    assert after["champion"]["version"] > before["champion"]["version"]
    queue = queue_of(world)
    assert all(len(ps) == 1 for ps in queue.values())
    counted = after["acceptance"]["by_mode"]
    assert sum(c["reviewed"] for c in counted.values()) == reviewed + 4
    assert sum(c["accepted"] for c in counted.values()) - sum(
        c["accepted"] for c in before["acceptance"]["by_mode"].values()) == kept
    assert after["acceptance"]["by_round"]  # per champion that uploaded them


def test_label_config_change_is_picked_up(world):
    ls, project = world["ls"], world["project"]
    config = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="single">'
              '<Choice value="spam"/><Choice value="ham"/><Choice value="maybe"/></Choices></View>')
    ls.api("PATCH", f"/api/projects/{project}/", json={"label_config": config})
    ev = wait_event(world, lambda e: e["kind"] == "PROJECT_UPDATED"
                    and e["outcome"].startswith("label config changed"))
    assert "'maybe'" in ev["outcome"]


def test_personal_access_token_flow(world):
    ls = world["ls"]
    pat = ls.api("POST", "/api/token/").json()["token"]
    client = LabelStudioClient(ls.url, pat, retries=0)
    assert client.get_project(world["project"])["id"] == world["project"]
    assert client._access is not None  # exchanged for a short-lived access token
    with pytest.raises(AuthError):
        LabelStudioClient(ls.url, pat[:-4] + "AAAA", retries=0).get_project(world["project"])


def test_multilabel_project(world):
    """choice="multiple": the scheme is multilabel, labels are sets of choices, predictions set several choices,
    and the ML backend answers with lists. (How well a multilabel model learns is tests/test_multilabel.py's.)"""
    ls, stack, multi = world["ls"], world["stack"], world["multi"]
    summary = stack.api("/api/v1/projects/2")
    assert summary["label"]["scheme"] == "multilabel" and summary["labels"] == 150
    assert summary["champion"] is not None and summary["champion"]["classes"]["names"] == sorted(EMOTIONS)
    queue = queue_of(world, multi)
    assert len(queue) == 50 and all(len(ps) == 1 for ps in queue.values())  # every pool task: one suggestion
    for p in (ps[0] for ps in queue.values()):
        assert 0.0 < p["score"] <= 1.0
        assert set(p["result"][0]["value"]["choices"] if p["result"] else []) <= set(EMOTIONS)
    config = ls.api("GET", f"/api/projects/{multi}/").json()["label_config"]
    body = {"project": f"{multi}.1700000000", "label_config": config,
            "tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(["thank you so much!", "lol", "ok"])]}
    r = requests.post(f"{stack.ml_url}/predict", json=body, auth=("label-studio", "ml-pass"), timeout=30)
    assert r.status_code == 200 and len(r.json()["results"]) == 3
    for res in r.json()["results"]:
        assert res["model_version"] == f"prelabel-v{summary['champion']['version']}"
        assert all(set(x["value"]["choices"]) <= set(EMOTIONS) for x in res["result"])


def test_malformed_task_json_fails_only_that_event_with_the_reason(world, tmp_path):
    """Label Studio answers a task with a body cut in half (devtools/faultproxy.py in front of the real server):
    the event fails with the reason; the other tasks of the same batch are stored."""
    from worker import jobs
    from config import ProjectSpec, Settings
    from devtools.faultproxy import Faults, FaultProxy
    from storage import Store

    bad, good = unlabelled(world)[6:8]
    for task in (bad, good):
        world["ls"].annotate(task["id"], ["spam"])
    proxy = FaultProxy(world["ls"].url, Faults(malform=rf"^/api/tasks/{bad['id']}/")).start()
    try:
        settings = Settings(instance_path=str(tmp_path), labelstudio_url=proxy.url, labelstudio_token=TOKEN,
                            labelstudio_retries=0, worker_warm_up=False, min_labels=100_000, retrain_every=100_000,
                            labelstudio_projects=(ProjectSpec.parse(str(world["project"]), "labelstudio"),))
        store = Store(settings.db_url).prepare(settings.projects)
        jobs.configure(settings, store)
        ids = [store.record_event(project_id=1, platform="labelstudio", doc_id=str(t["id"]), member="", source="",
                                  kind="ANNOTATION_CREATED", dedup_key=f"malformed-{t['id']}")[0] for t in (bad, good)]
        assert [jobs.process_event.call_local(i) for i in ids][0] == "failed"
        failed, done = store.get_event(ids[0]), store.get_event(ids[1])
        assert failed["state"] == "failed" and f"Label Studio task {bad['id']}: the answer is not valid JSON" in \
            failed["error"], failed
        assert done["state"] == "done" and done["outcome"].startswith("labelled"), done
    finally:
        proxy.stop()
        jobs._loop = None  # the next user of jobs builds its loop from its own settings
