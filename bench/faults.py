"""Fault scenarios against the real processes (tagtog emulator, prelabel web + worker; the platform reached
through devtools/faultproxy.py), each printing events sent, acknowledged, processed, failed with a reason, lost
and duplicated (lost and duplicated must be 0):

- flaky:     the platform answers 500/503 or times out on 30 % of calls (TAGTOG_TIMEOUT 2 s, held 3 s)
- slow:      every platform call takes 2 s more
- malformed: the ann.json of some documents comes back cut in half (not JSON): those events fail with the reason
- web-down:  the web process is stopped while annotators confirm (tagtog sends each webhook once here, like Label
             Studio): an on-demand reconcile recovers them all
- labelstudio-web-down: the same against a real Label Studio 1.23.2, which drops a webhook it cannot deliver
- kill-9:    the worker is killed with SIGKILL at random moments during training, 10 times, then restarted: the
             champion stays loadable, no half-written version is ever visible, and the interrupted run resumes
- disk-full / db-locked: writing a model version fails (ENOSPC from the file system; the SQLite database held
             locked by another connection): a clear error, nothing of the version visible, the champion unchanged

    python -m bench.faults                              # every scenario (about 10 minutes)
    python -m bench.faults --scenarios flaky,kill-9 --events 100
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import random
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import requests

ROOT = Path(__file__).resolve().parent.parent
SMS_CSV = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared")) / "data" / "sms_spam" / "sms_spam.csv"
ADMIN = "faults-admin-token-0123456789"
SCENARIOS = ("flaky", "slow", "malformed", "web-down", "web-restart", "labelstudio-web-down", "kill-9",
             "sigterm-reconcile", "disk-full", "db-locked")
logger = logging.getLogger(__name__)


def _sms(n: int) -> pd.DataFrame:
    return pd.read_csv(SMS_CSV, keep_default_na=False).head(n)


def _stack(work: Path, n: int, settings: dict[str, str], proxy: bool = True) -> tuple[Any, Any, dict[str, bool]]:
    """A stack whose worker reaches the emulator through a fault proxy (returned; faults off until set)."""
    from emulator.export import write_export  # noqa: PLC0415
    from devtools.faultproxy import FaultProxy  # noqa: PLC0415
    from scripts.stack import Stack  # noqa: PLC0415

    df = _sms(n)
    write_export(work / "export", ((f"row{i}.txt", t, None) for i, t in zip(df.index, df.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(df.index, df.label)}
    stack = Stack(work, work / "export", start_worker=False, settings={
        "ADMIN_TOKEN": ADMIN, "SYNC_INTERVAL_S": "3600", "RECONCILE_INTERVAL_S": "3600", "WORKER_WARM_UP": "false",
        "LOG_LEVEL": "WARNING", **settings})
    fp = FaultProxy(stack.emu_url).start() if proxy else None
    if fp is not None:
        stack.env["TAGTOG_BASE_URL"] = fp.url
    return stack, fp, truth


def _confirm(stack: Any, docs: list[tuple[str, str]], truth: dict[str, bool]) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda d: stack.annotate(d[0], {"isSpam": truth[d[1]]}), docs))


def _db(stack: Any) -> Any:
    from storage import Store  # noqa: PLC0415

    return Store(f"sqlite:///{stack.workdir / 'instance' / 'prelabel.db'}")


def _acked(stack: Any) -> int:
    log = requests.get(f"{stack.emu_url}/-emulator/log", auth=stack.user, timeout=10).json()
    entries = log if isinstance(log, list) else log.get("log", log.get("entries", []))
    # annotators' saves (GUI) only: prelabel's own uploads fire API-source webhooks too, which it ignores
    return sum(1 for e in entries if e.get("kind") == "webhook" and e.get("source") == "GUI"
               and 200 <= int(e.get("http_status", 0)) < 300)


def _drain(store: Any, expected: int, timeout: float) -> None:
    """Wait until ``expected`` events are stored and none is queued or processing."""
    from storage import Event  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.session() as s:
            states = Counter(e.state for e in s.query(Event))
        if sum(states.values()) >= expected and not states["queued"] and not states["processing"]:
            return
        time.sleep(0.5)
    raise TimeoutError(f"events did not drain in {timeout:.0f}s: {dict(states)}")


def _labels(store: Any) -> tuple[Counter, dict[str, str | None]]:
    """Label rows per document (platform id) and each document's latest stored value (JSON text)."""
    from storage import Document, Label  # noqa: PLC0415

    counts: Counter = Counter()
    values: dict[str, str | None] = {}
    with store.session() as s:
        for d, lab in s.query(Document, Label).join(Label, Label.document_id == Document.id).order_by(Label.id):
            counts[d.platform_id] += 1
            values[d.platform_id] = lab.value
    return counts, values


