"""The agent's side, as a separate process.

An agent process reads the sandbox region's flagd file through the official OpenFeature SDK and
flagd provider (in-process FILE resolver), the way a production agent would, while `agentfire kill`
runs in another process: the agent must see the kill within a second of kill returning. And
`agentfire.guard.agent_enabled()` fails closed, handing back the approved fallback text.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_agentfire

pytest.importorskip("openfeature.contrib.provider.flagd", reason="pip install openfeature-provider-flagd")

# The agent: official SDK + flagd provider reading the file; prints when it sees the flag go off,
# then asks agentfire.guard what to tell users.
AGENT = r'''
import json, os, sys, time
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType

path, flag, region, config = sys.argv[1:5]
api.set_provider_and_wait(FlagdProvider(
    resolver_type=ResolverType.FILE, offline_flag_source_path=path, deadline_ms=500))
client = api.get_client()
# the caller's default is True, the worst case: only the file's own default variant can turn it off
print(f"READY {client.get_boolean_value(flag, True)} {time.time():.6f}", flush=True)
give_up = time.time() + 60
while time.time() < give_up:
    if client.get_boolean_value(flag, True) is False:
        print(f"OFF {time.time():.6f}", flush=True)
        from agentfire import guard
        d = guard.agent_enabled(region, config=config)
        print("GUARD " + json.dumps({"enabled": d.enabled, "reason": d.reason,
                                     "fallback": d.fallback, "approved": d.fallback_approved}), flush=True)
        os._exit(0)
    time.sleep(0.01)
print("GAVE UP", flush=True)
os._exit(1)
'''


class AgentProcess:
    def __init__(self, script: Path, flag_file: Path, region: str, config: Path):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(flag_file), "agent.enabled", region, str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        self.proc.kill()
        raise AssertionError(f"agent never printed {prefix!r}; stderr: {self.proc.stderr.read()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def test_agent_with_official_flagd_provider_sees_the_kill_within_a_second(sandbox: Path, tmp_path: Path) -> None:
    assert run_agentfire("status", cwd=sandbox).exit_code == 0  # creates the flag files, agent on
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    flag_file = sandbox / ".agentfire/flags/eu-west.flagd.json"
    agent = AgentProcess(script, flag_file, "eu-west", sandbox / "runbook.yaml")
    try:
        assert agent.expect("READY ", timeout=30).split()[0] == "True"
        r = run_agentfire("--incident", "inc-agent", "--new", "kill", "--region", "all", "--yes", "--json", cwd=sandbox)
        kill_returned = time.time()
        assert r.exit_code == 0, r
        assert {x["outcome"] for x in r.json()["regions"]} == {"CONFIRMED"}
        seen_off = float(agent.expect("OFF ", timeout=10))
        lag = seen_off - kill_returned
        assert lag < 1.0, f"the agent saw the kill {lag:.3f}s after kill returned"
        decision = json.loads(agent.expect("GUARD ", timeout=30))
    finally:
        agent.stop()
    assert decision["enabled"] is False and decision["approved"] is True
    fallback_text = (sandbox / "fallbacks/support-agent.md").read_text()
    assert decision["fallback"] and decision["fallback"] in fallback_text
    assert "approved_by" not in decision["fallback"]  # the header is not part of the message


def approved_text(sandbox: Path) -> str:
    from agentfire.fallbacks import parse_fallback

    fb = parse_fallback(sandbox / "fallbacks/support-agent.md")
    assert fb.approved and fb.text
    return fb.text


@pytest.fixture(autouse=True)
def fresh_agents(monkeypatch: pytest.MonkeyPatch):
    from agentfire import guard

    monkeypatch.setattr(guard, "RUNBOOK_RECHECK_S", 0.0)  # these tests edit runbook.yaml between calls
    guard.forget_agents()
    yield
    guard.forget_agents()


def test_guard_on_when_flag_on_and_off_after_kill(sandbox: Path, cli) -> None:
    from agentfire import guard

    assert cli("status").exit_code == 0  # the sandbox creates the files with the agent on
    d = guard.agent_enabled("us-east")
    assert d and d.enabled and d.fallback is None
    assert cli("--incident", "inc-g", "--new", "kill", "--region", "us-east", "--json").exit_code == 0
    d = guard.agent_enabled("us-east")
    assert not d and d.reason == "kill switch is off"
    assert d.fallback == approved_text(sandbox) and d.fallback_approved


def test_guard_fails_closed_on_a_corrupt_flag_file(sandbox: Path) -> None:
    from agentfire import guard

    assert run_agentfire("status", cwd=sandbox).exit_code == 0  # creates the files, agent on
    assert guard.agent_enabled("eu-west").enabled
    path = sandbox / ".agentfire/flags/eu-west.flagd.json"
    path.write_bytes(b'{"flags": {"agent.enabled": {"state": "ENABLED", "varia')
    d = guard.agent_enabled("eu-west")
    assert not d and "failing closed" in d.reason and "not valid JSON" in d.reason
    assert d.fallback == approved_text(sandbox) and d.fallback_approved
    assert path.read_bytes() == b'{"flags": {"agent.enabled": {"state": "ENABLED", "varia'


def test_guard_fails_closed_on_a_missing_flag_or_region(sandbox: Path) -> None:
    from agentfire import guard

    d = guard.agent_enabled("mars")
    assert not d and "unknown region" in d.reason and d.fallback == approved_text(sandbox)
    path = sandbox / ".agentfire/flags/ap-south.flagd.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"flags": {"other.flag": {"state": "ENABLED", "variants": {"on": True},
                                                          "defaultVariant": "on"}}}))
    d = guard.agent_enabled("ap-south")
    assert not d and "failing closed" in d.reason and d.fallback == approved_text(sandbox)


def test_guard_fails_closed_on_a_missing_config(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire import guard

    text = approved_text(sandbox)
    missing = sandbox / "nowhere/runbook.yaml"
    # the agent ships its approved fallback: without a runbook it is still what users get
    d = guard.agent_enabled("us-east", config=str(missing), fallback_path=sandbox / "fallbacks/support-agent.md")
    assert not d and "failing closed" in d.reason and "config file not found" in d.reason
    assert d.fallback == text and d.fallback_approved
    # no runbook anywhere (env unset, cwd without one) and no fallback given: still off
    monkeypatch.delenv("AGENTFIRE_CONFIG")
    monkeypatch.chdir(sandbox / "fallbacks")
    (sandbox / "runbook.yaml").rename(sandbox / "elsewhere.yaml")
    d = guard.agent_enabled()
    assert not d and "no runbook.yaml" in d.reason and d.fallback is None


def test_guard_fails_closed_on_a_broken_config(sandbox: Path) -> None:
    from agentfire import guard

    cfg = sandbox / "runbook.yaml"
    cfg.write_text(cfg.read_text().replace("  flag: agent.enabled", "  flag: agent.enabled\n  owner: x"))
    d = guard.agent_enabled("us-east", fallback_path=sandbox / "fallbacks/support-agent.md")
    assert not d and "unknown key 'owner'" in d.reason and d.fallback == approved_text(sandbox)
