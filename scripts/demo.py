"""The main job on embedded defaults: the whole loop, live, on a real dataset, with the story told round by round.

Starts the tagtog emulator loaded with SMS spam messages (no labels), prelabel's web process (gunicorn) and
worker (Huey on SQLite), waits until the worker reports ready (its heartbeat in /healthz), then a simulated
annotator works the project as a person working a pre-labelled queue would: a few documents at random to start
(until it has seen a few of each class), then always the newest suggestion waiting for it.

The story does not depend on the machine's speed. The worker retrains every RETRAIN_EVERY (10) confirms, and after
each such batch the annotator waits, with a bounded timeout, until prelabel is idle (every event stored, the
retrain and its pre-label uploads done) before it looks for suggestions again. So the same seed gives the same
rounds, versions and suggestions on a quiet and on a busy machine; only the wall time changes.

Prints per round: labels so far, champion version and family, its validation score, its spam F1 on the SMS the
emulator never held, and the suggestions reviewed and accepted so far; writes a PNG of unseen spam F1 and the
acceptance rate against labels, and prints its path. Also the ops figures: worker start to ready and to its
first version, and the last confirm before the first model to the first pre-label uploaded.

    python -m scripts.demo                         # about 3 minutes on 2 cores
    python -m scripts.demo --confirms 300          # longer, better model
    python -m scripts.demo --families quick        # the TF-IDF family only: no TensorFlow in the worker
"""
from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emulator.export import write_export
from scripts.stack import Stack

logger = logging.getLogger("demo")
SMS = Path("shared") / "data" / "sms_spam" / "sms_spam.csv"


def default_data() -> Path | None:
    """The SMS spam table of ``shared/data``: beside the clone (``../shared``), else in the current folder or one
    above it (an installed ``prelabel demo`` run next to the shared folder); None when none is there."""
    places = [Path(__file__).resolve().parent.parent.parent, Path.cwd(), *Path.cwd().parents]
    return next((base / SMS for base in places if (base / SMS).is_file()), None)


RETRAIN_EVERY = 10


@dataclass
class Round:
    """One retrain as the annotator saw it, after ``labels`` confirms."""

    labels: int
    version: int | None = None
    family: str = ""
    validation: float | None = None
    uploads: int = 0
    reviewed: int = 0  # suggestions reviewed so far (all rounds)
    accepted: int = 0
    batch_reviewed: int = 0  # in the batch confirmed just before this round
    batch_accepted: int = 0
    unseen_f1: float | None = None
    path: str = ""


@dataclass
class Annotator:
    """Confirms documents in the emulator: at random during the start, then the newest waiting suggestion."""

    stack: Stack
    truth: dict[str, bool]  # filename -> is spam
    docs: dict[str, str]  # docid -> filename
    rng: random.Random
    done: list[str] = field(default_factory=list)
    suggestions: dict[str, bool] = field(default_factory=dict)  # docid -> latest pre-label value
    seen_log: int = 0
    reviewed: int = 0
    accepted: int = 0
    uploads: int = 0

    def read_suggestions(self) -> int:
        """Pre-labels uploaded since the last look (prelabel's API saves in the emulator's log); returns how many."""
        n = 0
        for e in self.stack.emulator_log(self.seen_log):
            self.seen_log = max(self.seen_log, e["seq"])
            if e["kind"] == "annotations" and not e.get("gui"):
                n += 1
                if e["docid"] not in self.done:
                    self.suggestions[e["docid"]] = e["metas"]["m_1"]["value"]
        self.uploads += n
        return n

    def confirm(self, docid: str | None = None) -> None:
        """Confirm ``docid`` or, without one, the newest waiting suggestion (else a random document)."""
        waiting = [d for d in self.suggestions if d not in self.done]
        reviewed = docid is None and bool(waiting)
        if docid is None:
            docid = waiting[-1] if waiting else self.rng.choice(sorted(set(self.docs) - set(self.done)))
        if reviewed:
            self.reviewed += 1
            self.accepted += self.suggestions[docid] == self.truth[self.docs[docid]]
        self.stack.annotate(docid, {"isSpam": self.truth[self.docs[docid]]}, confirm=True, user="annotator")
        self.done.append(docid)


