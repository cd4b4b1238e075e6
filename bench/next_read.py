"""How long ``GET .../next`` takes to compute against the size of the pool: the stored ranking against the full read.

Builds a SQLite store per pool size (a ``local/`` project, a champion, ``--labels`` labelled documents and a pool of
SMS texts sampled with replacement, each with stored probabilities and ranks as ``Prelabels.score_pool`` writes
them), then times ``web.reads.next_documents`` (what the read's child process runs) ``--repeat`` times per strategy:
with the stored ranking (the default orders: margin, least_confidence, entropy, confident, batch top) and with the
ranking columns emptied (the full read every other query still takes: regex, diverse, balanced, maxprob).

    python -m bench.next_read --pools 10000,50000,200000
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
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger("bench.next_read")
SMS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"


def build(db_url: str, n_pool: int, n_labels: int, seed: int = 0) -> int:
    """A project with ``n_labels`` labels and ``n_pool`` scored pool documents; its id."""
    from model.names import RANKED_STRATEGIES  # noqa: PLC0415
    from model.query import scores_for  # noqa: PLC0415
    from storage import Document, Label, ModelVersion, Prediction, Project, Store  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    texts = pd.read_csv(SMS, keep_default_na=False).text.tolist()
    store = Store(db_url)
    store.create_all()
    pid = store.ensure_project("local", "local", "scale")
    classes = ["ham", "spam"]
    p1 = np.round(rng.beta(0.5, 3.0, n_pool), 6)
    proba = np.stack([1 - p1, p1], axis=1)
    ranks = {name: scores_for(name, proba) for name in RANKED_STRATEGIES}
    with store.session() as s:
        mv = ModelVersion(project_id=pid, version=1, family="quick", mode="full", path="", status="champion",
                          classes={"names": classes, "multilabel": False})
        s.add(mv)
        s.flush()
        s.get(Project, pid).champion_id = mv.id
        n = n_labels + n_pool
        docs = [Document(project_id=pid, platform_id=str(i), filename=str(i), text=texts[int(rng.integers(len(texts)))],
                         text_hash=f"{i:064d}") for i in range(n)]
        s.add_all(docs)
        s.flush()
        s.add_all([Label(project_id=pid, document_id=d.id, who="bench", value=json.dumps(classes[i % 2]))
                   for i, d in enumerate(docs[:n_labels])])
        s.bulk_insert_mappings(Prediction, [  # type: ignore[arg-type]
            {"document_id": d.id, "project_id": pid, "model_version_id": mv.id,
             "proba": {"classes": classes, "p": [float(a), float(b)], "multilabel": False},
             **{f"rank_{name}": float(r[j]) for name, r in ranks.items()}}
            for j, (d, (a, b)) in enumerate(zip(docs[n_labels:], proba))])
    store.engine.dispose()
    return pid


def timings(db_url: str, pid: int, strategy: str, repeat: int) -> list[float]:
    from web.reads import NextQuery, next_documents  # noqa: PLC0415

    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        status, body = next_documents(db_url, pid, NextQuery(strategy, "top", 10, None, None, 3))
        out.append((time.perf_counter() - t0) * 1000)
        assert status == 200 and len(body["documents"]) == 10, body
    return out


def run(pools: list[int], n_labels: int, repeat: int, work: Path) -> list[dict[str, Any]]:
    from sqlalchemy import update  # noqa: PLC0415

    from model.names import RANKED_STRATEGIES  # noqa: PLC0415
    from storage import Prediction, Store  # noqa: PLC0415

    rows = []
    for n_pool in pools:
        db_url = f"sqlite:///{work / f'pool{n_pool}.db'}"
        pid = build(db_url, n_pool, n_labels)
        for how in ("stored ranking", "full read"):
            if how == "full read":
                store = Store(db_url)
                with store.session() as s:
                    s.execute(update(Prediction).values({f"rank_{n}": None for n in RANKED_STRATEGIES}))
                store.engine.dispose()
            ms = [t for strategy in ("margin", "entropy") for t in timings(db_url, pid, strategy, repeat)]
            q = statistics.quantiles(ms, n=100) if len(ms) > 1 else ms * 99
            rows.append({"pool": n_pool, "labels": n_labels, "how": how, "p50_ms": round(statistics.median(ms), 1),
                         "p99_ms": round(q[98], 1), "reads": len(ms)})
            logger.info("%s", rows[-1])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.next_read", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--pools", default="10000,50000,200000", help="pool sizes, separated by ','")
    ap.add_argument("--labels", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=20, help="reads per strategy and size")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="prelabel-next-") as tmp:
        rows = run([int(x) for x in args.pools.split(",")], args.labels, args.repeat, Path(tmp))
    print("\n| pool | labels | next computed from | p50 ms | p99 ms | reads |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pool']:,} | {r['labels']:,} | {r['how']} | {r['p50_ms']} | {r['p99_ms']} | {r['reads']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