def _reconcile(stack: Any) -> dict[str, Any]:
    """Ask for a reconcile of project 1 (admin call) and wait until it has run; returns its summary."""
    stamp = (stack.api("/api/v1/projects/1").get("last_reconcile") or {}).get("at")
    requests.post(f"{stack.web_url}/api/v1/projects/1/reconcile", timeout=10,
                  headers={"Authorization": f"Bearer {ADMIN}"}).raise_for_status()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rec = stack.api("/api/v1/projects/1").get("last_reconcile") or {}
        if rec.get("at") != stamp:
            return rec
        time.sleep(0.5)
    raise TimeoutError(f"no reconcile within 300 s\n{stack.log_tail('worker')}")


def _figures(store: Any, sent: int, acked: int, truth: dict[str, bool], confirmed: list[tuple[str, str]],
             expect_failed: set[str] = frozenset()) -> dict[str, Any]:
    """sent/acknowledged/processed/failed/lost/duplicated from the store. Lost: a confirmed document whose label
    is not stored (or wrong) and whose event did not fail with a reason; duplicated: a confirm stored twice."""
    from storage import Event  # noqa: PLC0415

    with store.session() as s:
        events = s.query(Event).all()
    labels, values = _labels(store)
    failed = {e.doc_id: e.error for e in events if e.state == "failed"}
    lost = [docid for docid, name in confirmed if values.get(docid) != json.dumps(truth[name])
            and docid not in failed]
    return {"sent": sent, "acknowledged": acked, "stored": len(events),
            "processed": sum(e.state == "done" for e in events), "failed_with_reason": len(failed),
            "failed_as_expected": set(failed) == set(expect_failed), "lost": len(lost),
            "duplicated": sum(n - 1 for n in labels.values() if n > 1),
            "retried_events": sum(e.attempts > 1 for e in events),
            "example_failure": next(iter(failed.values()), "")[:160]}


def platform_fault(name: str, work: Path, n: int) -> dict[str, Any]:
    """flaky, slow or malformed: the platform misbehaves while N confirms are processed (no training)."""
    settings = {"MIN_LABELS": "100000000"}
    if name == "flaky":  # a held call gives up after 2 s (the proxy holds it 3 s); slow answers are waited for
        settings["TAGTOG_TIMEOUT"] = "2"
    stack, fp, truth = _stack(work, n, settings)
    with stack:
        docs = stack.docids()[:n]
        bad = {d for d, _ in docs[::7]} if name == "malformed" else set()
        faults = {"flaky": {"rate": 0.3, "kinds": ["500", "503", "timeout"], "timeout_s": 3.0, "seed": 11},
                  "slow": {"delay_s": 2.0},
                  "malformed": {"malform": "(?=.*output=ann.json)(?=.*ids=(" + "|".join(
                      d.replace(".", r"\.") for d in sorted(bad)) + ")(&|$))"}}[name]
        requests.post(f"{fp.url}/-proxy/faults", json=faults, timeout=10).raise_for_status()
        stack.start_workers()
        t0 = time.monotonic()
        _confirm(stack, docs, truth)
        store = _db(stack)
        _drain(store, n, timeout=900)
        seconds = time.monotonic() - t0
        out = _figures(store, n, _acked(stack), truth, docs, bad)
        stats = requests.get(f"{fp.url}/-proxy/stats", timeout=10).json()
    fp.stop()
    return {"scenario": name, **out, "platform_calls": stats.get("calls", 0),
            "faults_injected": {k: v for k, v in stats.items() if k != "calls"}, "seconds": round(seconds, 1)}


