"""A ``local/`` project filled with texts and labels, served by the worker's own ``Loop``: what the benchmarks that
drive the service's code in-process start from (bench.corpus_map, bench.suspects)."""
from __future__ import annotations

import json
from typing import Any, Sequence


def local_project(root: str, texts: Sequence[str], labels: Sequence[Any], families: str) -> tuple[Any, Any, int]:
    """(store, loop, project id) of a new ``local/bench`` project in the instance folder ``root``: one document per
    text (platform id = its row number), the first ``len(labels)`` of them labelled by ``labels``."""
    from config import Settings  # noqa: PLC0415
    from storage import Document, Label, Store, text_hash  # noqa: PLC0415
    from worker.loop import Loop  # noqa: PLC0415

    settings = Settings.from_env({"INSTANCE_PATH": root, "MODEL_FAMILIES": families, "LOG_LEVEL": "WARNING"})
    store = Store(settings.db_url)
    store.create_all()
    pid = store.ensure_project("local", "local", "bench")
    with store.session() as s:
        docs = [Document(project_id=pid, platform_id=str(i), filename=str(i), text=t, text_hash=text_hash(t),
                         source="corpus") for i, t in enumerate(texts)]
        s.add_all(docs)
        s.flush()
        s.add_all([Label(project_id=pid, document_id=d.id, who="bench", value=json.dumps(y))
                   for d, y in zip(docs, labels)])
    return store, Loop(settings, store), pid
