"""The project's map (model/corpus_map.py): every labelled document and a sample of the pool, placed by their
sentence embeddings, with the person label and the model's label of each (the champion's; for a label on the
round's list of likely wrong ones, the out-of-fold model's, so "disagreement" shows that list); computed once per
champion in the background (jobs.corpus_map) and stored, so the web process only reads it."""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from model.names import plain
from storage import CorpusMap, Document, ModelVersion, Project, current_labels, utcnow

if TYPE_CHECKING:
    from . import Loop

logger = logging.getLogger(__name__)
TEXT_SHOWN = 160  # characters of each document in the map's hover text


def _cell(value: Any) -> str:
    return plain(value) if isinstance(value, (list, tuple)) else str(value)


class Mapping:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    def compute(self, project_id: int, limit: int | None = None) -> int:
        """Draw and store the map for the project's champion; returns how many points it has (0: no champion, or
        the sentence encoder is not installed)."""
        from model.corpus_map import MAX_POINTS, project, sample  # noqa: PLC0415

        t0 = time.perf_counter()
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            if p is None or p.champion_id is None:
                return 0
            version = s.get(ModelVersion, p.champion_id).version
            champion_id = p.champion_id
            labelled = [(d.id, d.platform_id, d.text, json.loads(v)) for d, v, _ in current_labels(s, project_id)
                        if not d.is_test]
            seen = {d for d, *_ in labelled}
            pool = [(d.id, d.platform_id, d.text) for d in s.scalars(
                select(Document).where(Document.project_id == project_id, Document.platform_id.is_not(None)))
                if d.id not in seen]
        lab_idx, pool_idx = sample(len(labelled), len(pool), limit or MAX_POINTS, seed=project_id)
        rows = [(*labelled[i][:3], labelled[i][3]) for i in lab_idx] + [(*pool[i], None) for i in pool_idx]
        if not rows:
            return 0
        try:
            from model.embed import encoder_for  # noqa: PLC0415

            encoder = encoder_for(self.loop.settings.bert_checkpoint, precision=self.loop.settings.encoder_dtype)
        except ImportError as exc:  # the embed packages are optional: no map without them (noted once per champion)
            logger.warning("project %s: no map: %s (install requirements-bert.txt)", project_id, exc)
            self._store(project_id, version, [], 0.0, len(labelled) + len(pool))
            return 0
        texts = [r[2] for r in rows]
        xy = project(encoder.encode(texts), seed=project_id)
        clf = self.loop.classifier(project_id, champion_id)
        predicted = list(clf.decide(clf.predict_proba(texts)))
        # a labelled document's own model trained on it and agrees with its label: the out-of-fold view is the
        # round's list of labels a model that never saw them confidently disputes (model/suspects.py)
        _, disputed = self.loop.store.suspects(project_id, limit=10**6)
        other = {it["document_id"]: it["predicted"] for it in disputed}
        predicted = [other.get(r[0], p) if r[3] is not None else p for r, p in zip(rows, predicted)]
        points = [[round(float(x), 4), round(float(y), 4), doc, pid, None if lab is None else _cell(lab),
                   _cell(pred), text[:TEXT_SHOWN]]
                  for (x, y), (doc, pid, text, lab), pred in zip(xy, rows, predicted)]
        seconds = time.perf_counter() - t0
        self._store(project_id, version, points, seconds, len(labelled) + len(pool))
        logger.info("project %s: map of %d documents (of %d) for v%d in %.1fs", project_id, len(points),
                    len(labelled) + len(pool), version, seconds)
        return len(points)

    def _store(self, project_id: int, version: int, points: list[Any], seconds: float, n_documents: int) -> None:
        with self.loop.store.session() as s:
            m = s.get(CorpusMap, project_id) or CorpusMap(project_id=project_id)
            m.version, m.points, m.seconds, m.computed_at = version, points, round(seconds, 2), utcnow()
            m.n_documents = n_documents
            s.add(m)
