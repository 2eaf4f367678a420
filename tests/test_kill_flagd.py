"""kill / status / undo against the embedded sandbox (flagd files), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_agentfire


def flag_doc(root: Path, region: str) -> dict:
    return json.loads((root / f".agentfire/flags/{region}.flagd.json").read_text())


def test_kill_all_regions_confirms_each_and_journals(sandbox: Path, cli) -> None:
    r = cli("--incident", "inc-test", "--new", "kill", "--region", "all", "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["incident"] == "inc-test" and doc["flag"] == "agent.enabled" and doc["all_off"] is True
    assert [x["region"] for x in doc["regions"]] == ["us-east", "eu-west", "ap-south"]
    for x in doc["regions"]:
        assert x["outcome"] == "CONFIRMED" and x["before"] is True and x["after"] is False
        assert set(x) == {"region", "provider", "outcome", "before", "after", "latency_ms", "detail",
                          "agent_view", "agents_see", "agents_see_s"}
        # read back as an agent evaluates it: the flagd OpenFeature provider says off
        assert x["agent_view"]["on"] is False and "flagd file" in x["agent_view"]["detail"]
        assert "next call" in x["agents_see"]
        # the off variant is the default, not merely state DISABLED (which serves the caller default)
        f = flag_doc(sandbox, x["region"])["flags"]["agent.enabled"]
        assert f["defaultVariant"] == "off" and f["state"] == "ENABLED"
    entries = [json.loads(l) for l in (sandbox / ".agentfire/incidents/inc-test.jsonl").read_text().splitlines()]
    kill = [e for e in entries if e["action"] == "kill"][0]
    assert {r["region"]: r["before"] for r in kill["regions"]} == {"us-east": True, "eu-west": True, "ap-south": True}
    assert kill["actor"] and kill["ts"].endswith("Z")


def test_second_kill_is_already_off_and_status_reads_live(sandbox: Path, cli) -> None:
    assert cli("--incident", "inc-a", "--new", "kill", "--json").exit_code == 0
    r = cli("--incident", "inc-a", "kill", "--json")
    assert r.exit_code == 0
    assert {x["outcome"] for x in r.json()["regions"]} == {"ALREADY_OFF"}
    s = cli("status", "--json")
    assert s.exit_code == 0
    assert [x["on"] for x in s.json()["regions"]] == [False, False, False]


def test_undo_restores_only_regions_this_incident_turned_off(sandbox: Path, cli) -> None:
    # eu-west is off before the incident (someone killed it by hand earlier)
    assert cli("--incident", "inc-old", "--new", "kill", "--region", "eu-west", "--json").exit_code == 0
    assert cli("--incident", "inc-new", "--new", "kill", "--region", "all", "--json").exit_code == 0
    r = cli("--incident", "inc-new", "kill", "--undo", "--json")
    assert r.exit_code == 0, r
    outcomes = {x["region"]: x["outcome"] for x in r.json()["regions"]}
    assert outcomes == {"us-east": "CONFIRMED", "eu-west": "SKIPPED", "ap-south": "CONFIRMED"}
    live = {x["region"]: x["on"] for x in cli("status", "--json").json()["regions"]}
    assert live == {"us-east": True, "eu-west": False, "ap-south": True}


def test_dry_run_changes_nothing(sandbox: Path, cli) -> None:
    cli("status")  # creates the files with the agent on
    before = {r: flag_doc(sandbox, r) for r in ("us-east", "eu-west", "ap-south")}
    r = cli("kill", "--dry-run", "--json")
    assert r.exit_code == 0
    assert {x["outcome"] for x in r.json()["regions"]} == {"DRY_RUN"}
    assert {r: flag_doc(sandbox, r) for r in before} == before
    assert not (sandbox / ".agentfire/incidents").exists() or not list((sandbox / ".agentfire/incidents").glob("*.jsonl"))


def test_corrupt_flag_file_is_left_untouched_and_region_fails(sandbox: Path, cli) -> None:
    cli("status")
    bad = sandbox / ".agentfire/flags/eu-west.flagd.json"
    bad.write_text('{"flags": {"agent.enabled": ')
    r = cli("--incident", "inc-c", "--new", "kill", "--json")
    assert r.exit_code == 1
    outcomes = {x["region"]: x["outcome"] for x in r.json()["regions"]}
    assert outcomes == {"us-east": "CONFIRMED", "eu-west": "ERROR", "ap-south": "CONFIRMED"}
    assert r.json()["all_off"] is False
    assert bad.read_text() == '{"flags": {"agent.enabled": '


def test_targeting_is_stashed_on_kill_and_restored_on_undo(sandbox: Path, cli) -> None:
    cli("status")
    p = sandbox / ".agentfire/flags/us-east.flagd.json"
    doc = json.loads(p.read_text())
    rule = {"if": [{"in": ["@beta", {"var": "email"}]}, "on", None]}
    doc["flags"]["agent.enabled"]["targeting"] = rule
    p.write_text(json.dumps(doc))
    assert cli("--incident", "inc-t", "--new", "kill", "--region", "us-east", "--json").exit_code == 0
    killed = json.loads(p.read_text())["flags"]["agent.enabled"]
    assert "targeting" not in killed and killed["defaultVariant"] == "off"
    assert cli("--incident", "inc-t", "kill", "--undo", "--region", "us-east").exit_code == 0
    restored = json.loads(p.read_text())["flags"]["agent.enabled"]
    assert restored["targeting"] == rule and restored["defaultVariant"] == "on"


def test_real_process_kill_without_terminal_never_asks(sandbox: Path) -> None:
    r = run_agentfire("kill", "--region", "us-east,ap-south", cwd=sandbox)
    assert r.exit_code == 0, r
    assert "CONFIRMED" in r.stdout and "opened incident inc-" in r.stderr
    assert "us-east" in r.stdout and "eu-west" not in r.stdout


def test_atomic_write_never_replaces_a_device_or_symlink(tmp_path: Path) -> None:
    import os

    import pytest

    from agentfire._files import atomic_write
    from agentfire.errors import StateFileError

    with pytest.raises(StateFileError):
        atomic_write(Path("/dev/null"), b"x")
    assert Path("/dev/null").is_char_device()
    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    os.symlink(target, link)
    with pytest.raises(StateFileError):
        atomic_write(link, b"[]")
    assert target.read_text() == "{}" and link.is_symlink()
