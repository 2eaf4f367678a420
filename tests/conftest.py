"""Shared fixtures: every test's state lives in a temp dir; servers start on loopback ports.

Tests that need a real server (Unleash, Redis, Phoenix) call `require_server(...)`: it skips with a
clear reason when the software is not installed (scripts/install-servers.sh installs it), and
fails instead when AGENTFIRE_REQUIRE_SERVERS=1 (CI sets it), so a skipped server test cannot pass
CI silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVERS_DIR = Path(os.environ.get("AGENTFIRE_SERVERS_DIR", Path.home() / ".cache/agentfire/servers"))


@pytest.fixture(scope="session", autouse=True)
def _agentfire_cache_in_a_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """agentfire's cache of validated runbooks (agentfire.runbook) lives in a temp dir for the
    whole session, for in-process and subprocess runs alike, not in the user's ~/.cache."""
    before = os.environ.get("AGENTFIRE_CACHE_DIR")
    os.environ["AGENTFIRE_CACHE_DIR"] = str(tmp_path_factory.mktemp("agentfire-cache"))
    yield
    if before is None:
        os.environ.pop("AGENTFIRE_CACHE_DIR", None)
    else:
        os.environ["AGENTFIRE_CACHE_DIR"] = before


def interruptible() -> None:
    """preexec_fn of a child the test interrupts: SIGINT at its default, whatever this run
    inherited (a run started in the background by a shell without job control, e.g. under
    nohup from a script, ignores SIGINT, and so would every child: Ctrl-C would never arrive)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_server(name: str, ok: bool, how: str = "run scripts/install-servers.sh") -> None:
    if ok:
        return
    msg = f"{name} is not installed ({how})"
    if os.environ.get("AGENTFIRE_REQUIRE_SERVERS") == "1":
        pytest.fail(f"AGENTFIRE_REQUIRE_SERVERS=1 but {msg}")
    pytest.skip(msg)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the embedded sandbox (runbook.yaml + fallbacks/) in a temp dir, as cwd.

    All agentfire state (flag files, journals, stores) lands below it.
    """
    root = tmp_path / "sandbox"
    root.mkdir()
    shutil.copy(REPO / "runbook.yaml", root / "runbook.yaml")
    shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    monkeypatch.chdir(root)
    monkeypatch.setenv("AGENTFIRE_CONFIG", str(root / "runbook.yaml"))
    monkeypatch.delenv("AGENTFIRE_INCIDENT", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    # the human layout (tables) although CliRunner's stdout is not a terminal; tests of the
    # piped layout (tab-separated rows) unset it
    monkeypatch.setenv("AGENTFIRE_FORCE_TTY", "1")
    return root


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.exit_code = code
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> Any:
        import json

        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<exit {self.exit_code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}>"


@pytest.fixture
def cli():
    """Run agentfire in-process through Typer's CliRunner: cli('kill', '--yes')."""
    from typer.testing import CliRunner

    from agentfire.cli import app

    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> CliResult:
        r = runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)
        return CliResult(r.exit_code, r.stdout, r.stderr)

    return run


def run_agentfire(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                  timeout: float = 60, input: str | None = None) -> CliResult:
    """Run agentfire as a real subprocess (python -m agentfire) with this checkout on the path."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("NO_COLOR", "1")
    full_env["COLUMNS"] = "200"
    if env:
        full_env.update(env)
    p = subprocess.run([sys.executable, "-m", "agentfire", *args], cwd=cwd, env=full_env,
                       capture_output=True, text=True, timeout=timeout, input=input)
    return CliResult(p.returncode, p.stdout, p.stderr)
