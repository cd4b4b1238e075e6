"""prelabel's command line: the servers (web, worker, ML backend), the demo, and the everyday data operations
(corpus import/export, training, batch prediction, versions).

    prelabel web                                   # the web process on 127.0.0.1:8000 (webhooks, API, dashboard)
    prelabel worker                                # the worker: retrains, pre-labels, reconciles
    prelabel ml-backend                            # Label Studio's ML backend on 127.0.0.1:9090
    prelabel demo                                  # the whole loop against a local tagtog emulator, ~2 minutes
    prelabel import data.xlsx --project local/news --text-col body --id-col id --label-col topic
    prelabel train --project local/news
    prelabel versions --project local/news
    prelabel export --project local/news --out news.parquet
    prelabel predict new.csv --project local/news --out scored.csv
    prelabel promote --project 1 3                 # make v3 the champion (a rollback when older)
    prelabel reconcile --project tagtog/alice/spam

Where state goes: the database, queue, models and embedding cache live in the instance folder, ``--instance`` or
the INSTANCE_PATH setting (default ``./instance`` in the current folder), unless DATABASE_URL / QUEUE_URL point
elsewhere. Settings come from the environment and ``./.env`` (see .env.example), the same for every command, so
the command line works on the same database and models as the web process and the worker.

A project is named by its id (``1``), ``platform/owner/name``, ``owner/name`` (tagtog), or ``local/<name>``: a
project with no annotation platform, for data you import, train on and export yourself. Tables are .csv, .xlsx or
.parquet; a multilabel cell lists its labels joined by ``;``. Exports cannot run code in a spreadsheet: a CSV cell
starting with = + - @ (or a tab, CR) gets a leading apostrophe, which import takes off again; XLSX cells are text,
never formulas. Long runs show a progress bar on a terminal (``--no-progress`` hides it). ``python -m scripts.cli``
is the same command.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from annotation_client import LOCAL, platform_class
from model.names import plain

logger = logging.getLogger("prelabel.cli")
BATCH = 256  # texts per prediction step: progress moves, memory stays flat


class CliError(Exception):
    """A mistake in the command (unknown project, missing column): printed without a traceback, exit 2."""


def _loop(settings: Any) -> Any:
    from worker.loop import Loop  # noqa: PLC0415 - imports numpy/sklearn; --help stays fast
    from storage import Store  # noqa: PLC0415

    return Loop(settings, Store(settings.db_url).prepare(settings.projects))


def resolve_project(store: Any, ref: str, create_local: bool = False) -> int:
    """A project id from ``1``, ``platform/owner/name``, ``owner/name`` (tagtog) or ``local/<name>``."""
    from storage import Project  # noqa: PLC0415
    from sqlalchemy import select  # noqa: PLC0415

    if ref.isdigit():
        with store.session() as s:
            if s.get(Project, int(ref)) is None:
                raise CliError(f"no project with id {ref}")
        return int(ref)
    parts = ref.split("/")
    creatable = False  # only a local/<name> project is created by the command line
    if parts[0] == LOCAL and len(parts) == 2 and parts[1]:
        platform, owner, name, creatable = LOCAL, LOCAL, parts[1], True
    elif len(parts) == 3:
        platform, owner, name = parts
    elif len(parts) == 2:
        platform, owner, name = "tagtog", parts[0], parts[1]
    else:
        raise CliError(f"project {ref!r}: use an id, platform/owner/name, owner/name or local/<name>")
    pid = store.find_project_id(platform, owner, name)
    if pid is None and create_local and creatable:
        pid = store.ensure_project(LOCAL, LOCAL, name)
    if pid is None:
        with store.session() as s:
            known = [f"{p.id}: {platform_class(p.platform).project_ref(p.owner, p.name)}"
                     for p in s.scalars(select(Project))]
        raise CliError(f"no project {ref!r}; known: {known or 'none'} (a local/<name> project is created by "
                       "import)")
    return pid


def check_input(path: str) -> None:
    """A table to read: it exists and has a suffix prelabel reads (before anything heavy loads)."""
    from formats.tables import table_kind  # noqa: PLC0415

    table_kind(path)
    if not Path(path).is_file():
        raise CliError(f"{path}: no such file")


def check_output(path: str) -> None:
    """A table to write: a suffix prelabel writes and a folder that exists (before a model is loaded)."""
    from formats.tables import table_kind  # noqa: PLC0415

    table_kind(path)
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise CliError(f"{path}: the folder {folder} does not exist")


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled or None, file=sys.stderr)


def predict_batched(clf: Any, texts: Sequence[str], progress: bool, desc: str = "predicting") -> np.ndarray:
    """``clf.predict_proba`` in batches of BATCH texts, with a progress bar."""
    out = np.zeros((len(texts), len(clf.classes_)))
    with _progress(len(texts), desc, progress) as bar:
        for start in range(0, len(texts), BATCH):
            chunk = list(texts[start:start + BATCH])
            out[start:start + len(chunk)] = clf.predict_proba(chunk)
            bar.update(len(chunk))
    return out


def prediction_columns(clf: Any, proba: np.ndarray) -> pd.DataFrame:
    """``predicted`` (a class, or labels joined by ``;``), ``probability`` (of that decision) and ``p_<class>``."""
    from formats.tables import label_cell  # noqa: PLC0415

    decided = clf.decide(proba) if len(proba) else []
    cols: dict[str, Any] = {"predicted": [label_cell(d) for d in decided]}
    if getattr(clf, "multilabel_", False):
        th = clf.thresholds()
        cols["probability"] = [float(np.mean(np.where(r >= th, r, 1 - r))) for r in proba]
    else:
        cols["probability"] = [float(r.max()) for r in proba]
    for j, c in enumerate(clf.classes_):
        cols[f"p_{c}"] = proba[:, j] if len(proba) else []
    return pd.DataFrame(cols)


# -- subcommands ----------------------------------------------------------------------------------------------

def cmd_import(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """Documents (and optionally their labels) from a table into a project."""
    from formats.tables import read_table, require_columns  # noqa: PLC0415
    from storage import Store  # noqa: PLC0415

    if args.as_ == "labelled" and not args.label_col:
        raise CliError("--as labelled needs --label-col")
    check_input(args.file)
    df = read_table(Path(args.file).read_bytes(), Path(args.file).name)
    require_columns(df, args.file, args.text_col, args.id_col or "", args.label_col or "")
    duplicates: list[str] = []
    if args.id_col:  # a later row with the same id would replace the earlier one: say so, with the ids
        ids = df[args.id_col].astype(str).str.strip()
        duplicates = sorted(set(ids[ids.duplicated()]))
        if duplicates:
            logger.warning("%s: %d id(s) appear more than once (%s%s); the last row of each is kept", args.file,
                           len(duplicates), ", ".join(duplicates[:5]), ", ..." if len(duplicates) > 5 else "")
    store = Store(settings.db_url).prepare(settings.projects)
    existed = _exists(store, args.project)
    pid = resolve_project(store, args.project, create_local=True)
    try:
        counts = _import_rows(store, pid, df, args)
    except BaseException:
        if not existed:  # nothing created by a command that failed
            store.delete_project(pid)
        raise
    if counts["labelled"]:
        store.request_retrain(pid)
    return {"project": pid, "rows": len(df), **counts, "duplicate_ids": len(duplicates)}


def _exists(store: Any, ref: str) -> bool:
    try:
        resolve_project(store, ref)
    except CliError:
        return False
    return True


def _import_rows(store: Any, pid: int, df: pd.DataFrame, args: argparse.Namespace) -> dict[str, int]:
    """The table's rows into project ``pid`` in one transaction (a bad row leaves nothing imported)."""
    from formats.tables import parse_label_cell  # noqa: PLC0415
    from sqlalchemy import select  # noqa: PLC0415
    from storage import Document, Label, Project, text_hash  # noqa: PLC0415

    added = updated = labelled = skipped = 0
    with store.session() as s:  # one transaction: a bad row leaves nothing imported
        p = s.get(Project, pid)
        platform = platform_class(p.platform)
        if not platform.can_create_documents:
            raise CliError(f"a {p.platform} project reads its {platform.noun}s and annotations from {p.platform}: "
                           f"import the file there (prelabel picks the {platform.noun}s up by webhook or reconcile)")
        local = not platform.lists_documents
        multilabel = args.multilabel or p.label_type == "multilabel"
        if local and args.as_ == "labelled" and not p.label_type:
            p.label_type = "multilabel" if multilabel else "enum"
        label_type = p.label_type
        # re-importing the same ids updates those documents (local: the id is the document's key)
        existing = {d.filename: d for d in s.scalars(select(Document).where(Document.project_id == pid))}
        for i, row in enumerate(df.to_dict("records")):
            text = str(row[args.text_col]).strip()
            if not text:
                skipped += 1
                continue
            key = str(row[args.id_col]).strip() if args.id_col else f"row-{i + 1}"
            # platform documents get prelabel's deterministic upload name: the upload finds them after a crash
            filename = key if local else f"prelabel-{text_hash(text)[:16]}.txt"
            doc = existing.get(filename)
            if doc is None:
                doc = Document(project_id=pid, filename=filename, text=text, text_hash=text_hash(text),
                               source="corpus", platform_id=key if local else None)
                s.add(doc)
                s.flush()
                existing[filename] = doc
                added += 1
            elif doc.text != text:
                doc.text, doc.text_hash = text, text_hash(text)
                updated += 1
            if args.as_ != "labelled":
                continue
            value = parse_label_cell(row[args.label_col], multilabel)
            if value in ("", ()):
                continue
            if label_type == "boolean":
                if str(value).lower() not in ("true", "false"):
                    raise CliError(f"row {i + 1}: {value!r} is not a boolean label (true/false)")
                stored: Any = str(value).lower() == "true"
            else:
                stored = list(value) if multilabel else value
            s.add(Label(project_id=pid, document_id=doc.id, value=json.dumps(stored),
                        who=f"import:{Path(args.file).name}"))
            labelled += 1
    return {"added": added, "updated": updated, "labelled": labelled, "skipped_empty": skipped}


