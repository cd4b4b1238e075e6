"""The installed ``prelabel`` command (pyproject.toml's console script), run as a user runs it: from another folder,
on a CSV there, quiet, one line per error, nothing created by a command that failed; the front door; the queue
beside the app's own database; TensorFlow without its start-up noise."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import ROOT, SMS_CSV

PRELABEL = shutil.which("prelabel", path=str(Path(sys.executable).parent))
needs_command = pytest.mark.skipif(PRELABEL is None and not os.environ.get("PRELABEL_REQUIRE_SERVERS"),
                                   reason="the package is not installed (pip install -e .)")


def prelabel(cwd: Path, *argv: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    assert PRELABEL is not None, "the `prelabel` command is missing: pip install --no-deps -e ."
    clean = {k: v for k, v in os.environ.items() if k not in ("INSTANCE_PATH", "PYTHONPATH", "TAGTOG_PROJECTS",
                                                              "LABELSTUDIO_PROJECTS", "DATABASE_URL", "QUEUE_URL")}
    return subprocess.run([PRELABEL, *argv], cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


@needs_command
def test_help_from_any_folder_says_where_state_goes(tmp_path):
    r = prelabel(tmp_path, "--help")
    assert r.returncode == 0, r.stderr
    for command in ("web", "worker", "ml-backend", "demo", "import", "export", "train", "evaluate", "predict",
                    "versions", "promote", "reconcile"):
        assert f"\n    {command}" in r.stdout, command
    assert "--instance" in r.stdout and "INSTANCE_PATH" in r.stdout
    r = prelabel(tmp_path, "web", "--help")
    assert r.returncode == 0 and "127.0.0.1:8000" in r.stdout and "INSTANCE_PATH" in r.stdout
    r = prelabel(tmp_path, "demo", "--help")  # the demo's own options pass through
    assert r.returncode == 0 and r.stdout.startswith("usage: prelabel demo") and "--data" in r.stdout
    r = prelabel(tmp_path, "demo", "--data", str(tmp_path / "none.csv"))
    assert r.returncode == 2 and "none.csv not found" in r.stderr


@needs_command
def test_import_train_predict_on_a_csv_in_the_current_folder(tmp_path):
    """A data scientist's session outside the clone: state in ./instance of that folder, relative paths to their
    own files, a model that learned (held-out floor), no TensorFlow start-up lines."""
    df = pd.read_csv(SMS_CSV, keep_default_na=False).sample(n=700, random_state=3).reset_index(drop=True)
    df.insert(0, "id", [f"m{i}" for i in range(len(df))])
    df.iloc[:500].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[500:][["id", "text"]].to_csv(tmp_path / "new.csv", index=False)
    env = {"MODEL_FAMILIES": "quick,rnn", "MODEL_EPOCHS": "2"}  # rnn: a family that loads TensorFlow
    r = prelabel(tmp_path, "import", "train.csv", "--project", "local/sms", "--id-col", "id", "--label-col", "label",
                 env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["labelled"] == 500, r.stderr
    assert (tmp_path / "instance" / "prelabel.db").is_file()
    r = prelabel(tmp_path, "train", "--project", "local/sms", "--families", "quick,rnn", env=env)
    assert r.returncode == 0, r.stderr
    assert "absl::InitializeLog" not in r.stderr and "oneDNN" not in r.stderr, r.stderr
    r = prelabel(tmp_path, "predict", "new.csv", "--project", "local/sms", "--out", "scored.csv", env=env)
    assert r.returncode == 0, r.stderr
    scored = pd.read_csv(tmp_path / "scored.csv", keep_default_na=False)
    truth = df.iloc[500:].reset_index(drop=True)
    assert (scored.predicted == truth.label).mean() >= 0.93  # held out: the model learned
    assert scored.probability.between(0.5, 1.0).all()


@needs_command
def test_failures_are_one_line_and_leave_nothing_behind(tmp_path):
    pd.DataFrame({"id": ["a", "b", "a"], "text": ["one text", "two", "three"], "label": ["x", "y", "x"]}).to_csv(
        tmp_path / "t.csv", index=False)
    r = prelabel(tmp_path, "import", "t.csv", "--project", "local/new", "--label-col", "nosuch")
    assert r.returncode == 2 and r.stderr == "error: t.csv: no column 'nosuch'; columns: ['id', 'text', 'label']\n"
    r = prelabel(tmp_path, "versions", "--project", "local/new")
    assert r.returncode == 2 and "known: none" in r.stderr  # the failed import created no project
    r = prelabel(tmp_path, "import", "t.csv", "--project", "local/new", "--id-col", "id", "--label-col", "label")
    assert r.returncode == 0 and json.loads(r.stdout)["duplicate_ids"] == 1
    assert "1 id(s) appear more than once (a)" in r.stderr
    r = prelabel(tmp_path, "versions", "--project", "local/gone")
    assert r.returncode == 2 and "known: ['1: local/new']" in r.stderr  # as the user typed it
    r = prelabel(tmp_path, "predict", "t.csv", "--project", "local/new", "--out", "scored.txt")
    assert r.returncode == 2 and r.stderr.startswith("error: scored.txt: a table must be .csv")
    r = prelabel(tmp_path, "predict", "t.csv", "--project", "local/new", "--out", "no/such/folder/s.csv")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = prelabel(tmp_path, "train", "--project", "local/new", env={"RETRAIN_EVERY": "0"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "RETRAIN_EVERY" in r.stderr


def test_disk_errors_are_one_line(tmp_path, monkeypatch, capsys):
    """An OSError (disk full, permission) is the system's one line and exit 1, not a traceback."""
    import errno

    from scripts import cli

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "instance" / "models" / "v1"))

    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setattr(cli, "cmd_versions", full)  # build_parser() looks it up when main() runs
    assert cli.main(["versions", "--project", "1"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: No space left on device: {tmp_path / 'instance' / 'models' / 'v1'}\n"


def test_front_door_redirects_to_the_dashboard(tmp_path):
    from app import create_app

    c = create_app({"instance_path": str(tmp_path)}).test_client()
    r = c.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/dashboard/")


def test_the_queue_lives_beside_the_apps_database_and_import_opens_nothing(tmp_path):
    """``create_app({"instance_path": X})`` enqueues into X, and importing the queue module opens no file."""
    code = ("import os, sys\nfrom worker import jobs\nassert os.listdir('.') == [], os.listdir('.')\n"
            "from app import create_app\ncreate_app({'instance_path': sys.argv[1]})\n"
            "jobs.huey.enqueue(jobs.sweep.s())\nprint(jobs.huey.pending_count())\n")
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("INSTANCE_PATH", None)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "X")], cwd=work, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    assert (tmp_path / "X" / "queue.db").is_file() and not (work / "instance").exists()


