"""Webhook acknowledgement under load: a constant 200 requests/s for 30 s against gunicorn (the web process
alone, default settings of gunicorn.conf.py), each a distinct confirm. Prints latency p50/p99 (from the moment
each request was due, so a stalled server shows up), how many were lost (acknowledged but not stored, or not
acknowledged), and the web process's resident memory (master + workers).

    python -m bench.webhooks [--rate 200] [--seconds 30]
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import sqlite3
import sys
import tempfile
import threading
import time
from base64 import b64encode
from pathlib import Path

import numpy as np
import psutil

from scripts.stack import Stack


def rss_mb(pid: int) -> float:
    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    ap.add_argument("--seconds", type=float, default=30.0, help="duration (default 30)")
    ap.add_argument("--connections", type=int, default=16, help="client connections (default 16)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-hooks-"))
    (work / "export" / "plain.html").mkdir(parents=True, exist_ok=True)
    (work / "export" / "annotations-legend.json").write_text('{"m_1": "isSpam"}')
    # only the web process is measured: no worker, so the queue just fills
    stack = Stack(work, work / "export", start_worker=False, settings={"LOG_LEVEL": "WARNING"})
    n = int(args.rate * args.seconds)
    lat = np.full(n, np.nan)
    status = np.zeros(n, dtype=int)
    auth = "Basic " + b64encode(":".join(stack.hook_auth).encode()).decode()
    peak = [0.0]
    with stack:
        web_pid = stack.procs["web"].pid
        port = stack.web_port
        t0 = time.monotonic() + 0.5

        def client(k: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for i in range(k, n, args.connections):
                due = t0 + i / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                body = json.dumps({"owner": "alice", "project": "spam", "tagtogID": f"aLoad{i:07d}-{i}.txt"})
                try:
                    conn.request("POST", "/webhooks/tagtog", body, {
                        "Content-Type": "application/json", "Authorization": auth,
                        "X-tagtog-onPushSave-source": "GUI", "X-tagtog-onPushSave-status": "updated"})
                    r = conn.getresponse()
                    r.read()
                    status[i] = r.status
                except (OSError, http.client.HTTPException):
                    status[i] = -1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                lat[i] = time.monotonic() - due
            conn.close()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(web_pid))
                time.sleep(0.5)

        done = threading.Event()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        done.set()
        rss_end = rss_mb(web_pid)
    db = sqlite3.connect(work / "instance" / "prelabel.db")
    stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    acked = int((status == 202).sum())
    ok_ms = lat[status == 202] * 1000
    p50, p99 = float(np.percentile(ok_ms, 50)), float(np.percentile(ok_ms, 99))
    lost = (n - acked) + max(0, acked - stored)
    print(f"{n} webhooks at {args.rate:.0f}/s over {elapsed:.1f}s: 202 for {acked}, stored {stored}, lost {lost}; "
          f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ok_ms.max():.1f} ms (goal p99 <= 20 ms, 0 lost); "
          f"web RSS peak {peak[0]:.0f} MB, end {rss_end:.0f} MB (master + {stack.web_workers} workers)")
    print(json.dumps({"sent": n, "acknowledged": acked, "stored": stored, "lost": lost, "p50_ms": round(p50, 2),
                      "p99_ms": round(p99, 2), "rss_peak_mb": round(peak[0]), "other_status": {
                          str(s): int((status == s).sum()) for s in set(status.tolist()) if s != 202}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
