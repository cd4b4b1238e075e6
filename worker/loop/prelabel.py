"""Pre-labelling: score the pool with the champion, choose documents by active learning, and upload the model's
label and probability through the platform, so the next annotator starts from a suggestion.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence

import numpy as np
from sqlalchemy import select, update

from annotation_client import Suggestion
from formats.corpus import parse_corpus
from model.names import RANKED_STRATEGIES, class_counts, class_value
from model.query import scores_for
from storage import Document, Event, ModelVersion, Prediction, Upload, current_labels, dumps_value, text_hash

if TYPE_CHECKING:
    from . import Loop

logger = logging.getLogger(__name__)
REVIEW_TAG = "review:confident"  # how a suggestion chosen for review is tagged (Upload.strategy)
POOL_TAG = "pool"  # a suggestion on a pool document no pick chose (platforms that queue the whole pool)
# a pool suggestion is written again when its label changes or its probability moves by this much (Label Studio
# shows two decimals; rewriting every task for a 0.001 change would rewrite the whole pool every round)
SCORE_STEP = 0.01


class Choice(NamedTuple):
    """The documents ``Prelabels.choose`` picked: indices of the texts, best first; their probabilities; the batch's
    tag (``margin``, ``cold_start:random``, ``review:confident``, ``mixed:margin``); each pick's own tag."""
    idx: np.ndarray
    proba: np.ndarray
    tag: str
    tags: list[str]


