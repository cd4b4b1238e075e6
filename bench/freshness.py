"""Freshness: with ~4,400 labelled SMS documents in the tagtog emulator, the time from an annotator's confirm
(which fires the webhook) to the new model's pre-labels being in the emulator; p50 and p95 over 20 confirms,
with a warm worker (web, worker and emulator as separate processes on 127.0.0.1).

    python -m bench.freshness [--labelled 4400] [--confirms 20]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from emulator.export import write_export
from scripts.stack import Stack

SMS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"


def wait_prelabels(stack: Stack, since: int, timeout: float) -> tuple[float, int, str] | None:
    """Wait for the first pre-label upload after log position ``since``; returns (time, seq, who)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in stack.emulator_log(since):
            if e["kind"] == "annotations" and not e.get("gui"):
                return e["t"], e["seq"], e["metas"]["m_1"]["confidence"]["who"][0]
        time.sleep(0.02)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.freshness", description=__doc__.split("\n\n")[0])
    ap.add_argument("--labelled", type=int, default=4400)
    ap.add_argument("--confirms", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--worker-log-level", default="WARNING", help="INFO shows each step's timing in worker.log")
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING")
    df = pd.read_csv(SMS, keep_default_na=False).sample(frac=1.0, random_state=0).reset_index(drop=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-fresh-"))
    truth = {f"row{i}.txt": lab == "spam" for i, lab in enumerate(df.label)}
    write_export(work / "export", ((f"row{i}.txt", t, (lab == "spam") if i < args.labelled else None)
                                   for i, (t, lab) in enumerate(zip(df.text, df.label))), "isSpam")
    stack = Stack(work, work / "export", settings={"SYNC_INTERVAL_S": "3600",
                                                            "LOG_LEVEL": args.worker_log_level})
    with stack:
        docs = [(d, fn) for d, fn in stack.docids() if int(fn[3:-4]) >= args.labelled]
        print(f"{len(truth)} documents, {args.labelled} labelled; warming up (first sync + full fit)...", flush=True)
        t0 = time.monotonic()
        pos = len(stack.emulator_log())
        d, fn = docs.pop()
        stack.annotate(d, {"isSpam": truth[fn]})
        if wait_prelabels(stack, pos, 600) is None:
            print("no pre-labels after warm-up\n" + stack.log_tail("worker"), file=sys.stderr)
            return 1
        time.sleep(3)  # let the warm-up's coalesced follow-ups finish
        print(f"warm-up {time.monotonic() - t0:.1f}s", flush=True)
        lat = []
        for i in range(args.confirms):
            pos = len(stack.emulator_log())
            d, fn = docs.pop()
            t_confirm = time.time()
            stack.annotate(d, {"isSpam": truth[fn]})
            got = wait_prelabels(stack, pos, 120)
            if got is None:
                print(f"confirm {i}: no pre-labels within 120 s", flush=True)
                continue
            lat.append(got[0] - t_confirm)
            print(f"confirm {i + 1:2d}: new pre-labels ({got[2]}) after {lat[-1]:.2f}s", flush=True)
            time.sleep(1.0)  # an annotator reads the next document
        models = stack.api("/api/v1/projects/1/versions")["versions"]
    p50, p95 = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
    last = models[-1]
    print(f"freshness over {len(lat)} confirms: p50 {p50:.2f}s  p95 {p95:.2f}s  max {max(lat):.2f}s "
          f"(goal p50 <= 5s); last version v{last['version']} ({last['mode']}) on {last['n_train']} labels, "
          f"held-out {last['n_holdout']}: accuracy {last['accuracy']:.3f} spam F1 {last['f1']:.3f}")
    print(json.dumps({"confirms": len(lat), "p50_s": round(p50, 3), "p95_s": round(p95, 3),
                      "mean_s": round(statistics.mean(lat), 3), "labelled": args.labelled}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
