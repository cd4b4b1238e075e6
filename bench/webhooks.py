"""Webhook load against gunicorn with the default settings (gunicorn.conf.py: 2 processes x 4 threads), each
request a distinct confirm of a real document in the tagtog emulator:

1. burst: N webhooks (default 10,000) as fast as the client can send them (16 connections);
2. sustained: a constant rate (default 200 requests/s) for S seconds (default 60).

Prints the acknowledgement latency p50/p99 of each phase (sustained: from the moment each request was due, so a
stalled server shows up), then starts a worker, lets it drain the queue (each event reads ann.json and the text
from the emulator and stores the label; no training) and prints: acknowledged, stored, processed, lost
(acknowledged but not stored, or stored but never processed) and processed twice. Also the web process's memory:
RSS and PSS of gunicorn's master and workers, summed, sampled every 0.5 s (the goal: RSS within 150 MB).

    python -m bench.webhooks                                   # 10,000 burst + 200/s for 60 s, then drain
    python -m bench.webhooks --burst 0 --rate 200 --seconds 30 --no-drain
    python -m bench.webhooks --flood 5000      # a real confirm sent after 5,000 deliveries for unknown documents
    python -m bench.webhooks --under-load      # acknowledgements alone, then beside 8 worst-case regex and 64
                                               # parallel next?batch=diverse requests
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from base64 import b64encode
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from scripts.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
SMS_CSV = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared")) / "data" / "sms_spam" / "sms_spam.csv"
HEADERS = {"Content-Type": "application/json", "X-tagtog-onPushSave-source": "GUI",
           "X-tagtog-onPushSave-status": "updated"}
logger = logging.getLogger(__name__)


def rss_mb(pid: int) -> float:
    """The resident memory of gunicorn's master and its workers, summed (pages they share count once each)."""
    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def pss_mb(pid: int) -> float:
    """Their proportional set size, summed: shared pages split between the processes, so what they cost together."""
    p = psutil.Process(pid)
    return sum(q.memory_full_info().pss for q in [p, *p.children(recursive=True)]) / 2**20


def send(port: int, auth: str, docids: list[str], connections: int,
         rate: float | None) -> tuple[np.ndarray, np.ndarray]:
    """POST one webhook per docid over ``connections`` keep-alive connections; at ``rate`` per second (latency
    from each request's due time) or as fast as possible (rate None: latency from the send). Returns latency
    seconds and HTTP statuses (-1: no answer)."""
    n = len(docids)
    lat, status = np.full(n, np.nan), np.zeros(n, dtype=int)
    t0 = time.monotonic() + 0.2

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(k, n, connections):
            if rate:
                due = t0 + i / rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
            else:
                due = time.monotonic()
            body = json.dumps({"owner": "alice", "project": "spam", "tagtogID": docids[i]})
            try:
                conn.request("POST", "/webhooks/tagtog", body, {**HEADERS, "Authorization": auth})
                r = conn.getresponse()
                r.read()
                status[i] = r.status
            except (OSError, http.client.HTTPException):
                status[i] = -1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            lat[i] = time.monotonic() - due
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, status


def phase_figures(name: str, lat: np.ndarray, status: np.ndarray, seconds: float) -> dict[str, Any]:
    ok = lat[status == 202] * 1000
    return {"phase": name, "sent": len(status), "acknowledged": int((status == 202).sum()),
            "seconds": round(seconds, 1), "requests_per_s": round(len(status) / seconds, 1),
            "p50_ms": round(float(np.percentile(ok, 50)), 1) if len(ok) else None,
            "p99_ms": round(float(np.percentile(ok, 99)), 1) if len(ok) else None,
            "max_ms": round(float(ok.max()), 1) if len(ok) else None,
            "other_status": {str(s): int((status == s).sum()) for s in set(status.tolist()) if s != 202}}


