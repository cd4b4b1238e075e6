"""Faults, with the real processes (bench/faults.py's scenarios, smaller): a flaky, slow or malformed platform
behind devtools/faultproxy.py, the web process down while annotators confirm, the worker killed with SIGKILL during
training, and a model version that cannot be written (disk full, database locked). Nothing accepted is lost or
stored twice; no half-written version is ever visible; the champion stays intact."""
from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
import requests

from worker import jobs
from bench import faults
from devtools.faultproxy import FaultProxy
from devtools.labelstudio_server import installed
from storage import Store, utcnow


def _no_loss(r, n):
    assert r["lost"] == 0 and r["duplicated"] == 0, r
    assert r["sent"] == n and r["acknowledged"] == n and r["stored"] == n, r


def test_flaky_platform_every_event_processed_once(tmp_path):
    r = faults.platform_fault("flaky", tmp_path, 24)
    _no_loss(r, 24)
    assert r["processed"] == 24 and r["failed_with_reason"] == 0
    assert sum(r["faults_injected"].values()) >= 5 and r["faults_injected"].get("timeout", 0) >= 1, r


def test_slow_platform_every_event_processed(tmp_path):
    r = faults.platform_fault("slow", tmp_path, 5)
    _no_loss(r, 5)
    assert r["processed"] == 5 and r["seconds"] >= 2 * 5  # at least one slow call per event


def test_malformed_ann_json_fails_only_those_events_with_the_reason(tmp_path):
    r = faults.platform_fault("malformed", tmp_path, 21)
    _no_loss(r, 21)
    assert r["failed_with_reason"] == 3 and r["failed_as_expected"] and r["processed"] == 18, r
    assert "ann.json is not valid JSON" in r["example_failure"]


def test_confirms_made_while_web_is_down_are_recovered_by_reconcile(tmp_path):
    r = faults.web_down(tmp_path, 20)
    assert r["acknowledged"] == 10 and r["recovered_by_reconcile"] == 10, r
    assert r["lost"] == 0 and r["duplicated"] == 0


def test_web_restart_queues_a_reconcile_that_recovers_what_was_lost(tmp_path):
    r = faults.web_restart(tmp_path, 10)
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["recovered_by_reconcile"] == 10, r
    assert r["acknowledged"] == 10 and r["stored"] == 10, r  # events: the other 10 came back by the web start's reconcile


def test_sigterm_mid_reconcile_does_not_switch_reconciliation_off(tmp_path):
    r = faults.sigterm_reconcile(tmp_path, 40)
    assert r["interrupted_mid_reconcile"] and not r["lock_held_after_sigterm"], r  # released at exit
    assert r["reconciles_after_restart"] == 2 and r["last_reconcile"].get("at"), r


def test_label_studio_drops_webhooks_while_web_is_down_and_reconcile_recovers_them(tmp_path):
    if not installed():
        if os.environ.get("PRELABEL_REQUIRE_LABELSTUDIO"):
            pytest.fail("PRELABEL_REQUIRE_LABELSTUDIO=1 but Label Studio is not installed", pytrace=False)
        pytest.skip("Label Studio is not installed (python -m devtools.labelstudio_server --install)")
    r = faults.labelstudio_web_down(tmp_path, 12)
    assert r["sent"] == 12 and r["acknowledged"] == 6 and r["recovered_by_reconcile"] == 6, r
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["failed_with_reason"] == 0, r


def test_kill_9_during_training_never_corrupts_and_resumes(tmp_path):
    r = faults.kill_9(tmp_path, 60, kills=3)
    assert r["killed_while_training"] == 3 and r["runs_interrupted_and_closed"] == 3, r
    assert r["resumed_after_restart"] == 3 and r["runs_left_open"] == 0, r
    assert r["half_written_visible"] == 0 and r["champion_loadable_after_kill"] == "3/3", r
    assert r["champion_loadable_at_end"] and r["staging_folders_left"] == 0, r
    assert r["lost"] == 0 and r["duplicated"] == 0, r


@pytest.mark.parametrize("kind,needle", [("disk-full", "No space left on device"),
                                         ("db-locked", "database is locked")])
def test_model_write_failure_is_clear_and_keeps_the_champion(tmp_path, kind, needle):
    r = faults.write_fault(kind, tmp_path)
    assert needle in r["error"] and "champion is unchanged" in r["error"], r
    assert r["champion_before"] == r["champion_after"] == 1 and r["champion_loadable"], r
    assert r["visible_version_folders"] == ["v1"] and r["staging_folders"] == [], r
    failed = r["failed_version"]
    assert failed["path"] == "" and r["failed_version_after_sweep"]["status"] == "failed", r
    if kind == "disk-full":
        assert failed["status"] == "failed" and needle in failed["reason"]
    else:  # the database refused even the failure note: the row says "saving" (never a candidate) until the sweep
        assert failed["status"] == "saving", r
    assert r["next_run_after_fault"].startswith("v3 ")  # once the fault is gone, training goes on


def test_worker_liveness_rules():
    host = socket.gethostname()
    now = utcnow()
    assert jobs.worker_dead(f"{host}:999999999:abc", now)  # no such process on this machine
    assert not jobs.worker_dead(jobs.WORKER_ID, now)  # this one
    assert jobs.worker_dead(f"{host}:{os.getpid()}:other", now)  # this pid, an earlier incarnation
    assert not jobs.worker_dead(f"{host}:1:abc", now)  # a live process (pid 1)
    assert not jobs.worker_dead("elsewhere:12:abc", now)  # another machine: only when stale
    assert jobs.worker_dead("elsewhere:12:abc", now - timedelta(seconds=jobs.STALE_RUN_S + 1))


def test_recover_runs_closes_only_dead_workers_runs(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/x.db")
    store.create_all()
    a, b = store.ensure_project("tagtog", "a", "a"), store.ensure_project("tagtog", "a", "b")
    store.start_run(a, "dead")
    store.start_run(b, "alive")
    assert store.recover_runs(lambda worker, started: worker == "dead") == [a]
    assert store.retrain_pending(a) and not store.retrain_pending(b)
    assert store.recover_runs(lambda worker, started: worker == "dead") == []  # closed once


def test_fault_proxy_settings_are_checked_and_stats_counted():
    proxy = FaultProxy("http://127.0.0.1:9").start()
    try:
        r = requests.post(f"{proxy.url}/-proxy/faults", json={"kinds": ["404"]}, timeout=5)
        assert r.status_code == 400 and "unknown fault kinds" in r.json()["error"]
        assert requests.post(f"{proxy.url}/-proxy/faults", json={"rate": 1.0, "kinds": ["503"]},
                             timeout=5).status_code == 200
        assert requests.get(f"{proxy.url}/anything", timeout=5).status_code == 503
        requests.post(f"{proxy.url}/-proxy/faults", json={"rate": 0.0}, timeout=5)
        assert requests.get(f"{proxy.url}/anything", timeout=5).status_code == 502  # upstream unreachable
        assert requests.get(f"{proxy.url}/-proxy/stats", timeout=5).json() == {"calls": 2, "503": 1}
    finally:
        proxy.stop()
