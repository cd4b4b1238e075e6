"""An instance folder and database made by the code before the worker/ and web/ layout (commit 35205de, the
local project trained by ``scripts.cli train``; a tagtog and a Label Studio project; one queued event) keep
working: the store opens it, its champion loads and predicts, training goes on, the API lists it, and tasks queued
under the old module name still run."""
from __future__ import annotations

import shutil
import sqlite3

from app import create_app
from config import ProjectSpec, Settings
from storage import Store
from worker import jobs
from worker.loop import Loop

from .conftest import ROOT

LEGACY = ROOT / "tests" / "samples" / "legacy_instance"
OLD_PATH = "/tmp/legacy/instance"  # where the instance lived when it was made


def _instance(tmp_path):
    inst = tmp_path / "instance"
    shutil.copytree(LEGACY, inst)
    with sqlite3.connect(inst / "prelabel.db") as c:  # the volume moved: its paths follow, nothing else changes
        c.execute("UPDATE model_versions SET path = replace(path, ?, ?)", (OLD_PATH, str(inst)))
    settings = Settings(instance_path=str(inst), model_families="quick", tagtog_projects=(
        ProjectSpec("tagtog", "alice", "spam"),), labelstudio_projects=(ProjectSpec.parse("3", "labelstudio"),))
    return inst, settings


def test_a_legacy_instance_opens_loads_predicts_and_trains_on(tmp_path):
    inst, settings = _instance(tmp_path)
    store = Store(settings.db_url).prepare(settings.projects)
    assert [(p["id"], p["platform"]) for p in sorted(store.list_projects(), key=lambda p: p["id"])] == [
        (1, "local"), (2, "tagtog"), (3, "labelstudio")]
    loop = Loop(settings, store)
    summary = store.project_summary(1)
    assert summary["champion"]["version"] == 1 and summary["labels"] == 300
    clf = loop.classifier(1, summary["champion"]["id"])
    assert list(clf.predict(["WINNER!! You have won a free prize, call now to claim", "see you at lunch"])) == [
        "spam", "ham"]
    r = loop.training.train(1, families=["quick"])  # the next version lands beside the old one
    assert r is not None and r.version == 2 and (inst / "models" / "local-local-sms" / "v2" / "meta.json").is_file()
    assert store.get_event(1)["state"] == "queued"  # the event accepted before the upgrade is still there


def test_the_api_serves_a_legacy_instance(tmp_path):
    _, settings = _instance(tmp_path)
    app = create_app({"instance_path": settings.instance_path, "tagtog_projects": settings.tagtog_projects,
                      "labelstudio_projects": settings.labelstudio_projects})
    c = app.test_client()
    assert {p["name"] for p in c.get("/api/v1/projects").json["projects"]} == {"sms", "spam", "3"}
    versions = c.get("/api/v1/projects/1/versions").json["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "champion")]


def test_tasks_queued_under_the_old_module_name_still_run():
    for name in ("process_event", "retrain", "reconcile", "refresh_champion", "cross_validate", "embed_pool"):
        assert jobs.huey._registry.string_to_task(f"jobs.{name}") is getattr(jobs, name).task_class
    assert jobs.huey_bert._registry.string_to_task("jobs.train_family") is jobs.train_family.task_class
