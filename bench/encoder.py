"""The MiniLM encoder's speed and what it does to the models: precisions and batch shapes side by side.

    python -m bench.encoder [--texts 1024] [--modes float32,bfloat16,bfloat16-jit,int8]

Each mode runs in a fresh process (a precision is set before Keras builds the encoder) through prelabel's own
``model.embed.Encoder``: texts per CPU-second (the process's CPU time over the encode, so a shared machine reads
the same) and per wall second, on ``--texts`` AG News texts after a warm-up batch; the cosine between each text's
vector and its float32 vector; and macro F1 of the ``embed`` family's classifier (logistic regression on the
vectors) on AG News (2,000 train / 1,000 test) and SMS (2,000 / 1,000), so a speed-up that moves the scores shows.
Also: one text alone (``/predict`` of one task) as today (a batch of 32 rows) and as a batch of one row.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared")) / "data"


def _texts(name: str) -> tuple[list[str], list[str]]:
    import pandas as pd  # noqa: PLC0415

    if name == "sms":
        df = pd.read_csv(DATA / "sms_spam" / "sms_spam.csv", keep_default_na=False)
    else:
        df = pd.read_csv(DATA / "ag_news" / "ag_news_test.csv", keep_default_na=False)
    df = df.drop_duplicates("text").sample(n=3000, random_state=0)
    return df.text.astype(str).tolist(), df.label.astype(str).tolist()


def child(mode: str, n: int, out: str) -> dict[str, float]:
    import keras  # noqa: PLC0415

    from model.quiet import import_tensorflow  # noqa: PLC0415

    import_tensorflow()
    if mode.startswith("bfloat16"):
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    from model.embed import Encoder  # noqa: PLC0415
    from model.checkpoint import default_checkpoint  # noqa: PLC0415

    enc = Encoder(default_checkpoint(), 128)
    if mode.endswith("-jit"):
        enc.model.compile(jit_compile=True)
    if mode == "int8":
        enc.backbone.quantize("int8")
    ag, ag_y = _texts("ag_news")
    enc.encode(ag[-64:])  # warm-up: graphs traced, weights touched
    cpu, wall = time.process_time(), time.perf_counter()
    vec = enc.encode(ag[:n])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    one = ag[n + 1]
    t = time.perf_counter()
    for k in range(5):
        enc.cache.clear()
        enc.encode([ag[n + 1 + k]])
    one_32 = (time.perf_counter() - t) / 5
    tok = np.zeros((1, 64), dtype="int32")
    ids = enc._ids([one])[0][:64]
    tok[0, :len(ids)] = ids
    feed = {"token_ids": tok, "segment_ids": np.zeros_like(tok), "padding_mask": tok != 0}
    enc.model.predict_on_batch(feed)
    t = time.perf_counter()
    for _ in range(5):
        enc.model.predict_on_batch(feed)
    one_1 = (time.perf_counter() - t) / 5
    np.save(out, vec)
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.metrics import f1_score  # noqa: PLC0415

    scores = {}
    for name in ("ag_news", "sms"):
        x, y = _texts(name)
        v = enc.encode(x)
        clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=3000, random_state=42)
        clf.fit(v[:2000], y[:2000])
        scores[name] = float(f1_score(y[2000:], clf.predict(v[2000:]), average="macro"))
    return {"texts_per_cpu_s": n / cpu, "texts_per_s": n / wall, "one_text_32_rows_ms": one_32 * 1000,
            "one_text_1_row_ms": one_1 * 1000, "f1_ag_news": scores["ag_news"], "f1_sms": scores["sms"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1024)
    ap.add_argument("--modes", default="float32,bfloat16,bfloat16-jit,int8")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2])))
        return 0
    amx = "amx_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            out = str(Path(tmp) / f"{mode}.npy")
            r = subprocess.run([sys.executable, "-m", "bench.encoder", "--child", mode, str(args.texts), out],
                               cwd=ROOT, capture_output=True, text=True)
            if r.returncode:
                print(f"{mode}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
                continue
            rows[mode] = json.loads(r.stdout.strip().splitlines()[-1])
            base = np.load(str(Path(tmp) / "float32.npy")) if (Path(tmp) / "float32.npy").exists() else None
            if base is not None:
                cos = (np.load(out) * base).sum(axis=1)
                rows[mode]["cos_mean"], rows[mode]["cos_min"] = float(cos.mean()), float(cos.min())
    print(f"\n{args.texts} AG News texts through model.embed.Encoder; CPU with AMX-BF16: {amx}\n")
    print("| mode | texts per CPU-s | texts/s wall | speed-up | cosine to float32 mean (min) | macro F1 AG News | "
          "macro F1 SMS | 1 text, 32-row batch ms | 1 text, 1-row batch ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    ref = rows.get("float32", {}).get("texts_per_cpu_s")
    for mode, r in rows.items():
        speed = f"{r['texts_per_cpu_s'] / ref:.2f}x" if ref else ""
        cos = f"{r.get('cos_mean', 1):.5f} ({r.get('cos_min', 1):.4f})"
        print(f"| {mode} | {r['texts_per_cpu_s']:.1f} | {r['texts_per_s']:.1f} | {speed} | {cos} | "
              f"{r['f1_ag_news']:.4f} | {r['f1_sms']:.4f} | {r['one_text_32_rows_ms']:.0f} | "
              f"{r['one_text_1_row_ms']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