def web_down(work: Path, n: int) -> dict[str, Any]:
    """Confirms made while the web process is down are lost by the platform; a reconcile recovers them."""
    stack, fp, truth = _stack(work, n, {"MIN_LABELS": "100000000"}, proxy=False)
    with stack:
        docs = stack.docids()[:n]
        stack.start_workers()
        half = n // 2
        _confirm(stack, docs[:half], truth)  # web up
        store = _db(stack)
        _drain(store, half, 300)
        stack.stop_process("web")
        _confirm(stack, docs[half:], truth)  # web down: tagtog's webhook fails and is not sent again
        time.sleep(2)
        acked_before = _acked(stack)
        stack.start_web()
        rec = _reconcile(stack)
        out = _figures(store, n, acked_before, truth, docs)
        # by the reconcile the web's start queued or by the one asked for here, whichever ran first
        values = _labels(store)[1]
        out["recovered_by_reconcile"] = sum(values.get(d) == json.dumps(truth[name]) for d, name in docs[half:])
        out["last_reconcile"] = rec
    return {"scenario": "web-down", **out}


def web_restart(work: Path, n: int) -> dict[str, Any]:
    """Confirms made while the web process is down are lost by the platform; nobody asks for a reconcile: the
    web's start queues one (worker.startup). Seconds from the web's restart to every lost label stored."""
    stack, fp, truth = _stack(work, 2 * n, {"MIN_LABELS": "100000000"}, proxy=False)
    with stack:
        docs = stack.docids()[:2 * n]
        stack.start_workers()
        _confirm(stack, docs[:n], truth)  # web up
        store = _db(stack)
        _drain(store, n, 300)
        stack.stop_process("web")
        _confirm(stack, docs[n:], truth)  # web down: n labels whose webhooks fail
        time.sleep(2)
        acked_before = _acked(stack)
        t0 = time.monotonic()
        stack.start_web()
        up_s = time.monotonic() - t0
        deadline = t0 + 300
        while sum(1 for v in _labels(store)[1].values() if v is not None) < 2 * n and time.monotonic() < deadline:
            time.sleep(0.2)
        seconds = time.monotonic() - t0
        out = _figures(store, 2 * n, acked_before, truth, docs)
    return {"scenario": "web-restart", **out, "lost_while_down": n, "web_start_s": round(up_s, 1),
            "restart_to_all_stored_s": round(seconds, 1), "recovered_by_reconcile": n - out["lost"]}


def sigterm_reconcile(work: Path, n: int) -> dict[str, Any]:
    """SIGTERM (what ``docker stop`` sends) to a real huey_consumer in the middle of a reconcile, then a new
    worker: the reconcile lock of the stopped worker must not switch reconciliation off. Also the kill -9 case:
    a lock left with a dead holder is cleared when the next worker starts."""
    from huey import SqliteHuey  # noqa: PLC0415

    stack, fp, truth = _stack(work, n, {"MIN_LABELS": "100000000"})
    with stack:
        stack.start_workers()
        stack.wait_ready()
        queue = SqliteHuey("prelabel", filename=str(stack.workdir / "instance" / "queue.db"))
        lock = queue.lock_task("reconcile-1")
        fp.faults.update({"delay_s": 0.5})  # a slow platform: the reconcile's listing and reads take a while
        stamp = (stack.api("/api/v1/projects/1").get("last_reconcile") or {}).get("at")
        requests.post(f"{stack.web_url}/api/v1/projects/1/reconcile", timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN}"}).raise_for_status()
        stack.wait_for(lock.is_locked, 60, "the reconcile running")
        stack.stop_process("worker")  # SIGTERM mid-reconcile
        held_after_sigterm = lock.is_locked()
        interrupted = (stack.api("/api/v1/projects/1").get("last_reconcile") or {}).get("at") == stamp
        # the kill -9 case: a lock whose holder died without any exit code running
        queue.put_if_empty("prelabel.lock.reconcile-1", f"{socket.gethostname()}:999999999:dead|2026-01-01T00:00:00")
        fp.faults.update({"delay_s": 0.0})
        stack.start_workers()
        stack.wait_ready()
        after: list[dict[str, Any]] = []
        for _ in range(2):  # the worker's start-up reconcile or ours, then one more asked by hand
            last = (stack.api("/api/v1/projects/1").get("last_reconcile") or {}).get("at")
            after.append(_reconcile(stack) if last == stamp or after else {"at": last})
            stamp = after[-1].get("at")
    fp.stop()
    return {"scenario": "sigterm-reconcile", "interrupted_mid_reconcile": interrupted,
            "lock_held_after_sigterm": held_after_sigterm, "reconciles_after_restart": len(after),
            "last_reconcile": after[-1]}