def run(work: Path, burst: int = 10_000, rate: float = 200.0, seconds: float = 60.0, connections: int = 16,
        drain: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Send the burst, then the sustained phase, then (``drain``) let one worker empty the queue. Returns the
    per-phase figures and the summary: acknowledged, stored, processed, lost, processed twice, 5xx."""
    from emulator.export import write_export  # noqa: PLC0415
    from storage import Document, Event, Label, Store  # noqa: PLC0415

    n_sustained = int(rate * seconds)
    n = burst + n_sustained
    sms = pd.read_csv(SMS_CSV, keep_default_na=False)
    docids = write_export(work / "export", ((f"m{i}.txt", sms.text[i % len(sms)], sms.label[i % len(sms)] == "spam")
                                            for i in range(n)), "isSpam")
    # the web process is measured alone first (the queue fills); a worker drains it afterwards
    stack = Stack(work, work / "export", start_worker=False, settings={
        "LOG_LEVEL": "WARNING", "MIN_LABELS": "100000000", "SYNC_INTERVAL_S": "86400",
        "RECONCILE_INTERVAL_S": "86400", "WORKER_WARM_UP": "false"})
    auth = "Basic " + b64encode(":".join(stack.hook_auth).encode()).decode()
    rows: list[dict[str, Any]] = []
    peak = [0.0, 0.0]  # RSS, PSS
    with stack:
        web_pid = stack.procs["web"].pid
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(web_pid))
                peak[1] = max(peak[1], pss_mb(web_pid))
                time.sleep(0.5)

        threading.Thread(target=sample, daemon=True).start()
        statuses = []
        if burst:
            t = time.monotonic()
            lat, st = send(stack.web_port, auth, docids[:burst], connections, None)
            rows.append(phase_figures(f"burst of {burst}", lat, st, time.monotonic() - t))
            statuses.append(st)
            logger.info("%s", json.dumps(rows[-1]))
        if n_sustained:
            t = time.monotonic()
            lat, st = send(stack.web_port, auth, docids[burst:], connections, rate)
            rows.append(phase_figures(f"{rate:.0f}/s for {seconds:.0f} s", lat, st, time.monotonic() - t))
            statuses.append(st)
            logger.info("%s", json.dumps(rows[-1]))
        done.set()
        rss_end = rss_mb(web_pid)
        status = np.concatenate(statuses) if statuses else np.zeros(0, dtype=int)
        acked_ids = {d for d, st in zip(docids, status.tolist()) if st == 202}
        store = Store(f"sqlite:///{work / 'instance' / 'prelabel.db'}")
        figures: dict[str, Any] = {}
        if drain:
            t = time.monotonic()
            stack.start_workers()
            while True:
                with store.session() as s:
                    states = Counter(e.state for e in s.query(Event.state))
                if not states["queued"] and not states["processing"]:
                    break
                if time.monotonic() - t > 3600:
                    break
                time.sleep(1.0)
            figures = {"drain_seconds": round(time.monotonic() - t, 1),
                       "drain_events_per_s": round(sum(states.values()) / (time.monotonic() - t), 1)}
        with store.session() as s:
            events = s.query(Event.doc_id, Event.state, Event.attempts).all()
            labels = Counter(pid for (pid,) in s.query(Document.platform_id)
                             .join(Label, Label.document_id == Document.id))
        store.engine.dispose()
    states = Counter(e.state for e in events)
    event_docs = Counter(e.doc_id for e in events)
    processed = states["done"] + states["failed"]
    # lost: acknowledged but never stored, stored but never processed, or processed without its label stored
    lost = len(acked_ids - set(event_docs))
    if drain:
        lost += len(events) - processed + sum(1 for e in events if e.state == "done" and not labels[e.doc_id])
    summary = {"acknowledged": len(acked_ids), "stored": len(events), "processed": processed,
               "failed": states["failed"], "lost": lost,
               "processed_twice": sum(c - 1 for c in event_docs.values() if c > 1)
               + sum(c - 1 for c in labels.values() if c > 1),
               "retried": sum(a > 1 for _, _, a in events),
               "server_errors_5xx": int((status >= 500).sum()), "no_answer": int((status == -1).sum()),
               **figures, "web_rss_peak_mb": round(peak[0]), "web_rss_end_mb": round(rss_end),
               "web_pss_peak_mb": round(peak[1])}
    return rows, summary


def flood(work: Path, n_unknown: int = 5000, n_docs: int = 50, connections: int = 16) -> dict[str, Any]:
    """A running worker, a project whose documents prelabel has stored (a reconcile imported them), then
    ``n_unknown`` deliveries for documents nobody has (each costs the worker one platform read), then a person
    confirms a real document: seconds from that confirm to its label stored, and how much of the flood was
    still waiting then (a person's label is queued ahead of deliveries for unknown documents)."""
    from emulator.export import write_export  # noqa: PLC0415
    from storage import Event, Store  # noqa: PLC0415

    sms = pd.read_csv(SMS_CSV, keep_default_na=False).head(n_docs)
    write_export(work / "export", ((f"m{i}.txt", t, None) for i, t in enumerate(sms.text)), "isSpam")
    admin = "flood-admin-token-0123456789"
    stack = Stack(work, work / "export", settings={
        "LOG_LEVEL": "WARNING", "MIN_LABELS": "100000000", "SYNC_INTERVAL_S": "86400", "ADMIN_TOKEN": admin,
        "RECONCILE_INTERVAL_S": "86400", "WORKER_WARM_UP": "false"})
    auth = "Basic " + b64encode(":".join(stack.hook_auth).encode()).decode()
    with stack:
        stack.wait_ready()
        store = Store(f"sqlite:///{work / 'instance' / 'prelabel.db'}")
        import requests  # noqa: PLC0415

        requests.post(f"{stack.web_url}/api/v1/projects/1/reconcile", timeout=10,
                      headers={"Authorization": f"Bearer {admin}"}).raise_for_status()
        stack.wait_for(lambda: stack.api("/api/v1/projects/1").get("documents", 0) >= n_docs
                       or (stack.api("/api/v1/projects/1").get("last_reconcile") or {}).get("new_documents"),
                       120, "documents imported")
        t = time.monotonic()
        lat, st = send(stack.web_port, auth, [f"a{i:027d}-unknown.txt" for i in range(n_unknown)], connections, None)
        flood_s = time.monotonic() - t
        docid = stack.docids()[0][0]
        t0 = time.monotonic()
        stack.annotate(docid, {"isSpam": False})

        def done() -> Any:
            with store.session() as s:
                ev = s.query(Event).filter(Event.doc_id == docid, Event.state == "done").first()
                if ev is None:
                    return None
                left = s.query(Event).filter(Event.state.in_(("queued", "processing"))).count()
                return {"left": left}
        out = stack.wait_for(done, 600, "the real confirm processed", every=0.05)
        seconds = time.monotonic() - t0
        store.engine.dispose()
    return {"flood": n_unknown, "flood_acknowledged": int((st == 202).sum()), "flood_send_s": round(flood_s, 1),
            "flood_ack_p99_ms": round(float(np.nanpercentile(lat, 99)) * 1000, 1),
            "confirm_to_label_stored_s": round(seconds, 2), "flood_still_waiting_then": out["left"]}


WORST_REGEXES = ("(.*a){1000}$", "(.*a){90}$")  # refused (11,004 RE2 instructions); the largest accepted (994)


def under_load(work: Path, n_docs: int = 2000, rate: float = 50.0, seconds: float = 15.0,
               connections: int = 8) -> list[dict[str, Any]]:
    """A trained project (quick family, ``n_docs`` pool documents and one 200 KB text); webhooks at ``rate`` per
    second for ``seconds``, first alone, then while 8 clients send the worst regexes (``WORST_REGEXES``) to
    ``next`` and 64 clients ask ``next?batch=diverse&n=1000``, each in a loop. Returns both phases' acknowledgement
    figures and the load's answers by status (200, 400 refused pattern, 503 busy)."""
    from emulator.export import write_export  # noqa: PLC0415

    sms = pd.read_csv(SMS_CSV, keep_default_na=False)
    rows = [(f"m{i}.txt", sms.text[i % len(sms)], None) for i in range(n_docs)]
    rows.append(("big.txt", ("a" * 99 + " ") * 2000, None))  # 200 KB
    write_export(work / "export", rows, "isSpam")
    truth = {f"m{i}.txt": sms.label[i % len(sms)] == "spam" for i in range(n_docs)}
    admin = "load-admin-token-0123456789"
    stack = Stack(work, work / "export", settings={
        "LOG_LEVEL": "WARNING", "MIN_LABELS": "20", "MODEL_FAMILIES": "quick", "RETRAIN_EVERY": "40",
        "SYNC_INTERVAL_S": "86400", "RECONCILE_INTERVAL_S": "86400", "WORKER_WARM_UP": "false",
        "ADMIN_TOKEN": admin})
    auth = "Basic " + b64encode(":".join(stack.hook_auth).encode()).decode()
    out: list[dict[str, Any]] = []
    with stack:
        stack.wait_ready()
        docs = stack.docids()
        spam = [d for d in docs if truth.get(d[1])][:20]
        ham = [d for d in docs if d[1] in truth and not truth[d[1]]][:20]
        for docid, fn in spam + ham:
            stack.annotate(docid, {"isSpam": truth[fn]})
        stack.wait_for(lambda: (stack.api("/api/v1/projects/1").get("champion") or {}).get("version"), 300,
                       "a champion")
        stack.settle(quiet_s=3)
        stack.stop_process("worker")  # the web process measured alone: the queue fills, nothing drains it
        hook_ids = [d for d, _ in docs[40:40 + int(rate * seconds) * 2]]
        n = int(rate * seconds)
        lat, st = send(stack.web_port, auth, hook_ids[:n], connections, rate)
        out.append({**phase_figures(f"webhooks {rate:.0f}/s alone", lat, st, seconds)})
        # the read load comes from a process of its own, as it would from other machines: its 72 client threads
        # must not share the measuring process's GIL (that would time the client, not the server)
        ctx = multiprocessing.get_context("spawn")
        stop, answers = ctx.Event(), ctx.Queue()
        load = ctx.Process(target=read_load, args=(f"{stack.web_url}/api/v1/projects/1/next", stop, answers))
        load.start()
        time.sleep(2)  # the load is on
        lat, st = send(stack.web_port, auth, hook_ids[n:2 * n], connections, rate)
        stop.set()
        got = answers.get(timeout=300)
        load.join(timeout=60)
        out.append({**phase_figures(f"webhooks {rate:.0f}/s beside 8 regex + 64 diverse next", lat, st, seconds),
                    "load_answers": got})
    return out


def read_load(url: str, stop: Any, answers: Any, regex_clients: int = 8, diverse_clients: int = 64) -> None:
    """In a process of its own: ``regex_clients`` threads ask ``next`` with the worst regexes and
    ``diverse_clients`` ask ``next?batch=diverse&n=1000``, each in a loop, until ``stop``; then the answers by
    status go on the ``answers`` queue."""
    import requests  # noqa: PLC0415

    counts: Counter = Counter()
    lock = threading.Lock()

    def hammer(params: dict[str, Any]) -> None:
        with requests.Session() as http:
            while not stop.is_set():
                try:
                    r = http.get(url, params=params, timeout=120)
                    key = f"{params.get('batch', 'regex')} {r.status_code}"
                    if r.status_code == 503:  # as the answer asks (a client that ignores it is a flood)
                        stop.wait(float(r.headers.get("Retry-After", "1")))
                except requests.RequestException:
                    key = "no answer"
                with lock:
                    counts[key] += 1

    threads = [threading.Thread(target=hammer, args=({"regex": WORST_REGEXES[i % 2], "n": 1000},), daemon=True)
               for i in range(regex_clients)]
    threads += [threading.Thread(target=hammer, args=({"batch": "diverse", "n": 1000},), daemon=True)
                for _ in range(diverse_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    answers.put(dict(counts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--burst", type=int, default=10_000, help="webhooks sent as fast as possible (default 10000)")
    ap.add_argument("--rate", type=float, default=200.0, help="sustained requests per second (default 200)")
    ap.add_argument("--seconds", type=float, default=60.0, help="sustained phase duration (default 60; 0 = none)")
    ap.add_argument("--connections", type=int, default=16, help="client connections (default 16)")
    ap.add_argument("--no-drain", action="store_true", help="do not start a worker to drain the queue")
    ap.add_argument("--flood", type=int, default=0, metavar="N",
                    help="instead: N deliveries for unknown documents, then one real confirm (seconds to stored)")
    ap.add_argument("--under-load", action="store_true",
                    help="instead: webhook acknowledgement alone and beside 8 worst-case regex + 64 diverse next")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-hooks-"))
    if args.under_load:
        rows = under_load(work)
        for r in rows:
            print(f"{r['phase']}: {r['acknowledged']}/{r['sent']} acknowledged; p50 {r['p50_ms']} ms, "
                  f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms" + (f"; load answers {r['load_answers']}"
                                                                    if "load_answers" in r else ""))
        print(json.dumps(rows))
        return 0 if all(r["p99_ms"] is not None and r["p99_ms"] < 100 for r in rows) else 1
    if args.flood:
        r = flood(work, args.flood, connections=args.connections)
        print(f"{r['flood_acknowledged']}/{r['flood']} deliveries for unknown documents acknowledged in "
              f"{r['flood_send_s']} s (p99 {r['flood_ack_p99_ms']} ms); a real confirm sent after them: label stored "
              f"in {r['confirm_to_label_stored_s']} s, with {r['flood_still_waiting_then']} of the flood still queued")
        print(json.dumps(r))
        return 0
    rows, summary = run(work, args.burst, args.rate, args.seconds, args.connections, not args.no_drain)
    for r in rows:
        print(json.dumps(r))
    for r in rows:
        print(f"{r['phase']}: {r['acknowledged']}/{r['sent']} acknowledged (202) in {r['seconds']} s "
              f"({r['requests_per_s']}/s); latency p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
    print(f"after the queue drained: acknowledged {summary['acknowledged']}, stored {summary['stored']}, "
          f"processed {summary['processed']} ({summary['failed']} failed), lost {summary['lost']}, processed twice "
          f"{summary['processed_twice']}, 5xx {summary['server_errors_5xx']}; drain "
          f"{summary.get('drain_events_per_s', '-')} events/s; web RSS peak {summary['web_rss_peak_mb']} MB "
          f"(master + workers, summed; PSS {summary['web_pss_peak_mb']} MB)")
    print(json.dumps(summary))
    return 0 if summary["lost"] == 0 and summary["processed_twice"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
