"""What a project costs as it grows: pool 1k / 10k / 50k / 200k documents, 1k / 5k / 20k labels.

    python -m bench.scale [--pools 1000,10000] [--labels 1000,5000] [--families hybrid,quick]

Texts are the shared datasets' (AG News and SMS), sampled with replacement, each made distinct by a short suffix so
every one must be embedded. Each size runs the worker's own code (``worker.loop.Loop`` on a ``local/`` project, as
``bench.learning_curves`` does) in fresh processes sharing one instance folder:

* **first**: a new worker on an empty instance: the background warm-up embeds every document (texts/s), then one
  retrain round (cross-fitting, calibration, gate) and the pool scored;
* **restart**: another new worker on the same instance (a deploy): the embedding store has every vector; one round
  after 20 more labels;
* **warm**: in that same worker, one more round after 20 more labels (the everyday round).

For each: round seconds, the worker's RSS, the instance folder's size; ``GET .../next`` p50/p99 for margin,
entropy, random and ``batch=diverse`` (the web app on the same database, 30 calls each); the champion's answer for
1 and for 100 tasks nobody embedded yet, as the ML backend's ``/predict`` computes it (p50/p99 of 20); and the
floor: plain TF-IDF + LinearSVC fitted on the same labels and scoring the same pool, in the same process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared")) / "data"
NEXT_CALLS, PREDICT_CALLS, MORE_LABELS = 30, 20, 20


def corpus(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` distinct AG News texts with their labels (sampled with replacement; a suffix makes each distinct)."""
    import pandas as pd  # noqa: PLC0415

    df = pd.read_csv(DATA / "ag_news" / "ag_news_test.csv", keep_default_na=False)
    rows = np.random.default_rng(seed).integers(0, len(df), n)
    return [f"{df.text.iat[r]} (#{i})" for i, r in enumerate(rows)], [str(df.label.iat[r]) for r in rows]


def _rss_mb() -> float:
    import psutil  # noqa: PLC0415

    return psutil.Process().memory_info().rss / 2**20


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _pct(xs: list[float]) -> tuple[float, float]:
    return float(np.percentile(xs, 50) * 1000), float(np.percentile(xs, 99) * 1000)


def child(stage: str, root: str, pool: int, labels: int, families: str) -> dict[str, Any]:
    """One worker process's part: ``first`` builds the project and runs its first round; ``restart`` runs two."""
    from config import Settings  # noqa: PLC0415
    from storage import Document, Label, Project, Store, text_hash  # noqa: PLC0415
    from worker.loop import Loop  # noqa: PLC0415

    texts, ys = corpus(pool + labels + 2 * MORE_LABELS + 200 * PREDICT_CALLS)
    settings = Settings.from_env({"INSTANCE_PATH": root, "MODEL_FAMILIES": families, "LOG_LEVEL": "WARNING",
                                  "CV_FOLDS": "5"})
    store = Store(settings.db_url)
    store.create_all()
    loop = Loop(settings, store)
    pid = store.ensure_project("local", "local", "scale")
    n_docs = pool + labels + 2 * MORE_LABELS
    out: dict[str, Any] = {}

    def label(rows: range) -> None:
        with store.session() as s:
            ids = dict(s.query(Document.platform_id, Document.id).filter(Document.project_id == pid,
                                                                         Document.platform_id.in_(
                                                                             [str(i) for i in rows])))
            s.add_all([Label(project_id=pid, document_id=ids[str(i)], who="bench", value=json.dumps(ys[i]))
                       for i in rows])

    def round_() -> float:
        t0 = time.perf_counter()
        result = loop.training.train(pid)
        if result is not None and result.champion_id is not None:
            loop.prelabels.score_pool(pid, result.champion_id)
        return time.perf_counter() - t0

    if stage == "first":
        with store.session() as s:
            p = s.get(Project, pid)
            p.label_type = "enum"
            s.add_all([Document(project_id=pid, platform_id=str(i), filename=str(i), text=texts[i],
                                text_hash=text_hash(texts[i]), source="corpus") for i in range(n_docs)])
        label(range(labels))
        t0 = time.perf_counter()
        left = loop.prelabels.embed_pool(pid, batch=n_docs)  # the background warm-up, all at once here
        embed_s = time.perf_counter() - t0
        out["embed_texts_per_s"] = round(n_docs / embed_s, 1) if left == 0 and embed_s > 0.5 else None
        out["embed_s"] = round(embed_s, 1)
        out["round_s"] = round(round_(), 1)
    else:
        label(range(labels, labels + MORE_LABELS))
        out["restart_round_s"] = round(round_(), 1)
        label(range(labels + MORE_LABELS, labels + 2 * MORE_LABELS))
        out["warm_round_s"] = round(round_(), 1)
        out.update(_reads(root, pid, settings))
        out.update(_predict(loop, pid, texts[n_docs:]))
        out.update(_floor(texts, ys, labels + 2 * MORE_LABELS, n_docs))
    out["rss_mb"] = round(_rss_mb(), 0)
    out["disk_mb"] = round(_folder_mb(Path(root)), 1)
    return out


