"""`agentfire gameday`: drills on the sandbox and on real Unleash + Redis + Phoenix."""

from __future__ import annotations

import json
import random
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_agentfire
from tests.servers.phoenix import phoenix_server  # noqa: F401
from tests.servers.redis import redis_server  # noqa: F401
from tests.servers.unleash import unleash_flag, unleash_server  # noqa: F401

SCENARIOS = ["wrong_recipient", "destructive_sql", "runaway_loop", "papered_error"]


def journal(root: Path, incident: str) -> list[dict]:
    return [json.loads(l) for l in (root / ".agentfire/incidents" / f"{incident}.jsonl").read_text().splitlines()]


def test_start_injects_arms_the_kill_switch_and_pages(sandbox: Path, cli) -> None:
    # the kill switch is off before the drill (set by hand, no incident holds it); the drill arms it
    from agentfire import killswitch
    from agentfire.config import load_runbook

    rb = load_runbook(sandbox / "runbook.yaml")
    assert all(r.outcome.ok for r in killswitch.flip_regions(rb, list(rb.regions), on=False, comment="t"))
    r = run_agentfire("--incident", "drill-1", "--new", "gameday", "start", "wrong_recipient", "--seed", "11",
                      "--traces", "100", "--json", cwd=sandbox)
    assert r.exit_code == 0, r
    doc = r.json()
    truth = json.loads(Path(doc["truth_file"]).read_text())
    assert doc["alert_trace_id"] in {f["trace_id"] for f in truth["failing"] if not f["still_running"]}
    assert doc["alert_trace_id"] in doc["page"] and "runbook --trace" in doc["page"]
    assert (sandbox / ".agentfire/traces/wrong_recipient.jsonl").exists()
    live = run_agentfire("status", "--json", cwd=sandbox).json()
    assert [x["on"] for x in live["regions"]] == [True, True, True]
    actions = [e["action"] for e in journal(sandbox, "drill-1")]
    assert actions[:3] == ["incident.open", "gameday.start", "gameday.arm"]


def test_score_of_an_untouched_drill_fails_and_says_why(sandbox: Path) -> None:
    assert run_agentfire("--incident", "drill-2", "--new", "gameday", "start", "destructive_sql", "--seed", "3",
                         "--traces", "60", cwd=sandbox).exit_code == 0
    r = run_agentfire("gameday", "score", "drill-2", "--json", cwd=sandbox)
    assert r.exit_code == 1
    doc = r.json()
    assert doc["passed"] is False
    assert all(t["seconds"] is None for t in doc["timing"])
    assert not any(c["ok"] for c in doc["checks"].values())
    assert {l["verdict"] for l in doc["runbook_lines"]} == {"fiction"}


def test_a_drill_walked_by_hand_is_scored_then_restored_on_request(sandbox: Path) -> None:
    """gameday start + the responder's own commands + score: the score says what the drill left
    and how to reset it; `score --restore` puts the regions back (read live) and its verdict on
    "every region ended off" is still the one the responder earned."""
    assert run_agentfire("--incident", "drill-h", "--new", "gameday", "start", "wrong_recipient", "--seed", "5",
                         "--traces", "60", cwd=sandbox).exit_code == 0
    assert run_agentfire("--incident", "drill-h", "kill", "--region", "all", "--yes", cwd=sandbox).exit_code == 0
    told = run_agentfire("gameday", "score", "drill-h", cwd=sandbox)
    assert told.exit_code == 1  # only the kill was done
    said = " ".join(told.stderr.split())
    assert "the agent is OFF in ap-south, eu-west, us-east" in said
    assert "reset: agentfire --incident drill-h kill --undo --yes" in said
    assert [x["on"] for x in run_agentfire("status", "--json", cwd=sandbox).json()["regions"]] == [False] * 3
    r = run_agentfire("gameday", "score", "drill-h", "--restore", "--json", cwd=sandbox)
    assert r.exit_code == 1, r  # the drill still failed (triage, blast, capture were not done) ...
    assert r.json()["checks"]["every_region_ended_off"]["ok"] is True  # ... but the kill counted
    assert "restored what the drill changed" in r.stderr
    assert [x["on"] for x in run_agentfire("status", "--json", cwd=sandbox).json()["regions"]] == [True] * 3
    actions = [e["action"] for e in journal(sandbox, "drill-h")]
    assert actions.index("gameday.observed") < actions.index("gameday.restore")
    again = run_agentfire("gameday", "score", "drill-h", "--json", cwd=sandbox).json()
    assert again["checks"]["every_region_ended_off"]["ok"] is True  # the observation, not the live state


