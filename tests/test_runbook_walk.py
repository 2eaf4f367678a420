"""`agentfire runbook` and `agentfire report`: the timed walk, resume, carry-forward."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_agentfire

STEPS = """
steps:
  - id: kill
    title: Kill the agent everywhere
    command: agentfire kill --region all --yes
    target_seconds: 60
    check: every region CONFIRMED
  - id: wait
    title: A slow step (stands in for a long triage)
    command: '{wait_cmd}'
    target_seconds: 120
  - id: status
    title: Check it really flipped
    command: agentfire status --region {region}
    target_seconds: 180
"""


def write_steps(root: Path, wait_cmd: str = "true") -> None:
    """Replace the runbook's steps with STEPS (the sandbox runbook.yaml has the five minutes)."""
    import yaml

    cfg = yaml.safe_load((root / "runbook.yaml").read_text())
    cfg["steps"] = yaml.safe_load(STEPS.replace("{wait_cmd}", wait_cmd))["steps"]
    (root / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def journal_entries(root: Path, incident: str) -> list[dict]:
    p = root / ".agentfire/incidents" / f"{incident}.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()]


def step_ends(entries: list[dict]) -> list[tuple[str, str]]:
    return [(e["step"], e["outcome"]) for e in entries if e["action"] == "runbook.step" and e.get("phase") == "end"]


def test_auto_walk_runs_every_step_in_order_and_journals_them(sandbox: Path) -> None:
    write_steps(sandbox)
    answers = sandbox / "answers.yaml"
    answers.write_text("variables: {region: eu-west}\n")
    r = run_agentfire("--incident", "inc-walk", "--new", "runbook", "--auto", "--answers", str(answers), "--json", cwd=sandbox)
    assert r.exit_code == 0, r
    doc = r.json()
    assert [(s["step"], s["status"]) for s in doc["steps"]] == [("kill", "ok"), ("wait", "ok"), ("status", "ok")]
    assert all(s["on_time"] for s in doc["steps"])
    entries = journal_entries(sandbox, "inc-walk")
    assert step_ends(entries) == [("kill", "ok"), ("wait", "ok"), ("status", "ok")]
    # the kill command journaled its own action inside the same incident
    kill = [e for e in entries if e["action"] == "kill"]
    assert kill and kill[0]["outcome"] == "all_off"
    # the status step got the answers-file variable
    status_end = [e for e in entries if e.get("step") == "status" and e.get("phase") == "end"][0]
    assert status_end["command"] == "agentfire status --region eu-west"


def test_auto_walk_stops_at_a_failing_step_with_exit_1(sandbox: Path) -> None:
    write_steps(sandbox, wait_cmd="false")
    answers = sandbox / "answers.yaml"
    answers.write_text("variables: {region: all}\n")
    r = run_agentfire("--incident", "inc-fail", "--new", "runbook", "--auto", "--answers", str(answers), "--json", cwd=sandbox)
    assert r.exit_code == 1
    assert [(s["step"], s["status"]) for s in r.json()["steps"]] == [("kill", "ok"), ("wait", "failed"), ("status", "pending")]


def test_missing_variable_in_auto_mode_is_a_usage_error(sandbox: Path) -> None:
    write_steps(sandbox)
    r = run_agentfire("--incident", "inc-var", "--new", "runbook", "--auto", cwd=sandbox)
    # the status step needs {region}, which nothing provides
    assert r.exit_code == 2
    assert "{region} (step status)" in r.stderr and "Traceback" not in r.stderr
    # found before the walk started: the kill step did not run, nothing was flipped
    assert not (sandbox / ".agentfire/incidents/inc-var.jsonl").exists()
    assert not (sandbox / ".agentfire/flags").exists()


def test_interrupted_walk_resumes_at_the_first_unfinished_step(sandbox: Path) -> None:
    write_steps(sandbox, wait_cmd="sleep 60")
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    first = sandbox / "first.yaml"
    first.write_text("variables: {region: all}\n")
    p = subprocess.Popen([sys.executable, "-m", "agentfire", "--incident", "inc-resume", "--new", "runbook", "--auto",
                          "--trace", "tr-1", "--answers", str(first)], cwd=sandbox, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    journal = sandbox / ".agentfire/incidents/inc-resume.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if journal.exists() and '"step":"wait","phase":"start"' in journal.read_text():
            break
        time.sleep(0.1)
    else:
        p.kill()
        pytest.fail("the walk never reached the slow step")
    os.killpg(p.pid, signal.SIGKILL)  # a lost SSH session: no chance to clean up
    p.wait(timeout=10)

    answers = sandbox / "answers.yaml"
    answers.write_text("steps: {wait: 'true'}\nvariables: {region: all}\n")
    r = run_agentfire("--incident", "inc-resume", "runbook", "--auto", "--answers", str(answers), "--json", cwd=sandbox)
    assert r.exit_code == 0, r
    entries = journal_entries(sandbox, "inc-resume")
    starts = [e["step"] for e in entries if e["action"] == "runbook.step" and e.get("phase") == "start"]
    # kill ran once (not repeated), wait started twice (interrupted, then resumed), then status
    assert starts == ["kill", "wait", "wait", "status"]
    runs = {s["step"]: s["runs"] for s in r.json()["steps"]}
    assert runs == {"kill": 1, "wait": 2, "status": 1}


def test_report_matches_the_journal(sandbox: Path) -> None:
    write_steps(sandbox)
    answers = sandbox / "answers.yaml"
    answers.write_text("variables: {region: all}\n")
    assert run_agentfire("--incident", "inc-rep", "--new", "runbook", "--auto", "--answers", str(answers), cwd=sandbox).exit_code == 0
    r = run_agentfire("report", "inc-rep", "--json", cwd=sandbox)
    assert r.exit_code == 0
    doc = r.json()
    entries = journal_entries(sandbox, "inc-rep")
    assert [t["action"] for t in doc["timeline"]] == [e["action"] for e in entries]
    assert [t["ts"] for t in doc["timeline"]] == [e["ts"] for e in entries]
    out = sandbox / "incident.md"
    assert run_agentfire("report", "inc-rep", "--out", str(out), cwd=sandbox).exit_code == 0
    md = out.read_text()
    assert "| kill | ok |" in md and "## Timeline" in md


def test_walk_without_terminal_and_without_auto_refuses(sandbox: Path) -> None:
    write_steps(sandbox)
    r = run_agentfire("runbook", cwd=sandbox)
    assert r.exit_code == 2 and "--auto" in r.stderr


def test_interactive_walk_through_a_pty_with_quit_and_resume(sandbox: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    write_steps(sandbox)
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", COLUMNS="160", TERM="dumb")
    env.pop("CI", None)
    cmd = [sys.executable, "-m", "agentfire", "--incident", "inc-pty", "--new", "runbook", "--trace", "tr-9"]
    child = pexpect.spawn(cmd[0], cmd[1:], cwd=str(sandbox), env=env, encoding="utf-8", timeout=60)
    child.expect("step 1/3: kill")
    child.expect(r"\[r\]un")
    child.sendline("r")
    child.expect("kill: OK")
    child.expect("step 2/3: wait")
    child.sendline("q")  # the responder steps away
    child.expect("resume with")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1

    cmd.remove("--new")  # the incident exists now
    child = pexpect.spawn(cmd[0], cmd[1:], cwd=str(sandbox), env=env, encoding="utf-8", timeout=60)
    child.expect("resuming incident inc-pty")
    child.expect("step 2/3: wait")
    child.sendline("s")
    child.expect("why skip")
    child.sendline("not needed in this drill")
    child.expect("step 3/3: status")
    child.expect(r"\[e\]dit")  # {region} is unknown: the responder edits the command
    child.sendline("e")
    child.expect("command")
    child.sendline("agentfire status --region all")
    child.expect("status: OK")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    ends = step_ends(journal_entries(sandbox, "inc-pty"))
    assert ends == [("kill", "ok"), ("wait", "skipped"), ("status", "ok")]
