"""The fewshot family: SetFit-style (Tunstall et al., 2022). The MiniLM encoder is first fine-tuned contrastively
on pairs of labelled texts (cosine similarity towards 1 for texts of the same class, 0 for different classes), then
a logistic regression is fitted on its mean-pooled embeddings, as in the embed family.

Why: with a few dozen labels the frozen encoder's geometry is not the task's (SMS spam and ham overlap in it);
pairs give N² training signals from N labels, and moving the encoder is what lets the linear head separate them.
Measured against embed, hybrid and quick in bench.learning_curves (README, "Learning curves").

Keras on TensorFlow (keras-hub's BertBackbone, no torch), like bert and embed. The pairs: ``iterations``
positive and negative partners per labelled text, at most ``max_pairs`` in all, so a round costs about the same
at 50 labels as at 5,000 (on 2 CPU cores ~0.6 s per batch of 16 pairs). Multilabel: a pair's target is the
Jaccard similarity of its two label sets (positives share a label, negatives share none).

Saved as the fine-tuned encoder's weights (``encoder.weights.h5``, 91 MB; the architecture comes from the
checkpoint, which must still be there to load) and the regression (``model.joblib``). The family trains on the
bert queue (worker/jobs.py), so a round of the cheap families is never held up by it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .quiet import import_tensorflow
from .base import read_json, write_json
from .checkpoint import default_checkpoint
from .embed import MODEL_FILE, Encoder, EmbedClassifier

logger = logging.getLogger(__name__)
WEIGHTS_FILE = "encoder.weights.h5"
PARAMS_FILE = "fewshot.json"


def label_sets(labels: Sequence[Any]) -> list[frozenset[str]]:
    """Each row's labels as a set: ``{"spam"}`` for single-label data, the row's labels for multilabel."""
    return [frozenset(str(v) for v in y) if isinstance(y, (list, tuple, set, frozenset)) else frozenset([str(y)])
            for y in labels]


def make_pairs(labels: Sequence[Any], iterations: int, max_pairs: int,
               seed: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices ``a``, ``b`` and a target similarity per pair: for each anchor one positive partner (shares a
    label; target = Jaccard of the label sets) and one negative (shares none; target 0), where such partners
    exist. Anchors: every row ``iterations`` times in shuffled order, cut so there are at most ``max_pairs``."""
    sets = label_sets(labels)
    names = sorted(set().union(*sets)) if sets else []
    index = {c: j for j, c in enumerate(names)}
    y = np.zeros((len(sets), max(1, len(names))), dtype="float32")
    for i, row in enumerate(sets):
        for c in row:
            y[i, index[c]] = 1.0
    size = y.sum(axis=1)
    rng = np.random.default_rng(seed)
    anchors = np.concatenate([rng.permutation(len(sets)) for _ in range(iterations)]) if len(sets) else []
    a: list[int] = []
    b: list[int] = []
    sim: list[float] = []
    for i in anchors:
        if len(a) >= max_pairs:
            break
        inter = y @ y[i]
        union = size + size[i] - inter
        # two rows without labels (multilabel "none") are alike
        jac = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        jac[i] = -1.0  # never paired with itself
        for cands in (np.flatnonzero(jac > 0), np.flatnonzero(jac == 0)):
            if len(cands) and len(a) < max_pairs:
                j = int(rng.choice(cands))
                a.append(int(i))
                b.append(j)
                sim.append(float(jac[j]))
    return np.array(a, dtype="int64"), np.array(b, dtype="int64"), np.array(sim, dtype="float32")


