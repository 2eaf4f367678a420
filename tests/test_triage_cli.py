"""The triage, sandbox and golden commands: rendering, JSON shape, hostile content, malformed rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentfire.sandbox import load_truth
from tests.conftest import run_agentfire

TRACES = Path(".agentfire/traces")


def _row(tid: str, oid: str, typ: str, name: str, t: str, **kw: Any) -> dict[str, Any]:
    row = {"id": oid, "traceId": tid, "type": typ, "name": name, "startTime": f"2026-11-23T20:00:{t}Z",
           "endTime": f"2026-11-23T20:00:{t}Z", "parentObservationId": "root", "userId": "u-1",
           "input": "{}", "output": "{}", "level": "DEFAULT"}
    row.update(kw)
    return row


def _write(sandbox: Path, name: str, rows: list[Any]) -> None:
    d = sandbox / TRACES
    d.mkdir(parents=True, exist_ok=True)
    with open(d / name, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def test_sandbox_seed_and_triage_every_example(sandbox: Path, cli) -> None:
    r = cli("sandbox", "seed", "--scenario", "all", "--traces", "100", "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert [s["scenario"] for s in doc["scenarios"]] == [
        "wrong_recipient", "destructive_sql", "runaway_loop", "papered_error"]
    human = cli("sandbox", "seed", "--scenario", "runaway_loop", "--traces", "100")
    assert human.exit_code == 0 and "agentfire triage" in human.stdout
    for s in doc["scenarios"]:
        truth = load_truth(TRACES, s["scenario"])
        failing = {f["trace_id"]: f for f in truth["failing"]}
        for tid in s["examples"]:
            t = cli("triage", tid, "--json")
            assert t.exit_code == 0, t
            v = t.json()["verdict"]
            f = failing[tid]
            assert (v["step_index"], v["call_step_index"], v["tool"]) == (
                f["off_rails_step"], f["off_rails_call_step"], f["off_rails_tool"])


def test_sandbox_seed_refuses_other_stores(sandbox: Path, cli) -> None:
    text = (sandbox / "runbook.yaml").read_text()
    start = text.index("traces:")
    end = text.index("evals:")
    (sandbox / "runbook.yaml").write_text(text[:start] + "traces:\n  kind: phoenix\n\n" + text[end:])
    r = cli("sandbox", "seed")
    assert r.exit_code == 2 and "phoenix" in r.stderr and "files" in r.stderr
    assert cli("sandbox", "seed", "--scenario", "nope").exit_code == 2


def test_triage_json_shape_and_journal(sandbox: Path, cli) -> None:
    cli("sandbox", "seed", "--scenario", "papered_error", "--traces", "60")
    truth = load_truth(TRACES, "papered_error")
    tid = truth["examples"][0]
    r = cli("--incident", "inc-7", "--new", "triage", tid, "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert set(doc) == {"trace_id", "header", "steps", "findings", "diff", "verdict", "problems"}
    assert {"user_id", "status", "duration_ms", "cost_usd", "model", "as_of", "step_count"} <= set(doc["header"])
    v = doc["verdict"]
    # the decision: the model turn that told the user the failed refund had worked
    turn = doc["steps"][v["step_index"] - 1]
    assert turn["kind"] == "model" and "successfully" in turn["text"] and turn["id"] == v["id"]
    # the call: the refund that failed
    step = doc["steps"][v["call_step_index"] - 1]
    assert step["name"] == "refund" and step["level"] == "ERROR" and step["status_message"]
    assert step["id"] == v["call_id"] and all(s["id"] for s in doc["steps"])
    assert {"index", "id", "kind", "offset_ms", "args", "output", "text", "input_tokens", "cost_usd"} <= set(step)
    assert v["confidence"] == "high" and v["kind"] == "unreacted_error" and v["tool"] == "refund"
    assert 1 <= len(v["candidates"]) <= 3 and v["candidates"][0]["step_index"] == v["step_index"]
    assert {"step_index", "call_step_index", "id", "call_id", "kind", "severity", "evidence"} == set(v["candidates"][0])
    assert doc["findings"][0].keys() == {"step_index", "call_step_index", "kind", "severity", "evidence", "rule"}
    entries = [json.loads(line) for line in (sandbox / ".agentfire/incidents/inc-7.jsonl").read_text().splitlines()]
    assert entries[-1]["action"] == "triage" and entries[-1]["trace_id"] == tid
    assert entries[-1]["verdict"]["step_index"] == doc["verdict"]["step_index"]
    human = cli("triage", tid, "--last", "3")
    assert human.exit_code == 0
    flat = " ".join(human.stdout.split())
    assert f"verdict: Off the rails at step {v['step_index']} (model turn chat, which called refund at step " \
        f"{v['call_step_index']})" in flat and "(confidence high)" in flat
    assert "candidate 1" in flat
    assert "earlier step(s) not shown" in human.stdout


def test_unknown_trace_names_the_store(sandbox: Path, cli) -> None:
    r = cli("triage", "does-not-exist")
    assert r.exit_code == 1
    assert "does-not-exist" in r.stderr and ".agentfire/traces" in r.stderr and "Traceback" not in r.stderr


HOSTILE = "[bold red]PWNED[/bold red] \x1b[31mred\x1b[0m \x00nul \x07bell \u202eevil"


def test_hostile_content_renders_inertly(sandbox: Path, cli) -> None:
    big = "B" * 2_000_000
    _write(sandbox, "hostile.jsonl", [
        _row("h1", "root", "AGENT", "agent", "00.000", parentObservationId=None, isRootObservation=True,
             input=json.dumps({"message": HOSTILE})),
        _row("h1", "s1", "TOOL", "read_inbox", "01.000", output=json.dumps({"body": HOSTILE, "big": big})),
        _row("h1", "s2", "GENERATION", "chat", "02.000", output=json.dumps({"content": HOSTILE}),
             statusMessage=HOSTILE, usageDetails={"input": 10, "output": 5}),
        _row("h1", "s3", "TOOL", HOSTILE, "03.000", input=json.dumps({"to": HOSTILE})),
    ])
    r = cli("triage", "h1", "--last", "0")
    assert r.exit_code == 0, r
    for raw in ("\x1b", "\x00", "\x07", "\u202e"):
        assert raw not in r.stdout and raw not in r.stderr
    assert "[bold red]PWNED[/bold red]" in r.stdout  # markup shown as text, not applied
    assert "\\x1b[31m" in r.stdout and "\\x00" in r.stdout and "\\u202e" in r.stdout
    assert len(r.stdout) < 200_000 and "--full shows all" in r.stdout

    j = cli("triage", "h1", "--json")
    assert j.exit_code == 0
    for raw in ("\x1b", "\x00", "\u202e"):
        assert raw not in j.stdout
    doc = j.json()
    out = doc["steps"][0]["output"]
    assert out["body"].startswith("[bold red]PWNED") and "\\x1b[31m" in out["body"]
    assert len(out["big"]) < 3000 and "--full" in out["big"]
    full = cli("triage", "h1", "--json", "--full").json()
    assert full["steps"][0]["output"]["big"] == big


def test_malformed_observations_still_render(sandbox: Path, cli) -> None:
    _write(sandbox, "bad.jsonl", [
        _row("m1", "root", "AGENT", "agent", "00.000", parentObservationId=None, isRootObservation=True),
        _row("m1", "s1", "TOOL", "get_order", "01.000", input="{not json", output='{"id": 1}'),
        _row("m1", "s2", "WIDGET", "mystery", "02.000"),
        _row("m1", "s3", "TOOL", "search_kb", "03.000", startTime=None),
        '{"id": "s4", "traceId": "m1", this line is broken',
        _row("m1", "s5", "GENERATION", "chat", "04.000", usageDetails="lots", totalCost="cheap"),
    ])
    r = cli("triage", "m1", "--last", "0")
    assert r.exit_code == 0, r
    text = " ".join(r.stdout.split())
    assert "could not read" in text and "not valid JSON" in text and "WIDGET" in text
    assert "unreadable line" in text and "no readable startTime" in text
    doc = cli("triage", "m1", "--json").json()
    assert len(doc["steps"]) == 4 and len(doc["problems"]) >= 4
    assert doc["steps"][0]["args"] == {"input": "{not json"}


def test_golden_save_and_diff(sandbox: Path, cli) -> None:
    cli("sandbox", "seed", "--scenario", "wrong_recipient", "--traces", "60")
    truth = load_truth(TRACES, "wrong_recipient")
    rows = [json.loads(line) for line in (sandbox / TRACES / "wrong_recipient.jsonl").read_text().splitlines()]
    # a normal trajectory that emailed a looked-up contact is the golden run for "send to a contact"
    by_trace: dict[str, list[str]] = {}
    for row in rows:
        if row["type"] == "TOOL":
            by_trace.setdefault(row["traceId"], []).append(row["name"])
    good = next(t for t, tools in by_trace.items() if tools == ["lookup_contact", "send_email"])
    r = cli("golden", "save", good, "--class", "send_to_contact", "--json")
    assert r.exit_code == 0 and r.json()["outcome"] == "saved", r
    assert cli("golden", "save", good, "--class", "send_to_contact", "--json").json()["outcome"] == "unchanged"
    assert (sandbox / "golden/send_to_contact.json").is_file()
    assert cli("golden", "list", "--json").json()["classes"][0]["class"] == "send_to_contact"
    # a failing run that never looked the contact up (the golden run did)
    bad = next(f["trace_id"] for f in truth["failing"] if "lookup_contact" not in by_trace[f["trace_id"]])
    doc = cli("triage", bad, "--golden", "send_to_contact", "--mode", "superset", "--json").json()
    div = doc["diff"]["divergence"]
    assert doc["diff"]["mode"] == "superset" and not doc["diff"]["matched"]
    assert div["expected"]["tool"] == "lookup_contact" or div["reason"] == "missing call"
    human = cli("triage", bad, "--golden", "send_to_contact", "--mode", "strict")
    assert "golden diff (strict, args ignore)" in human.stdout and "expected there" in human.stdout
    by_id = cli("--json", "triage", bad, "--golden", good, "--mode", "strict").json()["diff"]
    assert by_id["golden"] == f"trace {good}" and by_id["expected_tools"] == ["lookup_contact", "send_email"]
    # the default mode compares the state-changing calls: send_email, to another address
    mut = cli("--json", "triage", bad, "--golden", good).json()["diff"]
    assert mut["mode"] == "mutations" and mut["args"] == "golden" and mut["expected_tools"] == ["send_email"]
    assert mut["divergence"]["reason"] == "different state change" and mut["divergence"]["argument"] == "to"
    rows_file = sandbox / "golden-rows.jsonl"
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows if r["traceId"] == good))
    by_file = cli("triage", bad, "--golden", str(rows_file), "--mode", "subset", "--json").json()["diff"]
    assert by_file["expected_tools"] == ["lookup_contact", "send_email"] and not by_file["matched"]
    assert by_file["divergence"]["actual"]["tool"] == "read_inbox"
    assert cli("triage", bad, "--golden", "no-such-class").exit_code == 2
    assert cli("triage", bad, "--golden", good, "--mode", "fuzzy").exit_code == 2
    assert cli("golden", "save", "nope", "--class", "x").exit_code == 1


def test_fresh_clone_seeds_on_first_use_as_a_process(sandbox: Path) -> None:
    r = run_agentfire("triage", "unknown-id", cwd=sandbox)
    assert r.exit_code == 1 and "not found in the files store" in r.stderr
    truth = load_truth(sandbox / TRACES, "wrong_recipient")
    r = run_agentfire("triage", truth["examples"][0], "--last", "4", cwd=sandbox)
    assert r.exit_code == 0, r
    assert "send_email" in r.stdout and "untrusted steering" in r.stdout


def test_triage_pauses_the_cycle_collector_only_while_it_runs(sandbox: Path, cli, monkeypatch) -> None:
    """At 50k steps, collections of the oldest generation cost ~40% of triage's CPU, so triage
    pauses the collector while it builds and judges the trajectory; a process that triages
    again and again (watch, the walk) must get it back, also when triage fails."""
    import gc

    import agentfire.triage as triage_mod

    seen: list[bool] = []
    real = triage_mod.triage_trajectory

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*a, **kw)

    monkeypatch.setattr(triage_mod, "triage_trajectory", spy)
    doc = cli("sandbox", "seed", "--scenario", "runaway_loop", "--traces", "40", "--json").json()
    tid = doc["scenarios"][0]["examples"][0]
    assert gc.isenabled()
    assert cli("triage", tid, "--json").exit_code == 0
    assert seen == [False] and gc.isenabled()
    assert cli("triage", "no-such-trace").exit_code == 1  # the store raised inside the pause
    assert gc.isenabled()
