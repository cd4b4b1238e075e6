"""Training: a retrain round on every current ground-truth label. The families due, one candidate each, their
ensemble, the choice within the round, the gate against the champion, and the version saved atomically.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from annotation_client import EventRejected, PlatformError, PlatformUnavailable
from model.evaluate import is_holdout
from model.factory import save_version
from model.names import class_name, class_value, classes_of, plain
from storage import Label, ModelVersion, Project, current_labels, utcnow

if TYPE_CHECKING:
    from . import Loop

logger = logging.getLogger(__name__)


class ModelWriteError(RuntimeError):
    """A trained version could not be written (disk full, database locked): nothing of it is visible, the
    champion is unchanged, and the message says what failed."""


@dataclass
class TrainResult:
    version_id: int
    version: int
    metrics: dict[str, Any]
    mode: str
    status: str  # champion | rejected
    champion_id: int | None  # the version in service after this run
    deferred: tuple[str, ...] = ()  # families due this round that train on their own queue (bert)


class Training:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    def allowed_classes(self, project_id: int) -> set[str] | None:
        """The classes the platform still defines (a removed enum option or multilabel label stops being trained
        on); None when it does not say, or cannot be reached."""
        try:
            scheme = self.loop.ingest.scheme(project_id, refresh=True)
            platform, ref = self.loop.project(project_id)
            return platform.allowed_classes(ref, scheme)
        except (PlatformError, PlatformUnavailable, EventRejected) as exc:
            logger.warning("label definitions unavailable (%s); training on every label", exc)
            return None

    def training_rows(self, project_id: int, allowed: set[str] | None = None
                       ) -> tuple[list[tuple[str, str, Any, bool]], int]:
        """(document key, text, class, is_test) of every current ground-truth label, and the last label id.
        The class is a name, or a tuple of names for a multilabel scheme. Classes not ``allowed`` (None = all)
        are left out: a single-label row is dropped, a multilabel row loses that label."""
        with self.loop.store.session() as s:
            rows = current_labels(s, project_id)
            max_label = s.scalar(select(func.max(Label.id)).where(Label.project_id == project_id)) or 0
            out = []
            for d, v, _ in rows:
                value = json.loads(v)
                y: Any = tuple(value) if isinstance(value, list) else class_name(value)
                if allowed is not None:
                    if isinstance(y, tuple):
                        y = tuple(c for c in y if c in allowed)
                    elif y not in allowed:
                        continue
                out.append((d.platform_id or d.text_hash, d.text, y, bool(d.is_test)))
        return out, max_label

    def new_class_seen(self, project_id: int) -> bool:
        """True when a current label has a class the champion does not know (it extends the scheme)."""
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            if not p.champion_id:
                return False
            known = set((s.get(ModelVersion, p.champion_id).classes or {}).get("names", []))
        rows, _ = self.training_rows(project_id)
        return bool(set(classes_of([y for _, _, y, is_test in rows if not is_test])) - known)

    def ensemble_partners(self, family: str, exclude: Sequence[str] = ()) -> list[str]:
        """The listed families that train every round (quick by default): trained next to a deferred ``family`` so
        that the round can try their ensemble. None when ensembles are off."""
        every = self.loop.settings.family_every
        return [f for f in self.loop.settings.families if self.loop.settings.model_ensemble and f != family
                and f not in exclude and every.get(f, 1) == 1]

    def plateaued(self, schedule: dict[str, Any] | None) -> bool:
        """The champion's validation score gained less than PLATEAU_DELTA over the last PLATEAU_ROUNDS rounds.
        (The validation split grows with the labels, so this is a trend, not an exact comparison.)"""
        scores, n = (schedule or {}).get("scores", []), self.loop.settings.plateau_rounds
        return len(scores) > n and scores[-1] - scores[-1 - n] < self.loop.settings.plateau_delta

    def families_due(self, round_no: int, n_labels: int, schedule: dict[str, Any] | None = None) -> list[str]:
        """The families trained in this retrain round: each every FAMILY_EVERY-th round (default every round), a
        ``family:plateau`` one only while ``plateaued`` and at most once per PLATEAU_ROUNDS rounds; all of them
        in the first round, and always at least the first one listed. During cold start (fewer than
        COLD_START_LABELS labels) embed, the best with few labels, trains every round and comes first (wins ties)."""
        cfg = self.loop.settings
        fams = list(cfg.families)
        cold = n_labels < cfg.cold_start_labels and "embed" in fams
        trained = (schedule or {}).get("trained", {})

        def plateau_due(f: str) -> bool:
            return round_no == 1 or (self.plateaued(schedule)
                                     and round_no - int(trained.get(f, 0)) >= cfg.plateau_rounds)

        due = [f for f in fams if (plateau_due(f) if f in cfg.plateau_families
                                   else (round_no - 1) % cfg.family_every.get(f, 1) == 0)
               or (cold and f == "embed")]
        if cold:
            due = ["embed"] + [f for f in due if f != "embed"]
        return due or fams[:1]

    def train(self, project_id: int, families: Sequence[str] | None = None,
              defer: Sequence[str] = ()) -> TrainResult | None:
        """Train one candidate per due family (or per family of ``families``, outside the round count) on every
        current ground-truth label, score each on the validation split (and the test set), keep the best, and
        promote it only if it is not worse than the champion. Due families in ``defer`` are not trained here but
        returned in ``deferred`` (the caller queues them). None if there are too few labels."""
        from model.evaluate import evaluate, evaluate_multilabel, pick_best, positive_class  # noqa: PLC0415

        cfg = self.loop.settings
        self.loop.store.fail_orphan_versions(project_id)  # rows an earlier failed write left without files
        allowed = self.allowed_classes(project_id)
        data, max_label = self.training_rows(project_id, allowed)
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            label_type, slug, labels_at_full, champion_id = p.label_type, p.slug, p.labels_at_full_fit, p.champion_id
            round_no = (p.rounds or 0) + 1
            schedule = dict(p.schedule or {})
            champion_family = s.get(ModelVersion, champion_id).family if champion_id else None
        test = [(k, t, y) for k, t, y, is_test in data if is_test]
        pool = [(k, t, y) for k, t, y, is_test in data if not is_test]
        classes = classes_of([y for _, _, y in pool])
        if len(pool) < cfg.min_labels or len(classes) < 2:
            logger.info("project %s: %d labels in %d classes; waiting for %d labels in 2+ classes", slug, len(pool),
                        len(classes), cfg.min_labels)
            return None
        train = [r for r in pool if not is_holdout(r[0], cfg.holdout_fraction)]
        val = [r for r in pool if is_holdout(r[0], cfg.holdout_fraction)]
        if len(classes_of([y for _, _, y in train])) < 2:  # tiny data: every class must be seen in training
            train, val = pool, []
        if missing := set(classes) - set(classes_of([y for _, _, y in train])):
            # a rare class whose every document fell in the validation split: train on those documents, or the
            # model can neither learn it nor be promoted (GoEmotions in bench.learning_curves)
            moved = [r for r in val if missing & set(r[2] if isinstance(r[2], tuple) else (r[2],))]
            train, val = train + moved, [r for r in val if r not in moved]
        x_tr, y_tr = [t for _, t, _ in train], [y for _, _, y in train]
        validation = ([t for _, t, _ in val], [y for _, _, y in val]) if val else None
        warm_ok = bool(champion_id and len(pool) >= cfg.warm_min_labels
                       and len(pool) < cfg.full_refit_growth * max(labels_at_full, 1))

        def score(rows: list[tuple[str, str, Any]], model: Any, dataset: str,
                  proba: np.ndarray | None = None) -> dict[str, Any]:
            texts = [t for _, t, _ in rows]
            if proba is None:
                proba = model.predict_proba(texts) if rows else None
            ids, y = [k for k, _, _ in rows], [y for _, _, y in rows]
            pred = model.decide(proba) if rows else []
            if getattr(model, "multilabel_", False):
                return evaluate_multilabel(y, pred, model.classes_, proba=proba, ids=ids, dataset=dataset)
            return evaluate(y, pred, model.classes_, positive_class(model.classes_), proba=proba, ids=ids,
                            dataset=dataset)

        due = list(families) if families is not None else self.families_due(round_no, len(pool), schedule)
        deferred = tuple(f for f in due if f in defer)
        round_families = list(due)
        due = [f for f in due if f not in defer]
        if not due:
            if families is None:
                self._end_round(project_id, round_no, round_families, champion_id if not deferred else None)
            return TrainResult(0, 0, {}, "", "deferred", champion_id, deferred)
        candidates, failed, val_proba = [], [], []
        for family in due:
            t0 = time.perf_counter()
            try:
                clf, mode = self._fit_family(family, x_tr, y_tr, validation,
                                             champion_id if warm_ok and family == champion_family else None)
            except (ValueError, InterruptedError, ImportError) as exc:  # e.g. texts with nothing to learn from,
                # or the keras-hub packages missing for hybrid/embed/bert: the others go on
                note = f"{exc}; install requirements-bert.txt" if isinstance(exc, ImportError) else str(exc)
                logger.warning("project %s: %s could not train: %s", slug, family, note)
                failed.append(f"{family} could not train ({note})")
                continue
            proba = clf.predict_proba(validation[0]) if validation is not None else None
            if validation is not None:  # multilabel: per-label cut-offs from held-out data (no-op otherwise)
                clf.tune_thresholds(*validation, proba=proba)
            seconds = time.perf_counter() - t0
            candidates.append((family, clf, mode, seconds, score(val, clf, "validation", proba)))
            val_proba.append(proba)
        if not candidates:
            raise ValueError("; ".join(failed))
        key = cfg.primary_metric
        ensemble_note = ""
        if cfg.model_ensemble and len(candidates) > 1 and validation is not None:
            ensemble, ensemble_note = self._ensemble(candidates, val_proba, val, validation[1], score, key)
            if ensemble is not None:
                candidates.append(ensemble)
        best = pick_best([c[4].get(key) for c in candidates], cfg.selection_margin)
        now_classes = classes_of([y for _, _, y, is_test in self.training_rows(project_id, allowed)[0]
                                  if not is_test])
        result = None
        for i, (family, clf, mode, seconds, metrics) in enumerate(candidates):
            # the classes when training began, not the model's (a class seen only in validation is no new scheme)
            if now_classes != classes:
                status = "rejected"
                reason = f"the label scheme changed while training ({classes} -> {now_classes}); retraining"
                self.loop.store.request_retrain(project_id)
            elif i != best:
                b = candidates[best]
                mine, theirs = metrics.get(key) or 0.0, b[4].get(key) or 0.0
                status, reason = "rejected", (
                    f"{family} {key} {mine:.4f} < {b[0]}'s {theirs:.4f} in the same round" if mine < theirs else
                    f"{family} {key} {mine:.4f} is within SELECTION_MARGIN {cfg.selection_margin} of {b[0]}'s "
                    f"{theirs:.4f} in the same round, and {b[0]} comes first")
            else:
                status, reason = self._gate(project_id, champion_id, clf, val, metrics, score)
                if len(candidates) > 1:
                    reason = f"best of {', '.join(c[0] for c in candidates)} this round; {reason}"
                if failed:
                    reason = f"{reason}; {'; '.join(failed)}"
                if ensemble_note:
                    reason = f"{reason}; {ensemble_note}"
            r = self._save_candidate(project_id, slug, clf, mode, status, reason, metrics,
                                     score(test, clf, "test") if test else {}, train, val, test, max_label,
                                     seconds, label_type, pool)
            if i == best or result is None:
                result = r
        if families is None:
            self._end_round(project_id, round_no, round_families, champion_id if not deferred else None)
        return replace(result, deferred=deferred)

    def _end_round(self, project_id: int, round_no: int, families: Sequence[str], kept: int | None = None) -> None:
        """Count the round; note the champion's validation score and which families it trained (plateau rule).
        When the champion is still ``kept`` (the version in service before the round), the pool's predictions did
        not change: the stopping signal records 0 (a new champion's change is recorded when it scores the pool)."""
        key = self.loop.settings.primary_metric
        labels = sum(not r[3] for r in self.training_rows(project_id)[0]) if kept is not None else 0
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            if kept is not None and p.champion_id == kept:
                champion = s.get(ModelVersion, kept)
                self.loop.prelabels.record_stability(s, project_id, champion.version, labels, 0.0, None)
            p.rounds = round_no
            schedule = dict(p.schedule or {})
            champion = s.get(ModelVersion, p.champion_id) if p.champion_id else None
            if champion is not None and (champion.metrics or {}).get(key) is not None:
                schedule["scores"] = (list(schedule.get("scores", [])) + [float(champion.metrics[key])])[-20:]
            schedule["trained"] = {**schedule.get("trained", {}), **{f: round_no for f in families}}
            p.schedule = schedule

    def _ensemble(self, candidates: list[tuple[Any, ...]], val_proba: list[np.ndarray], val: list[Any],
                  y_val: list[Any], score: Callable[..., dict[str, Any]], key: str) -> tuple[tuple[Any, ...] | None, str]:
        """The round's best ensemble (mean probabilities of 2+ candidates, the subset chosen on validation) as
        one more candidate, only when it beats every single one; else None and a note of its score."""
        from model.ensemble import best_ensemble  # noqa: PLC0415

        classes = [list(c[1].classes_) for c in candidates]
        if any(c != classes[0] for c in classes):
            return None, ""
        ens, subset, proba = best_ensemble([c[1] for c in candidates], val_proba, [t for _, t, _ in val], y_val,
                                           lambda m, p: score(val, m, "validation", p).get(key) or 0.0)
        metrics = score(val, ens, "validation", proba)
        names = "+".join(candidates[i][0] for i in subset)
        single = max((c[4].get(key) or 0.0) for c in candidates)
        if (metrics.get(key) or 0.0) <= single + self.loop.settings.selection_margin:
            return None, (f"ensemble {names} {key} {metrics.get(key) or 0.0:.4f} is not above the best single "
                          f"model's {single:.4f} + SELECTION_MARGIN")
        return ("ensemble", ens, "full", sum(candidates[i][3] for i in subset), metrics), ""

    def _allocate_version(self, project_id: int, clf: Any, mode: str, reason: str, seconds: float) -> tuple[int, int]:
        """The next version number, taken by inserting its row: two workers saving at once (the bert queue and
        the main one) get different numbers."""
        for _ in range(10):
            try:
                with self.loop.store.session() as s:
                    version = (s.scalar(select(func.max(ModelVersion.version))
                                        .where(ModelVersion.project_id == project_id)) or 0) + 1
                    # "saving" until its files and record are written: never mistaken for a gated candidate
                    mv = ModelVersion(project_id=project_id, version=version, family=clf.family, mode=mode, path="",
                                      train_seconds=seconds, status="saving", reason=reason)
                    s.add(mv)
                    s.flush()
                    return version, mv.id
            except IntegrityError:
                continue
        raise RuntimeError(f"could not allocate a model version for project {project_id}")

    def _fit_family(self, family: str, x_tr: list[str], y_tr: list[Any], validation: Any,
                    warm_from: int | None) -> tuple[Any, str]:
        """A fitted candidate of ``family``: warm (the champion's copy trained further) or full."""
        from model.factory import make_classifier  # noqa: PLC0415

        cfg = self.loop.settings
        if warm_from is not None:
            clf = self.loop.load_copy(warm_from)  # never train the champion in place: the candidate may lose
            if list(clf.classes_) == classes_of(y_tr):
                clf.refit(x_tr, y_tr, epochs=cfg.warm_epochs, lr_factor=cfg.warm_lr_factor, validation=validation)
                return clf, "warm"
        clf = make_classifier(family, epochs=cfg.model_epochs, cell=cfg.model_cell, random_state=cfg.model_seed,
                              checkpoint=cfg.bert_checkpoint)
        clf.fit(x_tr, y_tr, validation=validation)
        return clf, "full"

    def _save_candidate(self, project_id: int, slug: str, clf: Any, mode: str, status: str,
                        reason: str, metrics: dict[str, Any], test_metrics: dict[str, Any], train: list[Any],
                        val: list[Any], test: list[Any], max_label: int, seconds: float, label_type: str | None,
                        pool: list[Any]) -> TrainResult:
        multilabel = bool(getattr(clf, "multilabel_", False))
        history = getattr(clf, "history_", {})
        meta = {"family": clf.family, "version": 0, "mode": mode, "status": status, "reason": reason,
                "classes": list(clf.classes_), "multilabel": multilabel,
                "label_values": list(clf.classes_) if multilabel else [class_value(c, label_type) for c in clf.classes_],
                "label_type": label_type, "params": clf.get_params(), "metrics": metrics, "test_metrics": test_metrics,
                "estimator": getattr(clf, "estimator_", None),  # e.g. why quick fell back to logistic regression
                "history": history, "n_train": len(train), "n_validation": len(val), "n_test": len(test),
                "trained_through_label": max_label, "train_seconds": seconds, "trained_at": utcnow().isoformat() + "Z"}
        version, version_id = self._allocate_version(project_id, clf, mode, reason, seconds)
        meta["version"] = version
        try:
            folder = save_version(clf, self.loop.settings.models_path / slug, f"v{version}", meta)
        except OSError as exc:  # disk full, read-only volume...: nothing half-written stays (save_version)
            reason = f"its files could not be written: {exc.strerror or exc}"
            self._fail_quietly(version_id, reason)
            raise ModelWriteError(f"project {slug}: v{version} {reason}; the champion is unchanged") from exc
        try:
            self._record_saved(project_id, version_id, folder, clf, mode, status, metrics, test_metrics, history,
                               multilabel, label_type, train, val, max_label, pool)
        except Exception as exc:  # e.g. the database is locked: the files must not outlive their row
            shutil.rmtree(folder, ignore_errors=True)
            self._fail_quietly(version_id, f"its record could not be written: {exc}")
            cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error ("database is locked")
            raise ModelWriteError(f"project {slug}: v{version} could not be recorded ({type(cause).__name__}: "
                                  f"{str(cause).splitlines()[0][:200]}); the champion is unchanged") from exc
        with self.loop.store.session() as s:
            champion_id = s.get(Project, project_id).champion_id
        if status == "champion":
            self.loop.store.promote(project_id, version, reason)
            self.loop.keep_model(project_id, version_id, clf)
            champion_id = version_id
        logger.info("project %s: v%d %s (%s, %s) on %d labels in %.1fs; validation %d: %s %.3f; %s", slug, version,
                    clf.family, mode, status, len(train), seconds, len(val), self.loop.settings.primary_metric,
                    metrics.get(self.loop.settings.primary_metric) or 0.0, reason)
        return TrainResult(version_id, version, metrics, mode, status, champion_id)

    def _fail_quietly(self, version_id: int, reason: str) -> None:
        try:
            self.loop.store.fail_version(version_id, reason)
        except Exception:  # the database itself may be what failed; the next run's recovery marks the row
            logger.warning("could not mark version row %d failed (%s)", version_id, reason)

    def _record_saved(self, project_id: int, version_id: int, folder: Path, clf: Any, mode: str, status: str,
                      metrics: dict[str, Any], test_metrics: dict[str, Any], history: Any, multilabel: bool,
                      label_type: str | None, train: list[Any], val: list[Any], max_label: int,
                      pool: list[Any]) -> None:
        with self.loop.store.session() as s:
            mv = s.get(ModelVersion, version_id)
            mv.path, mv.params, mv.metrics, mv.test_metrics, mv.history = (str(folder), clf.get_params(), metrics,
                                                                           test_metrics, history)
            mv.classes = {"names": list(clf.classes_), "label_type": label_type, "multilabel": multilabel,
                          "thresholds": [float(t) for t in clf.thresholds()]}
            mv.n_train, mv.n_holdout = len(train), len(val)
            p = s.get(Project, project_id)
            p.trained_through_label = max(p.trained_through_label, max_label)
            if mode == "full":
                p.labels_at_full_fit = len(pool)
            mv.status = "rejected" if status == "rejected" else "candidate"  # champion: promote() follows

    def _gate(self, project_id: int, champion_id: int | None, clf: Any, val: list[tuple[str, str, str]],
              metrics: dict[str, Any], score: Callable[..., dict[str, Any]]) -> tuple[str, str]:
        """Promotion rule: compare the candidate and the champion on the **same** validation documents."""
        key, margin = self.loop.settings.primary_metric, self.loop.settings.promotion_margin
        if champion_id is None:
            return "champion", "first model"
        if not val:
            return "champion", "no validation documents yet: promoted without comparison"
        champion = self.loop.classifier(project_id, champion_id)
        if list(champion.classes_) != list(clf.classes_):
            return "champion", f"label scheme changed ({plain(champion.classes_)} -> {plain(clf.classes_)})"
        with self.loop.store.session() as s:
            champ_version = s.get(ModelVersion, champion_id).version
        champ = score(val, champion, "validation")[key]
        cand = metrics[key]
        where = f"on the same {len(val)} validation documents"
        if cand >= champ - margin:
            return "champion", f"{key} {cand:.4f} >= champion v{champ_version}'s {champ:.4f} - {margin} {where}"
        return "rejected", f"{key} {cand:.4f} < champion v{champ_version}'s {champ:.4f} - {margin} {where}"

