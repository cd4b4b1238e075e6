"""API v1 over a real trained project: versions, metrics, download, promote/rollback, next, bad input, OpenAPI."""
from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

from app import create_app
from config import ProjectSpec
from storage import Project

from ..conftest import ROOT
from ..worker.test_loop import confirm_and_train, env, make_env, sms_rows  # noqa: F401 - fixtures

ADMIN = {"Authorization": "Bearer adm"}


def train_and_serve(env):  # noqa: F811
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(warm_min_labels=10_000)
    r = confirm_and_train(env, list(truth)[:200])
    loop.prelabels.score_pool(pid, r.champion_id)
    app = create_app({"instance_path": loop.settings.instance_path, "admin_token": "adm",
                      "tagtog_projects": (ProjectSpec("tagtog", "alice", "spam"),)})
    calls = {"retrain": [], "refresh": []}
    app.extensions["prelabel.retrain"] = calls["retrain"].append
    app.extensions["prelabel.refresh"] = calls["refresh"].append
    return app.test_client(), loop, pid, calls, truth


@pytest.fixture
def trained(env):  # noqa: F811
    """A project of its own, for the tests that change it (promote, retrain, stopping records, cross-validation)."""
    return train_and_serve(env)


@pytest.fixture(scope="module")
def served(tmp_path_factory, sms_rows):  # noqa: F811
    """One trained project shared by the tests that only read it (trained once per module, not once per test)."""
    gen = make_env(tmp_path_factory.mktemp("api"), sms_rows)
    yield train_and_serve(next(gen))
    gen.close()


def test_versions_and_full_metrics(served):
    c, loop, pid, _, _ = served
    vs = c.get(f"/api/v1/projects/{pid}/versions").json["versions"]
    assert [(v["version"], v["status"]) for v in vs] == [(1, "champion")]
    v = c.get(f"/api/v1/projects/{pid}/versions/1").json
    assert v["metrics"]["dataset"] == "cross-validation" and "mcc" in v["metrics"] and v["history"]["val_loss"]
    assert c.get(f"/api/v1/projects/{pid}/versions/7").status_code == 404
    assert c.get(f"/api/v1/projects/{pid}").json["champion"]["version"] == 1


def test_download_is_one_archive(served):
    c, *_ = served
    assert c.get("/api/v1/projects/1/versions/1/download").status_code == 401  # admin only: a model leaks data
    r = c.get("/api/v1/projects/1/versions/1/download", headers=ADMIN)
    assert r.status_code == 200 and r.mimetype == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(r.data)).namelist())
    assert {"v1/model.h5", "v1/vocab.json", "v1/meta.json"} <= names
    assert c.get("/api/v1/projects/1/versions/9/download", headers=ADMIN).status_code == 404


def test_promote_and_retrain_need_admin_and_rollback(trained):
    c, loop, pid, calls, _ = trained
    loop.training.train(pid)  # v2, a candidate judged against v1
    assert c.post(f"/api/v1/projects/{pid}/versions/1/promote").status_code == 401
    r = c.post(f"/api/v1/projects/{pid}/versions/1/promote", headers=ADMIN, json={"reason": "rollback"})
    assert r.status_code == 200 and r.json["status"] == "champion" and r.json["reason"] == "rollback"
    assert calls["refresh"] == [pid]
    assert c.get(f"/api/v1/projects/{pid}").json["champion"]["version"] == 1
    assert c.post(f"/api/v1/projects/{pid}/versions/42/promote", headers=ADMIN).status_code == 404
    assert c.post(f"/api/v1/projects/{pid}/retrain", headers=ADMIN).status_code == 202 and calls["retrain"] == [pid]
    assert c.post("/api/v1/projects/77/retrain", headers=ADMIN).status_code == 404
    # rollback: back to the previous champion, and refused when there is none
    assert c.post(f"/api/v1/projects/{pid}/versions/2/promote", headers=ADMIN).status_code == 200
    assert c.post(f"/api/v1/projects/{pid}/rollback").status_code == 401
    r = c.post(f"/api/v1/projects/{pid}/rollback", headers=ADMIN)
    assert r.status_code == 200 and r.json["version"] == 1 and r.json["reason"] == "rollback from v2"
    r = c.post(f"/api/v1/projects/{pid}/rollback", headers=ADMIN)
    assert r.status_code == 409 and "no earlier champion" in r.json["error"]
    r = c.post(f"/api/v1/projects/{pid}/versions/1/promote", headers=ADMIN, data="{", content_type="application/json")
    assert r.status_code == 400 and "not valid JSON" in r.json["error"]
    r = c.post(f"/api/v1/projects/{pid}/versions/1/promote", headers=ADMIN, data="x", content_type="text/plain")
    assert r.status_code == 415


