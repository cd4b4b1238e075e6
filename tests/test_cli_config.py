"""Command-line scripts, settings parsing and the sweep's recovery query."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pandas as pd
from dataclasses import fields

import pytest

from annotation_client import make_platform
from config import ProjectSpec, Settings
from storage import Event, Store, utcnow

from .conftest import ROOT, SMS_CSV


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("mod", ["scripts.train", "scripts.evaluate", "scripts.demo", "scripts.csv_to_tagtog",
                                 "emulator.tagtog", "bench.quality", "bench.freshness", "bench.webhooks",
                                 "devtools.labelstudio_server", "bench.labelstudio", "bench.families", "scripts.cli",
                                 "devtools.servers", "bench.scaleout", "bench.faults", "bench.fuzz",
                                 "devtools.faultproxy", "bench.embed_cache", "bench.learning_curves"])
def test_help(mod):
    r = run(mod, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_train_then_evaluate(tmp_path):
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    df = pd.concat([df[df.label == "spam"].head(300), df[df.label == "ham"].head(900)])
    df.iloc[::2].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[1::2].to_csv(tmp_path / "test.csv", index=False)
    r = run("scripts.train", str(tmp_path / "train.csv"), "--out", str(tmp_path / "m"), "--epochs", "5")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_train"] == 480 and out["f1"] >= 0.7
    assert (tmp_path / "m" / "model.h5").exists() and (tmp_path / "m" / "vocab.json").exists()
    r = run("scripts.evaluate", str(tmp_path / "m"), str(tmp_path / "test.csv"))
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["positive"] == "spam" and m["f1"] >= 0.7 and m["confusion_matrix"]["labels"] == ["ham", "spam"]


def test_cli_errors_are_clear(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    r = run("scripts.train", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "m"))
    assert r.returncode != 0 and "no column" in r.stderr and "Traceback" not in r.stderr
    r = run("scripts.evaluate", str(tmp_path), str(tmp_path / "bad.csv"))
    assert r.returncode == 2 and "not a model version folder" in r.stderr


def test_settings_from_env():
    s = Settings.from_env({"TAGTOG_PROJECTS": "alice/spam:isSpam, bob/news", "RETRAIN_EVERY": "3",
                           "IGNORE_API_SOURCE": "false", "CV_FOLDS": "3"})
    assert s.tagtog_projects == (ProjectSpec("tagtog", "alice", "spam", "isSpam"), ProjectSpec("tagtog", "bob", "news"))
    assert s.retrain_every == 3 and s.ignore_api_source is False and s.cv_folds == 3
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("instance/prelabel.db")
    for bad, needle in [({"RETRAIN_EVERY": "x"}, "RETRAIN_EVERY"), ({"TAGTOG_PROJECTS": "nope"}, "owner/name"),
                        ({"IGNORE_API_SOURCE": "maybe"}, "IGNORE_API_SOURCE"),
                        ({"GROUND_TRUTH_POLICY": "all"}, "GROUND_TRUTH_POLICY"),
                        ({"AL_REGEX": r"(\w)\1"}, r"AL_REGEX: regex .* does not compile.*back-references"),
                        ({"AL_REGEX": "x" * 501}, "AL_REGEX: .*at most 500"),
                        ({"MAX_TEXT_BYTES": "10"}, "MAX_TEXT_BYTES"), ({"MAX_ANNOTATION_BYTES": "-1"}, "at least 1024"),
                        ({"STOP_GROWTH": "1.0"}, "STOP_GROWTH must be at least 1.05"),
                        ({"RETRAIN_EVERY": "0"}, "RETRAIN_EVERY must be at least 1, got 0"),
                        ({"WORKER_HEARTBEAT_S": "0"}, "WORKER_HEARTBEAT_S must be at least 1"),
                        ({"MIN_LABELS": "1"}, "MIN_LABELS must be at least 2"),
                        ({"WARM_LR_FACTOR": "3"}, "WARM_LR_FACTOR must be between"),
                        ({"PRELABEL_MODE": "fast"}, "PRELABEL_MODE must be one of learn, review, mixed"),
                        ({"TAGTOG_RETRIES": "-1"}, "TAGTOG_RETRIES must be between 0 and 20")]:
        with pytest.raises(ValueError, match=needle):
            Settings.from_env(bad)


def test_unused_client_libraries_follow_the_queue_and_database():
    assert Settings.from_env({}).unused_client_libraries() == ("redis", "psycopg")
    assert Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0"}).unused_client_libraries() == ("psycopg",)
    both = Settings.from_env({"QUEUE_URL": "unix:///tmp/r.sock", "DATABASE_URL": "postgresql+psycopg://u@h/db"})
    assert both.unused_client_libraries() == ()


def test_labelstudio_settings_and_env_example_lists_every_setting():
    s = Settings.from_env({"LABELSTUDIO_PROJECTS": "12, 15:sentiment", "LABELSTUDIO_TOKEN": "t"})
    assert s.labelstudio_projects == (ProjectSpec("labelstudio", "ls", "12"),
                                      ProjectSpec("labelstudio", "ls", "15", "sentiment"))
    assert make_platform("labelstudio", s).client._token == "t" and len(s.projects) == 2
    with pytest.raises(ValueError, match="LABELSTUDIO_PROJECTS.*<id>"):
        Settings.from_env({"LABELSTUDIO_PROJECTS": "alice/spam"})
    example = (ROOT / ".env.example").read_text()
    missing = [f.name.upper() for f in fields(Settings) if f.name != "extra" and f"\n{f.name.upper()}=" not in example]
    assert missing == []


def test_sweep_finds_lost_and_stuck_events(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/x.db")
    store.create_all()
    pid = store.ensure_project("tagtog", "a", "b")
    ids = [store.record_event(project_id=pid, platform="tagtog", doc_id=f"d{i}", member="master", source="GUI",
                              kind="updated", dedup_key=f"k{i}")[0] for i in range(3)]
    store.claim_event(ids[2])
    assert store.stale_events(600, 1800) == []  # everything is fresh
    with store.session() as s:
        s.get(Event, ids[0]).enqueued_at = utcnow() - timedelta(hours=1)  # its enqueue was lost
        s.get(Event, ids[2]).started_at = utcnow() - timedelta(hours=1)  # its worker died
        s.get(Event, ids[2]).enqueued_at = utcnow() - timedelta(hours=1)
    assert store.stale_events(600, 1800) == [ids[0], ids[2]]
    assert store.get_event(ids[2])["state"] == "queued"
    assert store.stale_events(600, 1800) == []  # re-enqueued ones are not handed out again at once


def test_schema_creation_survives_concurrent_starts(tmp_path):
    """Several processes (gunicorn workers, the worker) creating the schema of a new database at once."""
    import time

    # each process imports first, then all create the schema at the same instant
    code = ("import sys, time; from storage import Store; s = Store(sys.argv[1]); "
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); s.create_all(); print('ok')")
    url, start = f"sqlite:///{tmp_path}/new.db", str(time.time() + 4)
    procs = [subprocess.Popen([sys.executable, "-c", code, url, start], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
