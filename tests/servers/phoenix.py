"""A real Arize Phoenix server for tests: `phoenix serve` offline, on free loopback ports.

Settings from PROVIDERS.md: PHOENIX_WORKING_DIR in a temp dir, PHOENIX_HOST=127.0.0.1, free
PHOENIX_PORT and PHOENIX_GRPC_PORT, sqlite in memory, no telemetry, no external resources. Ready
when GET /healthz answers 200 (allow 120 s: 13-23 s is usual, more on a busy 2-core machine).

Usage in a test module:

    from tests.servers.phoenix import phoenix_server  # noqa: F401  (the session fixture)

    def test_x(phoenix_server):
        project = phoenix_server.ingest(rows)          # OTLP, then polls until queryable
        store = PhoenixTraceStore(phoenix_server.url, project)
        seeded = phoenix_server.seed_scenario("wrong_recipient", traces=40)  # memoised per session
        seeded.project, seeded.path (files store dir), seeded.truth, seeded.rows

`ingest(rows, project=None)` returns the project name (a fresh unique one by default) after every
exported span can be read back over REST; rows without endTime are skipped (see agentfire._otlp).
Phoenix keys traces by trace id across all projects: spans of a trace id already ingested land in
the earlier project, so every test must ingest trace ids of its own (or reuse the project).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest

from tests.conftest import SERVERS_DIR, free_port, require_server

PHOENIX_BIN = SERVERS_DIR / "phoenix-venv" / "bin" / "phoenix"
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SeededProject:
    """A sandbox scenario seeded into a files store (`path`) and ingested into Phoenix (`project`)."""

    project: str
    path: Path  # the files store directory holding <scenario>.jsonl and <scenario>.truth.json
    scenario: str
    truth: dict[str, Any]
    rows: list[dict[str, Any]]


@dataclass
class PhoenixServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    exports: list[Any] = field(default_factory=list)  # agentfire._otlp.ExportResult per ingest
    seeded: dict[tuple, SeededProject] = field(default_factory=dict)

    def seed_scenario(self, scenario: str, *, traces: int = 40, seed: int = 7,
                      now: Any = None) -> SeededProject:
        """`agentfire.sandbox.seed_store` into a files store, then ingest the same rows here.

        Memoised per (scenario, traces, seed, now) for the session: Phoenix keys traces globally,
        so tests share one ingestion of a scenario instead of colliding on its trace ids. `now`
        defaults to a fixed instant so every test sees the same data.
        """
        import json
        from datetime import datetime, timezone

        from agentfire.sandbox import seed_store

        now = now or datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
        key = (scenario, traces, seed, now)
        if key in self.seeded:
            return self.seeded[key]
        clash = [k for k in self.seeded if k[:3] == key[:3]]
        if clash:
            raise RuntimeError(f"{scenario} seed {seed} was ingested with now={clash[0][3]}: its trace ids "
                               "are taken in this Phoenix; use that now or another seed")
        path = self.log_path.parent / "seeded" / f"{scenario}-{traces}-{seed}-{now:%Y%m%dT%H%M%S}"
        result = seed_store(path, scenario=scenario, traces=traces, seed=seed, now=now)
        rows = [json.loads(line) for line in result.data_file.read_text(encoding="utf-8").splitlines() if line]
        project = self.ingest(rows, project=f"sandbox-{scenario}-{seed}-{len(self.seeded)}")
        self.seeded[key] = SeededProject(project, path, scenario, result.truth, rows)
        return self.seeded[key]

    def ingest(self, rows: Iterable[dict[str, Any]], project: str | None = None,
               timeout_s: float = 180.0) -> str:
        """Export rows over OTLP into `project` and wait until every exported span is queryable."""
        from agentfire._otlp import post_otlp

        project = project or f"t-{uuid.uuid4().hex[:10]}"
        result = post_otlp(self.url, list(rows), project)
        self.exports.append(result)
        self.wait_for_spans(project, result.exported, timeout_s=timeout_s)
        return project

    def count_spans(self, project: str) -> int:
        import httpx

        n, cursor = 0, None
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                r = c.get(f"/v1/projects/{project}/spans", params=params)
                if r.status_code == 404:  # the project appears with its first span
                    return 0
                r.raise_for_status()
                body = r.json()
                n += len(body["data"])
                cursor = body.get("next_cursor")
                if not cursor:
                    return n

    def wait_for_spans(self, project: str, expected: int, timeout_s: float = 180.0) -> None:
        """Ingestion is asynchronous (about 60 spans/s on 2 cores): poll until all are readable."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"phoenix exited ({self.process.returncode}); log: {self.log_path}")
            seen = self.count_spans(project)
            if seen >= expected:
                return
            time.sleep(0.3)
        raise TimeoutError(f"phoenix: {seen} of {expected} spans queryable in {project!r} after {timeout_s:g} s "
                           "(trace ids already ingested into another project stay there)")


def start_phoenix(work_dir: Path) -> PhoenixServer:
    import httpx

    port, grpc_port = free_port(), free_port()
    while grpc_port == port:
        grpc_port = free_port()
    env = dict(os.environ)
    env.update({
        "PHOENIX_WORKING_DIR": str(work_dir), "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_SQL_DATABASE_URL": "sqlite:///:memory:",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false", "PHOENIX_TELEMETRY_ENABLED": "false",
    })
    log_path = work_dir / "phoenix.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(PHOENIX_BIN), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            cwd=work_dir, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"phoenix serve exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return PhoenixServer(url, proc, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_phoenix(proc)
    raise RuntimeError(f"phoenix not ready after {READY_TIMEOUT_S:g} s: {log_path.read_text()[-2000:]}")


def stop_phoenix(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


_SHARED: PhoenixServer | None = None


@pytest.fixture(scope="session")
def phoenix_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """One Phoenix for the whole test session (about 0.5 GB, 15-25 s to start).

    Shared through a module global: a session fixture imported into several test modules is a
    separate fixture in each, and must not start a second server."""
    global _SHARED
    require_server("phoenix", PHOENIX_BIN.exists())
    if _SHARED is None or _SHARED.process.poll() is not None:
        _SHARED = start_phoenix(tmp_path_factory.mktemp("phoenix"))
        proc = _SHARED.process
        request.config.add_cleanup(lambda: stop_phoenix(proc))
    return _SHARED