@pytest.mark.parametrize("strategy", ["least_confidence", "entropy", "margin", "random", "deterministic"])
def test_next_ranks_the_pool(served, strategy):
    c, loop, pid, _, truth = served
    r = c.get(f"/api/v1/projects/{pid}/next?strategy={strategy}&n=7")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["strategy"] == strategy and body["cold_start"] is False and body["champion"] == 1
    docs = body["documents"]
    assert len(docs) == 7 and not {d["docid"] for d in docs} & set(list(truth)[:200])  # only unlabelled ones
    if strategy in ("least_confidence", "entropy", "margin"):
        assert [d["score"] for d in docs] == sorted((d["score"] for d in docs), reverse=True)
        assert all(0.5 <= d["probability"] <= 1 for d in docs)


def test_next_batch_modes_and_the_stopping_signal(trained):
    c, loop, pid, _, truth = trained
    for batch in ("diverse", "balanced"):
        r = c.get(f"/api/v1/projects/{pid}/next?strategy=margin&batch={batch}&n=7")
        assert r.status_code == 200, r.json
        docs = r.json["documents"]
        assert r.json["batch"] == batch and len({d["docid"] for d in docs}) == 7
        assert not {d["docid"] for d in docs} & set(list(truth)[:200])
    body = c.get(f"/api/v1/projects/{pid}/next?n=3").json
    assert body["stop"]["suggested"] is False and "0 of 2 steps" in body["stop"]["reason"]  # a first model
    def record(*rounds):  # as the worker records them (Training.record_stop)
        with loop.store.session() as s:
            p = s.get(Project, pid)
            p.schedule = {**(p.schedule or {}), "stability": [
                {"version": v, "labels": labels, "kappa": k, "status": "champion"} for v, labels, k in rounds]}

    record((2, 180, 0.995), (3, 190, 0.999), (4, 200, 1.0))  # steady steps (STOP_ROUNDS 2 by default)
    stop = c.get(f"/api/v1/projects/{pid}").json["stop"]
    assert stop["suggested"] is True and stop["recent"] == [0.999, 1.0] and stop["labels"] == 200
    assert c.get(f"/api/v1/projects/{pid}/next?n=3").json["stop"] == stop
    page = c.get(f"/dashboard/projects/{pid}").get_data(as_text=True)
    assert "Enough labels?" in page and "0.999, 1.000" in page
    text = c.get("/metrics").get_data(as_text=True)
    assert 'prelabel_stop_suggested{project="tagtog-alice-spam"} 1.0' in text
    assert 'prelabel_stop_kappa{project="tagtog-alice-spam"} 1.0' in text
    record((2, 180, 0.995), (3, 190, 0.999), (4, 200, 1.0), (5, 210, 0.93))
    stop = c.get(f"/api/v1/projects/{pid}").json["stop"]
    assert stop["suggested"] is False and "down to 0.930" in stop["reason"]
    record((2, 60, 0.995), (3, 70, 0.999), (4, 80, 1.0))  # steady, but too few labels to trust it
    stop = c.get(f"/api/v1/projects/{pid}").json["stop"]
    assert stop["suggested"] is False and "under STOP_MIN_LABELS" in stop["reason"]
    assert "Keep annotating" in c.get(f"/dashboard/projects/{pid}").get_data(as_text=True)


def test_next_maxprob_and_regex(served):
    c, loop, pid, _, _ = served
    docs = c.get(f"/api/v1/projects/{pid}/next?strategy=maxprob&label=true&n=5").json["documents"]
    assert all(d["predicted"] == "true" for d in docs[:3])
    with loop.store.session() as s:
        from storage import Document
        texts = {d.platform_id: d.text for d in s.query(Document)}
    docs = c.get(f"/api/v1/projects/{pid}/next?strategy=entropy&n=50&regex=(?i)call").json["documents"]
    assert docs and all(re.search("(?i)call", texts[d["docid"]]) for d in docs)


@pytest.mark.parametrize("query,needle", [
    ("strategy=nope", "unknown strategy"), ("n=-1", "between 0 and 1000"), ("n=abc", "integer"),
    ("regex=(", "does not compile"), ("strategy=maxprob&label=nope", "maxprob needs label"),
    ("batch=clusters", "unknown batch"), (r"regex=(a)\1", "regex '(a)\\\\1' does not compile"),
    ("regex=(%3F%3Dcall)", "invalid perl operator"), ("regex=(%3F<!x)y", "no back-references or look-arounds"),
    ("regex=" + "a" * 501, "at most 500"),
])
def test_next_bad_input(served, query, needle):
    c, loop, pid, _, _ = served
    r = c.get(f"/api/v1/projects/{pid}/next?{query}")
    assert r.status_code == 400 and needle in r.json["error"]