def random_start(docids: list[str], truth: dict[str, bool], docs: dict[str, str], rng: random.Random,
                 at_least: int, per_class: int) -> list[str]:
    """The documents confirmed at random before any suggestion: ``at_least``, and on until ``per_class`` of each
    class were seen, rounded up to a whole retrain batch. Drawn before the stack starts, so the first model's
    labels (MIN_LABELS is set to their number) are the same on every machine."""
    order = rng.sample(sorted(docids), len(docids))
    n = 0
    while n < len(order):
        n += 1
        spam = sum(truth[docs[d]] for d in order[:n])
        if n >= at_least and min(spam, n - spam) >= per_class and n % RETRAIN_EVERY == 0:
            break
    return order[:n]


def wait_idle(stack: Stack, labels: int, timeout: float) -> dict[str, Any]:
    """Wait until prelabel stored ``labels`` labels, trained a version on all of them, and has nothing queued,
    nothing training and no retrain requested (the worker sets that request before it marks the event done);
    returns the project summary. A round that trains on fewer labels than the annotator gave is a timeout, not a
    quietly different story."""
    def idle() -> dict[str, Any] | None:
        p = stack.api("/api/v1/projects/1")
        busy = p["events"].get("queued", 0) + p["events"].get("processing", 0)
        if p["labels"] < labels or busy or p["retrain_requested"] or p["training"]:
            return None
        versions = stack.api("/api/v1/projects/1/versions")["versions"]
        return p if max((v["n_labels"] for v in versions), default=0) >= labels else None

    return stack.wait_for(idle, timeout, f"prelabel idle after confirm {labels}")


def score_unseen(rounds: list[Round], unseen: pd.DataFrame) -> None:
    """Each round's champion on the SMS the emulator never held (spam F1); each version is loaded once."""
    from model.evaluate import evaluate  # noqa: PLC0415 - Keras (for hybrid/embed) only once the annotator is done
    from model.factory import load_classifier  # noqa: PLC0415

    truth = unseen.label.map(lambda v: "true" if v == "spam" else "false").tolist()
    scores: dict[int, float] = {}
    for r in rounds:
        if r.version is not None and r.version not in scores:
            clf = load_classifier(Path(r.path))
            scores[r.version] = evaluate(truth, clf.predict(unseen.text.tolist()), clf.classes_, "true")["f1"]
        r.unseen_f1 = scores.get(r.version) if r.version is not None else None


