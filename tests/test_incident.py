"""incident close / list: no incident is closed until its regression case is in the eval set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agentfire.capture import case_id
from agentfire.journal import Journal
from tests.test_capture import WRONG_RECIPIENT, trace_rows, write_store


def _incidents(sandbox: Path) -> Path:
    return sandbox / ".agentfire" / "incidents"


def _entries(sandbox: Path, incident: str) -> list[dict]:
    return [json.loads(x) for x in (_incidents(sandbox) / f"{incident}.jsonl").read_text().splitlines()]


def _open_incident(sandbox: Path, incident: str) -> Journal:
    j = Journal(_incidents(sandbox), incident)
    j.append("kill", actor="alice", outcome="CONFIRMED", before={"us-east": True},
             after={"us-east": False}, duration_ms=40)
    return j


def test_close_refuses_without_a_case_then_writes_the_report(sandbox, cli):
    j = _open_incident(sandbox, "inc-1")
    r = cli("incident", "close", "inc-1")
    assert r.exit_code == 1
    assert "no captured regression case" in r.stderr and "capture" in r.stderr
    assert not (_incidents(sandbox) / "inc-1.report.md").exists()
    assert not any(e["action"] == "incident.close" for e in j.entries())

    # the responder journals the blast radius, then captures the case
    j.append("blast", actor="bob", outcome="DONE", matching=17, distinct_users=12,
             still_running=3, signature={"tool": "send_email"})
    write_store(sandbox, ("trace-wr-1", trace_rows("trace-wr-1", WRONG_RECIPIENT)))
    cap = cli("--incident", "inc-1", "--actor", "bob", "capture", "trace-wr-1", "--step", "4",
              "--expected", "ask first")
    assert cap.exit_code == 0, cap

    r = cli("--actor", "carol", "incident", "close", "inc-1")
    assert r.exit_code == 0, r
    assert "CLOSED" in r.stdout
    md = (_incidents(sandbox) / "inc-1.report.md").read_text()
    report = json.loads((_incidents(sandbox) / "inc-1.report.json").read_text())
    cid = case_id("trace-wr-1", 4)

    assert report["incident"] == "inc-1" and report["status"] == "closed"
    assert report["closed_by"] == "carol"
    assert [t["action"] for t in report["timeline"]] == ["incident.open", "kill", "blast", "capture"]
    assert [t["outcome"] for t in report["timeline"]][1:] == ["CONFIRMED", "DONE", "added"]
    assert report["off_rails"] == {"trace_id": "trace-wr-1", "step": 4, "tool": "send_email",
                                   "why": None, "chosen_by": "--step"}
    assert report["blast_radius"]["matching"] == 17 and report["blast_radius"]["still_running"] == 3
    assert report["cases"] == [{"case_id": cid, "trace_id": "trace-wr-1", "step": 4,
                                "tool": "send_email", "in_eval_set": True, "line": 1,
                                "eval_set": str(sandbox / "evals" / "regressions.jsonl")}]
    assert set(report["actors"]) == {"alice", "bob"}

    assert md.startswith("# Incident inc-1")
    for text in ("## Off-rails step", "step 4", "`send_email`", "## Blast radius", "matching: 17",
                 "## Regression cases", cid, "## Timeline", "| kill |", "outcome=CONFIRMED",
                 "Closed ", "by carol"):
        assert text in md, text

    closes = [e for e in j.entries() if e["action"] == "incident.close"]
    assert len(closes) == 1 and closes[0]["actor"] == "carol" and closes[0]["cases"] == [cid]

    again = cli("incident", "close", "inc-1")
    assert again.exit_code == 0 and "already closed" in again.stderr
    assert len([e for e in j.entries() if e["action"] == "incident.close"]) == 1


def test_close_json_and_no_blast_radius(sandbox, cli):
    write_store(sandbox, ("t-j", trace_rows("t-j", WRONG_RECIPIENT)))
    assert cli("--incident", "inc-j", "--new", "capture", "t-j", "--step", "2", "--expected", "x").exit_code == 0
    r = cli("incident", "close", "inc-j", "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["already_closed"] is False and doc["cases"][0]["case_id"] == case_id("t-j", 2)
    assert Path(doc["report_md"]).is_file() and Path(doc["report_json"]).is_file()
    assert "no blast radius was journaled" in Path(doc["report_md"]).read_text()


def test_close_refuses_when_the_case_left_the_eval_set(sandbox, cli):
    write_store(sandbox, ("t-g", trace_rows("t-g", WRONG_RECIPIENT)))
    assert cli("--incident", "inc-g", "--new", "capture", "t-g", "--step", "4", "--expected", "x").exit_code == 0
    (sandbox / "evals" / "regressions.jsonl").write_text("")  # someone removed it by hand
    r = cli("incident", "close", "inc-g")
    assert r.exit_code == 1 and "no longer in" in r.stderr


def test_close_with_verify_stays_open_until_the_suite_is_green(sandbox, cli):
    write_store(sandbox, ("t-v", trace_rows("t-v", WRONG_RECIPIENT)))
    assert cli("--incident", "inc-v", "--new", "capture", "t-v", "--step", "4", "--expected", "x").exit_code == 0
    failing = f"{sys.executable} -c 'raise SystemExit(3)'"
    r = cli("incident", "close", "inc-v", "--verify", failing)
    assert r.exit_code == 1 and "exited 3" in r.stderr and "stays open" in r.stderr
    assert not (_incidents(sandbox) / "inc-v.report.md").exists()
    r = cli("incident", "close", "inc-v", "--verify", f"{sys.executable} -c 'pass'")
    assert r.exit_code == 0, r
    actions = [(e["action"], e.get("outcome")) for e in _entries(sandbox, "inc-v")]
    assert ("incident.verify", "FAILED") in actions and ("incident.verify", "PASSED") in actions
    report = json.loads((_incidents(sandbox) / "inc-v.report.json").read_text())
    assert report["verify"]["exit_code"] == 0


def test_close_without_id_takes_the_latest_open_incident(sandbox, cli):
    r = cli("incident", "close")
    assert r.exit_code == 2 and "no open incident" in r.stderr
    write_store(sandbox, ("t-l", trace_rows("t-l", WRONG_RECIPIENT)))
    assert cli("--incident", "inc-l", "--new", "capture", "t-l", "--step", "4", "--expected", "x").exit_code == 0
    r = cli("incident", "close")
    assert r.exit_code == 0, r
    assert "inc-l" in r.stderr


def test_list_shows_open_and_closed(sandbox, cli):
    _open_incident(sandbox, "inc-open")
    write_store(sandbox, ("t-c", trace_rows("t-c", WRONG_RECIPIENT)))
    assert cli("--incident", "inc-done", "--new", "capture", "t-c", "--step", "4", "--expected", "x").exit_code == 0
    assert cli("incident", "close", "inc-done").exit_code == 0
    r = cli("incident", "list", "--json")
    assert r.exit_code == 0, r
    rows = {d["id"]: d for d in r.json()}
    assert set(rows) == {"inc-open", "inc-done"}
    assert rows["inc-open"]["status"] == "open" and rows["inc-open"]["closed_at"] is None
    assert rows["inc-done"]["status"] == "closed" and rows["inc-done"]["cases"] == [case_id("t-c", 4)]
    table = cli("incident", "list")
    assert table.exit_code == 0 and "OPEN" in table.stdout and "CLOSED" in table.stdout


def test_list_reports_a_corrupt_journal_without_failing(sandbox, cli):
    _incidents(sandbox).mkdir(parents=True)
    (_incidents(sandbox) / "inc-bad.jsonl").write_text('{"ts": "2026-11-23T10:00:00Z", "action": "incident.open"}\n{torn\n{"ok": 1}\n')
    r = cli("incident", "list", "--json")
    assert r.exit_code == 0
    (row,) = r.json()
    assert row["status"] == "unknown" and "inc-bad.jsonl:2" in row["problem"]


def test_report_renders_hostile_trace_content_inertly(sandbox, cli):
    hostile_tool = "send|email\x1b[31m[bold]x[/bold]\nrow"
    steps = [("TOOL", "read", {}, {}), ("TOOL", hostile_tool, {"to": "x"}, {})]
    write_store(sandbox, ("t-h", trace_rows("t-h", steps)))
    assert cli("--incident", "inc-h", "--new", "capture", "t-h", "--step", "2", "--expected", "x").exit_code == 0
    assert cli("incident", "close", "inc-h").exit_code == 0
    md = (_incidents(sandbox) / "inc-h.report.md").read_text()
    assert "\x1b" not in md
    row = next(line for line in md.splitlines() if line.startswith(f"| `{case_id('t-h', 2)}`"))
    assert row.count(" | ") == 4  # the pipe and newline in the tool name did not break the table


def test_the_runbook_names_the_suite_close_runs(sandbox, cli, tmp_path):
    import yaml

    doc = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    marker = tmp_path / "suite-ran"
    suite = tmp_path / "suite.py"
    suite.write_text(f"open({str(marker)!r}, 'w')\nraise SystemExit(1)\n")
    doc["evals"] = {"path": "evals/regressions.jsonl", "verify": f"{sys.executable} {suite}"}
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(doc))
    write_store(sandbox, ("t-s", trace_rows("t-s", WRONG_RECIPIENT)))
    assert cli("--incident", "inc-s", "--new", "capture", "t-s", "--step", "4").exit_code == 0
    r = cli("incident", "close", "inc-s")
    assert r.exit_code == 1 and "stays open" in r.stderr and marker.exists()
    r = cli("incident", "close", "inc-s", "--verify", f"{sys.executable} -c pass")
    assert r.exit_code == 0, r