def test_tensorflow_imports_quietly_and_other_output_is_kept():
    code = ("import sys\nsys.stderr.write('before\\n')\nfrom model.quiet import import_tensorflow\n"
            "import_tensorflow()\nimport tensorflow as tf\nsys.stderr.write('after\\n')\nprint(tf.__version__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr == "before\nafter\n", r.stderr


def test_noise_filter_keeps_what_is_not_tensorflows_start_up():
    from model.quiet import _filtered

    raw = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
           b"I0000 00:00:1796691696.457797   29980 port.cc:153] oneDNN custom operations are on.\n"
           b"I0000 00:00:1796691696.737110   29980 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
           b"To enable the following instructions: AVX2 AVX512F, in other operations, rebuild TensorFlow\n"
           b"2026-12-08 01:00:00 WARNING prelabel.worker heartbeat late\n")
    assert _filtered(raw) == "2026-12-08 01:00:00 WARNING prelabel.worker heartbeat late\n"


def test_a_typo_in_dotenv_is_named(tmp_path, monkeypatch, caplog):
    from config import Settings

    (tmp_path / ".env").write_text("RETRAIN_EVRY=5\nMODEL_FAMILIES=quick\nBIND=127.0.0.1:8001\n")
    monkeypatch.chdir(tmp_path)
    for name in ("MODEL_FAMILIES", "RETRAIN_EVRY", "BIND"):  # load_dotenv sets them: undone after the test
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level("WARNING"):
        s = Settings.load()
    assert s.model_families == "quick"  # ./.env of the folder the command runs in is read
    assert "unknown setting(s) RETRAIN_EVRY ignored" in caplog.text and "BIND" not in caplog.text


@pytest.mark.parametrize("name, value, message", [
    ("STOP_KAPPA", "1.5", "setting STOP_KAPPA must be between 0 and 1, got 1.5"),
    ("CV_FOLDS", "1", "setting CV_FOLDS must be between 2 and 20, got 1"),
    ("KEEP_RETIRED", "0", "setting KEEP_RETIRED must be at least 1, got 0"),
    ("MAX_COSTLY_READS", "0", "setting MAX_COSTLY_READS must be at least 1, got 0"),
])
def test_every_numeric_setting_is_checked_in_one_place(name, value, message):
    from config import RANGES, Settings

    with pytest.raises(ValueError, match=message):
        Settings.from_env({name: value})
    numeric = {f for f, v in vars(Settings()).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric - set(RANGES) == {"model_seed"}  # any seed will do
