from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared"))
BBC_DIR = SHARED / "data" / "tagtog_bbc_news"
SMS_CSV = SHARED / "data" / "sms_spam" / "sms_spam.csv"
# The stacks and CLI runs in these tests were written for the families quick + rnn (loss curves, warm retrains,
# the dashboard's rnn version); they keep them. The default (hybrid,quick) runs in tests/test_demo.py and the
# family tests. Subprocesses inherit this; Settings(...) built in a test sets its families itself.
os.environ.setdefault("MODEL_FAMILIES", "quick,rnn")


def start_loop(emu, tmp_path, project: str, label: str = "", **settings):
    """Serve ``emu`` on 127.0.0.1 and build a worker Loop for alice/<project> with ``settings`` overrides.
    Returns (server, store, loop, project id); the caller stops the server."""
    from annotation_client import TagtogClient
    from config import ProjectSpec, Settings
    from emulator.tagtog import EmulatorServer
    from worker.loop import Loop
    from storage import Store

    server = EmulatorServer(emu).start()
    settings.setdefault("model_families", "rnn")  # these tests exercise the loop with the seed's family
    cfg = Settings(instance_path=str(tmp_path), tagtog_base_url=server.url, tagtog_username="alice",
                   tagtog_password="pw", tagtog_projects=(ProjectSpec("tagtog", "alice", project, label),), **settings)
    store = Store(cfg.db_url)
    store.create_all()
    pid = store.ensure_project("tagtog", "alice", project, label)
    loop = Loop(cfg, store, lambda _: TagtogClient(server.url, "alice", "pw", retries=1, backoff=0.01))
    return server, store, loop, pid
