"""Ingest throughput with 1 and 2 worker processes, on the single-machine default (SQLite store, SQLite queue
file) and scaled out (PostgreSQL store, Redis queue): events processed per second, no training.

Each run: the tagtog emulator and prelabel's web process start without workers; N documents are confirmed (N
webhooks, recorded and queued); then the workers start and drain the queue. Events/s = N / (last event finished -
first event started), read from the events table, so worker start-up is not counted. Each event costs a
fetch of ann.json and the text from the emulator and one transaction. Redis and PostgreSQL are throwaway servers
from the Debian packages (devtools/servers.py).

    python -m bench.scaleout                 # 400 events per run, 4 runs
    python -m bench.scaleout --events 1000
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd


def run(backend: str, workers: int, n: int, work: Path) -> dict[str, Any]:
    from emulator.export import write_export  # noqa: PLC0415
    from devtools.servers import Postgres, Redis  # noqa: PLC0415
    from scripts.stack import Stack  # noqa: PLC0415
    from storage import Event, Store  # noqa: PLC0415

    df = pd.read_csv(Path(__file__).resolve().parents[2] / "shared" / "data" / "sms_spam" / "sms_spam.csv",
                     keep_default_na=False).head(n)
    run_dir = work / f"{backend}-{workers}"
    write_export(run_dir / "export", ((f"row{i}.txt", t, None) for i, t in zip(df.index, df.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(df.index, df.label)}
    with contextlib.ExitStack() as servers:
        settings = {"MIN_LABELS": "100000000", "SYNC_INTERVAL_S": "3600", "RECONCILE_INTERVAL_S": "3600",
                    "WORKER_WARM_UP": "false"}
        if backend == "postgresql+redis":
            settings["QUEUE_URL"] = servers.enter_context(Redis()).url
            settings["DATABASE_URL"] = db_url = servers.enter_context(Postgres()).url
        else:
            db_url = f"sqlite:///{run_dir / 'instance' / 'prelabel.db'}"
        stack = Stack(run_dir, run_dir / "export", workers=workers, start_worker=False, settings=settings)
        with stack:
            docs = stack.docids()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda d: stack.annotate(d[0], {"isSpam": truth[d[1]]}), docs))
            store = Store(db_url)

            def count(*states: str) -> int:
                with store.session() as s:
                    return s.query(Event).filter(Event.state.in_(states)).count()
            while count("queued", "processing", "done", "failed") < n:
                time.sleep(0.2)
            stack.start_workers()
            deadline = time.monotonic() + 600
            while count("done", "failed") < n and time.monotonic() < deadline:
                time.sleep(0.2)
            with store.session() as s:
                events = s.query(Event).all()
                first = min(e.started_at for e in events)
                last = max(e.finished_at for e in events)
                failed = sum(e.state != "done" for e in events)
                twice = sum(e.attempts > 1 for e in events)
            store.engine.dispose()
    seconds = (last - first).total_seconds()
    return {"backend": backend, "workers": workers, "events": n, "seconds": round(seconds, 2),
            "events_per_s": round(n / seconds, 1), "failed": failed, "processed_twice": twice}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=400)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for backend in ("sqlite", "postgresql+redis"):
            for workers in (1, 2):
                rows.append(run(backend, workers, args.events, Path(d)))
                print(rows[-1], flush=True)
    print("\n| store + queue | workers | events | seconds | events/s | failed | processed twice |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['workers']} | {r['events']} | {r['seconds']} | {r['events_per_s']} | "
              f"{r['failed']} | {r['processed_twice']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
