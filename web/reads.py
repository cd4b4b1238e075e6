"""Costly reads (``GET .../next``) computed in a process of their own, never in a web process's threads.

``next`` reads a whole pool, matches a caller's regex over every text and may cluster a thousand candidates. Run in
a web thread, its C calls (RE2, numpy, k-means) hold Python's GIL for up to seconds at a time, and every webhook the
same process receives waits behind them (Label Studio waits 1 s, once). So each web process hands these reads to a
small pool of child processes (MAX_COSTLY_READS of them, started on the first such read, at a lower CPU priority)
and its threads only wait, which holds no lock. The child reads the database itself: what crosses the process
boundary is the project id, the query's parameters in, and the JSON-ready answer out.

This module imports neither Flask nor the settings: a child starts by importing it alone.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)
NICENESS = 10  # the children yield the CPU to the web threads that acknowledge webhooks


@dataclass(frozen=True)
class NextQuery:
    """What ``next`` was asked, already checked by the web process (names known, n in range, regex compiles)."""

    strategy: str
    batch: str
    n: int
    regex: str | None
    label: str | None
    cold_start_min: int


class ReadFailed(Exception):
    """The read's process stopped (killed, out of memory): the caller answers 503, the pool is started again."""


class ReadPool:
    """A lazily started pool of ``size`` child processes for one web process. Started on first use, in the
    process that uses it (gunicorn forks its workers after loading the app: a pool made before the fork would
    belong to the master)."""

    def __init__(self, db_url: str, size: int) -> None:
        self.db_url, self.size = db_url, size
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._pid = 0

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                # spawn, not fork: the web process has threads (a fork copies their held locks) and open sockets
                self._pool = ProcessPoolExecutor(self.size, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_child_start)
                self._pid = os.getpid()
            return self._pool

    def next_documents(self, project_id: int, q: NextQuery, extra: dict[str, Any]) -> tuple[int, str]:
        """(HTTP status, JSON text) of ``next`` with ``extra`` keys added, computed and serialised in a child
        process (a thousand documents take milliseconds to serialise: not in the web process)."""
        pool = self._executor()
        try:
            return pool.submit(_next_json, self.db_url, project_id, q, extra).result()
        except BrokenProcessPool:
            logger.error("a costly read's process stopped (project %s); the pool is started again", project_id)
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise ReadFailed("the process computing this read stopped") from None

    def pids(self) -> list[int]:
        """The child processes' ids (none before the first read)."""
        with self._lock:
            pool = self._pool if self._pid == os.getpid() else None
            return sorted(getattr(pool, "_processes", None) or {}) if pool is not None else []

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _child_start() -> None:
    try:
        os.nice(NICENESS)
    except OSError:  # not allowed here: the read still runs, at normal priority
        pass
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 - scikit-learn's own dependency

    threadpool_limits(1)  # k-means and BLAS on one core each: the other cores stay free for webhooks


_stores: dict[str, Any] = {}


def _store(db_url: str) -> Any:
    from storage import Store  # noqa: PLC0415 - in the child, once

    if db_url not in _stores:
        _stores[db_url] = Store(db_url)
    return _stores[db_url]


def _next_json(db_url: str, project_id: int, q: NextQuery, extra: dict[str, Any]) -> tuple[int, str]:
    status, body = next_documents(db_url, project_id, q)
    return status, json.dumps(body if status != 200 else {**body, **extra}, ensure_ascii=False)


