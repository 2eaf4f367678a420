"""A slow fake of the Unleash admin API subset agentfire's unleash provider uses (bench only).

    GET  /api/admin/projects/{project}/features/{flag}/environments/{env}      -> {"enabled": ...}
    POST /api/admin/projects/{project}/features/{flag}/environments/{env}/on|off -> 200, empty

Every API request sleeps `--delay-ms` (default 100) before answering, like a far-away SaaS; one
thread per connection, so 20 regions can be in flight at once. `Authorization` must be the
token (401 otherwise); unknown flags or environments are 404, as on the real server.
Bench control (not Unleash, no delay): POST /_bench/set {"enabled": bool} sets every environment.

Run: python3 bench/fake_unleash.py --envs 20 [--port 0]   (prints "PORT <n>" when listening)
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENV_PATH = re.compile(r"^/api/admin/projects/([^/]+)/features/([^/]+)/environments/([^/]+)(/on|/off)?$")


class FakeUnleash(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 20 concurrent connects must not overflow the listen backlog

    def __init__(self, port: int, *, token: str, project: str, flag: str, envs: list[str], delay_s: float):
        super().__init__(("127.0.0.1", port), Handler)
        self.token = token
        self.project = project
        self.flag = flag
        self.delay_s = delay_s
        self.enabled = {env: True for env in envs}
        self.lock = threading.Lock()
        self.requests = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a provider's read, write and read-back share a connection
    disable_nagle_algorithm = True  # an answer never waits for the client's delayed ACK
    server: FakeUnleash

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def parse_request(self) -> bool:
        # the request line is in: the configured delay counts from here, so the fake's own work
        # (parsing, routing, JSON) is inside the delay, not added to it
        self.arrived = time.monotonic()
        return super().parse_request()

    def _send(self, status: int, body: object | None = None, *, delayed: bool = True) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        if delayed:
            time.sleep(max(0.0, self.server.delay_s - (time.monotonic() - self.arrived)))
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # headers and body in one write: as two, each keep-alive answer waited ~40 ms for the
        # client's delayed ACK, and "100 ms" meant ~140 ms
        self._headers_buffer.append(b"\r\n" + data)  # type: ignore[attr-defined]
        self.flush_headers()

    def _route(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/_bench/set" and method == "POST":
            value = bool(json.loads(raw or b"{}").get("enabled", True))
            with self.server.lock:
                for env in self.server.enabled:
                    self.server.enabled[env] = value
            return self._send(200, {"ok": True}, delayed=False)
        with self.server.lock:
            self.server.requests += 1
        if self.headers.get("Authorization") != self.server.token:
            return self._send(401, {"message": "You must log in to use Unleash.", "name": "AuthenticationRequired"})
        m = ENV_PATH.match(self.path)
        if not m:
            return self._send(404, {"message": "Not found"})
        project, flag, env, action = m.groups()
        if project != self.server.project or flag != self.server.flag or env not in self.server.enabled:
            return self._send(404, {"message": f"Could not find feature {flag} or environment {env}"})
        if method == "GET" and action is None:
            with self.server.lock:
                enabled = self.server.enabled[env]
            return self._send(200, {"name": env, "environment": env, "type": "production",
                                    "enabled": enabled, "strategies": [], "variants": []})
        if method == "POST" and action:
            with self.server.lock:
                self.server.enabled[env] = action == "/on"
            return self._send(200)
        return self._send(405, {"message": "Method not allowed"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--envs", type=int, default=20)
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--token", default="*:*.bench-admin-token")
    ap.add_argument("--project", default="default")
    ap.add_argument("--flag", default="agent.enabled")
    args = ap.parse_args()
    envs = [f"env-{i:02d}" for i in range(1, args.envs + 1)]
    server = FakeUnleash(args.port, token=args.token, project=args.project, flag=args.flag,
                         envs=envs, delay_s=args.delay_ms / 1000)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