def plot(rounds: list[Round], path: Path, title: str) -> Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r.labels for r in rounds if r.unseen_f1 is not None]
    ax.plot(xs, [r.unseen_f1 for r in rounds if r.unseen_f1 is not None], "o-", label="champion spam F1 (unseen SMS)")
    acc = [(r.labels, r.batch_accepted / r.batch_reviewed) for r in rounds if r.batch_reviewed]
    ax.plot([a for a, _ in acc], [b for _, b in acc], "s--", label="suggestions accepted as they were (batch)")
    ax.set_xlabel("labels confirmed")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="prelabel demo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--data", type=Path, default=None, help="labelled CSV (text,label); default: SMS spam from "
                    "shared/data beside the clone or above the current folder")
    ap.add_argument("--docs", type=int, default=1500, help="documents loaded into the emulator (default 1500)")
    ap.add_argument("--unseen", type=int, default=0, help="rows not loaded that score each champion (default 0: all)")
    ap.add_argument("--confirms", type=int, default=150, help="documents the annotator confirms (default 150)")
    ap.add_argument("--random-start", type=int, default=20,
                    help="at least this many first confirms at random, and 3 of each class (default 20)")
    ap.add_argument("--families", default=None, help="MODEL_FAMILIES for the worker (default: prelabel's default)")
    ap.add_argument("--pace", type=float, default=0.1, help="annotator's seconds per document (default 0.1); it "
                    "also waits for each retrain, so the pace changes the wall time, not the story")
    ap.add_argument("--round-timeout", type=float, default=300.0, help="seconds to wait for one retrain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs, database, models and the PNG here")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    if args.confirms % RETRAIN_EVERY:
        ap.error(f"--confirms must be a multiple of {RETRAIN_EVERY} (a retrain every {RETRAIN_EVERY} confirms)")
    args.data = args.data or default_data()
    if args.data is None or not Path(args.data).is_file():
        ap.error(f"no SMS data: {args.data or SMS} not found; pass --data path/to/sms_spam.csv (columns text,label)")
    try:
        run(args)
    except (ValueError, TimeoutError) as exc:
        logger.error("demo failed: %s", exc)
        return 1
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The demo with parsed ``args``; prints the story and returns its figures (bench.demo runs it per seed)."""
    rng = random.Random(args.seed)

    df = pd.read_csv(args.data, keep_default_na=False)
    df = df.sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    pool, unseen = df.iloc[:args.docs], df.iloc[args.docs:]  # unseen rows: an independent test of each champion
    unseen = unseen.iloc[:args.unseen] if args.unseen else unseen
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-demo-"))
    if work.exists() and args.workdir:
        shutil.rmtree(work)
    write_export(work / "export", ((f"row{i}.txt", t, None) for i, t in zip(pool.index, pool.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(pool.index, pool.label)}
    logger.info("workdir %s: %d SMS documents for the emulator, %d unseen for the final test", work, len(pool),
                len(unseen))

    settings = {"RETRAIN_EVERY": str(RETRAIN_EVERY), "PRELABEL_K": str(RETRAIN_EVERY), "WORKER_HEARTBEAT_S": "2",
                "SYNC_INTERVAL_S": "3600", "RECONCILE_INTERVAL_S": "3600",
                "KEEP_RETIRED": "1000"}  # every round's champion is scored on the unseen SMS at the end
    if args.families:
        settings["MODEL_FAMILIES"] = args.families
    stack = Stack(work, work / "export", settings=settings, start_worker=False)
    rounds: list[Round] = []
    t_start = time.monotonic()
    with stack:
        docs = dict(stack.docids())  # docid -> filename
        start = random_start(list(docs), truth, docs, rng, args.random_start, per_class=3)
        if len(start) >= args.confirms:
            raise ValueError(f"the random start needs {len(start)} confirms; ask for more with --confirms")
        # the first model trains on exactly the random start, whatever the machine's speed
        stack.env["MIN_LABELS"] = str(len(start))
        t_worker = time.monotonic()
        stack.start_workers()
        ready = stack.wait_ready(timeout=120)
        ready_s = time.monotonic() - t_worker
        logger.info("worker ready %.1fs after it started (its own count from process start: %.1fs); annotating: "
                    "%d at random, then the newest suggestion", ready_s, ready["ready_after_s"] or 0, len(start))
        ann = Annotator(stack, truth, docs, rng)
        first_version_s = first_prelabel_s = None
        t_annotating = time.monotonic()
        for n in range(args.confirms):
            ann.confirm(start[n] if n < len(start) else None)
            t_confirm = time.monotonic()
            time.sleep(args.pace)  # a person's reading time; synchronisation is wait_idle below
            labels = n + 1
            if labels < len(start) or labels % RETRAIN_EVERY:
                continue
            p = wait_idle(stack, labels, args.round_timeout)
            ups = ann.read_suggestions()
            champion = p["champion"]
            if champion and first_version_s is None:
                first_version_s = time.monotonic() - t_worker
            if ups and first_prelabel_s is None:
                first_prelabel_s = time.monotonic() - t_confirm
            prev = rounds[-1] if rounds else None
            r = Round(labels, champion and champion["version"], champion["family"] if champion else "",
                      champion and champion["f1_macro"], uploads=ups, reviewed=ann.reviewed, accepted=ann.accepted,
                      path=champion["path"] if champion else "")
            if prev is not None:
                r.batch_reviewed = ann.reviewed - prev.reviewed
                r.batch_accepted = ann.accepted - prev.accepted
            rounds.append(r)
            logger.info("round %2d: %3d labels, champion %s, validation macro F1 %s, %d pre-labels uploaded; "
                        "suggestions reviewed %d, accepted %d", len(rounds), labels,
                        f"v{r.version} ({r.family})" if r.version else "none", fmt(r.validation), ups, r.reviewed,
                        r.accepted)
        annotating_s = time.monotonic() - t_annotating
        p = stack.settle()
        models = stack.api("/api/v1/projects/1/versions")["versions"]
        log = stack.emulator_log()
    logger.info("annotator done; scoring each round's champion on %d unseen SMS...", len(unseen))
    score_unseen(rounds, unseen)
    png = plot(rounds, work / "demo.png", f"prelabel demo: SMS spam, seed {args.seed}")

    hooks = [e for e in log if e["kind"] == "webhook"]
    after_start = args.confirms - len(start)
    out = sys.stdout
    out.write("\n=== prelabel demo: SMS spam on a tagtog emulator ===\n")
    out.write(f"families                       {args.families or 'default (MODEL_FAMILIES)'}; champion family per "
              f"round below\n")
    out.write(f"confirms by the annotator      {args.confirms} ({len(start)} random to start, then the newest "
              f"suggestion waiting)\n")
    out.write(f"webhooks sent by tagtog        {len(hooks)} (GUI {sum(h['source'] == 'GUI' for h in hooks)}, "
              f"API {sum(h['source'] == 'API' for h in hooks)} ignored by prelabel)\n")
    out.write(f"events recorded by prelabel    {sum(p['events'].values())} {p['events']}\n")
    out.write(f"model versions trained         {len(models)} in {len(rounds)} rounds\n\n")
    out.write(" round  labels  champion  family    validation F1  unseen spam F1  reviewed  accepted  batch accepted\n")
    for i, r in enumerate(rounds, 1):
        batch = f"{r.batch_accepted}/{r.batch_reviewed}" if r.batch_reviewed else "-"
        out.write(f" {i:>5}  {r.labels:>6}  {('v' + str(r.version)) if r.version else '-':>8}  {r.family:<8}  "
                  f"{fmt(r.validation):>13}  {fmt(r.unseen_f1):>14}  {r.reviewed:>8}  {r.accepted:>8}  {batch:>14}\n")
    share = ann.reviewed / after_start if after_start else 0.0
    out.write(f"\nsuggestions reviewed           {ann.reviewed} of the {after_start} confirms after the random start "
              f"({share:.0%}); accepted as they were: {ann.accepted} "
              f"({(ann.accepted / ann.reviewed if ann.reviewed else 0):.0%})\n")
    out.write(f"pre-labels uploaded            {ann.uploads}; prelabel's own count of reviews "
              f"{p['prelabels_reviewed']}\n")
    last = rounds[-1] if rounds else None
    if last and last.version:
        out.write(f"champion v{last.version} ({last.family}) on {len(unseen)} unseen SMS: spam F1 "
                  f"{fmt(last.unseen_f1)}\n")
        out.write(f"champion to take away          {last.path}\n")
    out.write(f"worker start to ready          {ready_s:.1f} s\n")
    out.write(f"worker start to first version  {fmt(first_version_s, '.1f')} s (after the {len(start)} random "
              f"confirms, {args.pace} s apart)\n")
    out.write(f"confirm {len(start):<3} to first pre-label   {fmt(first_prelabel_s, '.1f')} s\n")
    out.write(f"annotating took                {annotating_s:.0f} s; whole demo {time.monotonic() - t_start:.0f} s\n")
    out.write(f"picture                        {png}\n")
    out.write(f"logs, database, models         {work}\n")
    return {"seed": args.seed, "rounds": len(rounds), "random_start": len(start), "reviewed": ann.reviewed,
            "reviewed_share": round(share, 3), "accepted": ann.accepted, "versions": len(models),
            "unseen_spam_f1": last.unseen_f1 if last else None, "ready_s": round(ready_s, 2),
            "first_version_s": first_version_s, "first_prelabel_s": first_prelabel_s,
            "seconds": round(time.monotonic() - t_start, 1), "png": str(png),
            "story": [(r.labels, r.version, r.family, r.validation and round(r.validation, 3), r.reviewed,
                       r.accepted) for r in rounds]}


if __name__ == "__main__":
    sys.exit(main())
