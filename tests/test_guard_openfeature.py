"""The agent's side on OpenFeature (issue 13): flagd files through `openfeature-provider-flagd`,
any OpenFeature provider named in runbook.yaml, default off, fail closed with the real reason,
bounded initialisation; and the CLI's read-back evaluating the flag the way an agent does.

The separate-process tests run `tests/guard_agent.py`: an agent asking the guard in a loop.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_agentfire
from tests.guard_agent import GuardAgent

pytest.importorskip("openfeature.contrib.provider.flagd", reason="pip install 'agentfire[guard]'")

GOOD = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
# each of these made the old reader say "on"; flagd itself serves the caller's default (or an
# error) for them, and the guard's default is off
MALFORMED: dict[str, dict[str, Any]] = {
    "defaultVariant typo": {**GOOD, "defaultVariant": "onn"},
    "defaultVariant null": {**GOOD, "defaultVariant": None},
    "state DISABLED": {**GOOD, "state": "DISABLED"},
    "garbage state": {**GOOD, "state": "MAYBE"},
    "string variants": {**GOOD, "variants": {"on": "true", "off": "false"}},
    "stray targeting": {**GOOD, "targeting": {"if": [True, "nope"]}},
}


@pytest.fixture(autouse=True)
def fresh_agents(monkeypatch: pytest.MonkeyPatch):
    from agentfire import guard

    monkeypatch.setattr(guard, "RUNBOOK_RECHECK_S", 0.0)  # these tests edit runbook.yaml between calls
    guard.forget_agents()
    yield
    guard.forget_agents()


def flag_file(root: Path, region: str = "us-east") -> Path:
    return root / f".agentfire/flags/{region}.flagd.json"


def write_flag(path: Path, entry: dict[str, Any], flag: str = "agent.enabled") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"flags": {flag: entry}}))
    os.replace(tmp, path)  # atomic, as agentfire and real deploy tools write


def edit_region(root: Path, region: str, **fields: Any) -> None:
    cfg = root / "runbook.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc["regions"][region].update(fields)
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))


# --- flagd in process ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_flagd_definitions_fail_closed(sandbox: Path, case: str) -> None:
    from agentfire import guard

    write_flag(flag_file(sandbox), MALFORMED[case])
    d = guard.agent_enabled("us-east")
    assert d.enabled is False, (case, d.reason)
    assert d.reason and d.fallback  # a reason, and the approved fallback for users


def test_malformed_definition_after_start_turns_the_agent_off(sandbox: Path) -> None:
    from agentfire import guard

    path = flag_file(sandbox)
    write_flag(path, GOOD)
    assert guard.agent_enabled("us-east").enabled
    for case, entry in MALFORMED.items():
        write_flag(path, entry)
        d = guard.agent_enabled("us-east")  # seen on the very next call, not at the next watch tick
        assert d.enabled is False, (case, d.reason)
        write_flag(path, GOOD)
        assert guard.agent_enabled("us-east").enabled, case


def test_real_reasons_not_empty_exception_text(sandbox: Path) -> None:
    from agentfire import guard

    path = flag_file(sandbox)
    write_flag(path, {**GOOD, "variants": {"on": "true", "off": "false"}})
    assert "TYPE_MISMATCH" in guard.agent_enabled("us-east").reason
    write_flag(path, GOOD, flag="other.flag")
    assert "FLAG_NOT_FOUND" in guard.agent_enabled("us-east").reason
    path.unlink()
    d = guard.agent_enabled("us-east")
    assert not d and "does not exist" in d.reason and "failing closed" in d.reason
    os.mkfifo(path)  # a file that would block a reader (a hung mount) must not hang the agent
    d = guard.agent_enabled("us-east")
    assert not d and "not a regular file" in d.reason


def test_targeting_is_evaluated_for_the_callers_context(sandbox: Path) -> None:
    from agentfire import guard

    write_flag(flag_file(sandbox), {**GOOD, "defaultVariant": "off", "targeting": {
        "if": [{"in": [{"var": "targetingKey"}, ["beta-user"]]}, "on", None]}})
    assert guard.agent_enabled("us-east", context={"targetingKey": "beta-user"}).enabled
    d = guard.agent_enabled("us-east", context={"targetingKey": "someone-else"})
    assert not d and d.reason == "kill switch is off"
    assert not guard.agent_enabled("us-east")  # the default context: the agent's name


def test_provider_created_once_and_reused(sandbox: Path) -> None:
    from agentfire import guard

    write_flag(flag_file(sandbox), GOOD)
    assert guard.agent_enabled("us-east").enabled
    (entry,) = guard._AGENTS.values()
    source = entry[3]["us-east"].source
    for _ in range(100):
        assert guard.agent_enabled("us-east").enabled
    (entry,) = guard._AGENTS.values()
    assert entry[3]["us-east"].source is source  # same provider, same OpenFeature domain
    from openfeature import api

    # the agent's other code can use the same provider through the OpenFeature API
    assert api.get_client(source.domain).get_boolean_value("agent.enabled", False) is True
    # a changed runbook.yaml rebuilds the region's provider (checked at most once a second:
    # RUNBOOK_RECHECK_S, 0 in these tests)
    edit_region(sandbox, "us-east", watch_interval_ms=300)
    assert guard.agent_enabled("us-east").enabled
    (entry,) = guard._AGENTS.values()
    assert entry[3]["us-east"].source is not source and source.closed


# --- any OpenFeature provider, named in runbook.yaml ----------------------------------------


def memory_provider(flags: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"provider": "tests.fakes.memory_openfeature:provider", "options": {"flags": flags}, **more}


def test_third_party_provider_by_import_path(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire import guard

    edit_region(sandbox, "us-east", openfeature_provider=memory_provider({"agent.enabled": True}))
    assert guard.agent_enabled("us-east").enabled
    edit_region(sandbox, "us-east", openfeature_provider=memory_provider({"agent.enabled": False}))
    d = guard.agent_enabled("us-east")
    assert not d and d.reason == "kill switch is off"
    edit_region(sandbox, "us-east", openfeature_provider=memory_provider({"agent.enabled": "yes"}))
    d = guard.agent_enabled("us-east")
    assert not d and "TYPE_MISMATCH" in d.reason
    edit_region(sandbox, "us-east", openfeature_provider=memory_provider({"other": True}))
    d = guard.agent_enabled("us-east")
    assert not d and "FLAG_NOT_FOUND" in d.reason
    # a key from the environment: named in the reason when missing, never its value
    spec = memory_provider({"agent.enabled": True}, options_env={"api_key": "AF_TEST_MEMKEY"})
    edit_region(sandbox, "us-east", openfeature_provider=spec, init_timeout_seconds=0.5)
    monkeypatch.delenv("AF_TEST_MEMKEY", raising=False)
    d = guard.agent_enabled("us-east")
    assert not d and "$AF_TEST_MEMKEY is not set" in d.reason
    guard.forget_agents()
    monkeypatch.setenv("AF_TEST_MEMKEY", "key-123456")
    assert guard.agent_enabled("us-east").enabled


def test_unknown_provider_name_fails_closed(sandbox: Path) -> None:
    from agentfire import guard

    edit_region(sandbox, "us-east", openfeature_provider={"provider": "no-such-provider"},
                init_timeout_seconds=0.3)
    d = guard.agent_enabled("us-east")
    assert not d and "no OpenFeature provider 'no-such-provider'" in d.reason


def test_initialisation_is_bounded_and_the_agent_is_off_until_ready(sandbox: Path) -> None:
    from agentfire import guard

    edit_region(sandbox, "us-east", init_timeout_seconds=0.3,
                openfeature_provider={"provider": "tests.fakes.memory_openfeature:slow",
                                      "options": {"seconds": 30}})
    started = time.monotonic()
    d = guard.agent_enabled("us-east")
    waited = time.monotonic() - started
    assert not d and "not ready" in d.reason and d.fallback
    assert waited < 10, f"the first call waited {waited:.1f}s on a provider stuck initialising"
    assert not guard.agent_enabled("us-east")  # still off, and later calls do not wait


# --- kill: the read-back evaluates the flag as an agent would --------------------------------


def test_kill_is_mismatch_when_agents_are_still_served_on(sandbox: Path, cli) -> None:
    """The file says off, but the agents of us-east evaluate another source that still serves
    on: CONFIRMED only when the agents' evaluation says off."""
    edit_region(sandbox, "us-east", openfeature_provider=memory_provider({"agent.enabled": True}))
    r = cli("--incident", "inc-mm", "--new", "kill", "--json")
    assert r.exit_code == 1, r
    rows = {x["region"]: x for x in r.json()["regions"]}
    assert rows["us-east"]["outcome"] == "MISMATCH"
    assert rows["us-east"]["agent_view"]["on"] is True and "served ON" in rows["us-east"]["detail"]
    assert rows["eu-west"]["outcome"] == "CONFIRMED" and rows["eu-west"]["agent_view"]["on"] is False
    assert r.json()["all_off"] is False