def settings_platform_local(store: Any, pid: int) -> bool:
    from storage import Project  # noqa: PLC0415

    with store.session() as s:
        return not platform_class(s.get(Project, pid).platform).can_upload


def _version(loop: Any, pid: int, version: int | None) -> tuple[int, int]:
    """(version id, number): the one asked for, else the champion."""
    from sqlalchemy import select  # noqa: PLC0415
    from storage import ModelVersion, Project  # noqa: PLC0415

    with loop.store.session() as s:
        if version is None:
            champion = s.get(Project, pid).champion_id
            if champion is None:
                raise CliError(f"project {pid} has no champion yet; train first")
            return champion, s.get(ModelVersion, champion).version
        mv = s.scalar(select(ModelVersion).filter_by(project_id=pid, version=version))
        if mv is None:
            raise CliError(f"project {pid} has no version {version}")
        return mv.id, mv.version


def cmd_export(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """Every document of the project with its current label and the chosen version's predictions."""
    from formats.tables import label_cell, write_table  # noqa: PLC0415
    from sqlalchemy import select  # noqa: PLC0415
    from storage import Document, Label, current_labels  # noqa: PLC0415

    check_output(args.out)
    loop = _loop(settings)
    pid = resolve_project(loop.store, args.project)
    with loop.store.session() as s:
        current = {d.id: (json.loads(v), lid) for d, v, lid in current_labels(s, pid)}
        who = dict(s.execute(select(Label.id, Label.who).where(Label.project_id == pid)).all())
        rows = [(d.id, d.platform_id or d.filename or d.text_hash[:12], d.text, bool(d.is_test))
                for d in s.scalars(select(Document).where(Document.project_id == pid).order_by(Document.id))]
    if args.labelled_only:
        rows = [r for r in rows if r[0] in current]
    df = pd.DataFrame({"id": [r[1] for r in rows], "text": [r[2] for r in rows],
                       "label": [label_cell(current[r[0]][0]) if r[0] in current else "" for r in rows],
                       "labelled_by": [who.get(current[r[0]][1], "") if r[0] in current else "" for r in rows],
                       "test_set": [r[3] for r in rows]})
    version = None
    if not args.no_predictions:
        try:
            vid, version = _version(loop, pid, args.version)
        except CliError:
            if args.version is not None:
                raise
            logger.warning("no champion yet: exporting labels only")
        else:
            clf = loop.classifier(pid, vid)
            proba = predict_batched(clf, df.text.tolist(), args.progress, f"v{version}")
            df = pd.concat([df, prediction_columns(clf, proba)], axis=1)
            df.insert(len(df.columns), "version", version)
    Path(args.out).write_bytes(write_table(df, args.out))
    return {"project": pid, "rows": len(df), "labelled": int((df.label != "").sum()), "version": version,
            "out": str(args.out)}


def cmd_predict(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """A table through a version: its rows with ``predicted``, ``probability`` and ``p_<class>`` added."""
    from formats.tables import read_table, require_columns, write_table  # noqa: PLC0415

    check_input(args.file)
    check_output(args.out)
    df = read_table(Path(args.file).read_bytes(), Path(args.file).name)
    require_columns(df, args.file, args.text_col)
    loop = _loop(settings)
    pid = resolve_project(loop.store, args.project)
    vid, version = _version(loop, pid, args.version)
    clf = loop.classifier(pid, vid)
    proba = predict_batched(clf, df[args.text_col].astype(str).tolist(), args.progress, f"v{version}")
    out = pd.concat([df.reset_index(drop=True), prediction_columns(clf, proba)], axis=1)
    Path(args.out).write_bytes(write_table(out, args.out))
    return {"project": pid, "version": version, "rows": len(out), "out": str(args.out)}


def cmd_train(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """Train now (one candidate per due family, gated), then re-score the pool and pre-label on the platform."""
    loop = _loop(settings)
    pid = resolve_project(loop.store, args.project)
    families = [f for f in args.families.split(",") if f] if args.families else None
    if families:
        unknown = sorted(set(families) - set(_families()))
        if unknown:
            raise CliError(f"unknown families {unknown}; known: {', '.join(_families())}")
    if not settings_platform_local(loop.store, pid):
        loop.sync.sync_project(pid)
    result = loop.training.train(pid, families=families)
    if result is None:
        raise CliError(f"too few labels to train (need {settings.min_labels} in 2+ classes)")
    uploaded = 0
    if result.champion_id is not None:
        if result.status == "champion":
            loop.prelabels.score_pool(pid, result.champion_id)
        if not args.no_upload and not settings_platform_local(loop.store, pid):
            uploaded = loop.prelabels.prelabel(pid, result.champion_id)
    estimate = result.metrics.get("estimate") or {}
    return {"project": pid, "version": result.version, "status": result.status,
            # out of fold over every label: the hardest documents, when active learning chose them
            "metrics": {k: result.metrics.get(k) for k in ("f1", "f1_macro", "accuracy") if k in result.metrics},
            # the estimate on the whole pool, with its 95% interval and what it rests on (model/estimate.py)
            "estimate": {"metrics": {k: v for k, v in (estimate.get("metrics") or {}).items()
                                     if k in ("f1", "f1_macro", "accuracy")},
                         "method": estimate.get("method")} if estimate else None,
            "pre_labels_uploaded": uploaded}


def _families() -> tuple[str, ...]:
    from model.names import FAMILIES  # noqa: PLC0415

    return FAMILIES


def cmd_evaluate(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """Score a version on a labelled table: every metric (as the API shows them)."""
    from formats.tables import parse_label_cell, read_table, require_columns  # noqa: PLC0415
    from model.evaluate import evaluate, evaluate_multilabel, positive_class  # noqa: PLC0415

    check_input(args.file)
    df = read_table(Path(args.file).read_bytes(), Path(args.file).name)
    require_columns(df, args.file, args.text_col, args.label_col)
    loop = _loop(settings)
    pid = resolve_project(loop.store, args.project)
    vid, version = _version(loop, pid, args.version)
    clf = loop.classifier(pid, vid)
    multilabel = bool(getattr(clf, "multilabel_", False))
    pairs = [(t, parse_label_cell(y, multilabel)) for t, y in zip(df[args.text_col].astype(str), df[args.label_col])]
    pairs = [(t, y) for t, y in pairs if y not in ("", ())]
    if not pairs:
        raise CliError(f"{args.file}: no labelled rows in column {args.label_col!r}")
    texts, ys = [t for t, _ in pairs], [y for _, y in pairs]
    if not multilabel:
        ys = [_class_of(y) for y in ys]
        unknown = sorted(set(ys) - set(clf.classes_))
        if unknown:
            raise CliError(f"labels {plain(unknown)} are not among v{version}'s classes {plain(clf.classes_)}")
    pred = clf.decide(predict_batched(clf, texts, args.progress, f"v{version}"))
    m = (evaluate_multilabel(ys, pred, list(clf.classes_), dataset=Path(args.file).name) if multilabel else
         evaluate(ys, pred, list(clf.classes_), positive_class(clf.classes_), dataset=Path(args.file).name))
    return {"project": pid, "version": version, **m}


def _class_of(value: str) -> str:
    """A table's boolean cell ("True", "FALSE") as the class name models use ("true"/"false")."""
    return value.lower() if value.lower() in ("true", "false") else value


def cmd_versions(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    loop = _loop(settings)
    pid = resolve_project(loop.store, args.project)
    return {"project": pid, "versions": loop.store.list_models(pid)}


def cmd_promote(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """Make a version the champion, re-score the pool and pre-label with it."""
    loop = _loop(settings)
    pid = resolve_project(loop.store, args.project)
    try:
        mv = loop.store.promote(pid, args.version, args.reason)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    vid, _ = _version(loop, pid, args.version)
    scored = loop.prelabels.score_pool(pid, vid)
    uploaded = 0 if args.no_upload or settings_platform_local(loop.store, pid) else loop.prelabels.prelabel(pid, vid)
    return {"project": pid, "champion": mv["version"], "pool_scored": scored, "pre_labels_uploaded": uploaded}


def cmd_reconcile(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    loop = _loop(settings)
    pid = resolve_project(loop.store, args.project)
    if settings_platform_local(loop.store, pid):
        raise CliError("a local project has no platform to reconcile with")
    return {"project": pid, **loop.sync.reconcile(pid)}


# -- servers: each replaces this process (exec), so signals and exit codes are the server's own ---------------

def _exec(argv: list[str]) -> int:
    logger.info("exec %s", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *argv])
    return 0  # not reached


def cmd_web(args: argparse.Namespace) -> int:
    """The web process (gunicorn): webhooks, the JSON API, the dashboard, /healthz and /metrics."""
    return _exec(["-m", "gunicorn", "-c", "python:web.gunicorn_conf", *(["-b", args.bind] if args.bind else []),
                  *(["-w", str(args.workers)] if args.workers else []), "app:create_app()"])


def cmd_worker(args: argparse.Namespace) -> int:
    """The worker (Huey consumer): stores labels, retrains, pre-labels, reconciles. ``--queue bert`` takes the
    fine-tuning queue (bert, fewshot) instead, for a machine with a GPU."""
    queue = "worker.jobs.huey" if args.queue == "main" else "worker.jobs.huey_bert"
    return _exec(["-m", "huey.bin.huey_consumer", queue, "-w", str(args.threads), "-q"])


def cmd_ml_backend(args: argparse.Namespace) -> int:
    """Label Studio's ML backend (gunicorn, one process: it keeps the model in memory)."""
    return _exec(["-m", "gunicorn", "-c", "python:web.gunicorn_conf", "-b", args.bind, "-w", "1",
                  "web.ml_backend:create_app()"])


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: a tagtog emulator, the web process and the worker on 127.0.0.1, and a simulated annotator."""
    from scripts.demo import main as demo_main  # noqa: PLC0415

    return demo_main(args.rest)


# -- argument parsing -----------------------------------------------------------------------------------------

SERVER_SETTINGS = ("INSTANCE_PATH, DATABASE_URL, QUEUE_URL, TAGTOG_*, LABELSTUDIO_*, API_TOKEN, WEBHOOK_* and the "
                   "training settings: see .env.example")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="prelabel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--instance", default=None, metavar="FOLDER",
                    help="the instance folder: database, queue, models (default: INSTANCE_PATH, else ./instance)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def server(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=f"{(fn.__doc__ or help_).strip()} Reads {SERVER_SETTINGS}.")
        p.set_defaults(server=fn)
        return p

    p = server("web", cmd_web, "the web process (webhooks, API, dashboard)")
    p.add_argument("--bind", default=None,
                   help="address:port (default: BIND, else 127.0.0.1:8000; 0.0.0.0 only behind authentication)")
    p.add_argument("--workers", type=int, default=0, help="gunicorn processes (default: WEB_CONCURRENCY, else 2)")
    p = server("worker", cmd_worker, "the worker (training, pre-labels, reconcile)")
    p.add_argument("--queue", choices=("main", "bert"), default="main")
    p.add_argument("--threads", type=int, default=1, help="tasks at once (default 1)")
    p = server("ml-backend", cmd_ml_backend, "Label Studio's ML backend")
    p.add_argument("--bind", default="127.0.0.1:9090", help="address:port (default 127.0.0.1:9090)")
    p = sub.add_parser("demo", help="the whole loop on a local tagtog emulator (prelabel demo --help)",
                       description="The main job; its options: prelabel demo --help.", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(server=cmd_demo)

    def add(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=(fn.__doc__ or help_).strip() + " Reads INSTANCE_PATH "
                           "(or --instance), DATABASE_URL and, to reach a platform, its TAGTOG_* / LABELSTUDIO_* "
                           "settings.")
        p.set_defaults(fn=fn)
        p.add_argument("--project", required=True, help="id, platform/owner/name, owner/name or local/<name>")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        return p

    p = add("import", cmd_import, "documents (and labels) from csv/xlsx/parquet into a project")
    p.add_argument("file", help="a .csv, .xlsx or .parquet table")
    p.add_argument("--text-col", default="text")
    p.add_argument("--id-col", default="", help="a stable id per row (default: the row number); re-importing "
                   "the same ids updates those documents")
    p.add_argument("--label-col", default="", help="a label column (a multilabel cell: labels joined by ;)")
    p.add_argument("--as", dest="as_", choices=("pool", "labelled"), default=None,
                   help="pool: documents to pre-label (labels ignored); labelled: training data (default: "
                        "labelled when --label-col is given, else pool)")
    p.add_argument("--multilabel", action="store_true", help="the label column holds label sets")
    p = add("export", cmd_export, "labelled data and a version's predictions for every document")
    p.add_argument("--out", required=True, help="a .csv, .xlsx or .parquet file")
    p.add_argument("--version", type=int, default=None, help="default: the champion")
    p.add_argument("--labelled-only", action="store_true", help="only documents with a label")
    p.add_argument("--no-predictions", action="store_true", help="labels only (no model is loaded)")
    p = add("predict", cmd_predict, "a table through a version: predicted class and probabilities per row")
    p.add_argument("file")
    p.add_argument("--out", required=True)
    p.add_argument("--text-col", default="text")
    p.add_argument("--version", type=int, default=None, help="default: the champion")
    p = add("train", cmd_train, "train now, gate against the champion, re-score and pre-label")
    p.add_argument("--families", default="", help="train these families (default: those due this round)")
    p.add_argument("--no-upload", action="store_true", help="do not upload pre-labels to the platform")
    p = add("evaluate", cmd_evaluate, "score a version on a labelled table")
    p.add_argument("file")
    p.add_argument("--text-col", default="text")
    p.add_argument("--label-col", default="label")
    p.add_argument("--version", type=int, default=None, help="default: the champion")
    add("versions", cmd_versions, "the project's model versions with their scores and status")
    p = add("promote", cmd_promote, "make a version the champion (a rollback when older)")
    p.add_argument("version", type=int)
    p.add_argument("--reason", default="promoted from the command line")
    p.add_argument("--no-upload", action="store_true", help="do not upload pre-labels to the platform")
    add("reconcile", cmd_reconcile, "take over what the platform has and prelabel missed")
    return ap


class _OneLine(logging.Formatter):
    """Log records without their tracebacks (the CLI prints one line per problem; --log-level DEBUG shows them)."""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_info, record.exc_text = None, None
        return super().format(record)


def main(argv: list[str] | None = None) -> int:
    from config import LOG_FORMAT, Settings, setup_logging  # noqa: PLC0415
    from formats.tagtog import FormatError  # noqa: PLC0415

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":  # everything after `demo` is the demo's own (prelabel demo --help)
        args.rest = [*extra, *args.rest]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.instance:  # before anything reads the settings: the servers' children read the environment too
        os.environ["INSTANCE_PATH"] = str(Path(args.instance).resolve())
    if getattr(args, "as_", "x") is None:
        args.as_ = "labelled" if args.label_col else "pool"
    level = args.log_level.upper()
    if getattr(args, "server", None) is None:  # a server (and the demo) sets up its own logging
        setup_logging(level)
    if level != "DEBUG":
        for h in logging.getLogger().handlers:
            if getattr(h, "prelabel", False):
                h.setFormatter(_OneLine(LOG_FORMAT))
    try:
        settings = Settings.load()  # every setting checked against its range: a bad one stops here, in one line
        if getattr(args, "server", None) is not None:
            return args.server(args)
        result = args.fn(args, settings)
    except (CliError, FormatError, ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:  # disk full, permission denied: the system's one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
