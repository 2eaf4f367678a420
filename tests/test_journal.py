"""The incident journal and undo at their edges: torn and corrupt lines, the implicit incident of
`kill --undo`, and concurrent `agentfire kill` processes on the same files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentfire.errors import StateFileError
from agentfire.journal import Journal, latest_incident_with
from tests.conftest import REPO, run_agentfire

REGIONS = ("us-east", "eu-west", "ap-south")


def journal_path(sandbox: Path, incident: str) -> Path:
    return sandbox / f".agentfire/incidents/{incident}.jsonl"


def live(cli) -> dict[str, bool | None]:
    return {x["region"]: x["on"] for x in cli("status", "--json").json()["regions"]}


def test_torn_last_line_is_tolerated_and_sealed_by_the_next_append(sandbox: Path, cli) -> None:
    assert cli("--incident", "inc-torn", "--new", "kill", "--region", "us-east,eu-west", "--json").exit_code == 0
    path = journal_path(sandbox, "inc-torn")
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"ts":"2026-11-23T10:00:00.000Z","incident":"inc-torn","action":"kil')
    j = Journal(path.parent, "inc-torn")
    assert [e["action"] for e in j.entries()] == ["incident.open", "kill"]

    # undo still works from the intact part, and its append does not glue onto the torn line
    r = cli("--incident", "inc-torn", "kill", "--undo", "--json")
    assert r.exit_code == 0, r
    assert {x["region"]: x["outcome"] for x in r.json()["regions"]} == {
        "us-east": "CONFIRMED", "eu-west": "CONFIRMED", "ap-south": "SKIPPED"}
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and path.read_bytes().startswith(intact)
    entries = [json.loads(line) for line in lines[:-1]]  # every line is whole JSON again
    assert [e["action"] for e in entries] == ["incident.open", "kill", "journal.torn_line", "kill.undo"]
    assert entries[2]["fragment"].endswith('"action":"kil')  # the fragment is kept, as data


def test_corrupt_middle_line_is_a_clear_error_naming_the_line(sandbox: Path, cli) -> None:
    assert cli("--incident", "inc-bad", "--new", "kill", "--region", "us-east", "--json").exit_code == 0
    path = journal_path(sandbox, "inc-bad")
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(1, "{not json at all\n")
    path.write_text("".join(lines))
    before = path.read_bytes()

    with pytest.raises(StateFileError, match=r"inc-bad\.jsonl:2: corrupt journal line"):
        Journal(path.parent, "inc-bad").entries()

    r = run_agentfire("--incident", "inc-bad", "kill", "--undo", cwd=sandbox)
    assert r.exit_code == 1 and "Traceback" not in r.stderr, r
    assert r.stderr.strip().splitlines()[-1].startswith("agentfire: error: ")
    assert f"{path}:2: corrupt journal line" in r.stderr and "fix or remove it by hand" in r.stderr
    assert path.read_bytes() == before  # never rewritten
    assert live(cli)["us-east"] is False  # and nothing was turned back on from a guess

    # the implicit incident does not silently skip past it to an older one
    r = run_agentfire("kill", "--undo", cwd=sandbox)
    assert r.exit_code == 1 and f"{path}:2: corrupt journal line" in r.stderr, r


def test_undo_without_incident_picks_the_latest_incident_with_a_kill(sandbox: Path, cli) -> None:
    assert cli("--incident", "inc-first", "--new", "kill", "--region", "us-east", "--json").exit_code == 0
    time.sleep(0.02)  # journals are ordered by mtime
    assert cli("--incident", "inc-second", "--new", "kill", "--region", "eu-west", "--json").exit_code == 0
    time.sleep(0.02)
    # a newer incident without a kill (another minute's journal) is not the one to undo
    Journal(sandbox / ".agentfire/incidents", "inc-other").append("note", actor="t", text="no kill here")
    assert latest_incident_with(sandbox / ".agentfire/incidents", "kill") == "inc-second"

    r = run_agentfire("kill", "--undo", "--json", cwd=sandbox)
    assert r.exit_code == 0, r
    assert "undo: incident inc-second (the latest that turned a region off)" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["incident"] == "inc-second"
    assert {x["region"]: x["outcome"] for x in doc["regions"]}["eu-west"] == "CONFIRMED"
    assert live(cli) == {"us-east": False, "eu-west": True, "ap-south": True}
    assert [e["action"] for e in Journal(sandbox / ".agentfire/incidents", "inc-second").entries()][-1] == "kill.undo"


def test_undo_without_any_kill_is_a_usage_error(sandbox: Path) -> None:
    r = run_agentfire("kill", "--undo", cwd=sandbox)
    assert r.exit_code == 2 and "no incident has a kill to undo" in r.stderr and "Traceback" not in r.stderr


def test_two_concurrent_kill_processes_on_the_same_files(sandbox: Path, cli) -> None:
    assert cli("status").exit_code == 0  # the files exist, agent on
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    cmd = [sys.executable, "-m", "agentfire", "--incident", "inc-race", "--new", "kill", "--yes", "--json"]
    procs = [subprocess.Popen(cmd, cwd=sandbox, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, (out, err)
        doc = json.loads(out)
        assert doc["all_off"] is True
        assert {x["outcome"] for x in doc["regions"]} <= {"CONFIRMED", "ALREADY_OFF"}
    for region in REGIONS:
        path = sandbox / f".agentfire/flags/{region}.flagd.json"
        flag = json.loads(path.read_text())["flags"]["agent.enabled"]  # still valid JSON
        assert flag["defaultVariant"] == "off" and flag["state"] == "ENABLED"
    leftovers = [p.name for p in (sandbox / ".agentfire/flags").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # both runs journaled into the one incident, whole lines, opened once
    entries = [json.loads(line) for line in journal_path(sandbox, "inc-race").read_text().splitlines()]
    assert [e["action"] for e in entries] == ["incident.open", "kill", "kill"]
    assert live(cli) == {r: False for r in REGIONS}