@pytest.mark.timeout(120)  # under Python's backtracking re this pattern would run for hours on these texts
def test_next_catastrophic_regex_is_linear(served):
    c, loop, pid, _, _ = served
    from storage import Document, Prediction
    with loop.store.session() as s:
        scored = s.query(Prediction).filter_by(project_id=pid).first()  # the champion's classes and version
        for i, n in enumerate((40, 2000, 9_000)):  # runs of one letter: exponential for a backtracking engine
            d = Document(project_id=pid, platform_id=f"runs{i}", text="a" * n + "!", text_hash=f"runs{i}")
            s.add(d)
            s.flush()
            s.add(Prediction(document_id=d.id, project_id=pid, model_version_id=scored.model_version_id,
                             proba=scored.proba))
    try:
        r = c.get(f"/api/v1/projects/{pid}/next?strategy=entropy&n=5&regex=(a%2B)%2B$")
        assert r.status_code == 200 and r.json["documents"] == []  # no text ends in a run of a's
        r = c.get(f"/api/v1/projects/{pid}/next?strategy=entropy&n=5&regex=(a%2B)%2B!$")
        assert r.status_code == 200 and {d["docid"] for d in r.json["documents"]} == {"runs0", "runs1", "runs2"}
    finally:
        with loop.store.session() as s:
            ids = [d.id for d in s.query(Document).filter(Document.platform_id.like("runs%"))]
            s.query(Prediction).filter(Prediction.document_id.in_(ids)).delete(synchronize_session=False)
            s.query(Document).filter(Document.id.in_(ids)).delete(synchronize_session=False)


def test_next_cold_start_says_so(tmp_path):
    app = create_app({"instance_path": str(tmp_path), "tagtog_projects": (ProjectSpec("tagtog", "a", "b"),)})
    body = app.test_client().get("/api/v1/projects/1/next?n=3").json
    assert body["cold_start"] is True and "cold start" in body["note"] and body["documents"] == []


def test_openapi_documents_every_route(served):
    c, *_ = served
    spec = c.get("/api/v1/openapi.json").json
    app_routes = set()
    for rule in c.application.url_map.iter_rules():
        if rule.rule.startswith(("/api/v1", "/webhooks", "/healthz", "/metrics", "/dashboard")):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for m in rule.methods - {"HEAD", "OPTIONS"}:
                app_routes.add((path, m.lower()))
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert app_routes == documented
    assert json.loads((ROOT / "web" / "openapi.json").read_text())["openapi"].startswith("3.")


def test_cross_validation_on_demand(trained):
    c, loop, pid, calls, _ = trained
    cv_calls = []
    c.application.extensions["prelabel.cv"] = lambda p, k: cv_calls.append((p, k))
    assert c.post(f"/api/v1/projects/{pid}/cross-validate?folds=1", headers=ADMIN).status_code == 400
    assert c.post(f"/api/v1/projects/{pid}/cross-validate?folds=5", headers=ADMIN).status_code == 202
    assert cv_calls == [(pid, 5)]
    r = loop.crossval.run(pid, folds=5)  # what the worker runs
    assert r["folds"] == 5 and len(r["per_fold"]) == 5 and r["n_labels"] == 200
    assert 0.5 < r["f1_macro_mean"] <= 1 and r["f1_macro_std"] >= 0
    assert c.get(f"/api/v1/projects/{pid}/versions/1").json["cv"]["folds"] == 5
    with pytest.raises(ValueError, match="small data"):
        loop.crossval.run(pid, folds=5, max_labels=100)


