"""Issue 12 (items 1-7): act only when everything is known; incidents have an identity.

Each test reproduces one way the walk or the incident bookkeeping could leave production in a
wrong state (a kill journaled into the wrong incident, a half-run walk, two walks interleaved).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_agentfire

INCIDENTS = Path(".agentfire/incidents")


def journals(root: Path) -> list[str]:
    d = root / INCIDENTS
    return sorted(p.stem for p in d.glob("*.jsonl")) if d.is_dir() else []


def entries(root: Path, incident: str) -> list[dict]:
    return [json.loads(l) for l in (root / INCIDENTS / f"{incident}.jsonl").read_text().splitlines()]


def flags_on(root: Path) -> dict[str, bool | None]:
    doc = run_agentfire("status", "--json", cwd=root).json()
    return {r["region"]: r["on"] for r in doc["regions"]}


# --- 1. every variable the walk needs is known before step 1 ----------------------------------


def test_auto_walk_without_a_trace_refuses_before_the_kill(sandbox: Path) -> None:
    # it used to turn every region off and freeze spend, then stop at triage: "step needs {trace_id}"
    r = run_agentfire("runbook", "--auto", cwd=sandbox)
    assert r.exit_code == 2, r
    assert "{trace_id}" in r.stderr and "--trace" in r.stderr and "Traceback" not in r.stderr
    assert journals(sandbox) == []
    assert not (sandbox / ".agentfire/flags").exists()  # no region was touched
    assert "opened incident" not in r.stderr


def test_a_variable_only_a_later_step_provides_is_refused_before_step_1(sandbox: Path) -> None:
    # freeze (step 2) uses triage's verdict (step 3): known too late, after the kill ran
    cfg = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    from agentfire.walk import DEFAULT_STEPS

    steps = [dict(s) for s in DEFAULT_STEPS]
    steps[1]["command"] = "agentfire freeze --to p50 --reason {verdict}"
    cfg["steps"] = steps
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_agentfire("runbook", "--auto", "--trace", "tr-1", cwd=sandbox)
    assert r.exit_code == 2, r
    assert "{verdict} (step freeze)" in r.stderr and "triage" in r.stderr
    assert journals(sandbox) == [] and not (sandbox / ".agentfire/flags").exists()


# --- 2. an incident is opened only when its first action is about to happen --------------------


@pytest.mark.parametrize("args", [
    ("gameday", "start", "meteor_strike"),
    ("gameday", "start", "wrong_recipient", "--target", "prod"),
    ("gameday", "start", "wrong_recipient", "--traces", "0"),
    ("gameday", "start", "wrong_recipient", "--traces", "100000"),
    ("gameday", "run", "meteor_strike", "--auto"),
    ("capture", "tr-x", "--push", "--expected", "x"),
    ("capture", "tr-missing", "--expected", "x"),
    ("freeze", "--to", "p50", "--window", "1s", "--yes"),
    ("kill", "--region", "nowhere", "--yes"),
])
def test_a_command_that_fails_validation_opens_no_incident(sandbox: Path, args: tuple[str, ...]) -> None:
    for name in ("LANGFUSE_BASE_URL", "LANGFUSE_HOST", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        os.environ.pop(name, None)
    r = run_agentfire(*args, cwd=sandbox)
    assert r.exit_code in (1, 2), r
    assert "opened incident" not in r.stderr, r
    assert "AGENTFIRE_INCIDENT=" not in r.stderr
    assert journals(sandbox) == []
    if args[0] == "gameday":  # nothing was seeded either: validation comes before injection
        assert not list((sandbox / ".agentfire").glob("traces/*.jsonl"))


def test_the_incident_is_announced_when_its_first_entry_is_written(sandbox: Path) -> None:
    r = run_agentfire("kill", "--region", "us-east", "--yes", "--json", cwd=sandbox)
    assert r.exit_code == 0, r
    [inc] = journals(sandbox)
    assert f"opened incident {inc}" in r.stderr and r.json()["incident"] == inc


# --- 5. an incident id names an incident ------------------------------------------------------


def test_a_mistyped_incident_is_an_error_and_nothing_is_flipped(sandbox: Path) -> None:
    assert run_agentfire("--new", "--incident", "inc-42", "kill", "--region", "eu-west", "--yes",
                         cwd=sandbox).exit_code == 0
    before = flags_on(sandbox)
    r = run_agentfire("--incident", "inc-24", "kill", "--region", "all", "--yes", cwd=sandbox)
    assert r.exit_code == 2, r
    assert "inc-24" in r.stderr and "--new" in r.stderr and "Traceback" not in r.stderr
    assert flags_on(sandbox) == before and journals(sandbox) == ["inc-42"]
    # a stale $AGENTFIRE_INCIDENT says where the id came from
    r = run_agentfire("kill", "--region", "all", "--yes", cwd=sandbox, env={"AGENTFIRE_INCIDENT": "inc-old"})
    assert r.exit_code == 2 and "$AGENTFIRE_INCIDENT" in r.stderr
    assert flags_on(sandbox) == before and journals(sandbox) == ["inc-42"]
    # the real incident's undo restores its region: nothing went elsewhere
    r = run_agentfire("--incident", "inc-42", "kill", "--undo", "--yes", "--json", cwd=sandbox)
    assert r.exit_code == 0 and flags_on(sandbox)["eu-west"] is True


def test_new_opens_the_named_incident_and_refuses_an_existing_one(sandbox: Path) -> None:
    r = run_agentfire("--incident", "inc-7", "--new", "kill", "--region", "us-east", "--yes", cwd=sandbox)
    assert r.exit_code == 0, r
    assert "opened incident inc-7" in r.stderr and journals(sandbox) == ["inc-7"]
    r = run_agentfire("--incident", "inc-7", "--new", "kill", "--region", "us-east", "--yes", cwd=sandbox)
    assert r.exit_code == 2 and "already" in r.stderr and "inc-7" in r.stderr
    # a read-only mistyped id is an error too (triage journals into the incident it names)
    r = run_agentfire("--incident", "inc-8", "triage", "tr-x", "--json", cwd=sandbox)
    assert r.exit_code == 2 and "inc-8" in r.stderr and journals(sandbox) == ["inc-7"]


# --- 7. which incident will the next command write to? ----------------------------------------


def test_incident_current_names_where_commands_will_write(sandbox: Path) -> None:
    r = run_agentfire("incident", "current", "--json", cwd=sandbox)
    assert r.exit_code == 0, r
    assert r.json()["incident"] is None and "new incident" in r.json()["next_action"]
    assert run_agentfire("--incident", "inc-c", "--new", "kill", "--region", "us-east", "--yes",
                         cwd=sandbox).exit_code == 0
    r = run_agentfire("incident", "current", "--json", cwd=sandbox, env={"AGENTFIRE_INCIDENT": "inc-c"})
    doc = r.json()
    assert r.exit_code == 0 and doc["incident"] == "inc-c" and doc["source"] == "$AGENTFIRE_INCIDENT"
    assert doc["status"] == "open" and doc["exists"] is True
    r = run_agentfire("incident", "current", cwd=sandbox, env={"AGENTFIRE_INCIDENT": "inc-typo"})
    assert r.exit_code == 1 and "inc-typo" in r.stdout + r.stderr and "--new" in r.stdout + r.stderr
    r = run_agentfire("--incident", "inc-c", "incident", "current", cwd=sandbox)
    assert r.exit_code == 0 and "inc-c" in r.stdout and "--incident" in r.stdout


# --- 3. doctor runs the checks runbook runs ---------------------------------------------------


def _steps_with(root: Path, index: int, command: str) -> None:
    from agentfire.walk import DEFAULT_STEPS

    cfg = yaml.safe_load((root / "runbook.yaml").read_text())
    steps = [dict(s) for s in DEFAULT_STEPS]
    steps[index]["command"] = command
    cfg["steps"] = steps
    (root / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.parametrize("index, command, needle", [
    (1, "agentfire freeze --to p50 --reason {verdict}", "{verdict} (step freeze)"),   # only later
    (1, "agentfire freeze --to {budget_level}", "{budget_level} (step freeze)"),       # never
    (1, "agentfire freeze --reason 'unbalanced", "step freeze"),                       # unparsable
])
def test_doctor_fails_a_runbook_whose_steps_the_walk_rejects(sandbox: Path, index: int, command: str,
                                                             needle: str) -> None:
    _steps_with(sandbox, index, command)
    walk = run_agentfire("runbook", "--auto", "--trace", "tr-1", cwd=sandbox)
    assert walk.exit_code == 2 and journals(sandbox) == [], walk
    r = run_agentfire("doctor", "--json", cwd=sandbox)
    assert r.exit_code == 1, r
    rows = [c for c in r.json()["checks"] if c["area"] == "steps"]
    assert rows and not rows[0]["ok"] and needle in rows[0]["detail"], rows


def test_doctor_passes_the_default_steps(sandbox: Path) -> None:
    r = run_agentfire("doctor", "--json", cwd=sandbox)
    rows = [c for c in r.json()["checks"] if c["area"] == "steps"]
    assert rows and rows[0]["ok"], rows


# --- 4. one walk per incident at a time -------------------------------------------------------


def _slow_walk(root: Path) -> None:
    cfg = yaml.safe_load((root / "runbook.yaml").read_text())
    cfg["steps"] = [
        {"id": "kill", "title": "kill", "command": "agentfire kill --region us-east --yes", "target_seconds": 60},
        {"id": "wait", "title": "slow", "command": "sleep 60", "target_seconds": 120},
        {"id": "status", "title": "check", "command": "agentfire status", "target_seconds": 180},
    ]
    (root / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _wait_for_step(root: Path, incident: str, step: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = root / INCIDENTS / f"{incident}.jsonl"
        if p.exists() and any(e.get("step") == step and e.get("phase") == "start" for e in entries(root, incident)):
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} never started")


def test_a_second_walk_of_the_same_incident_refuses_naming_the_first(sandbox: Path) -> None:
    import socket

    _slow_walk(sandbox)
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    first = subprocess.Popen([sys.executable, "-m", "agentfire", "--incident", "inc-two", "--new", "runbook",
                              "--auto"], cwd=sandbox, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_step(sandbox, "inc-two", "wait")
        r = run_agentfire("--incident", "inc-two", "runbook", "--auto", cwd=sandbox)
        assert r.exit_code == 1, r
        assert f"pid {first.pid}" in r.stderr and socket.gethostname() in r.stderr and "since" in r.stderr
        # the second walk ran nothing: the wait step started once, status never
        steps = [(e["step"], e["phase"]) for e in entries(sandbox, "inc-two") if e["action"] == "runbook.step"]
        assert steps.count(("wait", "start")) == 1 and ("status", "start") not in steps
    finally:
        os.killpg(first.pid, 9)  # the walk dies without cleaning up: its lock is stale now
        first.wait()
    (sandbox / "answers.yaml").write_text("steps: {wait: skip}\n")
    r = run_agentfire("--incident", "inc-two", "runbook", "--auto", "--answers", "answers.yaml", "--json",
                      cwd=sandbox, timeout=120)
    assert r.exit_code == 0, r
    assert "stale" in r.stderr and f"pid {first.pid}" in r.stderr
    assert [s["status"] for s in r.json()["steps"]] == ["ok", "skipped", "ok"]


# --- 6. a closed incident takes no new action without --reopen --------------------------------


def _closed_incident_with_kill_and_freeze(root: Path, cli, incident: str = "inc-z") -> dict:
    from tests.test_capture import WRONG_RECIPIENT, trace_rows, write_store

    write_store(root, ("t-z", trace_rows("t-z", WRONG_RECIPIENT)))
    assert cli("--incident", incident, "--new", "kill", "--region", "us-east,eu-west", "--yes").exit_code == 0
    assert cli("--incident", incident, "freeze", "--to", "0.05", "--yes").exit_code == 0
    assert cli("--incident", incident, "capture", "t-z", "--step", "4", "--expected", "x").exit_code == 0
    r = cli("incident", "close", incident, "--json")
    assert r.exit_code == 0, r
    return {"result": r}


def test_close_warns_what_is_still_in_effect_and_offers_the_restore_commands(sandbox: Path, cli) -> None:
    r = _closed_incident_with_kill_and_freeze(sandbox, cli)["result"]
    doc = r.json()
    assert "AGENTFIRE_INCIDENT" not in r.stderr
    left = doc["still_in_effect"]
    assert {x["what"] for x in left} == {"kill", "freeze"}
    kill = next(x for x in left if x["what"] == "kill")
    assert sorted(kill["regions"]) == ["eu-west", "us-east"]
    assert kill["restore"] == "agentfire --incident inc-z kill --undo"
    assert next(x for x in left if x["what"] == "freeze")["restore"] == \
        "agentfire --incident inc-z freeze --lift --scope support-agent"
    assert "still killed" in r.stderr and "agentfire --incident inc-z kill --undo" in r.stderr
    report = json.loads((sandbox / INCIDENTS / "inc-z.report.json").read_text())
    assert {x["what"] for x in report["still_in_effect"]} == {"kill", "freeze"}


def test_a_closed_incident_refuses_new_actions_unless_reopened(sandbox: Path, cli) -> None:
    _closed_incident_with_kill_and_freeze(sandbox, cli)
    before = len(entries(sandbox, "inc-z"))
    for args in (("kill", "--region", "ap-south", "--yes"), ("freeze", "--to", "0.01", "--yes"),
                 ("gameday", "start", "wrong_recipient", "--traces", "40"),
                 ("runbook", "--auto", "--trace", "t-z")):
        r = cli("--incident", "inc-z", *args)
        assert r.exit_code == 2, (args, r)
        assert "closed" in r.stderr and "--reopen" in r.stderr
    assert len(entries(sandbox, "inc-z")) == before
    assert flags_on(sandbox)["ap-south"] is True
    r = cli("--incident", "inc-z", "--reopen", "kill", "--region", "ap-south", "--yes")
    assert r.exit_code == 0, r
    actions = [e["action"] for e in entries(sandbox, "inc-z")][before:]
    assert actions == ["incident.reopen", "kill"]
    assert run_agentfire("incident", "list", "--json", cwd=sandbox).json()[0]["status"] == "open"


def test_undo_and_lift_after_close_are_added_to_the_closed_report(sandbox: Path, cli) -> None:
    _closed_incident_with_kill_and_freeze(sandbox, cli)
    r = cli("--incident", "inc-z", "kill", "--undo", "--yes")
    assert r.exit_code == 0, r
    assert cli("--incident", "inc-z", "freeze", "--lift", "--yes").exit_code == 0
    assert flags_on(sandbox) == {"us-east": True, "eu-west": True, "ap-south": True}
    report = json.loads((sandbox / INCIDENTS / "inc-z.report.json").read_text())
    assert [e["action"] for e in report["after_close"]] == ["kill.undo", "freeze.lift"]
    assert report["still_in_effect"] == []
    md = (sandbox / INCIDENTS / "inc-z.report.md").read_text()
    assert "## After closing" in md and "kill.undo" in md and "freeze.lift" in md
    # still closed: the restores did not reopen it
    assert run_agentfire("incident", "list", "--json", cwd=sandbox).json()[0]["status"] == "closed"


# --- 13. a drill never touches what a real incident holds -------------------------------------


def _set_gameday(root: Path, **section) -> None:
    cfg = yaml.safe_load((root / "runbook.yaml").read_text())
    cfg["gameday"] = section
    (root / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_a_drill_refuses_to_arm_a_region_a_real_incident_killed(sandbox: Path) -> None:
    assert run_agentfire("--incident", "inc-real", "--new", "kill", "--region", "us-east", "--yes",
                         cwd=sandbox).exit_code == 0
    for args in (("gameday", "start", "wrong_recipient", "--traces", "40"),
                 ("gameday", "run", "wrong_recipient", "--auto", "--traces", "40")):
        r = run_agentfire(*args, cwd=sandbox)
        assert r.exit_code == 1, r
        assert "inc-real" in r.stderr and "us-east" in r.stderr and "gameday" in r.stderr
        assert flags_on(sandbox)["us-east"] is False
        assert journals(sandbox) == ["inc-real"]
        assert not (sandbox / ".agentfire/traces/wrong_recipient.jsonl").exists()


def test_a_drill_refuses_to_freeze_and_lift_a_scope_a_real_incident_froze(sandbox: Path) -> None:
    assert run_agentfire("--incident", "inc-real", "--new", "freeze", "--to", "0.02", "--yes",
                         cwd=sandbox).exit_code == 0
    r = run_agentfire("gameday", "run", "runaway_loop", "--auto", "--traces", "40", cwd=sandbox)
    assert r.exit_code == 1 and "froze spend on scope support-agent" in r.stderr, r


def test_drills_stay_inside_the_gameday_section_and_restore_what_they_changed(sandbox: Path) -> None:
    _set_gameday(sandbox, regions=["eu-west", "ap-south"], scope="support-agent-drill")
    # a real incident holds us-east off and production spend frozen
    assert run_agentfire("--incident", "inc-real", "--new", "kill", "--region", "us-east", "--yes",
                         cwd=sandbox).exit_code == 0
    assert run_agentfire("--incident", "inc-real", "freeze", "--to", "0.02", "--yes",
                         cwd=sandbox).exit_code == 0
    caps_before = run_agentfire("status", "--json", cwd=sandbox).json()["budget"]
    r = run_agentfire("gameday", "run", "wrong_recipient", "--auto", "--seed", "5", "--traces", "100",
                      "--json", cwd=sandbox, timeout=300)
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["passed"] and doc["restored"] is True
    # scored on the drill's regions as the runbook ended (both off), then put back
    assert doc["checks"]["every_region_ended_off"]["got"] == {"eu-west": False, "ap-south": False}
    assert doc["left"]["regions"] == {"eu-west": True, "ap-south": True}
    assert "restored what the drill changed" in r.stderr
    # the real incident's region and caps were never touched
    assert flags_on(sandbox) == {"us-east": False, "eu-west": True, "ap-south": True}
    real = [s for s in caps_before["scopes"] if s["scope"] == "support-agent"]
    now = run_agentfire("status", "--json", cwd=sandbox).json()["budget"]
    assert [s for s in now["scopes"] if s["scope"] == "support-agent"] == real
    drill_scope = [s for s in now["scopes"] if s["scope"] == "support-agent-drill"]
    assert drill_scope and drill_scope[0]["effective"]["admission"] == "open"
    # inside the drill, --region all means the drill's regions; a production one is refused
    inc = doc["incident"]
    r = run_agentfire("--incident", inc, "kill", "--region", "us-east", "--yes", cwd=sandbox)
    assert r.exit_code == 2 and "us-east" in r.stderr


def test_gameday_run_keep_leaves_the_drill_state_and_says_so(sandbox: Path) -> None:
    r = run_agentfire("gameday", "run", "destructive_sql", "--auto", "--seed", "3", "--traces", "60",
                      "--keep", cwd=sandbox, timeout=300)
    assert r.exit_code == 0, r
    assert "--keep" in r.stderr and "OFF" in r.stderr and "frozen on support-agent" in r.stderr
    assert set(flags_on(sandbox).values()) == {False}


def test_a_failed_drill_still_restores(sandbox: Path) -> None:
    from agentfire.walk import DEFAULT_STEPS

    cfg = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    steps = [dict(s) for s in DEFAULT_STEPS]
    steps[2]["command"] = "agentfire triage no-such-trace"  # triage fails after kill and freeze ran
    cfg["steps"] = steps
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_agentfire("gameday", "run", "runaway_loop", "--auto", "--seed", "2", "--traces", "60",
                      "--json", cwd=sandbox, timeout=300)
    assert r.exit_code == 1
    assert r.json()["restored"] is True
    assert set(flags_on(sandbox).values()) == {True}
    scopes = run_agentfire("status", "--json", cwd=sandbox).json()["budget"]["scopes"]
    assert all(s["effective"]["admission"] == "open" for s in scopes)


# --- 14. a drill's score is what was observed when its runbook ended ---------------------------


def test_rescoring_after_the_undo_gives_the_same_answer(sandbox: Path) -> None:
    r = run_agentfire("gameday", "start", "wrong_recipient", "--seed", "9", "--traces", "100", "--json",
                      cwd=sandbox)
    assert r.exit_code == 0, r
    inc, trace = r.json()["incident"], r.json()["alert_trace_id"]
    w = run_agentfire("--incident", inc, "runbook", "--auto", "--trace", trace, "--json", cwd=sandbox,
                      timeout=300)
    assert w.exit_code == 0, w
    first = run_agentfire("gameday", "score", inc, "--json", cwd=sandbox)
    assert first.exit_code == 0 and first.json()["passed"], first
    # the normal end of an incident: the agent back on, spend unfrozen
    assert run_agentfire("--incident", inc, "kill", "--undo", "--yes", cwd=sandbox).exit_code == 0
    assert set(flags_on(sandbox).values()) == {True}
    again = run_agentfire("gameday", "score", inc, "--json", cwd=sandbox)
    assert again.exit_code == 0, again
    assert again.json()["checks"] == first.json()["checks"]


# --- 15. drill cases stay out of the real eval set ---------------------------------------------


def test_drill_cases_go_to_the_drill_eval_set_tagged_and_are_never_pushed(sandbox: Path) -> None:
    r = run_agentfire("gameday", "run", "papered_error", "--auto", "--seed", "4", "--traces", "60", "--json",
                      cwd=sandbox, timeout=300)
    assert r.exit_code == 0, r
    inc = r.json()["incident"]
    assert not (sandbox / "evals/regressions.jsonl").exists() or \
        (sandbox / "evals/regressions.jsonl").read_text().strip() == ""
    drill_cases = [json.loads(l) for l in (sandbox / "evals/regressions.gameday.jsonl").read_text().splitlines()]
    assert drill_cases and {"agentfire-gameday", f"agentfire-gameday:{inc}"} <= set(drill_cases[0]["tags"])
    trace = drill_cases[0]["source_trace_id"]
    r = run_agentfire("--incident", inc, "capture", trace, "--step", "2", "--expected", "x", "--push",
                      cwd=sandbox, env={"LANGFUSE_BASE_URL": "http://127.0.0.1:9", "LANGFUSE_PUBLIC_KEY": "pk",
                                        "LANGFUSE_SECRET_KEY": "sk"})
    assert r.exit_code == 2 and "drill" in r.stderr and "--push" in r.stderr
    # closing the drill finds its case in the drill eval set and does not run the real suite
    cfg = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    cfg.setdefault("evals", {})["verify"] = f"{sys.executable} -c 'raise SystemExit(3)'"
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run_agentfire("incident", "close", inc, "--json", cwd=sandbox)
    assert r.exit_code == 0, r
    assert r.json()["cases"][0]["eval_set"].endswith("regressions.gameday.jsonl")


def test_staging_drill_waits_for_its_own_spans_not_the_project_total(tmp_path: Path) -> None:
    """A second drill into the same Phoenix project: the project already holds more spans than
    this drill sends, so counting them returned at once, before this drill's trajectories could
    be read. The wait must be for this drill's own trace and span ids."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace
    from urllib.parse import parse_qs, urlparse

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from agentfire import drill, sandbox
    from agentfire.config import PhoenixTraces

    state: dict = {"ours": [], "gets": 0, "visible_after": 4, "returned_visible": None}
    earlier = [{"context": {"trace_id": f"{i:032x}", "span_id": f"{i:016x}"}} for i in range(1, 5000)]

    class Fake(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    state["ours"] += [{"context": {"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex()}}
                                      for s in ss.spans]
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # noqa: N802
            q = parse_qs(urlparse(self.path).query)
            state["gets"] += 1
            spans = earlier + (state["ours"] if state["gets"] > state["visible_after"] else [])
            if "trace_id" in q:
                wanted = set(q["trace_id"])
                spans = [s for s in spans if s["context"]["trace_id"] in wanted]
            data = json.dumps({"data": spans, "next_cursor": None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = sandbox.seed_store(tmp_path / "seed", scenario="wrong_recipient", traces=40, seed=3)
        rows = [json.loads(l) for l in res.data_file.read_text().splitlines() if l.strip()]
        rb = SimpleNamespace(traces=PhoenixTraces(kind="phoenix", url=f"http://127.0.0.1:{server.server_port}",
                                                  project="staging"))
        out = drill._inject_phoenix(rb, rows, wait_s=30)
        assert len(earlier) > out["spans"] > 0  # the project total alone was enough to return
        assert state["gets"] > state["visible_after"], "returned before this drill's spans were readable"
    finally:
        server.shutdown()


def test_a_drill_refuses_a_region_a_real_incident_relies_on_being_off(sandbox: Path) -> None:
    # off before the incident (by hand); the real incident's kill says ALREADY_OFF and relies on it
    from agentfire import killswitch
    from agentfire.config import load_runbook

    rb = load_runbook(sandbox / "runbook.yaml")
    assert all(r.outcome.ok for r in killswitch.flip_regions(rb, ["ap-south"], on=False, comment="t"))
    assert run_agentfire("--incident", "inc-real", "--new", "kill", "--region", "ap-south", "--yes",
                         cwd=sandbox).exit_code == 0
    r = run_agentfire("gameday", "start", "wrong_recipient", "--traces", "40", cwd=sandbox)
    assert r.exit_code == 1 and "inc-real" in r.stderr and "ap-south" in r.stderr, r
    assert flags_on(sandbox)["ap-south"] is False


def test_restoring_a_drill_leaves_off_what_a_real_incident_killed_meanwhile(sandbox: Path) -> None:
    from agentfire import drill
    from agentfire.config import load_runbook
    from agentfire.journal import Journal

    r = run_agentfire("gameday", "start", "wrong_recipient", "--seed", "9", "--traces", "100", "--json",
                      cwd=sandbox)
    assert r.exit_code == 0, r
    inc, trace = r.json()["incident"], r.json()["alert_trace_id"]
    # mid-drill, a real incident kills us-east (the drill's kill has not run yet)
    assert run_agentfire("--incident", "inc-real", "--new", "kill", "--region", "us-east", "--yes",
                         cwd=sandbox).exit_code == 0
    assert run_agentfire("--incident", inc, "runbook", "--auto", "--trace", trace, cwd=sandbox,
                         timeout=300).exit_code == 0
    rb = load_runbook(sandbox / "runbook.yaml").for_drill()
    out = drill.restore(rb, Journal(rb.journal_dir, inc), "t")
    assert out["restored"] is True
    assert flags_on(sandbox) == {"us-east": False, "eu-west": True, "ap-south": True}
    skipped = [f for f in out["regions"] if f["outcome"] == "SKIPPED"]
    assert [f["region"] for f in skipped] == ["us-east"] and "inc-real" in skipped[0]["detail"]
