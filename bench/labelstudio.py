"""Label Studio freshness: time from an annotation in a real Label Studio to a new champion's suggestions in its queue.

Starts Label Studio 1.23.2 (its own virtualenv, see devtools/labelstudio_server.py) and prelabel (web, worker,
ML backend) on 127.0.0.1, imports an SMS spam/ham project (``--tasks`` tasks, ``--seed-labels`` of them imported
with annotations: those send only TASKS_CREATED, which prelabel turns into a reconcile), connects prelabel by
webhook, annotates ``--annotations`` tasks one at a time through Label Studio's API, each the one its labeling
stream serves next (as an annotator clicking Label All Tasks), and measures, for each, the time until a new
champion's suggestions are in the queue. Then it stops prelabel's web process, annotates ``--while-down``
tasks (their webhooks are lost), restarts it, asks for a reconciliation and counts what it recovered.

    python -m bench.labelstudio --tasks 1000 --annotations 20
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

import pandas as pd
import requests

from devtools.labelstudio_server import TOKEN, LabelStudio, ensure_template
from scripts.stack import ROOT, Stack

logger = logging.getLogger("bench.labelstudio")
SMS = ROOT.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"
SECRET = "bench-secret"


def sms_tasks(n: int, n_labelled: int, seed: int = 7) -> tuple[list[dict], dict[str, str]]:
    """``n`` SMS as Label Studio tasks, the first ``n_labelled`` with an annotation; and text -> true label."""
    df = pd.read_csv(SMS, keep_default_na=False).sample(n=n, random_state=seed)
    truth = dict(zip(df.text, df.label))
    tasks = []
    for i, (text, label) in enumerate(zip(df.text, df.label)):
        t: dict = {"data": {"text": text}}
        if i < n_labelled:
            t["annotations"] = [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                             "value": {"choices": [label]}}]}]
        tasks.append(t)
    return tasks, truth


def round_done(summary: dict, before: int) -> bool:
    """A newer champion than ``before`` and nothing left to do: its suggestions are in Label Studio's queue (the
    pre-label job runs in the same retrain job, before the retrain flag and the queue are clear). The count of
    predictions no longer tells: a changed suggestion replaces the task's prediction, it is not added beside it."""
    ev = summary["events"]
    return ((summary["champion"] or {}).get("version") or 0) > before and not summary["retrain_requested"] \
        and not summary["training"] and not ev.get("queued", 0) + ev.get("processing", 0)


def unlabelled(ls: LabelStudio, project: int) -> list[tuple[int, str]]:
    """(task id, text) of tasks without annotations, from the export."""
    tasks = ls.api("GET", f"/api/projects/{project}/export",
                   params={"exportType": "JSON", "download_all_tasks": "true"}).json()
    return [(t["id"], t["data"]["text"]) for t in tasks if not t["annotations"]]


def run(args: argparse.Namespace, work: Path) -> dict:
    ls = LabelStudio(work / "ls", template=ensure_template(work / "ls-template")).start()
    try:
        project = ls.create_project("sms spam")
        tasks, truth = sms_tasks(args.tasks, args.seed_labels)
        settings = {"LABELSTUDIO_URL": ls.url, "LABELSTUDIO_TOKEN": TOKEN, "LABELSTUDIO_PROJECTS": str(project),
                    "LABELSTUDIO_WEBHOOK_SECRET": SECRET, "RETRAIN_EVERY": "1", "PRELABEL_K": str(args.k),
                    "RECONCILE_INTERVAL_S": "3600", "ADMIN_TOKEN": "bench-admin", "LOG_LEVEL": "INFO"}
        with Stack(work / "prelabel", work, tagtog=False, ml_backend=True, settings=settings) as stack:
            ls.add_webhook(project, f"{stack.web_url}/webhooks/labelstudio", {"X-Prelabel-Secret": SECRET})
            t0 = time.monotonic()
            ls.import_tasks(project, tasks)  # -> TASKS_CREATED -> reconcile -> first model -> predictions
            stack.settle(quiet_s=3, timeout=600)
            first = time.monotonic() - t0
            logger.info("import of %d tasks (%d labelled) to the first predictions: %.1fs", len(tasks),
                        args.seed_labels, first)
            latencies = []
            for _ in range(args.annotations):  # the annotator takes the task "Label All Tasks" serves, as in the UI
                served = ls.api("GET", f"/api/projects/{project}/next").json()
                task_id, text = served["id"], served["data"]["text"]
                before = stack.api("/api/v1/projects/1")["champion"]["version"]
                t0 = time.monotonic()
                ls.annotate(task_id, [truth[text]])
                while not round_done(stack.api("/api/v1/projects/1"), before):
                    if time.monotonic() - t0 > 120:
                        raise TimeoutError(f"no new champion's suggestions 120 s after annotating task {task_id}\n"
                                           f"{stack.log_tail('worker')}")
                    time.sleep(0.1)
                latencies.append(time.monotonic() - t0)
                logger.info("task %d annotated: the queue follows a new champion after %.2fs", task_id,
                            latencies[-1])
            summary = stack.settle(quiet_s=3, timeout=600)
            # webhooks are lost while prelabel's web process is down: reconciliation recovers them
            stack.stop_process("web")
            down = unlabelled(ls, project)[:args.while_down]
            for task_id, text in down:
                ls.annotate(task_id, [truth[text]])
            stack.start_web()
            admin = {"Authorization": f"Bearer {settings.get('ADMIN_TOKEN', '')}"}
            r = requests.post(f"{stack.web_url}/api/v1/projects/1/reconcile", headers=admin, timeout=10)
            r.raise_for_status()
            before_at = (summary["last_reconcile"] or {}).get("at")
            deadline = time.monotonic() + 300
            while (stack.api("/api/v1/projects/1")["last_reconcile"] or {}).get("at") == before_at:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reconcile within 300 s\n{stack.log_tail('worker')}")
                time.sleep(0.5)
            final = stack.settle(quiet_s=3, timeout=600)
            versions = stack.api("/api/v1/projects/1/versions")["versions"]
            mv = ls.api("GET", f"/api/projects/{project}/model-versions/").json()
    finally:
        ls.stop()
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {"tasks": args.tasks, "seed_labels": args.seed_labels, "annotations": len(latencies),
            "first_predictions_s": round(first, 1), "p50_s": round(statistics.median(latencies), 2),
            "p95_s": round(q[18], 2), "max_s": round(max(latencies), 2),
            "annotated_while_down": len(down), "recovered_by_reconcile": final["last_reconcile"]["recovered"],
            "labels": final["labels"], "versions": len(versions),
            "champion": final["champion"] and {k: final["champion"][k] for k in ("version", "f1_macro", "f1")},
            "labelstudio_model_versions": mv}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--seed-labels", type=int, default=100, help="tasks imported with an annotation")
    ap.add_argument("--annotations", type=int, default=20, help="annotations timed one by one")
    ap.add_argument("--while-down", type=int, default=10, help="annotations made while prelabel's web is down")
    ap.add_argument("--k", type=int, default=10, help="PRELABEL_K: predictions per round")
    ap.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="prelabel-ls-") as d:
            result = run(args, Path(d))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