def test_production_download_with_the_documented_admin_command(served):
    """PRELABEL_ENV=production demands both tokens; the README's download command sends the admin token alone,
    and the admin token also reads what the API token reads (one Authorization header holds one token)."""
    _, loop, pid, _, _ = served
    tokens = {"api_token": "api-0123456789abcdef", "admin_token": "adm-0123456789abcdef",
              "metrics_token": "met-0123456789abcdef", "webhook_username": "tagtog-hook",
              "webhook_password": "hook-0123456789abcdef", "tagtog_username": "alice", "tagtog_password": "tt-pw-42"}
    app = create_app({"instance_path": loop.settings.instance_path, "prelabel_env": "production", **tokens,
                      "tagtog_projects": (ProjectSpec("tagtog", "alice", "spam"),)})
    assert app.extensions["prelabel.settings"].prelabel_env == "production"
    c = app.test_client()
    admin, api = ({"Authorization": f"Bearer {tokens[k]}"} for k in ("admin_token", "api_token"))
    r = c.get(f"/api/v1/projects/{pid}/versions/1/download", headers=admin)
    assert r.status_code == 200 and "v1/meta.json" in zipfile.ZipFile(io.BytesIO(r.data)).namelist()
    r = c.get(f"/api/v1/projects/{pid}/versions/1/download", headers=api)
    assert r.status_code == 401 and "admin token" in r.json["error"]  # the read token never grants admin
    assert c.get(f"/api/v1/projects/{pid}/versions/1/download").status_code == 401
    assert c.get(f"/api/v1/projects/{pid}", headers=admin).status_code == 200  # admin reads too
    assert c.get(f"/api/v1/projects/{pid}", headers=api).status_code == 200
    assert c.get(f"/api/v1/projects/{pid}").status_code == 401
    assert c.get("/dashboard/", auth=("lead", tokens["admin_token"])).status_code == 200


def test_regex_that_blows_up_rejected_and_costly_reads_bounded(served):
    """A counted repetition that compiles to a huge RE2 program is a 400 naming it; only MAX_COSTLY_READS
    next/download calls run at once per web process, the next one is a 503 with Retry-After."""
    c, loop, pid, _, _ = served
    r = c.get(f"/api/v1/projects/{pid}/next", query_string={"regex": "(.*a){1000}$"})
    assert r.status_code == 400 and "(.*a){1000}$" in r.json["error"] and "RE2 instructions" in r.json["error"]
    assert c.get(f"/api/v1/projects/{pid}/next", query_string={"regex": "(?i)prize"}).status_code == 200
    app = c.application
    limit = app.extensions["prelabel.settings"].max_costly_reads
    gate = app.extensions["prelabel.costly"]
    assert all(gate.acquire(blocking=False) for _ in range(limit))  # as many reads in flight as allowed
    try:
        r = c.get(f"/api/v1/projects/{pid}/next")
        assert r.status_code == 503 and r.headers["Retry-After"] == "2" and "busy" in r.json["error"]
        assert c.get(f"/api/v1/projects/{pid}").status_code == 200  # cheap reads are not limited
    finally:
        for _ in range(limit):
            gate.release()
    assert c.get(f"/api/v1/projects/{pid}/next").status_code == 200


def test_next_is_computed_in_a_read_process_and_its_loss_is_a_503(served):
    """``next`` runs in a child process of the web's read pool (its C calls would hold the GIL that webhook
    threads need); a child that dies mid-read gives a 503 with Retry-After, and the next read starts a new one."""
    import os
    import signal

    c, loop, pid, _, _ = served
    reads = c.application.extensions["prelabel.reads"]
    first = c.get(f"/api/v1/projects/{pid}/next", query_string={"n": 3})
    assert first.status_code == 200 and len(first.json["documents"]) == 3
    children = reads.pids()
    assert children and os.getpid() not in children
    for child in children:
        os.kill(child, signal.SIGKILL)
    r = c.get(f"/api/v1/projects/{pid}/next", query_string={"n": 3})
    assert r.status_code == 503 and r.headers["Retry-After"] == "2" and "stopped" in r.json["error"]
    again = c.get(f"/api/v1/projects/{pid}/next", query_string={"n": 3})
    assert again.status_code == 200 and again.json["documents"] == first.json["documents"]
    assert set(reads.pids()).isdisjoint(children)
    assert c.get("/api/v1/projects/999/next").status_code == 404



