"""What the map of the corpus costs the worker (worker/loop/mapping.py), at 1,000 and 20,000 documents.

    python -m bench.corpus_map [--docs 1000,20000] [--labels 500]

A ``local/`` project of AG News texts (sampled with replacement, made distinct), ``--labels`` of them labelled and
trained once with ``quick``; then the map is drawn twice: **cold** (the sentence encoder embeds every mapped
document) and **warm** (the vectors are in the embedding store already, as they are when the families embed or
hybrid serve). Prints the points drawn and the seconds of each, and how many of them t-SNE took.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

from bench.local import local_project
from bench.scale import corpus


def run(n_docs: int, n_labels: int) -> dict[str, float | int]:
    import model.corpus_map as cm  # noqa: PLC0415

    texts, ys = corpus(n_docs, seed=n_docs)
    with tempfile.TemporaryDirectory(prefix="prelabel-map-") as root:
        store, loop, pid = local_project(root, texts, ys[:n_labels], "quick")
        loop.training.train(pid)
        tsne = []
        real = cm.project

        def timed(vectors: object, seed: int = 0) -> object:
            t0 = time.perf_counter()
            out = real(vectors, seed)
            tsne.append(time.perf_counter() - t0)
            return out

        cm.project = timed
        from model.embed import use_store  # noqa: PLC0415

        use_store(loop.settings.embedding_cache_path)
        t0 = time.perf_counter()
        points = loop.maps.compute(pid)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        with store.session() as s:  # as if a new champion: draw again, the vectors now stored
            from storage import CorpusMap  # noqa: PLC0415

            s.get(CorpusMap, pid).version = -1
        loop.maps.compute(pid)
        warm = time.perf_counter() - t0
        cm.project = real
        return {"documents": n_docs, "points": points, "cold_s": round(cold, 1), "warm_s": round(warm, 1),
                "tsne_s": round(tsne[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default="1000,20000")
    ap.add_argument("--labels", type=int, default=500)
    args = ap.parse_args(argv)
    rows = [run(int(n), args.labels) for n in args.docs.split(",")]
    print("\n| documents | points drawn | cold s (embedding them) | warm s (vectors stored) | of which t-SNE s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['documents']:,} | {r['points']:,} | {r['cold_s']} | {r['warm_s']} | {r['tsne_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