def labelstudio_web_down(work: Path, n: int) -> dict[str, Any]:
    """A real Label Studio: it sends each webhook once (1 s timeout, no retry), so annotations made while prelabel's
    web process is down are dropped; an on-demand reconcile recovers them all, each stored once."""
    from devtools.labelstudio_server import TOKEN, LabelStudio, ensure_template, installed  # noqa: PLC0415
    from scripts.stack import Stack  # noqa: PLC0415
    from sqlalchemy import func  # noqa: PLC0415

    from storage import Event  # noqa: PLC0415

    if not installed():
        raise RuntimeError("Label Studio is not installed: python -m devtools.labelstudio_server --install")
    df = _sms(n)
    secret = "faults-ls-secret-0123456789"
    ls = LabelStudio(work / "ls", template=ensure_template(work / "ls-template")).start()
    try:
        project = ls.create_project("faults web-down")
        settings = {"LABELSTUDIO_URL": ls.url, "LABELSTUDIO_TOKEN": TOKEN, "LABELSTUDIO_PROJECTS": str(project),
                    "LABELSTUDIO_WEBHOOK_SECRET": secret, "ADMIN_TOKEN": ADMIN, "MIN_LABELS": "100000000",
                    "SYNC_INTERVAL_S": "3600", "RECONCILE_INTERVAL_S": "3600", "WORKER_WARM_UP": "false",
                    "LOG_LEVEL": "WARNING"}
        with Stack(work / "prelabel", work, tagtog=False, settings=settings, web_workers=1) as stack:
            ls.add_webhook(project, f"{stack.web_url}/webhooks/labelstudio", {"X-Prelabel-Secret": secret})
            ls.import_tasks(project, [{"data": {"text": t}} for t in df.text])
            stack.settle(quiet_s=2, timeout=300)  # TASKS_CREATED: one reconcile, no labels yet
            truth = dict(zip(df.text, df.label))
            tasks = [(t["id"], t["data"]["text"]) for t in ls.tasks(project)]
            half = len(tasks) // 2
            store = _db(stack)
            with store.session() as s:
                base, base_id = s.query(Event).count(), s.query(func.max(Event.id)).scalar() or 0
            for task_id, text in tasks[:half]:  # web up: each annotation's webhook is stored and processed
                ls.annotate(task_id, [truth[text]])
            _drain(store, base + half, 300)
            with store.session() as s:
                acked = s.query(Event).filter(Event.id > base_id).count()
            stack.stop_process("web")
            for task_id, text in tasks[half:]:  # web down: Label Studio logs the refused delivery and drops it
                ls.annotate(task_id, [truth[text]])
            stack.start_web()
            rec = _reconcile(stack)
            stack.settle(quiet_s=2, timeout=300)
            with store.session() as s:
                events = s.query(Event).filter(Event.id > base_id).all()
            labels, values = _labels(store)
            store.engine.dispose()
    finally:
        ls.stop()
    stored = {tid: json.loads(v) for tid, v in values.items() if v}
    lost = sum(1 for tid, text in tasks if stored.get(str(tid)) not in (truth[text], [truth[text]]))
    return {"scenario": "labelstudio-web-down", "sent": len(tasks), "acknowledged": acked,
            "stored": len(events), "processed": sum(e.state == "done" for e in events),
            "failed_with_reason": sum(e.state == "failed" for e in events),
            # by the web's start-up reconcile or the one asked for, whichever ran first
            "recovered_by_reconcile": sum(stored.get(str(tid)) in (truth[text], [truth[text]])
                                          for tid, text in tasks[half:]), "last_reconcile": rec, "lost": lost,
            "duplicated": sum(c - 1 for c in labels.values() if c > 1)}