class Prelabels:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop
        self._corpus: tuple[float, list[str]] | None = None

    def corpus_texts(self) -> list[str]:
        path = self.loop.settings.corpus_path
        if not path:
            return []
        mtime = os.path.getmtime(path)
        if self._corpus is None or self._corpus[0] != mtime:
            self._corpus = (mtime, parse_corpus(Path(path).read_bytes(), Path(path).name,
                                                self.loop.settings.corpus_text_column))
        return self._corpus[1]

    def embed_pool(self, project_id: int, batch: int = 512) -> int:
        """Embed up to ``batch`` of the project's documents (pool and labelled) that this worker process has not
        embedded yet, when a listed family uses the embeddings (embed, hybrid); returns how many are left. Run in
        the background in small batches (jobs.embed_pool), so the retrain that first needs them finds them cached
        and a confirm arriving meanwhile waits seconds, not minutes."""
        if not {"embed", "hybrid"} & set(self.loop.settings.families):
            return 0
        from model.embed import encoder_for  # noqa: PLC0415

        # the families' default max_length, at the precision new models train with
        encoder = encoder_for(self.loop.settings.bert_checkpoint, precision=self.loop.settings.encoder_dtype)
        with self.loop.store.session() as s:
            texts = list(s.scalars(select(Document.text).where(Document.project_id == project_id)))
        todo = encoder.pending(texts)
        total = len(set(texts))
        if todo:
            t0 = time.perf_counter()
            encoder.encode(todo[:batch])
            logger.info("embedded %d documents in %.1fs; %d left", min(batch, len(todo)), time.perf_counter() - t0,
                        max(0, len(todo) - batch))
        left = max(0, len(todo) - batch)
        self.loop.store.set_embedding_progress(project_id, total - left, total)  # "embedded N of M"
        return left

    def score_pool(self, project_id: int, version_id: int) -> int:
        """Store the champion's probabilities for every unlabelled platform document (for ``GET .../next``); logs
        how many of the pool's decisions changed since the stored ones."""
        clf = self.loop.classifier(project_id, version_id)
        with self.loop.store.session() as s:
            labelled = {d.id for d, _, _ in current_labels(s, project_id)}
            docs = [(d.id, d.text) for d in s.scalars(select(Document).where(
                Document.project_id == project_id, Document.platform_id.is_not(None))) if d.id not in labelled]
            before = self._stored_decisions(s, project_id)
        t0 = time.perf_counter()
        proba = clf.predict_proba([t for _, t in docs]) if docs else np.zeros((0, len(clf.classes_)))
        classes = list(clf.classes_)
        decided = clf.decide(proba) if docs else []
        after = {d: tuple(v) if isinstance(v, (list, tuple)) else str(v) for (d, _), v in zip(docs, decided)}
        common = before.keys() & after.keys()
        changed = sum(before[k] != after[k] for k in common) / len(common) if common else None
        multilabel = bool(getattr(clf, "multilabel_", False))
        stored = np.round(np.asarray(proba, dtype=float).reshape(len(docs), len(classes)), 6)
        # each ranked strategy's score, from the stored (rounded) probabilities, so next ranks exactly as it would
        ranks = {name: scores_for(name, stored, multilabel=multilabel) for name in RANKED_STRATEGIES} if docs else {}
        with self.loop.store.session() as s:
            s.query(Prediction).filter_by(project_id=project_id).delete()
            s.add_all([Prediction(document_id=d, project_id=project_id, model_version_id=version_id,
                                  proba={"classes": classes, "p": [float(x) for x in row], "multilabel": multilabel},
                                  **{f"rank_{name}": float(r[j]) for name, r in ranks.items()})
                       for j, ((d, _), row) in enumerate(zip(docs, stored))])
        logger.info("scored %d pool documents in %.2fs; %s of the decisions changed", len(docs),
                    time.perf_counter() - t0, "none compared" if changed is None else f"{changed:.2%}")
        return len(docs)

    @staticmethod
    def _stored_decisions(s: Any, project_id: int) -> dict[int, Any]:
        """document id -> the decision of the stored probabilities (argmax; multilabel: the labels over their
        version's thresholds)."""
        rows = s.execute(select(Prediction.document_id, Prediction.model_version_id, Prediction.proba)
                         .where(Prediction.project_id == project_id)).all()
        thresholds: dict[int, list[float]] = {}
        out: dict[int, Any] = {}
        for doc_id, vid, proba in rows:
            p, names = proba.get("p") or [], proba.get("classes") or []
            if not p:
                continue
            if proba.get("multilabel"):
                if vid not in thresholds:
                    mv = s.get(ModelVersion, vid)
                    thresholds[vid] = ((mv.classes or {}).get("thresholds") if mv else None) or [0.5] * len(p)
                out[doc_id] = tuple(c for c, x, t in zip(names, p, thresholds[vid]) if x >= t)
            else:
                out[doc_id] = str(names[max(range(len(p)), key=p.__getitem__)])
        return out

    def choose(self, clf: Any, texts: list[str], n: int, counts: dict[str, int], mode: str | None = None,
               proba: np.ndarray | None = None) -> Choice:
        """Pick ``n`` of ``texts`` for PRELABEL_MODE (``mode`` overrides it): ``learn``, the configured strategy and
        batch mode; ``review``, the most confident suggestions first; ``mixed``, the two alternating (learn first).
        Random (within the regex) during cold start, i.e. while some class (multilabel: the median label) has fewer
        than COLD_START_MIN training labels (``counts``), whatever the mode: the model needs every class first.
        ``proba``: the model's probabilities of ``texts``, when the caller has them already."""
        from model.query import cold_start, query, resolve_batch  # noqa: PLC0415

        cfg = self.loop.settings
        mode = mode or cfg.prelabel_mode
        proba = clf.predict_proba(texts) if proba is None else proba
        strategy = cfg.al_strategy
        multilabel = bool(getattr(clf, "multilabel_", False))
        cold = cold_start(counts, [str(c) for c in clf.classes_], cfg.cold_start_min, multilabel)
        if cold:
            strategy = "random"
        label_index = list(clf.classes_).index(cfg.al_label) if cfg.al_label in clf.classes_ else None
        if strategy == "maxprob" and label_index is None:
            strategy = "least_confidence"
            logger.warning("AL_LABEL %r is not a class %s; using least_confidence", cfg.al_label, list(clf.classes_))
        batch = resolve_batch(cfg.al_batch, multilabel) if strategy not in ("random", "deterministic", "maxprob",
                                                                             "confident") else "top"
        common = {"texts": texts, "regex": cfg.al_regex or None, "multilabel": multilabel,
                  "seed": cfg.model_seed + len(texts), "counts": counts, "classes": [str(c) for c in clf.classes_],
                  "thresholds": list(clf.thresholds())}
        tag = "cold_start:random" if strategy == "random" and cfg.al_strategy != "random" else strategy
        tag += f"+{batch}" if batch != "top" else ""
        tag += f"[{cfg.al_regex}]" if cfg.al_regex else ""
        n_learn = n if cold or mode == "learn" else (0 if mode == "review" else (n + 1) // 2)
        learn, _ = query(proba, n_learn, strategy, label_index=label_index, batch=batch, **common) if n_learn \
            else (np.zeros(0, dtype=int), None)
        picks, tags = [int(i) for i in learn], [tag] * len(learn)
        if n_learn < n:
            review_tag = REVIEW_TAG + (f"[{cfg.al_regex}]" if cfg.al_regex else "")
            taken = set(picks)
            ranked, _ = query(proba, min(len(texts), n + len(taken)), "confident", batch="top", **common)
            sure = [int(i) for i in ranked if int(i) not in taken][:n - len(picks)]
            if mode == "mixed":  # alternate, so the annotator meets both kinds from the start of the batch
                order = [x for pair in zip(picks, sure) for x in pair] + picks[len(sure):] + sure[len(picks):]
                tags = [tag if i in taken else review_tag for i in order]
                picks = order
            else:
                picks, tags = sure, [review_tag] * len(sure)
            tag = review_tag if mode == "review" else f"mixed:{tag}"
        idx = np.asarray(picks, dtype=int)
        return Choice(idx, np.asarray([proba[i] for i in idx]).reshape(len(idx), -1), tag, tags)

    def prelabel(self, project_id: int, version_id: int) -> int:
        """Upload PRELABEL_K documents chosen by the strategy, with the champion's label and probability. Returns
        how many the platform took."""
        cfg = self.loop.settings
        clf = self.loop.classifier(project_id, version_id)
        platform, ref = self.loop.project(project_id)
        with self.loop.store.session() as s:
            version = s.get(ModelVersion, version_id).version
            current = current_labels(s, project_id)
            labelled = {d.id for d, _, _ in current}
            # a document where a person's save was caught by an upload is left to people from then on
            labelled |= set(s.scalars(select(Upload.document_id).where(Upload.project_id == project_id,
                                                                       Upload.overwrote.is_not(None))))
            counts = class_counts(json.loads(v) for d, v, _ in current if not d.is_test)
            pool = [d for d in s.scalars(select(Document).where(
                Document.project_id == project_id, Document.platform_id.is_not(None),
                Document.is_test.is_not(True))) if d.id not in labelled]
            docs = [(d.id, d.text) for d in pool]
            keys = {d.id: d.platform_id for d in pool}  # document row -> platform id
            known_hashes = set(s.scalars(select(Document.text_hash).where(Document.project_id == project_id,
                                                                          Document.platform_id.is_not(None))))
            imported = [d.text for d in s.scalars(select(Document).where(  # scripts.cli import, not uploaded yet
                Document.project_id == project_id, Document.platform_id.is_(None), Document.source == "corpus"))
                if d.id not in labelled]
            done = set(s.scalars(select(Upload.document_id).where(Upload.model_version_id == version_id)))
            shown_full = self._shown(s, project_id, labelled)
            shown = {d: v for d, (v, _, _) in shown_full.items()}
        corpus = [t for t in dict.fromkeys(imported + self.corpus_texts()) if text_hash(t) not in known_hashes
                  ] if platform.can_create_documents else []  # elsewhere: import into the platform's project
        texts = [t for _, t in docs] + corpus
        if not texts:
            logger.info("%s/%s: nothing left to pre-label", ref.owner, ref.name)
            return 0
        # room for documents that already show the suggestion they would get (skipped below, not re-uploaded)
        extra = min(len(shown), cfg.prelabel_k)
        proba = self._pool_proba(clf, project_id, version_id, docs, corpus)
        choice = self.choose(clf, texts, cfg.prelabel_k + extra, counts, proba=proba)
        chosen, chosen_proba, strategy = choice.idx, choice.proba, choice.tag
        why = {int(i): t for i, t in zip(choice.idx, choice.tags)}  # each pick's own tag (mixed batches)
        # random documents for the quality estimate (model/estimate.py), first in the batch: drawn uniformly from the
        # pool, never by active learning; a cold start's random picks are such documents too
        audit = self.draw_audit(project_id, version, len(docs), strategy, cfg.prelabel_k)
        if audit:
            chosen = np.concatenate([np.asarray(audit, dtype=int), [i for i in chosen if i not in set(audit)]])
            chosen_proba = proba[chosen]
        if strategy.startswith("cold_start:random") or strategy == "random":
            audit = [i for i in chosen[:cfg.prelabel_k] if i < len(docs)]
        self.mark_audit([docs[i][0] for i in audit])
        scheme = self.loop.ingest.scheme(project_id)
        ours: dict[str, tuple[int, Suggestion]] = {}  # platform doc id -> (document row, suggestion)

        def stored(value: Any) -> str:  # a suggestion's value as the store keeps it (uploads, labels)
            return dumps_value(value if isinstance(value, list) else class_value(value, scheme.type))

        tags: dict[str, str] = {}  # platform doc id -> how it was chosen

        def record(uploaded: Sequence[Suggestion], before: Mapping[str, tuple[Any, str]] | None = None) -> None:
            before = before or {}  # at once: a retried job skips what is done
            with self.loop.store.session() as s:
                s.add_all([Upload(project_id=project_id, document_id=ours[u.doc_id][0], model_version_id=version_id,
                                  value=stored(u.value), prob=u.prob, strategy=tags[u.doc_id],
                                  read_at=before.get(u.doc_id, (None, None))[0],
                                  replaced=before.get(u.doc_id, (None, None))[1]) for u in uploaded])

        if platform.queues_pool:  # every pool document carries the suggestion; the platform's queue orders them
            drawn = set(audit)
            picked = {int(i): "audit:random" if i in drawn else why.get(int(i), strategy)
                      for i in chosen[:cfg.prelabel_k]}  # the batch's kinds of pick; the rest of the pool: POOL_TAG
            for j, (doc_id, _) in enumerate(docs):
                sug = self.suggestion(clf, "", proba[j])
                tag = picked.get(j, POOL_TAG)
                before = shown_full.get(doc_id)
                if doc_id in done or (before is not None and before[0] == stored(sug.value)
                                      and abs(before[1] - sug.prob) < SCORE_STEP
                                      and (tag != "audit:random" or before[2] == tag)):
                    continue  # the task shows this suggestion already (or this job uploaded it before a retry)
                ours[keys[doc_id]] = (doc_id, replace(sug, doc_id=keys[doc_id]))
                tags[keys[doc_id]] = tag
            pending = self._saves_pending(project_id)
            n = platform.upload_queue(ref, scheme, [sug for _, sug in ours.values()], mode=cfg.prelabel_mode,
                                      audit={k for k, t in tags.items() if t == "audit:random"},
                                      still_wanted=lambda key: key not in pending, uploaded=record)
            logger.info("%s project %s/%s: %d of %d pool suggestions changed with v%d and were written (%s)",
                        platform.name, ref.owner, ref.name, n, len(docs), version, strategy)
            return n
        kept = 0  # this version's pre-labels, done by an earlier try of this job included
        for i, row in zip(chosen, chosen_proba):
            if kept >= cfg.prelabel_k:
                break
            sug = self.suggestion(clf, "", row)
            if i < len(docs):
                doc_id = docs[i][0]
                if doc_id in done:
                    kept += 1  # a retried job does not upload twice, nor instead of what it did
                    continue
                if shown.get(doc_id) == stored(sug.value):
                    continue  # the annotator already sees this suggestion: a re-upload only risks their work
                key = keys[doc_id]
            else:
                doc_id, key = self._create_corpus_document(project_id, texts[i])
            ours[key] = (doc_id, replace(sug, doc_id=key))
            tags[key] = "audit:random" if i in audit else why.get(int(i), strategy)
            kept += 1

        n = platform.upload_prelabels(ref, scheme, [sug for _, sug in ours.values()], version,
                                      lambda key: not self._save_pending(project_id, key), record)
        logger.info("%s project %s/%s: %d pre-labels from v%d (%s)", platform.name, ref.owner, ref.name, n, version,
                    strategy)
        return n

    def mark_audit(self, document_ids: Sequence[int]) -> None:
        """Mark documents as drawn at random for the quality estimate (``Document.audit``)."""
        if document_ids:
            with self.loop.store.session() as s:
                s.execute(update(Document).where(Document.id.in_(list(document_ids))).values(audit=True))

    def draw_audit(self, project_id: int, version: int, pool: int, strategy: str, k: int) -> list[int]:
        """Indices (of ``pool`` documents) drawn uniformly at random for the quality estimate: AUDIT_SHARE of a
        batch of ``k``, rounded at random so that the share holds on average (0.1 of 5 documents: one every other
        batch). Not more at the start: drawing half of each batch at random until 30 random documents were
        labelled (so the interval and the calibration's weights came early) made the estimate worse on AG News with
        margin selection (bench.learning_curves, seed 42: 0.05-0.09 under the truth from 300 labels, its interval
        holding 2 times in 10, against 1.00 without), and cost SMS labels to the target (500 against 200).
        None during a random cold start (every pick is random) or under a regex filter (not the whole pool)."""
        cfg = self.loop.settings
        if not pool or cfg.audit_share <= 0 or cfg.al_regex or strategy.startswith("cold_start:random") \
                or strategy == "random":
            return []
        rng = np.random.default_rng([project_id, version, pool])
        want = cfg.audit_share * k
        n = min(pool, int(want) + int(rng.uniform() < want - int(want)))
        return sorted(rng.choice(pool, size=n, replace=False).tolist()) if n else []

    def _pool_proba(self, clf: Any, project_id: int, version_id: int, docs: Sequence[tuple[int, str]],
                    extra: Sequence[str]) -> np.ndarray:
        """The champion's probabilities of ``docs``, then of the ``extra`` texts: what ``score_pool`` stored for this
        version is read back (rounded to 6 decimals, as stored), only the rest is predicted, so a round passes over
        the pool once, not twice."""
        classes = [str(c) for c in clf.classes_]
        with self.loop.store.session() as s:
            stored = dict(s.execute(select(Prediction.document_id, Prediction.proba).where(
                Prediction.project_id == project_id, Prediction.model_version_id == version_id)).all())
        out = np.zeros((len(docs) + len(extra), len(classes)))
        todo: list[int] = []
        for j, (doc_id, _) in enumerate(docs):
            p = stored.get(doc_id) or {}
            if [str(c) for c in p.get("classes") or []] == classes and len(p.get("p") or []) == len(classes):
                out[j] = p["p"]
            else:
                todo.append(j)
        todo += range(len(docs), len(docs) + len(extra))
        if todo:
            texts = [t for _, t in docs] + list(extra)
            out[todo] = clf.predict_proba([texts[j] for j in todo])
        return out

    @staticmethod
    def _shown(s: Any, project_id: int, labelled: set[int]) -> dict[int, tuple[str, float, str | None]]:
        """document id -> (value, probability, tag) of prelabel's latest upload, for unlabelled documents (what
        they show now)."""
        rows = s.execute(select(Upload.document_id, Upload.value, Upload.prob, Upload.strategy)
                         .where(Upload.project_id == project_id).order_by(Upload.id)).all()
        return {d: (v, p, t) for d, v, p, t in rows if d not in labelled}

    def _saves_pending(self, project_id: int) -> set[str]:
        """Platform ids of documents whose save waits in our queue (``_save_pending`` for a whole pool at once)."""
        with self.loop.store.session() as s:
            return set(s.scalars(select(Event.doc_id).where(Event.project_id == project_id,
                                                            Event.state.in_(("queued", "processing")))))

    @staticmethod
    def suggestion(clf: Any, key: str, row: np.ndarray) -> Suggestion:
        """The champion's pre-label of one document from its probabilities."""
        if getattr(clf, "multilabel_", False):  # every class: set or not, with its own probability
            marks = tuple((str(c), bool(p >= t), float(p if p >= t else 1.0 - p))
                          for c, p, t in zip(clf.classes_, row, clf.thresholds()))
            prob = float(np.mean([m[2] for m in marks])) if marks else 0.5
            return Suggestion(key, sorted(c for c, on, _ in marks if on), prob, marks)
        k = int(np.argmax(row))
        return Suggestion(key, str(clf.classes_[k]), float(row[k]))

    def _save_pending(self, project_id: int, docid: str) -> bool:
        """A save of this document waits in our queue: a person just touched it, leave it alone."""
        with self.loop.store.session() as s:
            return s.scalar(select(Event.id).where(Event.project_id == project_id, Event.doc_id == docid,
                                                   Event.state.in_(("queued", "processing"))).limit(1)) is not None

    def _create_corpus_document(self, project_id: int, text: str) -> tuple[int, str]:
        """Upload a corpus sample as a new platform document, exactly once even if the job is retried: the
        row is written first under a deterministic filename, which finds the document after a crash."""
        h = text_hash(text)
        filename = f"prelabel-{h[:16]}.txt"
        with self.loop.store.session() as s:
            doc = s.scalar(select(Document).filter_by(project_id=project_id, text_hash=h, source="corpus"))
            if doc is None:
                doc = Document(project_id=project_id, platform_id=None, filename=filename, text=text, text_hash=h,
                               source="corpus")
                s.add(doc)
                s.flush()
            doc_id = doc.id
            if doc.platform_id:
                return doc_id, doc.platform_id
        platform, ref = self.loop.project(project_id)
        docid = platform.create_document(ref, text, filename)
        with self.loop.store.session() as s:
            s.get(Document, doc_id).platform_id = docid
        return doc_id, docid
