"""Training: a retrain round on every current ground-truth label. The families due, one candidate each, their
ensemble, the choice within the round, the gate against the champion, and the version saved atomically.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from annotation_client import EventRejected, PlatformError, PlatformUnavailable
from model.factory import save_version
from model.names import class_name, class_value, classes_of
from model.selection import Candidate
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
        """Train one candidate per due family (or per family of ``families``, outside the round count) by
        cross-fitting over every current ground-truth label (model/selection.py): out-of-fold predictions score,
        calibrate and compare the families and their ensemble on the same folds; the chosen one, fitted on every
        label and calibrated, replaces the champion unless the gate finds evidence it is worse. Due families in
        ``defer`` are not trained here but returned in ``deferred`` (the caller queues them). None if there are
        too few labels."""
        from model.estimate import corpus_weights  # noqa: PLC0415
        from model.selection import assign_folds, choose, fold_count  # noqa: PLC0415

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
        keys, texts, ys = [k for k, _, _ in pool], [t for _, t, _ in pool], [y for _, _, y in pool]
        folds = assign_folds(keys, ys, fold_count(ys, cfg.cv_folds))
        warm_ok = bool(champion_id and len(pool) >= cfg.warm_min_labels
                       and len(pool) < cfg.full_refit_growth * max(labels_at_full, 1))

        n_folds = int(folds.max()) + 1

        def score(model: Any, proba: np.ndarray) -> dict[str, Any]:
            return {**self.loop.fitting.scores(model, keys, ys, proba, "cross-validation"), "folds": n_folds}

        due = list(families) if families is not None else self.families_due(round_no, len(pool), schedule)
        deferred = tuple(f for f in due if f in defer)
        round_families = list(due)
        due = [f for f in due if f not in defer]
        if not due:
            if families is None:
                self._end_round(project_id, round_no, round_families)
            return TrainResult(0, 0, {}, "", "deferred", champion_id, deferred)
        candidates: list[Candidate] = []
        failed: list[str] = []
        audit, n_pool = self.loop.quality.population(project_id, keys)
        weights = corpus_weights(audit, n_pool)  # calibrated for where the scores are shown, not the hard labels
        from model.quick import shared_features  # noqa: PLC0415

        with shared_features() as shared:  # quick and hybrid: one TF-IDF fit per fold, not one per family
            for family in due:
                try:
                    candidates.append(self.loop.fitting.cross_fit(
                        family, texts, ys, folds, score,
                        champion_id if warm_ok and family == champion_family else None, weights))
                except (ValueError, InterruptedError, ImportError) as exc:  # e.g. texts with nothing to learn
                    # from, or the keras-hub packages missing for hybrid/embed/bert: the others go on
                    note = f"{exc}; install requirements-bert.txt" if isinstance(exc, ImportError) else str(exc)
                    logger.warning("project %s: %s could not train: %s", slug, family, note)
                    failed.append(f"{family} could not train ({note})")
        if shared["hits"]:
            logger.info("project %s: %d TF-IDF fit(s) shared between families", slug, shared["hits"])
        if not candidates:
            raise ValueError("; ".join(failed))
        key = cfg.primary_metric
        ensemble_note = ""
        if cfg.model_ensemble and len(candidates) > 1:
            ensemble, ensemble_note = self.loop.fitting.ensemble(candidates, texts, ys, score, key, weights)
            if ensemble is not None:
                candidates.append(ensemble)
        best = choose([c.score(key) for c in candidates], cfg.selection_margin)
        now_classes = classes_of([y for _, _, y, is_test in self.training_rows(project_id, allowed)[0]
                                  if not is_test])
        chosen_c = candidates[best]
        quality = self.loop.quality
        stop_keys, stop_proba, unlabelled = quality.stop_set_proba(project_id, chosen_c.model)
        chosen_c.metrics["estimate"] = quality.estimate(project_id, chosen_c, keys, ys, stop_keys, stop_proba,
                                                        unlabelled, audit, n_pool)
        result = None
        for i, c in enumerate(candidates):
            # the classes when training began, not the model's (a class seen only in validation is no new scheme)
            if now_classes != classes:
                status = "rejected"
                reason = f"the label scheme changed while training ({classes} -> {now_classes}); retraining"
                self.loop.store.request_retrain(project_id)
            elif i != best:
                b = candidates[best]
                mine, theirs = c.score(key), b.score(key)
                status, reason = "rejected", (
                    f"{c.family} cross-validated {key} {mine:.4f} < {b.family}'s {theirs:.4f} in the same round"
                    if mine < theirs else
                    f"{c.family} cross-validated {key} {mine:.4f} is within SELECTION_MARGIN {cfg.selection_margin} "
                    f"of {b.family}'s {theirs:.4f} in the same round, and {b.family} comes first")
            else:
                status, reason = self.loop.quality.gate(project_id, champion_id, c, keys, ys, len(pool))
                if len(candidates) > 1:
                    reason = f"best of {', '.join(x.family for x in candidates)} this round; {reason}"
                if failed:
                    reason = f"{reason}; {'; '.join(failed)}"
                if ensemble_note:
                    reason = f"{reason}; {ensemble_note}"
            r = self._save_candidate(project_id, slug, c, status, reason,
                                     self.loop.fitting.scores(c.model, [k for k, _, _ in test], [y for _, _, y in test], None,
                                                 "test", [t for _, t, _ in test]) if test else {},
                                     pool, test, max_label, label_type)
            if i == best or result is None:
                result = r
        if result is not None and result.version and now_classes == classes:
            quality.record_stop(project_id, chosen_c.model, stop_keys, stop_proba, result.version, result.status,
                                len(pool))
            try:  # a list for people to check; a failure here must not cost the round
                listed = quality.suspects(project_id, chosen_c, keys, ys, result.version)
                logger.info("project %s: %d label(s) likely wrong", slug, listed)
            except Exception:  # any failure: the round and its champion stand without the list
                logger.warning("project %s: the list of likely wrong labels failed", slug, exc_info=True)
        if families is None:
            self._end_round(project_id, round_no, round_families)
        self.prune(project_id)
        return replace(result, deferred=deferred)

    def prune(self, project_id: int) -> int:
        """Delete the files of old rejected and retired versions (KEEP_REJECTED, KEEP_REJECTED_HOURS,
        KEEP_RETIRED); their rows stay. Returns how many were pruned."""
        cfg = self.loop.settings
        gone = self.loop.store.prune_versions(project_id, cfg.keep_rejected, cfg.keep_rejected_hours,
                                              cfg.keep_retired)
        for _, folder in gone:
            shutil.rmtree(folder, ignore_errors=True)
        if gone:
            logger.info("project %s: files of %s pruned", project_id, ", ".join(f"v{v}" for v, _ in gone))
        return len(gone)

    def _end_round(self, project_id: int, round_no: int, families: Sequence[str]) -> None:
        """Count the round; note the champion's cross-validated score and which families it trained (plateau
        rule)."""
        key = self.loop.settings.primary_metric
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            p.rounds = round_no
            schedule = dict(p.schedule or {})
            champion = s.get(ModelVersion, p.champion_id) if p.champion_id else None
            if champion is not None and (champion.metrics or {}).get(key) is not None:
                schedule["scores"] = (list(schedule.get("scores", [])) + [float(champion.metrics[key])])[-20:]
            schedule["trained"] = {**schedule.get("trained", {}), **{f: round_no for f in families}}
            p.schedule = schedule

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

    def _save_candidate(self, project_id: int, slug: str, c: Candidate, status: str, reason: str,
                        test_metrics: dict[str, Any], pool: list[Any], test: list[Any], max_label: int,
                        label_type: str | None) -> TrainResult:
        clf, mode, metrics, seconds = c.model, c.mode, c.metrics, c.seconds
        multilabel = bool(getattr(clf, "multilabel_", False))
        history = c.history
        meta = {"family": clf.family, "version": 0, "mode": mode, "status": status, "reason": reason,
                "classes": list(clf.classes_), "multilabel": multilabel,
                "label_values": list(clf.classes_) if multilabel else [class_value(x, label_type) for x in clf.classes_],
                "label_type": label_type, "params": clf.get_params(), "metrics": metrics, "test_metrics": test_metrics,
                "estimator": getattr(clf, "estimator_", None),  # e.g. why quick fell back to logistic regression
                "members": list(c.members), "calibration": getattr(clf, "calibration_", None),
                "history": history, "n_train": len(pool), "n_validation": 0, "n_test": len(test),
                "cross_validation": {"folds": int(metrics.get("folds") or 0), "n": len(pool)},
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
                               multilabel, label_type, pool, max_label)
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
        logger.info("project %s: v%d %s (%s, %s) on %d labels in %.1fs; cross-validated %s %.3f; %s", slug, version,
                    clf.family, mode, status, len(pool), seconds, self.loop.settings.primary_metric,
                    metrics.get(self.loop.settings.primary_metric) or 0.0, reason)
        return TrainResult(version_id, version, metrics, mode, status, champion_id)

    def _fail_quietly(self, version_id: int, reason: str) -> None:
        try:
            self.loop.store.fail_version(version_id, reason)
        except Exception:  # the database itself may be what failed; the next run's recovery marks the row
            logger.warning("could not mark version row %d failed (%s)", version_id, reason)

    def _record_saved(self, project_id: int, version_id: int, folder: Path, clf: Any, mode: str, status: str,
                      metrics: dict[str, Any], test_metrics: dict[str, Any], history: Any, multilabel: bool,
                      label_type: str | None, pool: list[Any], max_label: int) -> None:
        with self.loop.store.session() as s:
            mv = s.get(ModelVersion, version_id)
            mv.path, mv.params, mv.metrics, mv.test_metrics, mv.history = (str(folder), clf.get_params(), metrics,
                                                                           test_metrics, history)
            mv.classes = {"names": list(clf.classes_), "label_type": label_type, "multilabel": multilabel,
                          "thresholds": [float(t) for t in clf.thresholds()],
                          "trained_through_label": max_label}
            mv.n_train, mv.n_holdout = len(pool), 0  # every label trains the model that serves
            p = s.get(Project, project_id)
            p.trained_through_label = max(p.trained_through_label, max_label)
            if mode == "full":
                p.labels_at_full_fit = len(pool)
            mv.status = "rejected" if status == "rejected" else "candidate"  # champion: promote() follows
