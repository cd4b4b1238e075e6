"""The main job on embedded defaults: the whole loop, live, on a real dataset.

Starts the tagtog emulator loaded with SMS spam messages (no labels), prelabel's web process (gunicorn) and
worker (Huey on SQLite), then a simulated annotator confirms documents in the emulator: a few at random to
start, then the ones prelabel pre-labelled, as a person working the suggestion queue would. Prints what
happened: confirms, models trained with their scores, pre-labels uploaded and how many the annotator accepted.

    python -m scripts.demo                    # about 3 minutes on 2 cores
    python -m scripts.demo --confirms 300     # longer, better model
"""
from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from emulator.export import write_export
from scripts.stack import Stack

logger = logging.getLogger("demo")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled CSV (text,label); default SMS spam")
    ap.add_argument("--docs", type=int, default=1500, help="documents loaded into the emulator (default 1500)")
    ap.add_argument("--confirms", type=int, default=150, help="documents the annotator confirms (default 150)")
    ap.add_argument("--random-start", type=int, default=30, help="first confirms picked at random (default 30)")
    ap.add_argument("--pace", type=float, default=0.4, help="annotator's seconds per document (default 0.4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs, database and models here")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    rng = random.Random(args.seed)

    df = pd.read_csv(args.data, keep_default_na=False)
    df = df.sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    pool, unseen = df.iloc[:args.docs], df.iloc[args.docs:]  # unseen rows: an independent test of the final model
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-demo-"))
    if work.exists() and args.workdir:
        shutil.rmtree(work)
    write_export(work / "export", ((f"row{i}.txt", t, None) for i, t in zip(pool.index, pool.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(pool.index, pool.label)}
    unseen.to_csv(work / "unseen.csv", index=False)
    logger.info("workdir %s: %d SMS documents for the emulator, %d unseen for the final test", work, len(pool),
                len(unseen))

    stack = Stack(work, work / "export", settings={"MIN_LABELS": "20", "PRELABEL_K": "10"})
    with stack:
        logger.info("emulator %s, prelabel web %s, worker started; annotating...", stack.emu_url, stack.web_url)
        docs = dict(stack.docids())  # docid -> filename
        done: set[str] = set()
        accepted = reviewed = 0
        seen_log = 0
        suggestions: dict[str, bool] = {}  # docid -> the latest pre-label value waiting for the annotator
        t0 = time.monotonic()
        for n in range(args.confirms):
            for e in stack.emulator_log(seen_log):
                seen_log = max(seen_log, e["seq"])
                if e["kind"] == "annotations" and not e.get("gui") and e["docid"] not in done:
                    suggestions[e["docid"]] = e["metas"]["m_1"]["value"]
            waiting = [d for d in suggestions if d not in done]
            if n >= args.random_start and waiting:
                docid = waiting[-1]  # the newest suggestions are from the newest model
                reviewed += 1
                accepted += suggestions[docid] == truth[docs[docid]]
            else:
                docid = rng.choice([d for d in docs if d not in done])
            stack.annotate(docid, {"isSpam": truth[docs[docid]]}, confirm=True, user="annotator")
            done.add(docid)
            time.sleep(args.pace)
        logger.info("annotator done after %.0fs; waiting for prelabel to finish...", time.monotonic() - t0)
        p = stack.settle()
        models = stack.api("/api/v1/projects/1/versions")["versions"]
        log = stack.emulator_log()

    ups = [e for e in log if e["kind"] == "annotations" and not e.get("gui")]
    hooks = [e for e in log if e["kind"] == "webhook"]
    out = sys.stdout
    out.write("\n=== prelabel demo: SMS spam on a tagtog emulator ===\n")
    out.write(f"confirms by the annotator      {args.confirms} ({args.random_start} random, then from suggestions)\n")
    out.write(f"webhooks sent by tagtog        {len(hooks)} (GUI {sum(h['source'] == 'GUI' for h in hooks)}, "
              f"API {sum(h['source'] == 'API' for h in hooks)} ignored by prelabel)\n")
    out.write(f"events recorded by prelabel    {sum(p['events'].values())} {p['events']}\n")
    out.write(f"labels stored                  {p['labels']}\n")
    out.write(f"models trained                 {len(models)}\n")
    out.write("  version  family  mode  status     train  validation  accuracy  spam F1  seconds\n")
    shown = models if len(models) <= 12 else models[:3] + models[-9:]
    for m in shown:
        acc = f"{m['accuracy']:.3f}" if m["accuracy"] is not None else "  -  "
        f1 = f"{m['f1']:.3f}" if m["f1"] is not None else "  -  "
        out.write(f"  v{m['version']:<7} {m['family']:<7} {m['mode']:<5} {m['status']:<9} {m['n_train']:>5}  {m['n_holdout']:>10}  {acc:>8}  {f1:>7}"
                  f"  {m['train_seconds']:>7}\n")
    out.write(f"pre-labels uploaded            {len(ups)} (to {len({u['docid'] for u in ups})} documents)\n")
    out.write(f"suggestions reviewed           {reviewed}; accepted as they were: {accepted} "
              f"({(accepted / reviewed if reviewed else 0):.0%})\n")
    out.write(f"prelabel's own count           {p['prelabels_reviewed']}\n")
    if models:
        champion = p["champion"]
        from model.evaluate import evaluate  # noqa: PLC0415
        from model.factory import load_classifier  # noqa: PLC0415

        clf = load_classifier(Path(champion["path"]))
        m = evaluate(unseen.label.map(lambda v: "true" if v == "spam" else "false").tolist(),
                     clf.predict(unseen.text.tolist()), clf.classes_, "true")
        out.write(f"champion v{champion['version']} on {len(unseen)} unseen SMS: accuracy {m['accuracy']:.3f}, "
                  f"spam F1 {m['f1']:.3f}\n")
        files = ", ".join(sorted(f.name for f in Path(champion["path"]).iterdir()))
        out.write(f"champion ({champion['family']}) to take away {champion['path']} ({files})\n")
    out.write(f"logs, database, models         {work}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
