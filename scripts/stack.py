"""Start and stop the whole stack as separate processes on 127.0.0.1: tagtog emulator, prelabel web (gunicorn),
worker (huey_consumer) and optionally the Label Studio ML backend (gunicorn). Used by the demo, the end-to-end test and the benchmarks."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class Stack:
    """The three processes. ``env`` is the prelabel environment (web and worker)."""

    workdir: Path
    export_dir: Path
    owner: str = "alice"
    project: str = "spam"
    labels: str = "isSpam:boolean"
    user: tuple[str, str] = ("alice", "alice-pw")
    hook_auth: tuple[str, str] = ("tagtog-hook", "hook-pw")
    settings: dict[str, str] = field(default_factory=dict)
    web_workers: int = 2
    start_worker: bool = True
    workers: int = 1  # worker processes (huey_consumer), e.g. 2 sharing a Redis queue
    more_projects: tuple[str, ...] = ()  # further tagtog projects of ``owner``, each loaded with the same export
    tagtog: bool = True  # start the tagtog emulator (False: a Label Studio-only stack)
    ml_backend: bool = False  # start the Label Studio ML backend (web/ml_backend.py)
    emulator_args: tuple[str, ...] = ()  # more options of emulator.tagtog (e.g. --settings-export-status 403)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.emu_port, self.web_port, self.ml_port = free_port(), free_port(), free_port()
        self.ml_url = f"http://127.0.0.1:{self.ml_port}"
        self.emu_url = f"http://127.0.0.1:{self.emu_port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
            "INSTANCE_PATH": str(self.workdir / "instance"), "TAGTOG_BASE_URL": self.emu_url,
            "TAGTOG_USERNAME": self.user[0], "TAGTOG_PASSWORD": self.user[1],
            "TAGTOG_PROJECTS": ",".join(f"{self.owner}/{p}" for p in (self.project, *self.more_projects))
            if self.tagtog else "",
            "WEBHOOK_USERNAME": self.hook_auth[0], "WEBHOOK_PASSWORD": self.hook_auth[1],
            **self.settings,
        }

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs[name] = p
        return p

    def start(self) -> "Stack":
        try:
            if self.tagtog:
                per_project = [arg for name in (self.project, *self.more_projects) for arg in (
                    "--project", f"{self.owner}/{name}={self.labels}", "--load", f"{self.export_dir}={self.owner}/{name}",
                    "--webhook", f"{self.owner}/{name}={self.web_url}/webhooks/tagtog")]
                emu = self._spawn("emulator", [
                    sys.executable, "-m", "emulator.tagtog", "--port", str(self.emu_port),
                    "--user", ":".join(self.user), *per_project,
                    "--webhook-auth", ":".join(self.hook_auth), "--log-level", "WARNING", *self.emulator_args],
                    env={**os.environ})
                wait_http(f"{self.emu_url}/-emulator/healthz", 120, emu)
            self.start_web()
            if self.ml_backend:
                ml = self._spawn("ml", [sys.executable, "-m", "gunicorn", "-c", "python:web.gunicorn_conf", "-b",
                                        f"127.0.0.1:{self.ml_port}", "-w", "1", "web.ml_backend:create_app()"])
                wait_http(f"{self.ml_url}/health", 60, ml)
            if self.start_worker:
                self.start_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def start_workers(self) -> None:
        """``workers`` worker processes (huey_consumer, one thread each)."""
        for i in range(self.workers):
            self._spawn("worker" if i == 0 else f"worker{i + 1}",
                        [sys.executable, "-m", "huey.bin.huey_consumer", "worker.jobs.huey", "-w", "1", "-q"])

    def wait_for(self, pred: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
        """Poll ``pred`` until it returns something truthy (returned); TimeoutError naming ``what``, with the worker's
        log, after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            out = pred()
            if out:
                return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f}s\n{self.log_tail('worker')}")
            time.sleep(every)

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until ``workers`` worker processes report alive in /healthz (their heartbeat); returns its
        ``workers`` part. RuntimeError when a worker exits meanwhile."""
        def ready() -> dict[str, Any] | None:
            for name, p in self.procs.items():
                if name.startswith("worker") and p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}\n{self.log_tail(name)}")
            workers = self.api("/healthz")["workers"]
            return workers if workers["alive"] >= self.workers else None

        return self.wait_for(ready, timeout, "worker ready")

    def start_web(self) -> None:
        web = self._spawn("web", [sys.executable, "-m", "gunicorn", "-c", "python:web.gunicorn_conf", "-b",
                                  f"127.0.0.1:{self.web_port}", "-w", str(self.web_workers), "app:create_app()"])
        wait_http(f"{self.web_url}/healthz", 60, web)

    def stop_process(self, name: str) -> None:
        """Stop one process (e.g. ``web``, to show what is lost while it is down)."""
        p = self.procs.pop(name)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=15)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- helpers for drivers
    def annotate(self, docid: str, labels: dict[str, Any], confirm: bool = True, user: str | None = None,
                 project: str | None = None) -> None:
        r = requests.post(f"{self.emu_url}/-emulator/annotate", auth=self.user, timeout=10,
                          json={"owner": self.owner, "project": project or self.project, "docid": docid,
                                "labels": labels, "confirm": confirm})
        r.raise_for_status()

    def emulator_switches(self, **switches: Any) -> dict[str, Any]:
        """Set the emulator's switches (``settings_export_status``, ``race``: see emulator.tagtog.set_race)."""
        r = requests.post(f"{self.emu_url}/-emulator/switches", auth=self.user, json=switches, timeout=10)
        r.raise_for_status()
        return r.json()

    def emulator_log(self, since: int = 0) -> list[dict[str, Any]]:
        return requests.get(f"{self.emu_url}/-emulator/log", params={"since": since}, timeout=10).json()

    def api(self, path: str) -> Any:
        r = requests.get(f"{self.web_url}{path}", timeout=10)
        r.raise_for_status()
        return r.json()

    def docids(self, query: str = "*", project: str | None = None) -> list[tuple[str, str]]:
        """(docid, filename) of the emulator's documents."""
        out, page = [], 0
        while True:
            r = requests.get(f"{self.emu_url}/-api/documents/v1", auth=self.user, timeout=10, params={
                "owner": self.owner, "project": project or self.project, "search": query, "page": page}).json()
            out += [(d["id"], d["filename"]) for d in r["docs"]]
            if r["pages"]["next"] == -1:
                return out
            page = r["pages"]["next"]

    def settle(self, quiet_s: float = 3.0, timeout: float = 300.0, project: int = 1) -> dict[str, Any]:
        """Wait until prelabel has nothing queued, nothing training and nothing changing for ``quiet_s``;
        returns the project summary. Raises TimeoutError after ``timeout``."""
        last, since, start = None, time.monotonic(), time.monotonic()
        while time.monotonic() - start < timeout:
            p = self.api(f"/api/v1/projects/{project}")
            busy = (p["events"].get("queued", 0) + p["events"].get("processing", 0) or p["retrain_requested"]
                    or p["training"])
            key = (str(p["events"]), p["uploads"], p["champion"] and p["champion"]["version"])
            if busy or key != last:
                last, since = key, time.monotonic()
            elif time.monotonic() - since > quiet_s:
                return p
            time.sleep(0.3)
        raise TimeoutError(f"prelabel did not settle in {timeout}s\n{self.log_tail('worker')}")

    def log_tail(self, name: str, n: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""
