"""A platform hands the worker a document of tens of megabytes: what it costs, with and without the limit.

The tagtog emulator (its own process) holds a project of small SMS documents and one document of ``--mb`` MB
(default 50). An annotator confirms the large one, then a small one; the worker (huey_consumer, its own process)
handles both events. Its RSS is sampled every 20 ms from before the first event until both are done. Printed for
each setting of MAX_TEXT_BYTES (the default, 10 MiB; then one above the document's size): the event outcomes, how
long they took, the worker's RSS before and at its peak, and whether the large text was stored.

    python -m bench.limits            # 50 MB document
    python -m bench.limits --mb 20
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from scripts.stack import Stack

logger = logging.getLogger(__name__)


def rss_mb(pid: int) -> float:
    p = psutil.Process(pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def run_once(work: Path, export: Path, big: str, small: str, max_text_bytes: int | None) -> dict[str, Any]:
    settings = {"LOG_LEVEL": "WARNING", "MIN_LABELS": "100000000", "SYNC_INTERVAL_S": "86400",
                "RECONCILE_INTERVAL_S": "86400", "WORKER_WARM_UP": "false"}
    if max_text_bytes is not None:
        settings["MAX_TEXT_BYTES"] = str(max_text_bytes)
    with Stack(work, export, settings=settings) as stack:
        stack.wait_ready()
        pid = stack.procs["worker"].pid
        time.sleep(1.0)  # let the consumer finish starting before the baseline is read
        before = rss_mb(pid)
        peak, done = [before], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                time.sleep(0.02)

        threading.Thread(target=sample, daemon=True).start()
        t0 = time.monotonic()
        stack.annotate(big, {"isSpam": True})
        stack.annotate(small, {"isSpam": False})

        def finished() -> list[dict[str, Any]] | None:
            events = stack.api("/api/v1/projects/1/events")["events"]
            return events if len(events) >= 2 and all(e["state"] in ("done", "failed") for e in events) else None

        events = stack.wait_for(finished, 600, "both events handled", every=0.1)
        seconds = time.monotonic() - t0
        done.set()
    from storage import Document, Store  # noqa: PLC0415

    with Store(f"sqlite:///{work / 'instance' / 'prelabel.db'}").session() as s:
        stored = s.query(Document).filter_by(platform_id=big).count() > 0
    by_doc = {e["doc_id"]: e for e in events}
    return {"max_text_bytes": max_text_bytes or "default (10 MiB)",
            "large_event": by_doc[big]["state"], "large_reason": (by_doc[big].get("error") or "")[:160],
            "small_event": by_doc[small]["state"], "seconds": round(seconds, 1),
            "worker_rss_before_mb": round(before), "worker_rss_peak_mb": round(peak[0]),
            "worker_rss_growth_mb": round(peak[0] - before), "large_text_stored": stored}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="size of the large document's text, in MB (default 50)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING")
    from emulator.export import write_export  # noqa: PLC0415

    work = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-limits-"))
    size = int(args.mb * 1e6)
    words = "spam offer now call free prize ".encode()
    large = (words * (size // len(words) + 1))[:size].decode()
    docs = [("large.txt", large, None)] + [(f"s{i}.txt", f"see you at {i} o'clock", None) for i in range(20)]
    ids = write_export(work / "export", docs, "isSpam")
    rows = [run_once(work / f"run{i}", work / "export", ids[0], ids[1], limit)
            for i, limit in enumerate([None, size + (1 << 20)])]
    for r in rows:
        print(json.dumps(r))
    for r in rows:
        print(f"MAX_TEXT_BYTES={r['max_text_bytes']}: {args.mb:g} MB document {r['large_event']}"
              f"{' (' + r['large_reason'] + ')' if r['large_reason'] else ''}, stored: {r['large_text_stored']}; "
              f"small document {r['small_event']}; {r['seconds']} s; worker RSS {r['worker_rss_before_mb']} MB "
              f"-> peak {r['worker_rss_peak_mb']} MB (+{r['worker_rss_growth_mb']} MB)")


if __name__ == "__main__":
    main()
