"""Cross-validation on demand: k folds of the champion's configuration on every train + validation label."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from model.names import classes_of
from storage import ModelVersion, Project

if TYPE_CHECKING:
    from . import Loop


class CrossValidation:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    def run(self, project_id: int, folds: int = 10, max_labels: int = 3000) -> dict[str, Any]:
        """k-fold cross-validation of the champion's configuration on every train + validation label (never the
        test set); stored on the champion version. Refused above ``max_labels``: each fold is a full fit."""
        from sklearn.model_selection import KFold, StratifiedKFold  # noqa: PLC0415

        from model.evaluate import evaluate, evaluate_multilabel  # noqa: PLC0415
        from model.factory import make_classifier  # noqa: PLC0415

        cfg = self.loop.settings
        training = self.loop.training
        rows = [r for r in training.training_rows(project_id, training.allowed_classes(project_id))[0] if not r[3]]
        if len(rows) > max_labels:
            raise ValueError(f"{len(rows)} labels: cross-validation is for small data (at most {max_labels})")
        ys = [y for _, _, y, _ in rows]
        multilabel = bool(ys) and isinstance(ys[0], tuple)
        classes = classes_of(ys)
        counts = {c: sum(c == y for y in ys) for c in classes} if not multilabel else {}
        if len(rows) < folds * 2 or len(classes) < 2 or (counts and min(counts.values()) < folds):
            raise ValueError(f"too few labels for {folds}-fold cross-validation ({len(rows)} labels, "
                             f"per class {counts or 'n/a'})")
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            champion = s.get(ModelVersion, p.champion_id) if p.champion_id else None
            family = champion.family if champion else cfg.families[0]
            members = (champion.params or {}).get("families") if family == "ensemble" else None
        splitter = KFold(folds, shuffle=True, random_state=cfg.model_seed) if multilabel else \
            StratifiedKFold(folds, shuffle=True, random_state=cfg.model_seed)
        scores = []
        t0 = time.perf_counter()
        for tr, te in splitter.split(np.zeros(len(rows)), None if multilabel else ys):
            clf = make_classifier(family, epochs=cfg.model_epochs, cell=cfg.model_cell, random_state=cfg.model_seed,
                                  checkpoint=cfg.bert_checkpoint, precision=cfg.encoder_dtype,
                                  **({"families": members} if members else {}))
            clf.fit([rows[i][1] for i in tr], [ys[i] for i in tr])
            x_te, y_te = [rows[i][1] for i in te], [ys[i] for i in te]
            m = (evaluate_multilabel(y_te, clf.predict(x_te), classes) if multilabel
                 else evaluate(y_te, clf.predict(x_te), classes))
            scores.append({k: m[k] for k in ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "mcc")})
        result = {"folds": folds, "family": family, "n_labels": len(rows), "dataset": "train+validation (k-fold)",
                  "seconds": round(time.perf_counter() - t0, 1),
                  **{f"{k}_mean": float(np.mean([s[k] for s in scores])) for k in scores[0]},
                  **{f"{k}_std": float(np.std([s[k] for s in scores])) for k in scores[0]}, "per_fold": scores}
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            if p.champion_id:
                s.get(ModelVersion, p.champion_id).cv = result
        return result