def test_kill_prints_how_fast_agents_see_it(sandbox: Path) -> None:
    r = run_agentfire("--incident", "inc-fast", "--new", "kill", "--yes", cwd=sandbox)
    assert r.exit_code == 0, r
    assert "agents see this within ~0.2 s: us-east: flagd file: on the agents' next call" in r.stderr


def test_doctor_checks_the_agents_view(sandbox: Path, cli) -> None:
    assert cli("status").exit_code == 0
    ok = cli("doctor", "--json")
    rows = {c["name"]: c for c in ok.json()["checks"] if c["area"] == "agents"}
    assert rows["us-east (agent view)"]["ok"] and "as the admin API reads" in rows["us-east (agent view)"]["detail"]
    # agents of eu-west evaluate a source that disagrees with the file the CLI writes
    edit_region(sandbox, "eu-west", openfeature_provider=memory_provider({"agent.enabled": False}))
    bad = cli("doctor", "--json")
    assert bad.exit_code == 1
    rows = {c["name"]: c for c in bad.json()["checks"] if c["area"] == "agents"}
    assert not rows["eu-west (agent view)"]["ok"]
    assert "served off, but the admin API reads on" in rows["eu-west (agent view)"]["detail"]


# --- a separate agent process against real flagd files ----------------------------------------


