"""The embed family (frozen MiniLM embeddings via keras-hub + logistic regression): it learns from few labels,
round-trips, caches embeddings, and a bad checkpoint is refused when settings are read."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from config import Settings
from model.embed import EmbedClassifier
from model.factory import load_classifier
from model.factory import save_version

from ..conftest import SMS_CSV


@pytest.fixture(scope="module")
def sms():
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    tr, te = train_test_split(df, test_size=0.2, stratify=df.label, random_state=42)
    return tr.groupby("label").head(50), te.sample(n=400, random_state=0)


def test_embed_learns_from_100_labels(sms):
    small, te = sms
    clf = EmbedClassifier().fit(list(small.text), list(small.label))
    assert f1_score(te.label, clf.predict(list(te.text)), pos_label="spam") >= 0.6  # TF-IDF is near 0 here
    p = clf.predict_proba(list(te.text[:10]))
    assert p.shape == (10, 2) and list(clf.classes_) == ["ham", "spam"] and np.allclose(p.sum(axis=1), 1)
    cached = len(clf.encoder.cache)
    clf.fit(list(small.text), list(small.label))  # a retrain embeds nothing again
    assert len(clf.encoder.cache) == cached


def test_embed_save_load_identical_and_multilabel(sms, tmp_path):
    small, te = sms
    clf = EmbedClassifier().fit(list(small.text), list(small.label))
    back = load_classifier(save_version(clf, tmp_path, "v1", {"family": "embed"}))
    assert np.array_equal(back.predict_proba(list(te.text[:50])), clf.predict_proba(list(te.text[:50])))
    texts = ["i love you", "haha so funny", "thank you so much", "love it, thanks", "lol thanks", "ok", ""] * 3
    labels = [("love",), ("fun",), ("thanks",), ("love", "thanks"), ("fun", "thanks"), (), ()] * 3
    m = EmbedClassifier().fit(texts, labels)
    assert m.multilabel_ and m.predict_proba(["thanks!", "x" * 5000]).shape == (2, 3)  # long text: truncated


def test_bad_checkpoint_is_refused_at_configuration(tmp_path):
    with pytest.raises(ValueError, match="BERT_CHECKPOINT.*does not exist"):
        Settings.from_env({"MODEL_FAMILIES": "quick,embed", "BERT_CHECKPOINT": str(tmp_path / "nope")})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model_type 'gpt2', not a BERT"):
        Settings.from_env({"MODEL_FAMILIES": "embed", "BERT_CHECKPOINT": str(tmp_path)})
    assert Settings.from_env({"MODEL_FAMILIES": "quick,embed"}).families == ("quick", "embed")  # MiniLM default


def test_the_pool_is_embedded_in_the_background_in_batches(tmp_path, sms):
    from model.checkpoint import default_checkpoint
    from model.embed import Encoder
    from worker.loop import Loop
    from storage import Document, Store, text_hash

    _, te = sms
    texts = [f"{t} #{i}" for i, t in enumerate(te.text[:30])]  # texts no other test has embedded
    cfg = Settings(instance_path=str(tmp_path), model_families="quick,hybrid")
    store = Store(cfg.db_url)
    store.create_all()
    pid = store.ensure_project("tagtog", "alice", "spam")
    with store.session() as s:
        s.add_all([Document(project_id=pid, platform_id=f"d{i}", text=t, text_hash=text_hash(t))
                   for i, t in enumerate(texts)])
    loop = Loop(cfg, store)
    encoder = Encoder.get(default_checkpoint(), 128, cfg.encoder_dtype)  # the one new models use
    assert len(encoder.pending(texts)) == 30
    assert loop.prelabels.embed_pool(pid, batch=20) == 10
    progress = store.project_summary(pid)["embedding"]
    assert (progress["embedded"], progress["of"]) == (20, 30)  # "embedded 20 of 30" in the API and dashboard
    assert loop.prelabels.embed_pool(pid, batch=20) == 0 and encoder.pending(texts) == []
    assert store.project_summary(pid)["embedding"]["embedded"] == 30
    loop.settings = cfg.with_(model_families="quick")
    assert loop.prelabels.embed_pool(pid) == 0  # nothing to do for families without embeddings


def test_a_texts_vector_does_not_depend_on_its_batch_mates(sms, monkeypatch):
    # the pool warm-up and a retrain embed texts in different company; the vectors (and so the trained model and
    # the demo's story) must not depend on it
    _, te = sms
    texts = list(te.text[:120])
    enc = EmbedClassifier().encoder
    monkeypatch.setattr(enc, "store", None)  # computed each time, never read back from disk
    enc.cache.clear()
    together = enc.encode(texts).copy()
    enc.cache.clear()
    apart = np.concatenate([enc.encode([t]) for t in texts[40:50]])
    enc.cache.clear()
    others = enc.encode(texts[45:]).copy()
    enc.cache.clear()
    assert np.array_equal(together[40:50], apart) and np.array_equal(together[45:], others)


def test_embeddings_are_kept_on_disk_for_every_process_of_the_instance(sms, tmp_path, monkeypatch, caplog):
    """A restarted worker or the ML backend reads the vectors the worker paid for: the same bytes, and the encoder
    is not run again; a cache file that cannot be used is logged once and embedding goes on without it."""
    from model.embed import Encoder, use_store
    from model.embed_store import EmbeddingStore

    _, te = sms
    texts = [f"{t} ~{i}" for i, t in enumerate(te.text[:40])]  # texts no other test has embedded
    enc = EmbedClassifier().encoder
    monkeypatch.setattr(Encoder, "_store", Encoder._store)  # restored after the test, for the other tests
    monkeypatch.setattr(enc, "store", enc.store)
    store = use_store(tmp_path / "embeddings.sqlite3")
    assert enc.store is store and Encoder._store is store
    first = enc.encode(texts).copy()
    assert store.count(enc.space) == 40
    enc.cache.clear()  # as a new process would start

    def no_encoder(*a, **k):
        raise AssertionError("the encoder ran although every vector was on disk")

    monkeypatch.setattr(enc.model, "predict_on_batch", no_encoder)
    assert enc.pending(texts) == [] and np.array_equal(enc.encode(texts), first)
    again = EmbeddingStore(tmp_path / "embeddings.sqlite3")  # another process opening the same file
    again.put(enc.space, {k: np.zeros(enc.dim) for k in list(enc.cache)[:2]})  # already there: kept as it was
    assert again.count() == 40
    assert again.get("other-encoder|128|384", list(enc.cache), enc.dim) == {}  # spaces never mix
    assert again.get(enc.space, list(enc.cache)[:1], enc.dim + 1) == {}  # a vector of another size is not used

    bad = tmp_path / "broken.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with caplog.at_level("WARNING", logger="model.embed_store"):
        broken = EmbeddingStore(bad)
        assert not broken.usable and broken.get(enc.space, list(enc.cache), enc.dim) == {}
        broken.put(enc.space, {"00" * 32: np.zeros(enc.dim)})
    assert [r.getMessage() for r in caplog.records if "broken.sqlite3" in r.getMessage()][0].endswith(
        "embedding without it") and len([r for r in caplog.records if "broken.sqlite3" in r.getMessage()]) == 1


def test_the_embedding_cache_setting():
    assert Settings(instance_path="/srv/x").embedding_cache_path.as_posix() == "/srv/x/embeddings.sqlite3"
    assert Settings.from_env({"EMBEDDING_CACHE": "/data/e.db"}).embedding_cache_path.as_posix() == "/data/e.db"
    assert Settings.from_env({"EMBEDDING_CACHE": "off"}).embedding_cache_path is None
    pg = "postgresql+psycopg://u:pw@db:5432/prelabel"
    assert Settings(database_url=pg).embedding_cache_path == pg  # workers on several machines share the database
    assert Settings(database_url=pg, embedding_cache="/data/e.db").embedding_cache_path.as_posix() == "/data/e.db"


def test_quick_vectors_answer_alone_and_are_never_cached(sms, monkeypatch):
    """The ML backend's one-task /predict: a batch of its own size, within rounding of the canonical vector, and
    kept out of the cache (and the store), so no retrain ever trains on it."""
    from model.embed import quick_vectors

    _, te = sms
    texts = list(te.text[200:203])
    enc = EmbedClassifier().encoder
    monkeypatch.setattr(enc, "store", None)
    enc.cache.clear()
    rows = []
    real = enc.model.predict_on_batch
    monkeypatch.setattr(enc.model, "predict_on_batch", lambda x: rows.append(len(x["token_ids"])) or real(x))
    with quick_vectors():
        quick = enc.encode(texts)
    assert rows == [3] and enc.cache == {}  # 3 rows, not 32; nothing kept
    canonical = enc.encode(texts)
    assert rows[-1] == 32 and (quick * canonical).sum(axis=1).min() > 0.99999
    with quick_vectors():  # cached texts come from the cache, exactly
        assert np.array_equal(enc.encode(texts[:2]), canonical[:2])


def test_bfloat16_encoder_keeps_the_scores_and_its_own_vectors(sms):
    from model.embed import encoder_for, resolve_precision

    small, te = sms
    f32 = EmbedClassifier().fit(list(small.text), list(small.label))
    bf16 = EmbedClassifier(precision="bfloat16").fit(list(small.text), list(small.label))
    x = list(te.text)
    f = [f1_score(list(te.label), c.predict(x), average="macro") for c in (f32, bf16)]
    assert abs(f[0] - f[1]) <= 0.02, f  # 400 held-out texts: 0.02 is ~3 of them
    a, b = encoder_for(), encoder_for(precision="bfloat16")
    assert a is not b and b.space.endswith("|bfloat16") and "|" + "bfloat16" not in a.space
    cos = (a.encode(x[:50]) * b.encode(x[:50])).sum(axis=1)
    assert cos.min() > 0.99
    assert resolve_precision("float32") == "float32" and resolve_precision("auto") in ("float32", "bfloat16")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8")
    with pytest.raises(ValueError, match="ENCODER_PRECISION"):
        Settings.from_env({"ENCODER_PRECISION": "fp16"})
