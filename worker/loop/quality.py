"""What the loop tells people about its models, and the evidence behind a promotion: the gate (a candidate replaces
the champion unless the labels the champion never saw show it is worse), the fixed stop set and the stopping
signal every trained model feeds (model/stopping.py), and the estimate of the model's score on the whole pool
(model/estimate.py).
"""
from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from model.names import plain
from model.selection import Candidate
from storage import Document, ModelVersion, Project, current_labels

if TYPE_CHECKING:
    from . import Loop

logger = logging.getLogger(__name__)
GATE_MIN_NEW = 10  # labels the champion never saw before their scores are compared (the sign test needs none)


class Quality:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    def stop_set_proba(self, project_id: int, model: Any) -> tuple[list[str], np.ndarray, set[str]]:
        """The fixed stop set's document keys (model/stopping.stop_set), ``model``'s probabilities on them, and
        which of them are unlabelled now."""
        from model.stopping import stop_set  # noqa: PLC0415

        with self.loop.store.session() as s:
            where = (Document.project_id == project_id, Document.platform_id.is_not(None),
                     Document.is_test.is_not(True))
            # ids first, texts of the chosen ones only: the pool's texts are not read every round
            keys = stop_set(s.scalars(select(Document.platform_id).where(*where)), self.loop.settings.stop_set)
            texts = dict(s.execute(select(Document.platform_id, Document.text).where(
                *where, Document.platform_id.in_(keys))).all()) if keys else {}
            labelled = {d.platform_id for d, _, _ in current_labels(s, project_id)}
        proba = model.predict_proba([texts[k] for k in keys]) if keys else np.zeros((0, len(model.classes_)))
        return keys, proba, {k for k in keys if k not in labelled}

    def population(self, project_id: int, keys: list[str]) -> tuple[np.ndarray, int]:
        """Which of the labels ``keys`` are random (audit) documents, and how many documents the unlabelled pool
        holds (platform documents outside the test folder, less the labelled ones)."""
        with self.loop.store.session() as s:
            audit = set(s.scalars(select(Document.platform_id).where(Document.project_id == project_id,
                                                                     Document.audit.is_(True))))
            n_docs = s.scalar(select(func.count()).select_from(Document).where(
                Document.project_id == project_id, Document.platform_id.is_not(None), Document.is_test.is_not(True)))
        return np.array([k in audit for k in keys], dtype=bool), max(0, int(n_docs or 0) - len(keys))

    def estimate(self, project_id: int, c: Candidate, keys: list[str], ys: list[Any], stop_keys: list[str],
                 stop_proba: np.ndarray, unlabelled: set[str], audit: np.ndarray, n_pool: int) -> dict[str, Any]:
        """The candidate's estimated scores on the corpus (model/estimate.py): on the labels, its out-of-fold
        predictions; on the pool (``n_pool`` documents), its expectation on the stop set's unlabelled documents,
        corrected by its out-of-fold predictions on the random (``audit``) labels."""
        from model.estimate import estimate  # noqa: PLC0415
        from model.evaluate import positive_class  # noqa: PLC0415

        rows = np.flatnonzero(audit)
        pool_rows = [i for i, k in enumerate(stop_keys) if k in unlabelled]
        model = c.model
        return estimate(stop_proba[pool_rows], c.oof[rows], [ys[i] for i in rows], list(model.classes_),
                        multilabel=bool(getattr(model, "multilabel_", False)), thresholds=list(model.thresholds()),
                        positive=positive_class(model.classes_), labelled_proba=c.oof, labelled_y=ys,
                        n_pool=n_pool if pool_rows else 0, seed=project_id)

    def suspects(self, project_id: int, c: Candidate, keys: list[str], ys: list[Any], version: int | None) -> int:
        """The labels the round's chosen candidate, out of fold, confidently disagrees with (model/suspects.py),
        stored most likely wrong first; a label re-confirmed since it was listed stays off the list. Returns how
        many are listed."""
        from model.suspects import find  # noqa: PLC0415 - cleanlab, in the worker only

        model = c.model
        multilabel = bool(getattr(model, "multilabel_", False))
        found = find(c.oof, ys, list(model.classes_), multilabel=multilabel,
                     thresholds=list(model.thresholds()) if multilabel else None)
        with self.loop.store.session() as s:
            current, by_key = {}, {}
            for d, v, lid in current_labels(s, project_id):
                current[d.id] = (lid, v)
                by_key[d.platform_id or d.text_hash] = d.id

        def cell(value: Any) -> str:
            return json.dumps(list(value) if isinstance(value, tuple) else value)

        rows = []
        for x in found:
            doc = by_key.get(keys[x.row])
            if doc is None:  # relabelled or deleted while the round trained: judged next round
                continue
            lid, stored = current[doc]
            rows.append({"document_id": doc, "label_id": lid, "given": stored, "predicted": cell(x.predicted),
                         "probability": x.probability, "quality": x.quality})
        return self.loop.store.replace_suspects(project_id, version, rows, current)

    def record_stop(self, project_id: int, model: Any, stop_keys: list[str], stop_proba: np.ndarray, version: int,
                    status: str, labels: int) -> dict[str, Any] | None:
        """The stopping signal's step (model/stopping.py): when ``labels`` reached STOP_GROWTH times the last
        step's, ``model`` (the round's chosen one, promoted or not) decided the fixed stop set (``stop_proba``), and
        Cohen's kappa with the last step's decisions there is appended to ``schedule["stability"]``. Returns the
        entry, or None when this round is no step (models a label or two apart always agree: with RETRAIN_EVERY=1
        that would light the sign at STOP_MIN_LABELS)."""
        from model.stopping import HISTORY, compare, is_step  # noqa: PLC0415

        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            slug, history = p.slug, list((p.schedule or {}).get("stability", []))
        if not is_step(history, labels, self.loop.settings.stop_growth):
            return None
        saved = self.loop.settings.models_path / slug / "stop-set-decisions.json"  # the last trained model's
        try:
            before = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = {}
        decided = model.decide(stop_proba) if stop_keys else []
        after = {k: "|".join(sorted(map(str, v))) if isinstance(v, (list, tuple)) else str(v)
                 for k, v in zip(stop_keys, decided)}
        kappa, changed, compared = compare(before, after)
        entry = {"version": version, "status": status, "labels": labels,
                 "kappa": None if kappa is None else round(kappa, 6),
                 "changed": None if changed is None else round(changed, 6), "compared": compared}
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            schedule = dict(p.schedule or {})
            schedule["stability"] = (list(schedule.get("stability", [])) + [entry])[-HISTORY:]
            p.schedule = schedule
        saved.parent.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_suffix(".tmp")
        tmp.write_text(json.dumps(after), encoding="utf-8")
        os.replace(tmp, saved)  # whole or not at all
        return entry

    def gate(self, project_id: int, champion_id: int | None, c: Candidate, keys: list[str], ys: list[Any],
              n_labels: int) -> tuple[str, str]:
        """Promotion rule (model/selection.gate): a broken candidate (one class predicted while every class has
        labels) never serves; otherwise it replaces the champion unless the labels the champion never saw show it
        is worse (a sign test on the documents they disagree on, or a score far under the champion's there)."""
        from model.selection import gate, single_class  # noqa: PLC0415

        cfg = self.loop.settings
        key = cfg.primary_metric
        lone = single_class(c.model.decide(c.oof), ys)
        if lone is not None:
            return "rejected", (f"it predicts {lone!r} for every document although every class has at least 5 "
                                "labels: a broken fit never serves")
        if champion_id is None:
            return "champion", "first model"
        champion = self.loop.classifier(project_id, champion_id)
        if list(champion.classes_) != list(c.model.classes_):
            return "champion", f"label scheme changed ({plain(champion.classes_)} -> {plain(c.model.classes_)})"
        with self.loop.store.session() as s:
            mv = s.get(ModelVersion, champion_id)
            champ_version = mv.version
            through = int((mv.classes or {}).get("trained_through_label") or 0)
            champ_labels = mv.n_train + mv.n_holdout
            new = {d.platform_id or d.text_hash for d, _, lid in current_labels(s, project_id) if lid > through}
        rows = [i for i, k in enumerate(keys) if k in new]
        right_c: list[bool] = []
        right_h: list[bool] = []
        cand_new = champ_new = None
        if rows:
            texts = self.texts(project_id, [keys[i] for i in rows])
            champ_proba = champion.predict_proba(texts)
            champ_pred = champion.decide(champ_proba)
            cand_pred = c.model.decide(c.oof[rows])
            truth = [ys[i] for i in rows]
            right_c = [_same(p, t) for p, t in zip(cand_pred, truth)]
            right_h = [_same(p, t) for p, t in zip(champ_pred, truth)]
            if len(rows) >= GATE_MIN_NEW:  # the same labels for both: a score on fewer says little
                ids = [keys[i] for i in rows]
                cand_new = self.loop.fitting.scores(c.model, ids, truth, c.oof[rows], "new").get(key)
                champ_new = self.loop.fitting.scores(champion, ids, truth, champ_proba, "new").get(key)
        d = gate(key=key, candidate_new=cand_new, champion_new=champ_new, champion_version=champ_version,
                 candidate_right=right_c, champion_right=right_h, alpha=cfg.gate_alpha, max_drop=cfg.gate_max_drop,
                 more_labels=n_labels - champ_labels)
        return d.status, d.reason

    def texts(self, project_id: int, keys: list[str]) -> list[str]:
        rows = {k: t for k, t, _, _ in self.loop.training.training_rows(project_id)[0]}
        return [rows.get(k, "") for k in keys]


def _same(predicted: Any, truth: Any) -> bool:
    if isinstance(truth, tuple):
        return set(map(str, predicted)) == set(map(str, truth))
    return str(predicted) == str(truth)