class FewShotClassifier(EmbedClassifier):
    """A contrastively fine-tuned MiniLM encoder + logistic regression (one per label for multilabel).

    Parameters (besides EmbedClassifier's checkpoint, max_length, C, class_weight, random_state)
    ------------------------------------------------------------------------------------------
    iterations : positive and negative partners drawn per labelled text (SetFit's ``num_iterations``).
    max_pairs : cap on pairs per fit, which bounds its cost whatever the number of labels.
    batch_size, learning_rate, warmup : the one contrastive epoch (AdamW, linear warm-up and decay).
    """

    family = "fewshot"

    def __init__(self, *, checkpoint: str = "", max_length: int = 128, iterations: int = 10,
                 max_pairs: int = 1024, batch_size: int = 16, learning_rate: float = 5e-5, warmup: float = 0.1,
                 C: float = 10.0, class_weight: str | None = "balanced", random_state: int | None = 42,
                 precision: str = "float32") -> None:
        # precision: kept for the common parameters; the fine-tuned copy of the encoder always trains in float32
        super().__init__(checkpoint=checkpoint, max_length=max_length, C=C, class_weight=class_weight,
                         random_state=random_state, precision="float32")
        del precision
        self.iterations = iterations
        self.max_pairs = max_pairs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup = warmup
        self._progress: Callable[[dict[str, Any]], None] | None = None
        self._should_stop: Callable[[], bool] | None = None

    def on_progress(self, report: Callable[[dict[str, Any]], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> "FewShotClassifier":
        """As the bert family's: ``report`` gets {"step", "steps", "loss"} every 10 steps of the contrastive epoch;
        it stops between steps once ``should_stop()`` is true (the fit then raises InterruptedError)."""
        self._progress, self._should_stop = report, should_stop
        return self

    @property
    def encoder(self) -> Encoder:  # this model's own, fine-tuned encoder (not the shared frozen one)
        return self.encoder_

    def fit(self, texts: Sequence[str], labels: Sequence[Any], *,
            validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> "FewShotClassifier":
        self._set_classes(texts, labels)  # refuse bad labels before loading anything
        self.encoder_ = Encoder(self.checkpoint or default_checkpoint(), self.max_length)
        a, b, sim = make_pairs(labels, self.iterations, self.max_pairs, self.random_state)
        self.pairs_ = len(a)
        if len(a):
            self._tune([str(t) for t in texts], a, b, sim)
        super().fit(texts, labels, validation=validation)
        # the contrastive loss per tenth of the epoch (the head is a regression: no loss curve of its own)
        self.history_ = {"pair_loss": self.pair_loss_} if len(a) else {}
        return self

    def _tune(self, texts: list[str], a: np.ndarray, b: np.ndarray, sim: np.ndarray) -> None:
        """One epoch of cosine-similarity loss (MSE between the pair's cosine and its target) on the encoder."""
        import_tensorflow()
        import keras  # noqa: PLC0415
        import tensorflow as tf  # noqa: PLC0415

        from .bert import _Warmup  # noqa: PLC0415 - the same warm-up schedule as the bert family

        t0 = time.perf_counter()
        if self.random_state is not None:
            keras.utils.set_random_seed(self.random_state)
        enc = self.encoder_
        ids = enc._ids(texts)
        width = int(min(self.max_length, max(16, -(-int(np.percentile([len(i) for i in ids], 95)) // 16) * 16)))
        sep = enc.tokenizer.sep_token_id
        tok = np.zeros((len(ids), width), dtype="int32")
        for r, row in enumerate(ids):
            row = row if len(row) <= width else row[: width - 1] + [sep]
            tok[r, :len(row)] = row
        steps = -(-len(a) // self.batch_size)
        warm = max(1, int(self.warmup * steps))
        decay = keras.optimizers.schedules.PolynomialDecay(self.learning_rate, max(1, steps - warm), 0.0)
        opt = keras.optimizers.AdamW(learning_rate=_Warmup(self.learning_rate, warm, decay))
        model = enc.model
        # the backbone's pooled (CLS) dense layer is not on the mean-pooled path: it gets no gradient
        weights = [w for w in model.trainable_variables if "pooled_dense" not in w.path]
        spec = tf.TensorSpec((None, width), tf.int32)

        def embed(t: Any) -> Any:
            return model({"token_ids": t, "segment_ids": tf.zeros_like(t), "padding_mask": t != 0}, training=True)

        # A plain loop rather than fit(): the two sides share one encoder, and a Functional siamese over
        # keras-hub's dict inputs does not build. Dropout is on, as in SetFit's training mode.
        @tf.function(input_signature=[spec, spec, tf.TensorSpec((None,), tf.float32)])
        def step(ta: Any, tb: Any, s: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(tf.reduce_sum(embed(ta) * embed(tb), axis=-1) - s))
            opt.apply(tape.gradient(loss, weights), weights)
            return loss

        order = np.random.default_rng(self.random_state).permutation(len(a))
        losses = []
        for k in range(steps):
            if self._should_stop is not None and self._should_stop():
                raise InterruptedError("fewshot training cancelled")
            rows = order[k * self.batch_size:(k + 1) * self.batch_size]
            losses.append(float(step(tok[a[rows]], tok[b[rows]], sim[rows])))
            if k % 10 == 0 and self._progress is not None:
                self._progress({"step": k + 1, "steps": steps, "loss": losses[-1]})
        self.pair_loss_ = [float(np.mean(c)) for c in np.array_split(losses, min(10, steps))]
        self.tune_loss_ = self.pair_loss_[-1]
        logger.info("fewshot: %d pairs of %d texts, %d steps, loss %.4f, %.1fs", len(a), len(texts), steps,
                    self.tune_loss_, time.perf_counter() - t0)

    def save(self, folder: Path) -> None:
        super().save(folder)
        self.encoder_.backbone.save_weights(Path(folder) / WEIGHTS_FILE)
        write_json(Path(folder) / PARAMS_FILE, {"pairs": int(getattr(self, "pairs_", 0)),
                                                "pair_loss": getattr(self, "pair_loss_", [])})

    @classmethod
    def load(cls, folder: Path) -> "FewShotClassifier":
        clf = super().load(folder)
        extra = read_json(Path(folder) / PARAMS_FILE)
        clf.pairs_ = int(extra["pairs"])
        clf.pair_loss_ = [float(v) for v in extra.get("pair_loss") or []]
        clf.encoder_ = Encoder(clf.checkpoint or default_checkpoint(), clf.max_length)
        clf.encoder_.backbone.load_weights(Path(folder) / WEIGHTS_FILE)
        clf.history_ = {"pair_loss": clf.pair_loss_} if clf.pair_loss_ else {}
        return clf


__all__ = ["FewShotClassifier", "make_pairs", "MODEL_FILE"]
