"""A fault-injecting HTTP proxy for the platform side (the tagtog emulator or a real Label Studio): it forwards
every request to ``--upstream`` and, at random (seeded), answers 500/503 instead, holds the request past the
client's timeout, delays every answer, or corrupts JSON answers of matching paths. prelabel's worker talks to the
proxy's URL as if it were the platform.

    python -m devtools.faultproxy --upstream http://127.0.0.1:8090 --port 8091 --rate 0.3 --timeout-s 3
    python -m devtools.faultproxy --upstream http://127.0.0.1:8080 --port 8081 --malform '/api/tasks/'

The faults can be changed while it runs: ``POST /-proxy/faults`` with any of rate, kinds, delay_s, timeout_s,
malform (a JSON object); ``GET /-proxy/stats`` counts calls and injected faults by kind.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import requests
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "content-encoding", "host"}
KINDS = ("500", "503", "timeout")


@dataclass
class Faults:
    rate: float = 0.0  # share of calls answered with a fault instead of the upstream's answer
    kinds: tuple[str, ...] = KINDS  # which faults: "500", "503", "timeout" (held past the client's timeout)
    timeout_s: float = 5.0  # how long a "timeout" fault holds the request before answering 504
    delay_s: float = 0.0  # added to every call (a slow platform)
    malform: str = ""  # regex of paths (with the query) whose JSON answers are cut in half, e.g. output=ann.json
    seed: int | None = None

    def update(self, body: dict[str, Any]) -> None:
        for k, v in body.items():
            if k == "kinds":
                v = tuple(str(x) for x in v)
                unknown = set(v) - set(KINDS)
                if unknown:
                    raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
            elif k in ("rate", "timeout_s", "delay_s"):
                v = float(v)
            elif k == "malform":
                re.compile(str(v))
                v = str(v)
            elif k != "seed":
                raise ValueError(f"unknown setting {k!r}")
            setattr(self, k, v)


@dataclass
class FaultProxy:
    upstream: str
    faults: Faults = field(default_factory=Faults)
    stats: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._server: BaseWSGIServer | None = None
        self.url = ""

    def _draw(self) -> str:
        with self._lock:
            self.stats["calls"] += 1
            if self.faults.rate and self._rng.random() < self.faults.rate:
                kind = self._rng.choice(self.faults.kinds)
                self.stats[kind] += 1
                return kind
            return ""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        req = Request(environ)
        return self._handle(req)(environ, start_response)

    def _handle(self, req: Request) -> Response:
        if req.path == "/-proxy/faults" and req.method == "POST":
            try:
                with self._lock:
                    self.faults.update(json.loads(req.get_data() or b"{}"))
                    self._rng = random.Random(self.faults.seed)
            except (ValueError, TypeError, re.error) as exc:
                return Response(json.dumps({"error": str(exc)}), 400, mimetype="application/json")
            return Response(json.dumps(asdict(self.faults)), 200, mimetype="application/json")
        if req.path == "/-proxy/stats":
            with self._lock:
                return Response(json.dumps(dict(self.stats)), 200, mimetype="application/json")
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        kind = self._draw()
        if kind == "timeout":
            time.sleep(self.faults.timeout_s)
            return Response("injected fault: upstream timeout", 504, mimetype="text/plain")
        if kind:
            return Response(f"injected fault {kind}", int(kind), mimetype="text/plain")
        headers = {k: v for k, v in req.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            r = self._session.request(req.method, self.upstream + req.full_path.rstrip("?"), headers=headers,
                                      data=req.get_data(), allow_redirects=False, timeout=120)
        except requests.RequestException as exc:
            return Response(f"proxy: upstream unreachable ({type(exc).__name__})", 502, mimetype="text/plain")
        body = r.content
        if (self.faults.malform and r.ok and re.search(self.faults.malform, req.full_path)
                and "json" in r.headers.get("Content-Type", "")):
            with self._lock:
                self.stats["malformed"] += 1
            body = body[: max(1, len(body) // 2)]  # cut mid-document: not JSON any more
        out = [(k, v) for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP]
        return Response(body, r.status_code, out)

    # -- in-process server (tests, benchmarks)
    def start(self, host: str = "127.0.0.1", port: int = 0) -> "FaultProxy":
        self._server = make_server(host, port, self, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.faultproxy", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--upstream", required=True, help="the platform's base URL, e.g. http://127.0.0.1:8090")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("--rate", type=float, default=0.0, help="share of calls answered with a fault (default 0)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="faults to pick from: 500,503,timeout (default all)")
    ap.add_argument("--timeout-s", type=float, default=5.0, help="a timeout fault holds the call this long")
    ap.add_argument("--delay-s", type=float, default=0.0, help="delay added to every call (a slow platform)")
    ap.add_argument("--malform", default="",
                    help="regex of paths (with the query string) whose JSON answers are cut in half")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO")
    faults = Faults()
    try:
        faults.update({"rate": args.rate, "kinds": args.kinds.split(","), "timeout_s": args.timeout_s,
                       "delay_s": args.delay_s, "malform": args.malform, "seed": args.seed})
    except (ValueError, re.error) as exc:
        ap.error(str(exc))
    proxy = FaultProxy(args.upstream, faults)
    server = make_server(args.host, args.port, proxy, threaded=True)
    logger.info("fault proxy on http://%s:%d -> %s (%s)", args.host, server.server_port, args.upstream,
                asdict(faults))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
