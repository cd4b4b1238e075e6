"""Run a real Label Studio 1.23.2 on 127.0.0.1 for tests, benchmarks and the demo.

Label Studio lives in its own virtualenv (it pins Django and ~60 packages): ``.lsvenv`` beside this repository's
code, or ``LABEL_STUDIO_VENV``. Install it with ``python -m devtools.labelstudio_server --install``.
The first start migrates an empty database (~30 s); the migrated database is kept as a template and copied for
each later start (~3 s).

    python -m devtools.labelstudio_server --install        # create .lsvenv with label-studio==1.23.2
    python -m devtools.labelstudio_server --port 8080      # run one in the foreground (Ctrl-C stops it)
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from scripts.stack import ROOT, free_port

logger = logging.getLogger(__name__)
VERSION = "1.23.2"
ADMIN = ("admin@example.com", "admin-pass-123")
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # a fixed legacy token for local test servers only


def venv_path() -> Path:
    return Path(os.environ.get("LABEL_STUDIO_VENV", ROOT / ".lsvenv"))


def installed() -> bool:
    return (venv_path() / "bin" / "label-studio").exists()


def install() -> None:
    venv = venv_path()
    if installed():
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"label-studio=={VERSION}"], check=True)


def _ls_env(data_dir: Path) -> dict[str, str]:
    # LS reads LABEL_STUDIO_X, HEARTEX_X, then plain X: drop names that would change its behaviour
    env = {k: v for k, v in os.environ.items() if k not in (
        "PORT", "HOST", "USERNAME", "PASSWORD", "DEBUG", "LOG_LEVEL", "DATABASE_URL", "INSTANCE_PATH")}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_USERNAME": ADMIN[0], "LABEL_STUDIO_PASSWORD": ADMIN[1], "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false", "LATEST_VERSION_CHECK": "false",
        # prelabel runs on 127.0.0.1 beside it: allow loopback webhook and ML-backend targets
        "SSRF_PROTECTION_ENABLED": "false", "ML_BLOCK_LOCAL_IP": "false",
    })
    return env


@dataclass
class LabelStudio:
    """One Label Studio process with a fresh data folder under ``workdir``."""

    workdir: Path
    port: int = 0
    template: Path | None = None  # a migrated data folder to copy (see ``ensure_template``)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {TOKEN}"}

    def start(self, timeout: float = 180.0) -> "LabelStudio":
        if not installed():
            raise RuntimeError(f"Label Studio is not installed in {venv_path()}; run "
                               "python -m devtools.labelstudio_server --install")
        data = self.workdir / "data"
        if self.template is not None and not data.exists():
            shutil.copytree(self.template, data)
        data.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # LS hops to port+1 silently when busy: pick a free one first
        log = open(self.workdir / "labelstudio.log", "ab")
        self.proc = subprocess.Popen(
            [str(venv_path() / "bin" / "label-studio"), "start", "--internal-host", "127.0.0.1", "--port",
             str(self.port), "--no-browser", "--data-dir", str(data)],
            env=_ls_env(data), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self.proc.returncode}; see {log.name}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    r = requests.get(f"{self.url}/api/current-user/whoami", headers=self.headers, timeout=5)
                    if r.ok:
                        return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Label Studio did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    # -- small helpers over its REST API, for tests and benchmarks --------------------------------------------
    def api(self, method: str, path: str, timeout: float = 60, **kwargs) -> requests.Response:
        r = requests.request(method, f"{self.url}{path}", headers=self.headers, timeout=timeout, **kwargs)
        r.raise_for_status()
        return r

    def create_project(self, title: str, choices: tuple[str, ...] = ("spam", "ham"), multiple: bool = False) -> int:
        opts = "".join(f'<Choice value="{c}"/>' for c in choices)
        config = (f'<View><Text name="text" value="$text"/><Choices name="label" toName="text" '
                  f'choice="{"multiple" if multiple else "single"}">{opts}</Choices></View>')
        return self.api("POST", "/api/projects", json={"title": title, "label_config": config}).json()["id"]

    def import_tasks(self, project: int, tasks: list[dict]) -> None:
        self.api("POST", f"/api/projects/{project}/import", json=tasks)

    def tasks(self, project: int) -> list[dict]:
        """Every task with its annotations and predictions as objects (the export lists prediction ids only)."""
        out, page = [], 1
        while True:
            r = requests.get(f"{self.url}/api/tasks", headers=self.headers, timeout=60,
                             params={"project": project, "page": page, "page_size": 1000, "fields": "all"})
            if r.status_code == 404:  # past the last page
                return out
            r.raise_for_status()
            out += r.json()["tasks"]
            if len(r.json()["tasks"]) < 1000:
                return out
            page += 1

    def task_ids(self, project: int) -> list[int]:
        return [t["id"] for t in self.tasks(project)]

    def annotate(self, task: int, choices: list[str], cancelled: bool = False) -> dict:
        result = [] if cancelled else [{"from_name": "label", "to_name": "text", "type": "choices",
                                        "value": {"choices": choices}}]
        return self.api("POST", f"/api/tasks/{task}/annotations/",
                        json={"result": result, "was_cancelled": cancelled}).json()

    def add_webhook(self, project: int, url: str, headers: dict[str, str]) -> int:
        return self.api("POST", "/api/webhooks/", json={"project": project, "url": url, "send_payload": True,
                                                        "send_for_all_actions": True, "headers": headers}).json()["id"]


def ensure_template(root: Path) -> Path:
    """A migrated Label Studio data folder under ``root`` (made once: ~30 s), to copy for each server."""
    data = root / "data"
    if (data / "label_studio.sqlite3").exists():
        return data
    ls = LabelStudio(root).start()
    ls.stop()
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", action="store_true", help=f"install label-studio=={VERSION} into {venv_path()}")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--workdir", type=Path, default=ROOT / "instance" / "labelstudio")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.install:
        install()
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    ls = LabelStudio(args.workdir, port=args.port).start()
    logger.info("Label Studio on %s (user %s, token in devtools/labelstudio_server.py); Ctrl-C stops it",
                ls.url, ADMIN[0])
    try:
        ls.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        ls.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