def test_unknown_scenario_and_target_are_usage_errors(sandbox: Path) -> None:
    r = run_agentfire("gameday", "start", "meteor_strike", cwd=sandbox)
    assert r.exit_code == 2 and "wrong_recipient" in r.stderr and "Traceback" not in r.stderr
    r = run_agentfire("gameday", "start", "runaway_loop", "--target", "prod", cwd=sandbox)
    assert r.exit_code == 2 and "staging" in r.stderr


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_passes_a_scripted_drill_on_the_sandbox(sandbox: Path, scenario: str) -> None:
    out = sandbox / "drill.md"
    r = run_agentfire("--incident", f"drill-{scenario}", "--new", "gameday", "run", scenario, "--auto", "--seed", "21",
                      "--traces", "200", "--out", str(out), "--json", cwd=sandbox, timeout=300)
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["passed"] is True
    assert all(c["ok"] for c in doc["checks"].values()), doc["checks"]
    assert [t["minute"] for t in doc["timing"] if t["seconds"] is not None] == [
        "kill", "freeze", "triage", "blast", "capture"]
    assert {l["verdict"] for l in doc["runbook_lines"]} == {"load-bearing"}
    assert "PASSED" in out.read_text()
    # the report of the same incident agrees with the score
    rep = run_agentfire("report", f"drill-{scenario}", "--json", cwd=sandbox).json()
    assert [s["status"] for s in rep["steps"]] == ["ok"] * 5


def test_a_broken_runbook_line_is_named_fiction(sandbox: Path) -> None:
    cfg = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    from agentfire.walk import DEFAULT_STEPS

    steps = [dict(s) for s in DEFAULT_STEPS]
    steps[1]["command"] = "agentfire freeze --to p50 --window notaduration"
    cfg["steps"] = steps
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_agentfire("--incident", "drill-rot", "--new", "gameday", "run", "runaway_loop", "--auto", "--seed", "2",
                      "--traces", "60", "--json", cwd=sandbox, timeout=300)
    assert r.exit_code == 1
    lines = {l["step"]: l["verdict"] for l in r.json()["runbook_lines"]}
    assert lines["kill"] == "load-bearing" and lines["freeze"] == "fiction"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_drill_on_real_unleash_redis_and_phoenix(tmp_path: Path, unleash_server, unleash_flag,  # noqa: F811
                                                 redis_server, phoenix_server, scenario: str,  # noqa: F811
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "staging"
    root.mkdir()
    shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", unleash_server.admin_token)
    project = f"gd-{scenario}-{uuid.uuid4().hex[:6]}"
    doc = {
        "version": 1,
        "agent": {"name": "support-agent", "flag": unleash_flag, "fallback": "fallbacks/support-agent.md"},
        "regions": {
            "us-east": {"kind": "unleash", "url": unleash_server.url, "environment": "production",
                        "token_env": "UNLEASH_ADMIN_TOKEN"},
            "eu-west": {"kind": "unleash", "url": unleash_server.url, "environment": "development",
                        "token_env": "UNLEASH_ADMIN_TOKEN"},
        },
        "budget": {"kind": "redis", "url": redis_server.url, "key_prefix": f"{project}:"},
        "traces": {"kind": "phoenix", "url": phoenix_server.url, "project": project},
        "journal": {"dir": "incidents"},
        "evals": {"path": "evals/regressions.jsonl"},
    }
    (root / "runbook.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    # the agent is off before the drill: arming must turn it on for real
    unleash_server.set_admin(unleash_flag, "production", False)
    before = unleash_server.client_view(unleash_flag)
    r = run_agentfire("--config", str(root / "runbook.yaml"), "--incident", "drill-stg", "--new", "gameday", "run",
                      scenario, "--auto", "--target", "staging", "--seed", str(random.randint(1000, 99999)), "--traces", "30", "--json",
                      cwd=root, timeout=600, env={"UNLEASH_ADMIN_TOKEN": unleash_server.admin_token})
    assert r.exit_code == 0, r
    score = r.json()
    assert score["passed"] and all(c["ok"] for c in score["checks"].values()), score["checks"]
    # both environments were off when the runbook ended (what the score saw) ...
    assert score["checks"]["every_region_ended_off"]["got"] == {"us-east": False, "eu-west": False}
    # ... and the drill then put back what it changed: what the agents see, from the server itself
    assert score["restored"] is True
    assert unleash_server.client_view(unleash_flag) == before and before["production"] is False
    entries = [json.loads(l) for l in (root / "incidents/drill-stg.jsonl").read_text().splitlines()]
    arm = [e for e in entries if e["action"] == "gameday.arm"][0]
    assert {x["region"]: x["before"] for x in arm["regions"]}["us-east"] is False
    assert unleash_server.admin_token not in json.dumps(entries)
