"""What a restart costs with and without the embedding file (EMBEDDING_CACHE, model/embed_store.py).

    python -m bench.embed_cache [--texts 2000]

Three fresh processes, one after the other, each as a restarted worker (or the ML backend) would start: the first
embeds ``--texts`` SMS texts with MiniLM into an empty file; the second, a restart, asks for the same texts and reads
them; the third asks with the file switched off (EMBEDDING_CACHE=off: the old behaviour, every process embeds
again). Prints seconds, texts per second and the file's size; the children share nothing but the file.
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

ROOT = Path(__file__).resolve().parent.parent
SMS_CSV = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared")) / "data" / "sms_spam" / "sms_spam.csv"


def child(path: str, n: int) -> dict[str, float | int]:
    import pandas as pd  # noqa: PLC0415

    from model.embed import encoder_for, use_store  # noqa: PLC0415

    texts = list(pd.read_csv(SMS_CSV, keep_default_na=False).text.drop_duplicates()[:n])
    use_store(path if path != "off" else None)
    t0 = time.perf_counter()
    enc = encoder_for()  # loads Keras and the checkpoint: every start pays it
    loaded = time.perf_counter() - t0
    calls = 0
    real = enc.model.predict_on_batch

    def counted(x):
        nonlocal calls
        calls += 1
        return real(x)

    enc.model.predict_on_batch = counted
    t1 = time.perf_counter()
    enc.encode(texts)
    return {"texts": len(texts), "load_s": round(loaded, 1), "embed_s": round(time.perf_counter() - t1, 2),
            "encoder_batches": calls}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=2000, help="SMS texts to embed (distinct; up to 5,169)")
    ap.add_argument("--child", nargs=2, metavar=("FILE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    with tempfile.TemporaryDirectory(prefix="prelabel-embed-") as tmp:
        path = str(Path(tmp) / "embeddings.sqlite3")
        runs = []
        for name, target in (("first start, empty file", path), ("restart, the same file", path),
                             ("restart, EMBEDDING_CACHE=off", "off")):
            out = subprocess.run([sys.executable, "-m", "bench.embed_cache", "--child", target, str(args.texts)],
                                 cwd=ROOT, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append((name, r))
        size = Path(path).stat().st_size / 1e6
    print(f"\n{args.texts} SMS texts, MiniLM-L6, one process each (file {size:.1f} MB)\n")
    print("| process | encoder load s | embedding s | texts/s | encoder batches run |")
    print("|---|---|---|---|---|")
    for name, r in runs:
        rate = r["texts"] / r["embed_s"] if r["embed_s"] else float("inf")
        print(f"| {name} | {r['load_s']} | {r['embed_s']} | {rate:,.0f} | {r['encoder_batches']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
