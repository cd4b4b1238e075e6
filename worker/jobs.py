"""The queue (Huey) and its tasks: the worker's entry point.

    huey_consumer worker.jobs.huey -w 1      (``jobs.huey``, the name before worker/, still works)

Tasks take ids and re-read state from the database. Huey stores its queue in a SQLite file in the instance
folder by default (no server to run), or in Redis when QUEUE_URL=redis://... . The web process imports this
module only to enqueue; the training code (and TensorFlow) is imported inside the tasks.
"""
from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from huey import Huey, PriorityRedisHuey, SqliteHuey, crontab
from huey.constants import EmptyData
from huey.exceptions import TaskLockedException

from config import REDIS_SCHEMES, Settings
from model.names import SLOW_FAMILIES
from storage import Store, utcnow

logger = logging.getLogger(__name__)

SETTINGS = Settings.load()


class _Deferred:
    """A queue's storage built on first use: importing this module (huey_consumer does, and so does the web app)
    opens no file and no connection, so an app built with its own settings (``use_queue``) never leaves a stray
    ./instance/queue.db behind, and a bad QUEUE_URL is reported where it is used."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build, self._real = build, None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if self._real is None:
            with self._lock:
                if self._real is None:
                    self._real = self._build()
        return getattr(self._real, name)


def _deferred(cls: type[Huey]) -> type[Huey]:
    class Deferred(cls):  # type: ignore[misc, valid-type]
        def create_storage(self) -> Any:
            return _Deferred(self._open_storage)

        def _open_storage(self) -> Any:
            filename = self.storage_kwargs.get("filename")
            if filename:  # the instance folder too is made only when the queue is used
                Path(filename).parent.mkdir(parents=True, exist_ok=True)
            storage = cls.create_storage(self)
            if "url" in self.storage_kwargs:
                _migrate_redis_list(storage)
            return storage

    Deferred.__name__ = cls.__name__
    return Deferred


DeferredSqliteHuey, DeferredRedisHuey = _deferred(SqliteHuey), _deferred(PriorityRedisHuey)


def make_huey(settings: Settings, name: str = "prelabel") -> Huey:
    """The queue ``name``: on Redis (QUEUE_URL=redis://...) or in a SQLite file in the instance folder; its storage
    is opened on first use."""
    if settings.queue_url.startswith(REDIS_SCHEMES):
        # priorities (a person's label before a flood of unknown documents) need Huey's sorted-set queue
        return DeferredRedisHuey(name, url=settings.queue_url, results=False)
    if settings.queue_url and not settings.queue_url.startswith("sqlite"):
        raise ValueError(f"QUEUE_URL must be redis://... or empty (SQLite), got {settings.queue_url.split(':')[0]}:")
    path = settings.queue_url.removeprefix("sqlite:///") if settings.queue_url else str(
        Path(settings.instance_path) / "queue.db")
    if name != "prelabel":
        path = str(Path(path).with_name(f"{Path(path).stem}-{name.removeprefix('prelabel-')}{Path(path).suffix}"))
    # results=False: outcomes live in the events table; stored task results would only grow the queue file
    return DeferredSqliteHuey(name, filename=path, results=False)


def _migrate_redis_list(storage: Any) -> None:
    """Tasks an older prelabel queued in Redis as a plain list (RedisHuey) move to the priority queue, oldest
    first; taken in one transaction, so of several processes starting at once only one moves them."""
    key = storage.queue_key
    if storage.conn.type(key) not in (b"list", "list"):
        return
    pipe = storage.conn.pipeline(transaction=True)
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    items, _ = pipe.execute()
    for data in reversed(items):  # RedisHuey pushed on the left and popped on the right
        storage.enqueue(data, 0)
    logger.info("moved %d queued task(s) to the priority queue", len(items))


# Huey priorities (higher first): a person's save of a document prelabel knows, then retrains, then the rest
# (deliveries for documents it has never seen, which a flood of them must not put ahead of real labels)
PRIORITY_KNOWN, PRIORITY_RETRAIN = 10, 5

huey = make_huey(SETTINGS)  # from the environment, as huey_consumer imports it; use_queue() re-points it
# bert and fewshot fine-tuning have their own queue, so a GPU worker can take it while CPU workers do the rest:
#     huey_consumer jobs.huey_bert -w 1
huey_bert = make_huey(SETTINGS, "prelabel-bert")
OWN_QUEUE = SLOW_FAMILIES


def use_queue(settings: Settings) -> None:
    """Point both queues at ``settings``' queue (QUEUE_URL, or the SQLite file in its instance folder): the web
    app built with other settings than the environment's (``create_app({"instance_path": X})``) enqueues where
    its database is, not into ./instance. The tasks stay registered; only the storage changes."""
    global SETTINGS
    if (settings.queue_url, settings.instance_path) == (SETTINGS.queue_url, SETTINGS.instance_path):
        return
    huey.storage = make_huey(settings).storage
    huey_bert.storage = make_huey(settings, "prelabel-bert").storage
    SETTINGS = settings
# in training_runs: which worker trained (host:pid:incarnation; a restarted container may reuse host and pid)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
STALE_RUN_S = 6 * 3600  # a run of a worker on another machine, unfinished this long, is taken as interrupted
_loop: Any = None
# the per-project locks of the tasks (queue, name prefix); each is cleared when its holder is found dead
LOCKS = ((huey, "retrain"), (huey, "reconcile"), (huey, "embed"),
         *((huey_bert, family) for family in SLOW_FAMILIES))
_held: set[tuple[Huey, str]] = set()  # the lock keys this process holds (released at exit, even on SIGTERM)


@contextmanager
def project_lock(queue: Huey, name: str) -> Iterator[None]:
    """Huey's task lock (the same key as ``queue.lock_task(name)``), its value naming the holder
    (``WORKER_ID|acquired at``): a lock whose worker died (SIGTERM mid-task, kill -9, OOM) is cleared at the next
    worker start and by the minute's sweep (``clear_stale_locks``), so no task of a project is switched off for
    good. TaskLockedException while a live worker holds it."""
    key = f"{queue.name}.lock.{name}"
    if not queue.put_if_empty(key, f"{WORKER_ID}|{utcnow().isoformat()}"):
        raise TaskLockedException(f"unable to acquire lock {name}")
    queue._locks.add(key)
    _held.add((queue, key))
    try:
        yield
    finally:
        _held.discard((queue, key))
        queue.delete(key)


@atexit.register
def _release_held() -> None:
    """A stopping worker (SIGTERM ends huey's threads mid-task) releases what it holds."""
    for queue, key in list(_held):
        try:
            queue.delete(key)
        except Exception:  # the queue's store is gone too: the next start or sweep clears it
            logger.warning("lock %s not released at exit", key, exc_info=True)
    _held.clear()


def clear_stale_locks(project_ids: list[int], at_start: bool = False) -> list[str]:
    """Clear the project locks whose holder is gone (``worker_dead``); at a worker's start also locks with no
    holder recorded (taken by an older prelabel). Returns the names cleared."""
    cleared = []
    for queue, prefix in LOCKS:
        for pid in project_ids:
            name = f"{prefix}-{pid}"
            key = f"{queue.name}.lock.{name}"
            raw = queue.get_raw(key, peek=True)
            if raw is EmptyData:
                continue
            try:
                holder, _, when = str(queue.serializer.deserialize(raw)).partition("|")
                acquired = datetime.fromisoformat(when)
            except Exception:
                holder, acquired = "", None
            dead = worker_dead(holder, acquired) if acquired is not None and holder.count(":") == 2 else at_start
            if dead and holder != WORKER_ID:
                queue.delete(key)
                cleared.append(name)
                logger.warning("lock %s of a stopped worker (%s) cleared", name, holder or "holder unknown")
    return cleared


def configure(settings: Settings, store: Store | None = None, client_factory: Callable[[str], Any] | None = None) -> Any:
    """Build the worker's Loop (tests call this to inject settings or a client)."""
    global _loop
    from worker.loop import Loop  # noqa: PLC0415

    store = (store or Store(settings.db_url)).prepare(settings.projects)
    _loop = Loop(settings, store, client_factory)
    return _loop


def get_loop() -> Any:
    return _loop if _loop is not None else configure(SETTINGS)


def _process_started() -> datetime:
    """When this process started (psutil), so the heartbeat's ``ready_after_s`` includes the imports."""
    import psutil  # noqa: PLC0415

    return datetime.fromtimestamp(psutil.Process().create_time(), timezone.utc).replace(tzinfo=None)


class Heartbeat:
    """The worker process's heartbeat in the store (``workers`` table): a first beat once it can take jobs, then
    one every ``interval_s`` from a daemon thread, and a last one marking it stopped on a clean shutdown. Started
    once per process however many consumer threads run the start-up hook."""

    def __init__(self, store: Store, worker_id: str, interval_s: float, queues: str, families: str) -> None:
        self.store, self.worker_id, self.interval_s = store, worker_id, interval_s
        self.queues, self.families = queues, families
        self.jobs_done = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.store.worker_beat(self.worker_id, queues=self.queues, families=self.families,
                               started_at=_process_started())
        self._thread = threading.Thread(target=self._run, name="prelabel-heartbeat", daemon=True)
        self._thread.start()
        logger.info("worker %s ready (queues %s, families %s)", self.worker_id, self.queues, self.families)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.worker_beat(self.worker_id, jobs_done=self.jobs_done)
            except Exception:  # a locked or unreachable database: the next beat tries again
                logger.warning("heartbeat of worker %s not written", self.worker_id, exc_info=True)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self.store.worker_stopped(self.worker_id)
        except Exception:
            logger.warning("could not mark worker %s stopped", self.worker_id, exc_info=True)


_heartbeat: Heartbeat | None = None
_started = threading.Lock()


def start_worker(queue: str) -> None:
    """Once per worker process: logging, the Loop, recovery of a killed worker's runs, then the heartbeat that
    says the worker is ready. TensorFlow is not imported here: a worker that trains only ``quick`` never loads
    it, and a Keras family loads it when it first trains or loads a model (WORKER_WARM_UP: in the background)."""
    global _heartbeat
    from config import setup_logging  # noqa: PLC0415

    with _started:
        if _heartbeat is not None:
            return
        setup_logging(SETTINGS.log_level, SETTINGS.log_format)
        for h in list(logging.getLogger("huey").handlers):  # huey_consumer's own: the root's writes each line once
            logging.getLogger("huey").removeHandler(h)
        loop = get_loop()
        recover_interrupted()
        clear_stale_locks(loop.store.project_ids(), at_start=True)
        reconcile_known_projects("worker start")
        _heartbeat = Heartbeat(loop.store, WORKER_ID, SETTINGS.worker_heartbeat_s, queue, SETTINGS.model_families)
        _heartbeat.start()
        atexit.register(_heartbeat.stop)  # SIGTERM stops huey's threads without their shutdown hooks
        if SETTINGS.worker_warm_up:
            threading.Thread(target=warm_up, name="prelabel-warm-up", daemon=True).start()


# huey_consumer consumes one queue per process; each queue's start-up hook names it
huey.on_startup("start_worker")(lambda: start_worker(huey.name))
huey_bert.on_startup("start_worker")(lambda: start_worker(huey_bert.name))


@huey.post_execute("count_job")
@huey_bert.post_execute("count_job")
def count_job(task: Any, value: Any, exc: Exception | None) -> None:
    """One more job done by this process (reported with the next heartbeat)."""
    if _heartbeat is not None:
        _heartbeat.jobs_done += 1


@huey.on_shutdown()
@huey_bert.on_shutdown()
def stop_worker() -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


def warm_up() -> None:
    """Import Keras (and load the sentence encoder) ahead of the first retrain that needs them, in a background
    thread after the worker is ready; nothing when only ``quick`` is listed."""
    from model.names import KERAS_FAMILIES  # noqa: PLC0415

    families = set(SETTINGS.families)
    if not families & set(KERAS_FAMILIES):
        return
    t0 = time.monotonic()
    try:
        from model.rnn import _keras  # noqa: PLC0415

        _keras()
        if families & {"embed", "hybrid"}:
            from model.embed import encoder_for  # noqa: PLC0415

            encoder_for(SETTINGS.bert_checkpoint, precision=SETTINGS.encoder_dtype)
    except Exception:  # e.g. the opt-in packages are missing: the family's own training reports it
        logger.warning("warm-up failed; the first retrain will try again", exc_info=True)
        return
    logger.info("warm-up: Keras%s loaded in %.1fs", " and the sentence encoder" if families & {"embed", "hybrid"}
                else "", time.monotonic() - t0)


@huey.task()
def process_event(event_id: int) -> str:
    """Fetch the confirmed document an event names, store its label, and ask for a retrain when due."""
    from annotation_client import EventRejected, PlatformError, PlatformUnavailable  # noqa: PLC0415
    from formats.errors import FormatError  # noqa: PLC0415

    loop = get_loop()
    ev = loop.store.claim_event(event_id)
    if ev is None:
        return "not queued (already processed or taken)"
    try:
        outcome = loop.ingest.process_event(event_id)
    except PlatformUnavailable as exc:
        delay = min(15 * 2 ** (ev.attempts - 1), 900)  # 15 s, 30 s, ... 15 min; never given up on
        logger.warning("event %d: platform unavailable, retry in %ds: %s", event_id, delay, exc)
        loop.store.requeue_event(event_id, str(exc), delay)
        process_event.schedule((event_id,), delay=delay)
        return "retry scheduled"
    except (EventRejected, PlatformError, FormatError) as exc:
        logger.warning("event %d failed: %s", event_id, exc)
        loop.store.finish_event(event_id, "failed", error=str(exc))
        return "failed"
    except Exception as exc:  # a bug: keep the event visible as failed, retryable via the API
        logger.exception("event %d: unexpected error", event_id)
        loop.store.finish_event(event_id, "failed", error=f"internal error ({type(exc).__name__}); see worker log")
        return "failed"
    from worker.loop.ingest import RETRAIN_REQUESTED  # noqa: PLC0415

    # START_TRAINING or a changed label config set the retrain flag themselves. The flag is set before the event
    # is done, so whoever watches the project (the demo, ops) never sees it idle with a retrain still to come.
    due = loop.ingest.maybe_request_retrain(ev.project_id) or outcome.endswith(RETRAIN_REQUESTED)
    loop.store.finish_event(event_id, "done", outcome)
    if due:
        retrain(ev.project_id)
    return outcome


@huey.task(retries=3, retry_delay=60, priority=PRIORITY_RETRAIN)
def retrain(project_id: int) -> str:
    """Retrain and pre-label. One run per project at a time across every worker on every machine (Huey's task
    lock lives in the queue's store: Redis, or the SQLite queue file); requests arriving meanwhile are coalesced
    into one more run (the project's retrain flag), not queued one by one. Each run is a row in training_runs."""
    loop = get_loop()
    runs = 0
    try:
        with project_lock(huey, f"retrain-{project_id}"):
            while (run_id := loop.store.begin_run(project_id, WORKER_ID)) is not None:
                runs += 1
                outcome = "failed"
                try:
                    loop.sync.sync_project(project_id)
                    result = loop.training.train(project_id, defer=OWN_QUEUE)
                    outcome = "too few labels" if result is None else f"v{result.version} {result.status}"
                    for family in result.deferred if result is not None else ():
                        train_family(project_id, family)
                    if result is not None and result.champion_id is not None:
                        if result.status == "champion":
                            loop.prelabels.score_pool(project_id, result.champion_id)
                        loop.prelabels.prelabel(project_id, result.champion_id)  # pre-labels come from the champion
                except Exception as exc:
                    outcome = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    loop.store.request_retrain(project_id)  # keep the request; Huey retries this task
                    raise
                finally:
                    loop.store.finish_run(run_id, outcome)
    except TaskLockedException:
        return "coalesced into the run in progress"
    if loop.store.retrain_pending(project_id):  # a request that landed while the lock was being released
        retrain(project_id)
    elif {"embed", "hybrid"} & set(loop.settings.families):
        embed_pool(project_id)
    # a new champion: its map, in the background; only where the families embed already (a quick-only worker never
    # loads TensorFlow, and the vectors are there)
    if {"embed", "hybrid"} & set(loop.settings.families) and loop.store.map_outdated(project_id):
        corpus_map(project_id)
    return f"{runs} run(s)"


@huey.task(retries=1, retry_delay=60, priority=0)
def corpus_map(project_id: int) -> str:
    """Draw the project's map for its champion (worker/loop/mapping.py); one at a time per project."""
    try:
        with project_lock(huey, f"map-{project_id}"):
            if not get_loop().store.map_outdated(project_id):
                return "up to date"
            return f"{get_loop().maps.compute(project_id)} points"
    except TaskLockedException:
        return "already drawing"


@huey.task()
def embed_pool(project_id: int) -> str:
    """Embed the project's documents in the background, 512 at a time, for the embed and hybrid families; each
    batch queues the next, so retrains and events run in between. The cache lives in the worker process."""
    try:
        with project_lock(huey, f"embed-{project_id}"):
            left = get_loop().prelabels.embed_pool(project_id)
    except TaskLockedException:
        return "already embedding"
    if left:
        embed_pool(project_id)
    return f"{left} left"


@huey_bert.task(retries=2, retry_delay=60)
def train_family(project_id: int, family: str) -> str:
    """Train one candidate of ``family`` (bert, fewshot) on the current labels, on the bert queue's worker, with the cheap
    families that train every round (so their ensemble can be tried too); gated like any candidate. One at a time
    per project; requests meanwhile are dropped (the next round asks again)."""
    loop = get_loop()
    try:
        with project_lock(huey_bert, f"{family}-{project_id}"):
            result = loop.training.train(project_id, families=[family, *loop.training.ensemble_partners(family, OWN_QUEUE)])
    except TaskLockedException:
        return f"a {family} training of this project is already running"
    if result is None:
        return "too few labels"
    if result.status == "champion":
        loop.prelabels.score_pool(project_id, result.champion_id)
        loop.prelabels.prelabel(project_id, result.champion_id)
    return f"v{result.version} {result.status}"


@huey.task(retries=3, retry_delay=60)
def refresh_champion(project_id: int) -> str:
    """After a promotion by hand (rollback): re-score the pool and pre-label with the new champion."""
    from storage import Project  # noqa: PLC0415

    loop = get_loop()
    with loop.store.session() as s:
        champion_id = s.get(Project, project_id).champion_id
    if champion_id is None:
        return "no champion"
    loop.prelabels.score_pool(project_id, champion_id)
    return f"{loop.prelabels.prelabel(project_id, champion_id)} pre-labels"


@huey.task()
def cross_validate(project_id: int, folds: int) -> str:
    """k-fold cross-validation on demand; the result lands on the champion version (``cv``)."""
    try:
        r = get_loop().crossval.run(project_id, folds)
    except ValueError as exc:
        logger.warning("cross-validation of project %d refused: %s", project_id, exc)
        return str(exc)
    return f"macro F1 {r['f1_macro_mean']:.3f} +/- {r['f1_macro_std']:.3f}"


def worker_dead(worker: str, started_at: datetime) -> bool:
    """Whether the worker of an unfinished training run is gone: on this machine, its process no longer exists
    (or its pid now belongs to another incarnation); on another machine, the run is older than STALE_RUN_S."""
    host, _, rest = worker.partition(":")
    pid, _, _token = rest.partition(":")
    if host != socket.gethostname():
        return (utcnow() - started_at).total_seconds() > STALE_RUN_S
    if worker == WORKER_ID:
        return False
    if pid == str(os.getpid()):  # this pid, another incarnation (a restarted container)
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def recover_interrupted() -> list[int]:
    """Resume what a killed worker left: its unfinished runs are closed as interrupted, their retrain request
    restored and their project lock released, then the retrain is queued. Staging folders of model versions it
    was writing (``.vN.*``, never visible as versions) are removed."""
    from storage import Project  # noqa: PLC0415

    loop = get_loop()
    projects = loop.store.recover_runs(worker_dead)
    with loop.store.session() as s:
        interrupted = {s.get(Project, p).slug for p in projects}
    cutoff = time.time() - 3600  # elsewhere, another worker may be writing a fresh one right now
    for staging in loop.settings.models_path.glob("*/.v*"):
        if staging.is_dir() and (staging.parent.name in interrupted or staging.stat().st_mtime < cutoff):
            shutil.rmtree(staging, ignore_errors=True)
    for project_id in projects:  # after the clean-up: the resumed run writes new staging folders
        logger.warning("project %d: the training run of a stopped worker was interrupted; resuming it", project_id)
        huey.lock_task(f"retrain-{project_id}").clear()
        retrain(project_id)
    return projects


@huey.periodic_task(crontab(minute="*"))
def sweep() -> None:
    """Nothing accepted is lost: re-enqueue events whose enqueue went missing, and retrains nobody runs; resume
    runs whose worker died."""
    from storage import Project  # noqa: PLC0415

    loop = get_loop()
    recover_interrupted()
    clear_stale_locks(loop.store.project_ids())
    for event_id in loop.store.stale_events(older_than_s=600, stuck_processing_s=1800):
        process_event(event_id)
    with loop.store.session() as s:
        pending = [p.id for p in s.query(Project).filter_by(retrain_requested=True)]
    # a version whose record the database refused (locked) stays "saving" until marked failed here
    loop.store.fail_orphan_versions(None, older_than_s=600)
    for pid in pending:
        retrain(pid)


@huey.task(retries=3, retry_delay=60)
def reconcile(project_id: int) -> str:
    """Compare the platform with the store and take over what webhooks missed; retrain when labels changed."""
    loop = get_loop()
    try:
        with project_lock(huey, f"reconcile-{project_id}"):  # every worker's scheduler enqueues reconcile_all
            r = loop.sync.reconcile(project_id)
    except TaskLockedException:
        return "a reconcile of this project is already running"
    # labels recovered, or found by the first sync of a project that already had some: a model from them now,
    # not at the next webhook
    if (r["recovered"] or r["new_documents"]) and loop.ingest.maybe_request_retrain(project_id):
        retrain(project_id)
    return f"{r['recovered']} label(s) recovered, {r['new_documents']} new document(s)"


def reconcile_known_projects(why: str) -> list[int]:
    """Queue a reconcile of every project that has documents stored (a fresh project is synced by the first
    periodic reconcile anyway): after the web process or a worker comes back, the labels whose webhooks were
    lost meanwhile are recovered in seconds, not at the next RECONCILE_INTERVAL_S."""
    from sqlalchemy import select  # noqa: PLC0415

    from storage import Document  # noqa: PLC0415

    store = _loop.store if _loop is not None else Store(SETTINGS.db_url)  # the web's start needs no Loop
    with store.session() as s:
        pids = sorted(set(s.scalars(select(Document.project_id).distinct())))
    for pid in pids:
        reconcile(pid)
    if pids:
        logger.info("%s: reconcile of project(s) %s queued", why, pids)
    return pids


@huey.periodic_task(crontab(minute="*"))
def reconcile_all() -> None:
    """Every RECONCILE_INTERVAL_S per project: recover labels whose webhook was lost (Label Studio sends each
    once, with a 1 s timeout) and import documents added without one; also imports new tagtog documents."""
    from datetime import datetime, timedelta  # noqa: PLC0415

    from storage import Project  # noqa: PLC0415

    loop = get_loop()
    with loop.store.session() as s:
        due = [p.id for p in s.query(Project) if not p.last_reconcile or datetime.fromisoformat(
            p.last_reconcile["at"].rstrip("Z")) < utcnow() - timedelta(seconds=loop.settings.reconcile_interval_s)]
    for pid in due:
        try:
            reconcile.call_local(pid)
        except Exception:
            logger.exception("reconcile of project %d failed", pid)


def enqueue_event(event_id: int, known: bool = False) -> None:
    """Queue an event's processing, first when it names a document prelabel has stored (``known``)."""
    process_event(event_id, priority=PRIORITY_KNOWN if known else None)


# Tasks queued before the worker moved into worker/ are named "jobs.<task>": an existing queue file (or Redis
# queue) still runs them. Huey names a task by its module; the registry maps the old names to the same tasks.
for _queue in (huey, huey_bert):
    for _name, _task in list(_queue._registry._registry.items()):
        _queue._registry._registry.setdefault("jobs." + _name.rpartition(".")[2], _task)
