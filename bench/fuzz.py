"""Fuzz every endpoint in prelabel's OpenAPI specs (openapi.json: web process; openapi-ml-backend.json: ML backend)
with schemathesis, against the real processes (gunicorn on 127.0.0.1), over a project that has a trained model.

Each operation gets schema-conforming cases (positive) and schema-violating ones (negative), half of them aimed at
the ids that exist (projects, version 1). A response counts as bad when it is a 5xx, or an error (4xx) whose body is
not a JSON object with a non-empty ``error`` message. Prints the requests sent per spec, the statuses seen, the 5xx
count and the bad error bodies (both must be 0).

    python -m bench.fuzz [--examples 60]
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from scripts.stack import BIN, ROOT, free_port, wait_http

logger = logging.getLogger(__name__)
SMS_CSV = Path(os.environ.get("PRELABEL_SHARED", ROOT.parent / "shared")) / "data" / "sms_spam" / "sms_spam.csv"
ADMIN = "fuzz-admin-token-0123456789"


@dataclass
class Tally:
    requests: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)
    bad_bodies: list[str] = field(default_factory=list)
    protocol: list[str] = field(default_factory=list)  # refused by gunicorn's HTTP parser: the app never saw them

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "5xx": len(self.server_errors), "bad_error_bodies": len(self.bad_bodies),
                "refused_by_the_http_server": len(self.protocol), "examples_refused": self.protocol[:3],
                "statuses": dict(sorted((str(k), v) for k, v in self.statuses.items())),
                "examples_5xx": self.server_errors[:5], "examples_bad_bodies": self.bad_bodies[:5]}


def check(tally: Tally, what: str, r: requests.Response) -> None:
    tally.requests += 1
    tally.statuses[r.status_code] += 1
    if r.status_code >= 500:
        tally.server_errors.append(f"{what} -> {r.status_code} {r.text[:200]}")
    elif r.status_code >= 400:
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code == 400 and "Invalid HTTP Header" in r.text and r.text.lstrip().startswith("<html>"):
            # a request gunicorn's parser refuses (e.g. a malformed Content-Length header) never reaches the app,
            # which answers JSON errors; gunicorn's own 400 page is a fixed HTML body
            tally.protocol.append(f"{what} -> {r.status_code} {r.text[:120]}")
        elif not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip()):
            tally.bad_bodies.append(f"{what} -> {r.status_code} {r.headers.get('Content-Type')} {r.text[:200]}")


def fuzz_spec(spec_path: Path, base_url: str, examples: int, headers: dict[str, str],
              path_ids: dict[str, list[Any]], seed: int = 7) -> Tally:
    """Run ``examples`` positive and ``examples`` negative cases of every operation in ``spec_path``."""
    import schemathesis  # noqa: PLC0415 - a dev/bench dependency
    from schemathesis.generation import GenerationMode  # noqa: PLC0415

    schema = schemathesis.openapi.from_path(str(spec_path))
    tally = Tally()
    session = requests.Session()
    for result in schema.get_all_operations():
        op = result.ok()
        names = [p.name for p in op.path_parameters]
        known = {n: path_ids[n] for n in names if n in path_ids}
        strategies = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(op.as_strategy(generation_mode=mode))
            if known and mode == GenerationMode.POSITIVE:  # aimed at rows that exist, to reach past the 404s
                strategies.extend(op.as_strategy(generation_mode=mode, path_parameters={
                    n: v for n, v in zip(known, combo)}) for combo in _combos(known))
        per = max(1, examples // len(strategies))
        for strategy in strategies:
            _drive(tally, session, op, strategy, base_url, headers, per, seed)
    return tally


def _drive(tally: Tally, session: requests.Session, op: Any, strategy: Any, base_url: str, headers: dict[str, str],
           per: int, seed: int) -> None:
    """``per`` cases drawn from ``strategy`` (a fixed seed: the same cases each run), each sent and checked."""
    from hypothesis import HealthCheck, Phase, given, seed as hseed, settings  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415

    @hseed(seed)
    @settings(max_examples=per, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data: Any) -> None:
        try:
            case = data.draw(strategy)
        except Exception:
            return
        try:
            r = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        except requests.RequestException as exc:
            tally.requests += 1
            tally.server_errors.append(f"{op.method.upper()} {op.path} -> no answer: {type(exc).__name__}")
            return
        check(tally, f"{op.method.upper()} {case.formatted_path}", r)

    run()


def _combos(known: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    from itertools import product  # noqa: PLC0415

    return list(product(*known.values()))[:4]


def prepare(work: Path) -> dict[str, str]:
    """An instance with a tagtog project, a Label Studio project and a local project with a trained quick model."""
    env = {**os.environ, "INSTANCE_PATH": str(work / "instance"), "TAGTOG_PROJECTS": "alice/spam",
           "LABELSTUDIO_PROJECTS": "1", "ADMIN_TOKEN": ADMIN, "MODEL_FAMILIES": "quick", "LOG_LEVEL": "WARNING",
           "WORKER_WARM_UP": "false", "TAGTOG_BASE_URL": "http://127.0.0.1:9", "LABELSTUDIO_URL": "http://127.0.0.1:9",
           "PYTHONUNBUFFERED": "1"}
    df = pd.read_csv(SMS_CSV).head(300)
    df.insert(0, "id", [f"sms{i}" for i in range(len(df))])
    df.loc[len(df)] = ["weird", "<script>window.__x=1</script> \u202e\u0000 \U0001F600", "ham"]
    df.to_csv(work / "sms.csv", index=False)
    for cmd in (["import", "--project", "local/fuzz", "--id-col", "id", "--label-col", "label", "--no-progress",
                 str(work / "sms.csv")], ["train", "--project", "local/fuzz"]):
        subprocess.run([sys.executable, "-m", "scripts.cli", *cmd], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return env


def run(examples: int, work: Path) -> dict[str, Any]:
    env = prepare(work)
    web_port, ml_port = free_port(), free_port()
    procs = []
    try:
        for name, port, target in (("web", web_port, "app:create_app()"), ("ml", ml_port, "web.ml_backend:create_app()")):
            log = open(work / f"{name}.log", "ab")
            procs.append(subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
                                           "-w", "2", target], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            wait_http(f"http://127.0.0.1:{port}/{'healthz' if name == 'web' else 'health'}", 60, procs[-1])
        web = f"http://127.0.0.1:{web_port}"
        ids = [p["id"] for p in requests.get(f"{web}/api/v1/projects", timeout=10).json()["projects"]]
        path_ids = {"project_id": ids, "version": [1], "event_id": [1]}
        auth = {"Authorization": f"Bearer {ADMIN}"}
        out = {"web": fuzz_spec(ROOT / "web" / "openapi.json", web, examples, auth, path_ids),
               "ml_backend": fuzz_spec(ROOT / "web" / "openapi-ml-backend.json", f"http://127.0.0.1:{ml_port}", examples, {},
                                       {})}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    return {k: v.as_dict() for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=60, help="cases per operation, positive + negative (default 60)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prelabel-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    result = run(args.examples, work)
    for name, r in result.items():
        print(f"{name}: {r['requests']} fuzzed requests, {r['5xx']} 5xx, {r['bad_error_bodies']} error bodies "
              f"without a JSON message; statuses {r['statuses']}")
    print(json.dumps(result))
    return 0 if all(r["5xx"] == 0 and r["bad_error_bodies"] == 0 for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
