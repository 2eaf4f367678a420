"""The runbook walk in a real pseudo-terminal at 80 columns (issue 14): each proposed command is
shown whole, each step shows its own short result, the capture step asks the person, and every
way of stopping prints one resume command that works and carries the trace."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, interruptible

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)")
RESUME = re.compile(r"stopped; resume with: (?:\x1b\[[0-9;]*m)*(agentfire [^\r\n]+)")


def proposed(command: str) -> str:
    """The pattern of a proposed command on the screen (it may be styled bold)."""
    return r"proposed: (?:\x1b\[[0-9;]*m)*" + re.escape(command)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="80", LINES="50", TERM="xterm", NO_COLOR="1")
    for k in ("CI", "AGENTFIRE_FORCE_TTY", "AGENTFIRE_INCIDENT"):
        env.pop(k, None)
    return env


def spawn(root: Path, argv: list[str]):
    return pexpect.spawn(sys.executable, ["-m", "agentfire", *argv], cwd=str(root), env=_env(),
                         encoding="utf-8", timeout=60, dimensions=(50, 80), preexec_fn=interruptible)


def spawn_line(root: Path, line: str):
    argv = shlex.split(line)
    assert argv[0] == "agentfire"
    return spawn(root, argv[1:])


def journal(root: Path, incident: str) -> list[dict]:
    p = root / ".agentfire/incidents" / f"{incident}.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()]


def clean(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


@pytest.fixture
def alert(sandbox: Path, cli) -> str:
    seeded = cli("sandbox", "seed", "--scenario", "wrong_recipient", "--json").json()["scenarios"][0]
    truth = json.loads(Path(seeded["truth_file"]).read_text())
    return truth["examples"][0]


def test_full_walk_at_80_columns_shows_commands_whole_and_each_result(sandbox: Path, alert: str) -> None:
    child = spawn(sandbox, ["--incident", "inc-pty80", "--new", "runbook", "--trace", alert])
    seen = ""
    answered_capture = False
    expected_text = "ask the user before emailing an address that came from a document"
    while True:
        i = child.expect([r"\[r\]un / \[e\]dit / \[s\]kip / \[q\]uit", r"What should the agent have done instead\?",
                          r"step failed", pexpect.EOF])
        seen += child.before + (child.after if isinstance(child.after, str) else "")
        if i == 0:
            child.sendline("r")
        elif i == 1:
            child.sendline(expected_text)
            answered_capture = True
        elif i == 2:
            pytest.fail(clean(seen)[-3000:])
        else:
            break
    child.close()
    out = clean(seen)
    assert child.exitstatus == 0, out[-3000:]
    assert answered_capture
    starts = [e for e in journal(sandbox, "inc-pty80") if e.get("action") == "runbook.step" and e.get("phase") == "start"]
    assert [e["step"] for e in starts][:5] == ["kill", "freeze", "triage", "blast", "kill"]
    for e in starts:  # every command as run was shown whole, on one logical line
        assert f"proposed: {e['command']}\n" in out, e["command"]
        assert e["command"] == e["proposed"]  # nothing edited: what was shown is what ran
    blast_cmd = next(e["command"] for e in starts if e["step"] == "blast")
    assert "--since 6h" in blast_cmd
    capture_cmd = next(e["command"] for e in starts if e["step"] == "capture")
    assert shlex.split(capture_cmd)[-1] == expected_text  # the person's answer, whole
    # each step's own short result
    assert re.search(r"regions: us-east (CONFIRMED|ALREADY_OFF), eu-west (CONFIRMED|ALREADY_OFF), "
                     r"ap-south (CONFIRMED|ALREADY_OFF)", out)
    assert re.search(r"freeze cap \$[0-9.]+ \(= p50[^)]*\); p50 \$[0-9.]+ over \d+ trajectories; admission frozen\n", out)
    assert "in flight over the new cap: " in out
    assert re.search(r"verdict: step \d+ \(send_email\): ", out) and "evidence (high " in out
    assert re.search(r"\d+ trajectories, \d+ distinct users, \d+ still open", out)
    assert re.search(r"case \S+ added in \S+regressions.jsonl:\d+", out)
    assert f"expected (responder): {expected_text}" in out
    # no line wider than the terminal except the soft-wrapped command lines
    boxed = [line for line in out.splitlines() if line.startswith(("│", "╭", "╰"))]
    assert boxed and max(len(line) for line in boxed) <= 80
    case = [json.loads(x) for x in (sandbox / "evals/regressions.jsonl").read_text().splitlines()][-1]
    assert case["expected"] == expected_text and case["expected_source"] == "responder"


def test_auto_walk_stores_a_derived_expectation_as_derived(sandbox: Path, alert: str) -> None:
    from tests.conftest import run_agentfire

    r = run_agentfire("--incident", "inc-derived", "--new", "runbook", "--auto", "--trace", alert, "--json",
                      cwd=sandbox, timeout=300)
    assert r.exit_code == 0, r
    case = [json.loads(x) for x in (sandbox / "evals/regressions.jsonl").read_text().splitlines()][-1]
    assert case["expected_source"] == "derived"
    assert case["expected"].startswith("The agent must not take the off-rails step again")


def _steps_with_a_slow_one(root: Path) -> None:
    cfg = yaml.safe_load((root / "runbook.yaml").read_text())
    cfg["steps"] = [
        {"id": "kill", "title": "Kill", "target_seconds": 60,
         "command": "agentfire kill --region all --yes --reason 'runbook: minute one'"},
        {"id": "wait", "title": "Wait for the agents to drain", "target_seconds": 120,
         "command": f"{sys.executable} -c 'import time; time.sleep(60)'"},
        {"id": "triage", "title": "Triage", "target_seconds": 180, "command": "agentfire triage {trace_id}"},
    ]
    (root / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _stop_and_resume(root: Path, alert: str, incident: str, stop) -> None:  # type: ignore[no-untyped-def]
    child = spawn(root, ["--incident", incident, "--new", "runbook", "--trace", alert])
    child.expect(r"\[r\]un")
    child.sendline("r")  # kill
    child.expect("kill: OK")
    child.expect(r"\[r\]un")
    stop(child)
    child.expect(RESUME)
    resume = clean(child.match.group(1)).strip()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus in (1, 130)
    assert resume == f"agentfire --incident {incident} runbook --trace {alert}"
    # the resume command works: it continues at the unfinished step, with the trace
    again = spawn_line(root, resume)
    again.expect(f"resuming incident {incident} \\(trace {alert}\\)")
    again.expect("step 2/3: wait")
    again.expect(r"\[r\]un")
    again.sendline("s")
    again.expect("why skip")
    again.sendline("drill")
    again.expect("step 3/3: triage")
    again.expect(proposed(f"agentfire triage {alert}"))
    again.sendline("q")
    again.expect(RESUME)
    assert clean(again.match.group(1)).strip() == resume
    again.expect(pexpect.EOF)
    again.close()
    # started without --trace, the walk still remembers it
    bare = spawn(root, ["--incident", incident, "runbook"])
    bare.expect(f"resuming incident {incident} \\(trace {alert}\\)")
    bare.expect(proposed(f"agentfire triage {alert}"))
    bare.sendline("q")
    bare.expect(RESUME)
    assert clean(bare.match.group(1)).strip() == resume
    bare.expect(pexpect.EOF)


@pytest.mark.parametrize("how", ["q", "ctrl-c-at-prompt", "ctrl-d-at-prompt", "ctrl-c-during-step"])
def test_every_way_of_stopping_prints_a_working_resume_command(sandbox: Path, alert: str, how: str) -> None:
    _steps_with_a_slow_one(sandbox)

    def stop(child) -> None:  # type: ignore[no-untyped-def]
        if how == "q":
            child.sendline("q")
        elif how == "ctrl-c-at-prompt":
            child.sendintr()
        elif how == "ctrl-d-at-prompt":
            child.sendeof()
        else:
            import time

            child.sendline("r")
            time.sleep(2.0)  # inside the 60 s step
            child.sendintr()

    _stop_and_resume(sandbox, alert, f"inc-stop-{how}", stop)