def next_documents(db_url: str, project_id: int, q: NextQuery) -> tuple[int, dict[str, Any]]:
    """Documents to annotate next, best first, with their scores, from the champion's stored probabilities
    (the web process never loads a model). Returns (status, body): 200 with the documents, or 400 with
    ``{"error": ...}`` for a query the pool cannot answer (maxprob without a known label, a regex's matches)."""
    import numpy as np  # noqa: PLC0415
    from sqlalchemy import select  # noqa: PLC0415

    from model.names import RANKED_STRATEGIES, class_counts  # noqa: PLC0415
    from model.patterns import matches  # noqa: PLC0415
    from model.query import QueryError, cold_start, compile_regex, query, resolve_batch  # noqa: PLC0415
    from storage import Document, ModelVersion, Prediction, Project, current_labels  # noqa: PLC0415

    try:
        pattern = compile_regex(q.regex)  # RE2: linear in the texts, whatever the caller's pattern
    except QueryError as exc:
        return 400, {"error": str(exc)}
    with _store(db_url).session() as db:
        p = db.get(Project, project_id)
        if p is None:
            return 404, {"error": f"no project {project_id}"}
        champion = db.get(ModelVersion, p.champion_id) if p.champion_id else None
        champion_version = champion.version if champion else None
        current = current_labels(db, project_id)
        labelled = {d.id for d, _, _ in current}
        counts = class_counts(json.loads(v) for d, v, _ in current if not d.is_test)
        classes = (champion.classes or {}).get("names", []) if champion else []
        th = ((champion.classes or {}).get("thresholds") if champion else None) or [0.5] * len(classes)
        multilabel = bool((champion.classes or {}).get("multilabel")) if champion else False
        if champion is not None and q.regex is None and q.strategy in RANKED_STRATEGIES and len(classes) >= 2 \
                and resolve_batch(q.batch, multilabel) == "top" \
                and not cold_start(counts, classes, q.cold_start_min, multilabel):
            docs = _ranked(db, project_id, champion.id, q, labelled, classes, th)
            if docs is not None:  # the champion's ranking is stored: n rows through an index, not the pool
                return 200, {"project_id": project_id, "strategy": q.strategy, "batch": "top", "cold_start": False,
                             "champion": champion_version, "documents": docs}
        rows = db.execute(select(Document.id, Document.platform_id, Document.text, Prediction.proba)
                          .outerjoin(Prediction, Prediction.document_id == Document.id)
                          .where(Document.project_id == project_id, Document.platform_id.is_not(None),
                                 Document.is_test.is_not(True))).all()
    rows = [r for r in rows if r[0] not in labelled]
    scored = [r for r in rows if r[3] and r[3].get("classes") == classes] if champion else []
    multilabel = bool(scored and scored[0][3].get("multilabel"))
    cold = champion is None or len(classes) < 2 or cold_start(counts, classes, q.cold_start_min, multilabel) \
        or not scored
    if q.strategy == "maxprob" and not cold and q.label not in classes:
        return 400, {"error": f"strategy maxprob needs label= one of {classes}"}
    if cold:  # cold start: not every class has a few examples yet, so scores would mislead
        pool = [r for r in rows if pattern is None or matches(pattern, r[2])]
        chosen = random.Random(project_id + len(rows)).sample(pool, min(q.n, len(pool))) if q.strategy != \
            "deterministic" else pool[:q.n]
        docs = [{"docid": r[1], "score": None, "predicted": None, "probability": None} for r in chosen]
        return 200, {"project_id": project_id, "cold_start": True, "champion": champion_version,
                     "strategy": "random" if q.strategy != "deterministic" else q.strategy, "batch": "top",
                     "note": "cold start: fewer than COLD_START_MIN confirmed examples in some class (multilabel: "
                             "the median label), or no model yet; documents are picked at random",
                     "documents": docs}
    proba = np.array([r[3]["p"] for r in scored], dtype=float)
    batch = resolve_batch(q.batch, multilabel)
    try:
        idx, scores = query(proba, q.n, q.strategy, texts=[r[2] for r in scored], regex=q.regex,
                            label_index=classes.index(q.label) if q.label in classes else None,
                            multilabel=multilabel, seed=project_id, batch=batch, counts=counts, classes=classes,
                            thresholds=th)
    except QueryError as exc:
        return 400, {"error": str(exc)}
    docs = [_document(scored[i][1], float(sc), proba[i], classes, th, multilabel) for i, sc in zip(idx, scores)]
    return 200, {"project_id": project_id, "strategy": q.strategy, "batch": batch, "cold_start": False,
                 "champion": champion_version, "documents": docs}


def _document(docid: str, score: float, p: Any, classes: list[str], th: list[float], multilabel: bool) -> dict[str, Any]:
    """One document of next's answer: its id, the strategy's score, the champion's decision and probability."""
    if multilabel:
        return {"docid": docid, "score": score, "predicted": [c for c, x, t in zip(classes, p, th) if x >= t],
                "probability": {c: float(x) for c, x in zip(classes, p)}}
    k = max(range(len(p)), key=lambda i: p[i])
    return {"docid": docid, "score": score, "predicted": classes[k], "probability": float(p[k])}


def _ranked(db: Any, project_id: int, champion_id: int, q: NextQuery, labelled: set[int], classes: list[str],
            th: list[float]) -> list[dict[str, Any]] | None:
    """The ``q.n`` unlabelled documents the champion's stored ranking puts first (``Prediction.rank_<strategy>``,
    highest first, ties by document id as the full read breaks them), read a page at a time through the index;
    None when the champion's pool was not ranked (scored by an older version, or before the columns existed)."""
    from sqlalchemy import select  # noqa: PLC0415

    from storage import Document, Prediction  # noqa: PLC0415

    col = getattr(Prediction, f"rank_{q.strategy}")
    out: list[dict[str, Any]] = []
    page, offset = max(2 * q.n, 50), 0
    while len(out) < q.n:
        rows = db.execute(select(Document.id, Document.platform_id, Prediction.proba, col)
                          .join(Document, Document.id == Prediction.document_id)
                          .where(Prediction.project_id == project_id, Prediction.model_version_id == champion_id,
                                 col.is_not(None), Document.platform_id.is_not(None), Document.is_test.is_not(True))
                          .order_by(col.desc(), Prediction.document_id).offset(offset).limit(page)).all()
        if not rows and offset == 0:
            return None
        multilabel = bool(rows and rows[0][2].get("multilabel"))
        out += [_document(pid, float(r), pr["p"], classes, th, multilabel) for i, pid, pr, r in rows
                if i not in labelled and pr.get("classes") == classes][:q.n - len(out)]
        if len(rows) < page:
            break
        offset += page
    return out
