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


# Scheduling on pytest-xdist (`-n 3 --dist load`, the README's test command): the tests of these files share an
# expensive module fixture (a server, a stack, a trained model) or run in order, so each file runs whole in one
# process; every other test is a unit of its own, so a file of many independent training tests
# (worker/test_loop.py: 20 minutes in a row) spreads over the processes. (xdist's own `loadgroup` marks do nothing
# with pytest 9.2: pytest-dev/pytest-xdist#1386.)
SHARED_FIXTURE_FILES = (
    "tests/test_labelstudio_e2e.py", "tests/test_e2e.py", "tests/test_scaleout.py", "tests/test_stores.py",
    "tests/web/test_api.py", "tests/web/test_dashboard.py", "tests/model/test_fewshot.py",
    "tests/model/test_bert.py", "tests/model/test_model.py", "tests/annotation_client/test_tagtog_client.py",
)
# The longest units start first, so the last minutes are not one process finishing a long file alone (measured:
# these took 100-450 s each; a file not listed keeps its place after them).
SLOW_FIRST = (
    "tests/test_labelstudio_e2e.py", "tests/worker/test_multilabel.py", "tests/test_faults.py::test_kill_9",
    "tests/model/test_fewshot.py", "tests/web/test_api.py", "tests/test_e2e.py", "tests/model/test_bert.py",
    "tests/test_demo.py", "tests/web/test_dashboard.py", "tests/worker/test_loop.py", "tests/test_faults.py",
    "tests/test_load.py", "tests/test_hostile_input.py", "tests/model/test_hybrid.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: a file's tests keep their order


def pytest_xdist_make_scheduler(config, log):
    """``--dist load``: whole files for SHARED_FIXTURE_FILES, single tests otherwise, in collection order."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return path if path in SHARED_FIXTURE_FILES else nodeid

    config.option.loadscopereorder = False  # SLOW_FIRST's order, not the units' sizes
    return SharedFixtureScheduling(config, log)


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
    settings.setdefault("cv_folds", 2)  # 3 fits per family and round (the service's default, 5, makes 6)
    cfg = Settings(instance_path=str(tmp_path), tagtog_base_url=server.url, tagtog_username="alice",
                   tagtog_password="pw", tagtog_projects=(ProjectSpec("tagtog", "alice", project, label),), **settings)
    store = Store(cfg.db_url)
    store.create_all()
    pid = store.ensure_project("tagtog", "alice", project, label)
    loop = Loop(cfg, store, lambda _: TagtogClient(server.url, "alice", "pw", retries=1, backoff=0.01))
    return server, store, loop, pid
