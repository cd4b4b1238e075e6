"""Ops figures for a worker: seconds from starting it to ready (its heartbeat in /healthz) and to its first model
version, and from the confirm that reaches MIN_LABELS (the 20th) to the first pre-label uploaded to tagtog.

Each repetition starts a fresh stack (tagtog emulator, web, worker as separate processes, 400 SMS documents):

* start to first version: 20 confirms (5 spam) are recorded by the web process while no worker runs; then the
  worker starts; the clock runs from its spawn to ready and to the first version in the API.
* 20th confirm to first pre-label: the worker is running and ready; 19 confirms are stored; the clock runs from
  the 20th confirm to the first pre-label (an API save by prelabel) in the emulator's log.

    python -m bench.readiness                              # quick, then hybrid,quick; 3 repetitions (~4 min)
    python -m bench.readiness --families quick --repeat 5

Prints one JSON line per repetition and the medians; with ``quick`` alone it also checks that the worker never
mapped TensorFlow's library.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from emulator.export import write_export
from scripts.stack import Stack

SMS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"


def _stack(work: Path, families: str) -> tuple[Stack, dict[str, bool]]:
    df = pd.read_csv(SMS, keep_default_na=False)
    rows = pd.concat([df[df.label == "spam"].head(60), df[df.label == "ham"].head(340)]).sample(
        frac=1.0, random_state=0)
    write_export(work / "export", ((f"row{i}.txt", t, None) for i, t in zip(rows.index, rows.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(rows.index, rows.label)}
    stack = Stack(work, work / "export", start_worker=False, settings={
        "MODEL_FAMILIES": families, "MIN_LABELS": "20", "RETRAIN_EVERY": "20", "PRELABEL_K": "10",
        "WORKER_HEARTBEAT_S": "1", "SYNC_INTERVAL_S": "3600", "RECONCILE_INTERVAL_S": "3600"})
    return stack, truth


def _first_twenty(stack: Stack, truth: dict[str, bool]) -> list[tuple[str, bool]]:
    """20 (docid, is spam) to confirm: 5 spam among 15 ham, interleaved."""
    docs = stack.docids()
    spam = [(d, True) for d, fn in docs if truth[fn]][:5]
    ham = [(d, False) for d, fn in docs if not truth[fn]][:15]
    return [x for pair in zip(ham[:5], spam) for x in pair] + ham[5:]


def start_to_first_version(families: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prelabel-ready-") as d:
        stack, truth = _stack(Path(d), families)
        with stack:
            for docid, spam in _first_twenty(stack, truth):
                stack.annotate(docid, {"isSpam": spam})
            stack.wait_for(lambda: stack.api("/api/v1/projects/1")["events"].get("queued", 0) >= 20, 60, "20 events")
            t0 = time.monotonic()
            stack.start_workers()
            stack.wait_ready(120)
            ready = time.monotonic() - t0
            stack.wait_for(lambda: stack.api("/api/v1/projects/1/versions")["versions"], 300, "a first version",
                           every=0.05)
            first = time.monotonic() - t0
            stack.settle(quiet_s=1)
            maps = Path(f"/proc/{stack.procs['worker'].pid}/maps").read_text()
    return {"families": families, "figure": "start_to_first_version", "ready_s": round(ready, 2),
            "first_version_s": round(first, 2), "tensorflow_loaded": "libtensorflow" in maps}


def confirm_to_first_prelabel(families: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prelabel-ready-") as d:
        stack, truth = _stack(Path(d), families)
        with stack:
            stack.start_workers()
            stack.wait_ready(120)
            first = _first_twenty(stack, truth)
            for docid, spam in first[:19]:
                stack.annotate(docid, {"isSpam": spam})
            stack.wait_for(lambda: stack.api("/api/v1/projects/1")["labels"] >= 19, 120, "19 labels")
            seq = max((e["seq"] for e in stack.emulator_log()), default=0)
            t0 = time.monotonic()
            docid, spam = first[19]
            stack.annotate(docid, {"isSpam": spam})
            stack.wait_for(lambda: [e for e in stack.emulator_log(seq)
                                    if e["kind"] == "annotations" and not e.get("gui")], 300, "a first pre-label",
                           every=0.05)
            took = time.monotonic() - t0
    return {"families": families, "figure": "confirm_to_first_prelabel", "seconds": round(took, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.readiness", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--families", default="quick;hybrid,quick", help="MODEL_FAMILIES settings separated by ';'")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rows = []
    for families in args.families.split(";"):
        for _ in range(args.repeat):
            for fn in (start_to_first_version, confirm_to_first_prelabel):
                rows.append(fn(families))
                print(json.dumps(rows[-1]), flush=True)
    print("\n| families | worker start to ready s | worker start to first version s | 20th confirm to first "
          "pre-label s | TensorFlow in the worker |\n|---|---|---|---|---|")
    for families in args.families.split(";"):
        a = [r for r in rows if r["families"] == families and r["figure"] == "start_to_first_version"]
        b = [r for r in rows if r["families"] == families and r["figure"] == "confirm_to_first_prelabel"]
        print(f"| {families} | {statistics.median(r['ready_s'] for r in a):.1f} | "
              f"{statistics.median(r['first_version_s'] for r in a):.1f} | "
              f"{statistics.median(r['seconds'] for r in b):.1f} | "
              f"{'yes' if any(r['tensorflow_loaded'] for r in a) else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