def test_agent_process_kill_undo_malformed_and_missing(sandbox: Path) -> None:
    assert run_agentfire("status", cwd=sandbox).exit_code == 0
    path = flag_file(sandbox, "eu-west")
    with GuardAgent("eu-west", sandbox / "runbook.yaml") as agent:
        agent.wait_for(True, 30)
        agent.mark()
        k = run_agentfire("--incident", "inc-p", "--new", "kill", "--yes", cwd=sandbox)
        assert k.exit_code == 0, k
        off = agent.wait_for(False, 10, reason_has="kill switch is off")
        assert off["fallback"]
        agent.mark()
        u = run_agentfire("--incident", "inc-p", "kill", "--undo", "--yes", cwd=sandbox)
        assert u.exit_code == 0, u
        agent.wait_for(True, 10)
        good = path.read_text()
        for case, entry in MALFORMED.items():
            agent.mark()
            write_flag(path, entry)
            agent.wait_for(False, 10)
            agent.mark()
            path.write_text(good)
            agent.wait_for(True, 10)
        agent.mark()
        path.write_bytes(b'{"flags": {"agent.enabled": {"state": "ENAB')  # torn by a bad deploy
        agent.wait_for(False, 10, reason_has="not valid JSON")
        agent.mark()
        path.unlink()
        agent.wait_for(False, 10, reason_has="does not exist")
        agent.mark()
        path.write_text(good)
        agent.wait_for(True, 10)


def test_third_party_provider_by_entry_point(sandbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider package that registers itself in the 'openfeature.provider' entry-point group
    is named by its entry point alone (an installed distribution's metadata, on sys.path)."""
    import sys

    from agentfire import guard

    site = tmp_path / "site"
    dist = site / "acme_flags-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-flags\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[openfeature.provider]\nacme = tests.fakes.memory_openfeature:provider\n")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    edit_region(sandbox, "us-east", openfeature_provider={"provider": "acme", "options": {"flags": {"agent.enabled": True}}})
    d = guard.agent_enabled("us-east")
    assert d.enabled, d.reason
    edit_region(sandbox, "us-east", openfeature_provider={"provider": "acme", "options": {"flags": {"agent.enabled": False}}})
    assert not guard.agent_enabled("us-east")