def _visible_versions_ok(models: Path, store: Any) -> tuple[int, int, bool]:
    """(version folders, bad ones, champion loads): every vN folder loads; every row with a path has its folder."""
    from model.factory import load_classifier  # noqa: PLC0415
    from storage import ModelVersion, Project  # noqa: PLC0415

    folders = sorted(p for p in models.glob("*/v*") if p.is_dir())
    bad = 0
    for f in folders:
        try:
            load_classifier(f)
        except Exception:
            bad += 1
    with store.session() as s:
        rows = [mv.path for mv in s.query(ModelVersion) if mv.path]
        bad += sum(not Path(p).is_dir() for p in rows)
        champ = s.get(Project, 1).champion_id
        champ_path = s.get(ModelVersion, champ).path if champ else ""
    try:
        champion_ok = bool(champ_path) and load_classifier(champ_path) is not None
    except Exception:
        champion_ok = False
    return len(folders), bad, champion_ok


def kill_9(work: Path, n: int, kills: int = 10, seed: int = 5) -> dict[str, Any]:
    """Kill the worker (SIGKILL) at a random moment of a training run, ``kills`` times; restart it each time."""
    from storage import TrainingRun  # noqa: PLC0415

    rng = random.Random(seed)
    settings = {"MIN_LABELS": "20", "MODEL_FAMILIES": "quick,rnn", "MODEL_FAMILY_EVERY": "rnn:1",
                "MODEL_EPOCHS": "8", "RETRAIN_EVERY": "1000000", "PRELABEL_K": "5", "CV_FOLDS": "2"}
    stack, fp, truth = _stack(work, n, settings, proxy=False)
    killed_training, resumed, champion_ok, bad_total, staging_left = 0, 0, 0, 0, 0
    with stack:
        docs = stack.docids()[:n]
        stack.start_workers()
        _confirm(stack, docs[: n // 2], truth)
        store = _db(stack)
        _drain(store, n // 2, 300)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        requests.post(f"{stack.web_url}/api/v1/projects/1/retrain", headers=admin, timeout=10).raise_for_status()
        stack.settle(quiet_s=2, timeout=600)
        models = stack.workdir / "instance" / "models"
        extra = docs[n // 2:]
        for k in range(kills):
            _confirm(stack, extra[k::kills], truth)  # new labels, so each run has something new to learn
            training = False
            for _attempt in range(8):  # a run that ends before the chosen moment is asked for again
                with store.session() as s:  # how long a run takes here (the first, cold one excepted)
                    done = [(r.finished_at - r.started_at).total_seconds() for r in s.query(TrainingRun)
                            .order_by(TrainingRun.id) if r.finished_at and not r.outcome.startswith("interrupted")]
                run_s = float(np.median(done[1:][-3:])) if len(done) > 1 else 5.0
                requests.post(f"{stack.web_url}/api/v1/projects/1/retrain", headers=admin,
                              timeout=10).raise_for_status()
                deadline = time.monotonic() + 120
                while not stack.api("/api/v1/projects/1")["training"] and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.05, 0.8) * run_s)  # fitting, scoring, saving or pre-labelling
                if not stack.api("/api/v1/projects/1")["training"]:
                    stack.settle(quiet_s=1, timeout=300)
                    continue
                worker = stack.procs.pop("worker")
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                # "training" is an open run: after the kill nobody closes it until a worker starts
                training = stack.api("/api/v1/projects/1")["training"]
                if training:
                    break
                stack.start_workers()  # the run ended between the look and the kill: again
            if "worker" in stack.procs:  # no kill landed in a run (counted below as a miss)
                worker = stack.procs.pop("worker")
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            killed_training += bool(training)
            _, bad, ok = _visible_versions_ok(models, store)
            bad_total += bad
            champion_ok += ok
            with store.session() as s:
                before = s.query(TrainingRun).filter(TrainingRun.finished_at.is_not(None)).count()
            stack.start_workers()  # the new worker finds the interrupted run and resumes it
            deadline = time.monotonic() + (300 if training else 0)  # nothing to resume when the kill missed
            while time.monotonic() < deadline:
                with store.session() as s:
                    runs = s.query(TrainingRun).order_by(TrainingRun.id).all()
                if runs and runs[-1].finished_at is not None and len([r for r in runs if r.finished_at]) > before \
                        and not runs[-1].outcome.startswith("interrupted"):
                    resumed += 1
                    break
                time.sleep(0.3)
            stack.settle(quiet_s=2, timeout=600)
        folders, bad, ok = _visible_versions_ok(models, store)
        bad_total += bad
        staging_left = sum(1 for p in models.glob("*/.v*"))
        with store.session() as s:
            runs = s.query(TrainingRun).all()
            interrupted = sum(r.outcome.startswith("interrupted") for r in runs)
            unfinished = sum(r.finished_at is None for r in runs)
        figures = _figures(store, len(docs[: n // 2]) + len(extra), _acked(stack), truth, docs)
    return {"scenario": "kill-9", "kills": kills, "killed_while_training": killed_training,
            "runs_interrupted_and_closed": interrupted, "runs_left_open": unfinished, "resumed_after_restart": resumed,
            "champion_loadable_after_kill": f"{champion_ok}/{kills}", "champion_loadable_at_end": ok,
            "version_folders": folders, "half_written_visible": bad_total, "staging_folders_left": staging_left,
            **figures}


def write_fault(kind: str, work: Path) -> dict[str, Any]:
    """Train a champion in-process, then make writing the next version fail: ``disk-full`` (the file system
    answers ENOSPC halfway through the model file) or ``db-locked`` (another connection holds the SQLite
    database locked while the version is recorded). Returns what the failed run left."""
    from worker.loop import Loop, ModelWriteError, training  # noqa: PLC0415
    from emulator.tagtog import EmulatorServer, TagtogEmulator  # noqa: PLC0415
    from annotation_client import TagtogClient  # noqa: PLC0415
    from config import ProjectSpec, Settings  # noqa: PLC0415
    from model.factory import load_classifier  # noqa: PLC0415
    from model.quick import QuickClassifier  # noqa: PLC0415
    from storage import Store  # noqa: PLC0415

    df = _sms(160)
    emu = TagtogEmulator({"alice": "pw"}, seed=1)
    emu.add_project("alice", "spam", [("isSpam", "boolean", ())])
    p = emu.projects[("alice", "spam")]
    docs = {emu._create(p, f"r{i}.txt", "pool", t).docid: lab == "spam" for i, (t, lab) in
            enumerate(zip(df.text, df.label))}
    server = EmulatorServer(emu).start()
    cfg = Settings(instance_path=str(work), tagtog_base_url=server.url, tagtog_username="alice",
                   tagtog_password="pw", tagtog_projects=(ProjectSpec("tagtog", "alice", "spam"),),
                   model_families="quick", min_labels=20)
    store = Store(cfg.db_url, busy_timeout_s=1.0)
    store.create_all()
    pid = store.ensure_project("tagtog", "alice", "spam")
    loop = Loop(cfg, store, lambda _: TagtogClient(server.url, "alice", "pw", retries=1, backoff=0.01))
    try:
        for i, (docid, spam) in enumerate(docs.items()):
            requests.post(f"{server.url}/-emulator/annotate", auth=("alice", "pw"), timeout=10, json={
                "owner": "alice", "project": "spam", "docid": docid, "labels": {"isSpam": spam}, "confirm": True})
            eid, _ = store.record_event(project_id=pid, platform="tagtog", doc_id=docid, member="master",
                                        source="GUI", kind="updated", dedup_key=docid)
            store.claim_event(eid)
            loop.ingest.process_event(eid)
        first = loop.training.train(pid)
        champion_before = store.project_summary(pid)["champion"]["version"]
        restore: Callable[[], None]
        if kind == "disk-full":
            original = QuickClassifier.save

            def full_disk(self: Any, folder: Path) -> None:
                (Path(folder) / "model.joblib").write_bytes(b"\0" * 4096)  # half a file, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / "model.joblib"))
            QuickClassifier.save = full_disk  # type: ignore[method-assign]
            restore = lambda: setattr(QuickClassifier, "save", original)  # noqa: E731
        else:
            original_save = training.save_version
            holder: list[sqlite3.Connection] = []

            def save_then_lock(*args: Any, **kwargs: Any) -> Path:
                folder = original_save(*args, **kwargs)
                conn = sqlite3.connect(cfg.db_url.removeprefix("sqlite:///"), isolation_level=None)
                conn.execute("BEGIN EXCLUSIVE")  # e.g. a backup or a migration holding the database
                holder.append(conn)
                return folder
            training.save_version = save_then_lock

            def restore() -> None:
                training.save_version = original_save
                for c in holder:
                    c.rollback()
                    c.close()
        error = ""
        try:
            loop.training.train(pid)
        except ModelWriteError as exc:
            error = str(exc)
        finally:
            restore()
        summary = store.project_summary(pid)
        versions = store.list_models(pid)
        models = cfg.models_path
        visible = sorted(p.name for p in models.glob("*/v*"))
        staging = sorted(p.name for p in models.glob("*/.v*"))
        champion = summary["champion"]
        loadable = load_classifier(champion["path"]) is not None
        store.fail_orphan_versions(pid, older_than_s=0)  # what the next sweep or run does (after 60 s / 10 min)
        later = store.list_models(pid)
        after = loop.training.train(pid)  # once the fault is gone, training goes on

        def row(vs: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next(({"version": v["version"], "status": v["status"], "reason": v["reason"], "path": v["path"]}
                         for v in vs if v["version"] == first.version + 1), None)
        return {"scenario": kind, "error": error, "champion_before": champion_before,
                "champion_after": champion["version"], "champion_loadable": loadable,
                "failed_version": row(versions), "failed_version_after_sweep": row(later),
                "visible_version_folders": visible, "staging_folders": staging,
                "next_run_after_fault": f"v{after.version} {after.status}"}
    finally:
        server.stop()
        store.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}")
    ap.add_argument("--events", type=int, default=100, help="confirms per platform scenario (default 100; "
                                                            "slow uses a fifth: 4 s each)")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the in-process proxy's access log: one line a call
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        ap.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    base = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-faults-"))
    rows = []
    for name in chosen:
        work = base / name
        work.mkdir(parents=True, exist_ok=True)
        if name in ("flaky", "malformed"):
            row = platform_fault(name, work, args.events)
        elif name == "slow":
            row = platform_fault(name, work, max(5, args.events // 5))
        elif name == "web-down":
            row = web_down(work, args.events)
        elif name == "web-restart":
            row = web_restart(work, 20)
        elif name == "sigterm-reconcile":
            row = sigterm_reconcile(work, 40)
        elif name == "labelstudio-web-down":
            row = labelstudio_web_down(work, max(10, args.events // 2))
        elif name == "kill-9":
            row = kill_9(work, max(60, args.events), args.kills)
        else:
            row = write_fault(name, work)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| scenario | sent | acknowledged | processed | recovered by reconcile | failed (with reason) | lost | "
          "duplicated |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "sent" in r:
            print(f"| {r['scenario']} | {r['sent']} | {r['acknowledged']} | {r['processed']} | "
                  f"{r.get('recovered_by_reconcile', 0)} | {r['failed_with_reason']} | {r['lost']} | "
                  f"{r['duplicated']} |")
    return 0 if all(r.get("lost", 0) == 0 and r.get("duplicated", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
