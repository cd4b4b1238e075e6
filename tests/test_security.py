"""Security: production mode refuses to start without credentials or with example ones (web, worker and ML
backend, as real processes), admin calls need the admin token, and platform tokens are never logged, echoed or
shown on the dashboard."""
from __future__ import annotations

import json
import subprocess

import pytest

from app import create_app
from config import ProjectSpec, Settings, example_values
from scripts.stack import BIN

from .conftest import ROOT

STRONG = {"API_TOKEN": "api-0123456789abcdef", "ADMIN_TOKEN": "adm-0123456789abcdef",
          "METRICS_TOKEN": "met-0123456789abcdef", "WEBHOOK_USERNAME": "tagtog-hook",
          "WEBHOOK_PASSWORD": "hook-0123456789abcdef", "TAGTOG_USERNAME": "alice", "TAGTOG_PASSWORD": "tt-pw-42",
          "LABELSTUDIO_WEBHOOK_SECRET": "ls-secret-0123456789", "LABELSTUDIO_TOKEN": "ls-token-abc",
          "ML_BASIC_AUTH_USER": "ls", "ML_BASIC_AUTH_PASS": "ml-pass-0123456789ab"}
PROD = {"PRELABEL_ENV": "production", "TAGTOG_PROJECTS": "alice/spam", "LABELSTUDIO_PROJECTS": "3"}


def test_production_settings_need_every_credential():
    assert Settings.from_env({**PROD, **STRONG}).prelabel_env == "production"
    with pytest.raises(ValueError) as e:
        Settings.from_env(PROD)
    for name in STRONG:
        assert f"{name} is not set" in str(e.value)
    # only the platforms served need their credentials
    only_tagtog = {k: v for k, v in STRONG.items() if not k.startswith(("LABELSTUDIO", "ML_"))}
    assert Settings.from_env({**PROD, "LABELSTUDIO_PROJECTS": "", **only_tagtog})
    with pytest.raises(ValueError, match="LABELSTUDIO_WEBHOOK_SECRET is not set"):
        Settings.from_env({**PROD, **only_tagtog})


@pytest.mark.parametrize("name,value,needle", [
    ("ADMIN_TOKEN", "change-me-admin-token", "example value"),
    ("WEBHOOK_PASSWORD", "change-me-webhook-password", "example value"),
    ("ML_BASIC_AUTH_PASS", "password", "example value"),
    ("API_TOKEN", "short-token", "shorter than 16"),
])
def test_production_refuses_example_and_weak_values_without_echoing_them(name, value, needle):
    with pytest.raises(ValueError) as e:
        Settings.from_env({**PROD, **STRONG, name: value})
    assert f"{name} is" in str(e.value) and needle in str(e.value) and value not in str(e.value)


def test_every_example_secret_in_env_example_is_refused():
    examples = example_values()
    secrets = [k for k in Settings.from_env({**PROD, **STRONG}).required_secrets() if k.upper() in examples]
    assert len(secrets) >= 8  # each credential has an example line, and each is refused
    for name in secrets:
        for value in examples[name.upper()]:
            with pytest.raises(ValueError, match=f"{name.upper()} is an example value"):
                Settings.from_env({**PROD, **STRONG, name.upper(): value})


@pytest.mark.parametrize("cmd", [
    [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0", "app:create_app()"],
    [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0", "ml_backend:create_app()"],
    [str(BIN / "huey_consumer"), "jobs.huey", "-w", "1"],
], ids=["web", "ml_backend", "worker"])
def test_each_process_refuses_to_start_in_production_with_example_credentials(tmp_path, cmd):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path), **PROD, **STRONG,
           "ADMIN_TOKEN": "change-me-admin-token", "LABELSTUDIO_TOKEN": ""}
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "PRELABEL_ENV=production refuses to start" in out and "ADMIN_TOKEN is an example value" in out
    assert "LABELSTUDIO_TOKEN is not set" in out
    for secret in STRONG.values():  # the configured values are never printed
        if len(secret) > 8:
            assert secret not in out


@pytest.fixture
def client(tmp_path):
    app = create_app({"instance_path": str(tmp_path), "admin_token": "adm-0123456789abcdef",
                      "labelstudio_projects": (ProjectSpec("labelstudio", "ls", "3"),)})
    app.extensions["prelabel.enqueue"] = lambda *_: None
    return app.test_client()


@pytest.mark.parametrize("method,path", [
    ("post", "/api/v1/projects/1/retrain"), ("post", "/api/v1/projects/1/reconcile"),
    ("post", "/api/v1/projects/1/rollback"), ("post", "/api/v1/projects/1/versions/1/promote"),
    ("get", "/api/v1/projects/1/versions/1/download"), ("post", "/api/v1/projects/1/cross-validate"),
    ("post", "/api/v1/events/1/retry"),
])
def test_admin_calls_need_the_admin_token(client, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "adm-0123456789abcdef"},
                    {"Authorization": "Basic YWRtOmFkbQ=="}):
        r = getattr(client, method)(path, headers=headers)
        assert r.status_code == 401 and "admin token" in r.json["error"], (path, headers)
    r = getattr(client, method)(path, headers={"Authorization": "Bearer adm-0123456789abcdef"})
    assert r.status_code in (200, 202, 404, 409), (path, r.json)  # past the check: the project has no versions


def test_label_studio_tokens_are_never_logged_echoed_or_shown(client, caplog):
    secret_a, secret_b = "ACCESS-TOKEN-7f3a9c", "PROJECT-TOKEN-51be02"
    body = {"action": "ANNOTATION_CREATED", "access_token": secret_a,
            "project": {"id": 3, "token": secret_b, "title": "p"}, "task": {"id": 9},
            "annotation": {"id": 4, "result": [{"from_name": "c", "value": {"choices": ["a"]}}]}}
    bad = {**body, "project": {"token": secret_b}}  # refused: no project id
    with caplog.at_level("DEBUG"):
        answers = [client.post("/webhooks/labelstudio", json=b) for b in (body, bad)]
        answers.append(client.post("/webhooks/labelstudio", data=json.dumps(body)[:-3],
                                   content_type="application/json"))  # broken JSON
        pages = [client.get(u) for u in ("/api/v1/projects/1/events", "/api/v1/projects/1", "/dashboard/",
                                         "/dashboard/projects/1", "/api/v1/events/1")]
    assert [a.status_code for a in answers] == [202, 400, 400]
    seen = caplog.text + "".join(r.get_data(as_text=True) for r in answers + pages)
    assert all(p.status_code == 200 for p in pages)
    assert secret_a not in seen and secret_b not in seen