def _reads(root: str, pid: int, settings: Any) -> dict[str, Any]:
    from app import create_app  # noqa: PLC0415

    c = create_app({"instance_path": root, "log_level": "WARNING"}).test_client()
    out = {}
    for name, query in (("margin", "strategy=margin"), ("entropy", "strategy=entropy"),
                        ("random", "strategy=random"), ("diverse", "strategy=margin&batch=diverse")):
        took = []
        for _ in range(NEXT_CALLS):
            t0 = time.perf_counter()
            r = c.get(f"/api/v1/projects/{pid}/next?n=10&{query}")
            took.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.get_data(as_text=True)
        out[f"next_{name}_ms"] = [round(v, 1) for v in _pct(took)]
    return out


def _predict(loop: Any, pid: int, fresh: list[str]) -> dict[str, Any]:
    from contextlib import nullcontext  # noqa: PLC0415

    from storage import Project  # noqa: PLC0415

    try:
        from model.embed import quick_vectors  # noqa: PLC0415
    except ImportError:  # a checkout before it (the "before" figures): /predict embedded a 32-row batch
        quick_vectors = nullcontext

    with loop.store.session() as s:
        clf = loop.classifier(pid, s.get(Project, pid).champion_id)
    out = {}
    for n in (1, 100):
        took = []
        for k in range(PREDICT_CALLS):
            batch = fresh[k * 200:k * 200 + n]  # texts nobody embedded: what an annotator opens
            t0 = time.perf_counter()
            with quick_vectors():
                clf.predict_proba(batch)
            took.append(time.perf_counter() - t0)
        out[f"predict_{n}_ms"] = [round(v, 1) for v in _pct(took)]
    return out


def _floor(texts: list[str], ys: list[str], n_labels: int, n_docs: int) -> dict[str, Any]:
    """Plain TF-IDF (word 1-2 grams) + LinearSVC on the same labels, scoring the same pool."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
    from sklearn.svm import LinearSVC  # noqa: PLC0415

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    clf = LinearSVC().fit(vec.fit_transform(texts[:n_labels]), ys[:n_labels])
    clf.decision_function(vec.transform(texts[n_labels:n_docs]))
    return {"floor_round_s": round(time.perf_counter() - t0, 2)}


def run(pool: int, labels: int, families: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prelabel-scale-") as root:
        row: dict[str, Any] = {"pool": pool, "labels": labels}
        for stage in ("first", "restart"):
            r = subprocess.run([sys.executable, "-m", "bench.scale", "--child", stage, root, str(pool), str(labels),
                                families], cwd=ROOT, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"{stage} failed: {r.stderr[-3000:]}")
            got = json.loads(r.stdout.strip().splitlines()[-1])
            row.update({(f"{stage}_{k}" if k in ("rss_mb", "disk_mb") else k): v for k, v in got.items()})
        return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pools", default="1000,10000", help="pool sizes (documents without a label)")
    ap.add_argument("--labels", default="1000,5000", help="label counts")
    ap.add_argument("--families", default="hybrid,quick")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        stage, root, pool, labels, families = args.child
        print(json.dumps(child(stage, root, int(pool), int(labels), families)))
        return 0
    rows = []
    for labels in (int(x) for x in args.labels.split(",")):
        for pool in (int(x) for x in args.pools.split(",")):
            t0 = time.perf_counter()
            rows.append(run(pool, labels, args.families))
            print(json.dumps(rows[-1]), f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(f"\nMODEL_FAMILIES={args.families}; ms are p50 / p99\n")
    print("| pool | labels | embedding texts/s | first round s | restart round s | warm round s | TF-IDF+LinearSVC s | "
          "next margin ms | next entropy ms | next random ms | next diverse ms | 1 task ms | 100 tasks ms | "
          "worker RSS MB | disk MB |")
    print("|" + "---|" * 15)
    for r in rows:
        def ms(k: str) -> str:
            return "{:.0f} / {:.0f}".format(*r[k])
        print(f"| {r['pool']:,} | {r['labels']:,} | {r.get('embed_texts_per_s') or '—'} | {r['round_s']} | "
              f"{r['restart_round_s']} | {r['warm_round_s']} | {r['floor_round_s']} | {ms('next_margin_ms')} | "
              f"{ms('next_entropy_ms')} | {ms('next_random_ms')} | {ms('next_diverse_ms')} | {ms('predict_1_ms')} | "
              f"{ms('predict_100_ms')} | {r['restart_rss_mb']:.0f} | {r['restart_disk_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