def test_prelabel_modes_and_acceptance_per_kind_and_round(trained, env):  # noqa: F811
    """PRELABEL_MODE review uploads the surest suggestions, mixed alternates them with the active-learning picks;
    what people keep is counted per kind of pick and per round, in the API, /metrics and the dashboard."""
    from storage import Document, Upload
    from worker.loop.prelabel import REVIEW_TAG

    from ..worker.test_loop import annotate, deliver

    c, loop, pid, _, truth = trained
    server = env[1]
    labelled = set(list(truth)[:200])
    with loop.store.session() as s:
        vid = s.get(Project, pid).champion_id
        pool = [d.text for d in s.query(Document).filter(Document.project_id == pid) if d.platform_id not in labelled]
    champion = c.get(f"/api/v1/projects/{pid}").json["champion"]["version"]
    clf = loop.classifier(pid, vid)
    counts = {"true": 50, "false": 150}  # past cold start
    sure = clf.predict_proba(pool).max(axis=1)
    review = loop.prelabels.choose(clf, pool, 4, counts, mode="review")
    assert review.tag == REVIEW_TAG and review.tags == [REVIEW_TAG] * 4
    assert sorted(sure[review.idx]) == sorted(sure)[-4:]  # the four surest suggestions of the pool
    learn = loop.prelabels.choose(clf, pool, 4, counts, mode="learn")
    mixed = loop.prelabels.choose(clf, pool, 6, counts, mode="mixed")
    assert mixed.tag == f"mixed:{learn.tag}" and mixed.tags == [learn.tag, REVIEW_TAG] * 3
    assert list(mixed.idx[::2]) == list(learn.idx[:3]) and list(mixed.idx[1::2]) == list(review.idx[:3])
    assert max(sure[mixed.idx[::2]]) < min(sure[mixed.idx[1::2]])  # learn picks the unsure, review the sure

    loop.settings = loop.settings.with_(prelabel_mode="mixed", audit_share=0.0)
    assert loop.prelabels.prelabel(pid, vid) == 5
    with loop.store.session() as s:
        ups = [(s.get(Document, u.document_id).platform_id, u.value, u.strategy)
               for u in s.query(Upload).order_by(Upload.id)]
    assert [m for _, _, m in ups] == [learn.tag, REVIEW_TAG, learn.tag, REVIEW_TAG, learn.tag]
    for docid, value, strategy in ups:  # people keep the review suggestions and change the first learn one
        keep = docid != ups[0][0]
        annotate(server, docid, {"labels": {"isSpam": json.loads(value) if keep else not json.loads(value)},
                                 "confirm": True})
        assert deliver(loop.store, loop, pid, docid).startswith("labelled")
    acc = c.get(f"/api/v1/projects/{pid}").json["acceptance"]
    assert acc["by_mode"] == {"learn": {"accepted": 2, "reviewed": 3, "rate": 0.6667},
                              "review": {"accepted": 2, "reviewed": 2, "rate": 1.0}}
    assert acc["by_round"] == [{"version": champion, "accepted": 4, "reviewed": 5, "rate": 0.8,
                                "by_mode": acc["by_mode"]}]
    text = c.get("/metrics").get_data(as_text=True)
    assert 'prelabel_prelabels_reviewed_total{mode="learn",outcome="changed",project="tagtog-alice-spam"} 1.0' in text
    assert 'prelabel_acceptance_ratio{mode="review",project="tagtog-alice-spam"} 1.0' in text
    page = c.get(f"/dashboard/projects/{pid}").get_data(as_text=True)
    assert 'id="acceptance-by-mode">learn 67%, review 100%' in page
    assert f'<tr data-version="{champion}"><td>v{champion}</td><td class="num">80% <span class="muted">of 5' in page


def test_next_reads_the_stored_ranking_and_answers_as_the_full_read(trained, monkeypatch):
    """The champion's pool ranking is stored when the pool is scored: next's default orders read the top n through
    an index, and answer exactly what the full read of the pool answers."""
    from storage import Prediction
    from web import reads

    c, loop, pid, _, truth = trained
    calls = []
    ranked = reads._ranked
    monkeypatch.setattr(reads, "_ranked", lambda *a, **kw: calls.append(a[3].strategy) or ranked(*a, **kw))
    fast = {}
    for strategy in ("margin", "least_confidence", "entropy", "confident"):
        q = reads.NextQuery(strategy, "top", 25, None, None, 3)
        status, fast[strategy] = reads.next_documents(loop.settings.db_url, pid, q)
        assert status == 200 and len(fast[strategy]["documents"]) == 25
    assert calls == ["margin", "least_confidence", "entropy", "confident"]  # each through the stored ranking
    labelled = set(list(truth)[:200])
    assert not {d["docid"] for d in fast["margin"]["documents"]} & labelled
    scores = [d["score"] for d in fast["margin"]["documents"]]
    assert scores == sorted(scores, reverse=True)
    with loop.store.session() as s:  # a pool scored before the ranking was stored: the full read answers
        s.query(Prediction).update({f"rank_{n}": None for n in ("margin", "least_confidence", "entropy",
                                                                "confident")})
    for strategy, body in fast.items():
        status, slow = reads.next_documents(loop.settings.db_url, pid, reads.NextQuery(strategy, "top", 25, None,
                                                                                         None, 3))
        assert status == 200 and slow == body, strategy
    assert len(calls) == 8  # tried, found no ranking, fell back
