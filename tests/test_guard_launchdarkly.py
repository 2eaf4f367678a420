"""The agent's side on LaunchDarkly: the real server SDK (`launchdarkly-server-sdk`) behind
`launchdarkly-openfeature-server`, with an environment's SDK key, pointed at the contract fake's
streaming and polling SDK endpoints (LaunchDarkly's flag-data format). Agents never hold the API
access token; the CLI kills with it, and its read-back evaluates the flag as the SDK does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_agentfire
from tests.fakes.launchdarkly import LaunchDarklyFake, launchdarkly_fake  # noqa: F401 (fixture)
from tests.guard_agent import GuardAgent

pytest.importorskip("ld_openfeature", reason="pip install 'agentfire[launchdarkly]'")

TOKEN = "api-5d2e-secret-ld-token-value"
FLAG = "agent.enabled"


def write_runbook(root: Path, fake: LaunchDarklyFake, **over: Any) -> Path:
    region = {"kind": "launchdarkly", "base_url": fake.url, "project": "default", "environment": "production",
              "sdk_key_env": "AF_TEST_LD_SDK_KEY", "stream_uri": fake.url, "sdk_base_uri": fake.url,
              "send_events": False, "init_timeout_seconds": 5, **over}
    doc = {"version": 1,
           "agent": {"name": "support-agent", "flag": FLAG, "fallback": "fallbacks/support-agent.md"},
           "regions": {"ld-prod": region}, "kill": {"deadline_seconds": 15},
           "journal": {"dir": ".agentfire/incidents"}}
    (root / "runbook.yaml").write_text(json.dumps(doc, indent=2))
    return root / "runbook.yaml"


@pytest.fixture
def ld(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launchdarkly_fake: LaunchDarklyFake):
    root = tmp_path / "ops"
    root.mkdir()
    shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    launchdarkly_fake.tokens.add(TOKEN)
    write_runbook(root, launchdarkly_fake)
    monkeypatch.chdir(root)
    monkeypatch.setenv("AGENTFIRE_CONFIG", str(root / "runbook.yaml"))
    monkeypatch.setenv("LD_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("AF_TEST_LD_SDK_KEY", launchdarkly_fake.sdk_keys["production"])
    monkeypatch.delenv("AGENTFIRE_INCIDENT", raising=False)
    from agentfire import guard

    monkeypatch.setattr(guard, "RUNBOOK_RECHECK_S", 0.0)  # these tests edit runbook.yaml between calls
    guard.forget_agents()
    yield root, launchdarkly_fake
    guard.forget_agents()


def agent_env(fake: LaunchDarklyFake) -> dict[str, str]:
    # the agent holds the SDK key only: no API access token in its environment
    return {"AF_TEST_LD_SDK_KEY": fake.sdk_keys["production"], "LD_ACCESS_TOKEN": ""}


def test_guard_streams_from_the_sdk_endpoints(ld) -> None:
    from agentfire import guard

    root, fake = ld
    d = guard.agent_enabled("ld-prod")
    assert d.enabled, d.reason
    fake.set_on(FLAG, "production", False)
    import time

    end = time.monotonic() + 10
    while guard.agent_enabled("ld-prod").enabled and time.monotonic() < end:
        time.sleep(0.01)
    d = guard.agent_enabled("ld-prod")
    assert not d and d.reason == "kill switch is off" and d.fallback
    # only the SDK endpoints were used by the agent side, with the SDK key
    sdk = [r for r in fake.requests if r.path in ("/all", "/sdk/latest-all")]
    assert sdk and all(r.env == "production" for r in sdk)
    assert not [r for r in fake.requests if r.path.startswith("/api/")]


def test_guard_never_uses_an_access_token(ld, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire import guard

    root, fake = ld
    write_runbook(root, fake, sdk_key_env=None)
    d = guard.agent_enabled("ld-prod")
    assert not d and "sdk_key_env" in d.reason
    guard.forget_agents()
    write_runbook(root, fake)
    monkeypatch.setenv("AF_TEST_LD_SDK_KEY", TOKEN)  # an API token handed to the agent: refused
    d = guard.agent_enabled("ld-prod")
    assert not d and "API access token" in d.reason and TOKEN not in d.reason


def test_polling_mode_reads_the_polling_endpoint(ld) -> None:
    from agentfire import guard

    root, fake = ld
    fake.set_on(FLAG, "production", False)
    write_runbook(root, fake, stream=False)
    d = guard.agent_enabled("ld-prod")
    assert not d and d.reason == "kill switch is off"
    assert [r for r in fake.requests if r.path == "/sdk/latest-all"]
    assert not [r for r in fake.requests if r.path == "/all"]


def test_agent_process_kill_undo_down_hung(ld) -> None:
    root, fake = ld
    write_runbook(root, fake, max_stale_seconds=1)
    with GuardAgent("ld-prod", root / "runbook.yaml", env=agent_env(fake),
                    context={"targetingKey": "user-42", "plan": "pro"}) as agent:
        agent.wait_for(True, 30)
        agent.mark()
        k = run_agentfire("--incident", "inc-ld", "--new", "kill", "--yes", "--json", cwd=root)
        assert k.exit_code == 0, k
        (row,) = k.json()["regions"]
        assert row["outcome"] == "CONFIRMED" and row["agent_view"]["on"] is False
        assert "LaunchDarkly SDK (production)" in row["agent_view"]["detail"]
        assert "streaming" in row["agents_see"]
        agent.wait_for(False, 10, reason_has="kill switch is off")
        agent.mark()
        u = run_agentfire("--incident", "inc-ld", "kill", "--undo", "--yes", cwd=root)
        assert u.exit_code == 0, u
        agent.wait_for(True, 10)
        # the SDK endpoints go down: the SDK keeps its last data a while, then the agent is off
        agent.mark()
        fake.sdk_mode("production", "down")
        agent.wait_for(False, 30, reason_has="source failing")
        agent.mark()
        fake.sdk_mode("production", "ok")
        agent.wait_for(True, 60)
    assert TOKEN not in json.dumps(agent.states)


def test_a_hung_stream_at_start_keeps_the_agent_off_within_the_bound(ld) -> None:
    root, fake = ld
    fake.sdk_mode("production", "hang")
    write_runbook(root, fake, init_timeout_seconds=1)
    with GuardAgent("ld-prod", root / "runbook.yaml", env=agent_env(fake)) as agent:
        first = agent.wait_for(False, 30)
        assert "not ready" in first["reason"] or "initialising" in first["reason"]
        agent.mark()
        fake.sdk_mode("production", "ok")
        agent.wait_for(True, 90)  # the SDK retries; the guard re-initialises with backoff


def test_off_but_serving_true_is_a_mismatch(ld, cli) -> None:
    """A flag whose offVariation is true: turning it off changes nothing for the agents. kill
    says MISMATCH (never CONFIRMED or ALREADY_OFF), status reads on, and the agent is still on."""
    from agentfire import guard

    root, fake = ld
    fake.set_off_variation(FLAG, "production", 0)
    r = cli("--incident", "inc-ov", "--new", "kill", "--json")
    assert r.exit_code == 1, r
    (row,) = r.json()["regions"]
    assert row["outcome"] == "MISMATCH" and row["after"] is True
    assert "offVariation (0) serves true" in row["detail"]
    assert fake.is_on(FLAG, "production") is False  # the write happened; it just does not help
    again = cli("--incident", "inc-ov", "kill", "--json")
    assert again.json()["regions"][0]["outcome"] == "MISMATCH"  # not ALREADY_OFF
    s = cli("status", "--json")
    assert s.json()["regions"][0]["on"] is True
    assert guard.agent_enabled("ld-prod").enabled is True  # what the SDK serves: true
    # once the offVariation serves false, the same kill is ALREADY_OFF, checked by the SDK view
    fake.set_off_variation(FLAG, "production", 1)
    ok = cli("--incident", "inc-ov", "kill", "--json")
    assert ok.exit_code == 0, ok
    (row,) = ok.json()["regions"]
    assert row["outcome"] == "ALREADY_OFF" and row["agent_view"]["on"] is False


def test_doctor_checks_the_sdk_key(ld, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    root, fake = ld
    ok = cli("doctor", "--json")
    rows = {c["name"]: c for c in ok.json()["checks"] if c["area"] == "agents"}
    assert rows["ld-prod (agent view)"]["ok"], rows
    monkeypatch.setenv("AF_TEST_LD_SDK_KEY", fake.sdk_keys["staging"])  # another environment's key
    fake.set_on(FLAG, "staging", False)
    swapped = cli("doctor", "--json")
    rows = {c["name"]: c for c in swapped.json()["checks"] if c["area"] == "agents"}
    assert not rows["ld-prod (agent view)"]["ok"]
    assert "served off, but the admin API reads on" in rows["ld-prod (agent view)"]["detail"]
    monkeypatch.setenv("AF_TEST_LD_SDK_KEY", "sdk-bogus-0000")
    write_runbook(root, fake, init_timeout_seconds=1)
    bogus = cli("doctor", "--json")
    rows = {c["name"]: c for c in bogus.json()["checks"] if c["area"] == "agents"}
    assert not rows["ld-prod (agent view)"]["ok"] and "cannot evaluate" in rows["ld-prod (agent view)"]["detail"]
    for r in (ok, swapped, bogus):
        assert TOKEN not in r.stdout and fake.sdk_keys["production"] not in r.stdout
