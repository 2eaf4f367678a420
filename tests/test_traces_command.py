"""`agentfire traces` (issue 14) on the files store, the Langfuse contract fake and a real Phoenix;
trace ids by unique prefix; UI links (issue 11); `next:` lines that are working commands."""

from __future__ import annotations

import json
import shlex
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_agentfire
from tests.fakes.langfuse import FakeLangfuse, langfuse_fake  # noqa: F401
from tests.servers.phoenix import phoenix_server  # noqa: F401


def _seed_rows(scenario: str, traces: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    from agentfire import sandbox

    tmp = Path(tempfile.mkdtemp())
    res = sandbox.seed_store(tmp, scenario=scenario, traces=traces, seed=seed,
                             now=datetime.now(timezone.utc))
    rows = [json.loads(line) for line in res.data_file.read_text().splitlines() if line.strip()]
    return rows, res.truth, tmp


def _set_traces(root: Path, section: dict[str, Any]) -> None:
    cfg = yaml.safe_load((root / "runbook.yaml").read_text())
    cfg["traces"] = section
    (root / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _comparable(doc: dict[str, Any]) -> list[tuple]:
    return [(t["trace_id"], t["status"], t["user_id"], t["steps"], t["tool_calls"],
             (t["top_finding"] or {}).get("kind")) for t in doc["traces"]]


def _next_lines(stderr: str) -> list[str]:
    return [line[len("next: "):].split("   # ")[0] for line in stderr.splitlines() if line.startswith("next: ")]


def test_traces_on_the_files_store_newest_first_with_filters(sandbox: Path, cli) -> None:
    seeded = cli("sandbox", "seed", "--scenario", "wrong_recipient", "--json").json()["scenarios"][0]
    truth = json.loads(Path(seeded["truth_file"]).read_text())
    doc = cli("traces", "--since", "2d", "--limit", "1000", "--json").json()
    rows = doc["traces"]
    assert len(rows) == doc["trajectories_in_window"] > 100
    starts = [r["start"] for r in rows]
    assert starts == sorted(starts, reverse=True)  # newest first
    # the top finding is triage's: the same detectors on the same trajectory
    flagged = next(r for r in rows if r["top_finding"] and r["top_finding"]["severity"] == "high")
    tri = cli("triage", flagged["trace_id"], "--json").json()
    assert (flagged["top_finding"]["kind"], flagged["top_finding"]["step"]) in {
        (f["kind"], f["step_index"]) for f in tri["findings"]}
    assert flagged["steps"] == tri["header"]["step_count"]

    failing = {f["trace_id"] for f in truth["failing"]}
    steering = cli("traces", "--since", "2d", "--limit", "1000", "--finding", "untrusted_steering", "--json").json()
    got = {r["trace_id"] for r in steering["traces"]}
    assert got and got < {r["trace_id"] for r in rows}
    assert got <= failing and len(got) >= len(failing) // 2
    running = cli("traces", "--since", "2d", "--limit", "1000", "--running", "--json").json()["traces"]
    assert running and {r["status"] for r in running} == {"running"}
    assert {r["trace_id"] for r in running} >= set(truth["still_running"])
    user = rows[0]["user_id"]
    mine = cli("traces", "--since", "2d", "--user", user, "--json").json()["traces"]
    assert mine and {r["user_id"] for r in mine} == {user}
    errs = cli("traces", "--since", "2d", "--limit", "1000", "--errors", "--json").json()["traces"]
    assert all(r["status"] == "error" or r["errors"] for r in errs)
    sent = cli("traces", "--since", "2d", "--limit", "1000", "--tool", "send_*", "--json").json()["traces"]
    assert sent and len(sent) < len(rows)
    assert cli("traces", "--since", "2d", "--limit", "3", "--json").json()["traces"] == rows[:3]
    assert all(r["url"] is None for r in rows)  # the files store has no UI

    bad = cli("traces", "--finding", "nope")
    assert bad.exit_code == 2 and "untrusted_steering" in bad.stderr

    human = cli("traces", "--since", "2d", "--tool", "no_such_tool")
    assert human.exit_code == 0 and "tools seen: " in human.stderr and "send_email" in human.stderr


def test_trace_ids_by_unique_prefix_and_with_whitespace(sandbox: Path, cli) -> None:
    cli("sandbox", "seed", "--scenario", "wrong_recipient")
    ids = [r["trace_id"] for r in cli("traces", "--since", "2d", "--limit", "1000", "--json").json()["traces"]]
    full = ids[0]
    prefix = next(full[:n] for n in range(6, 33) if sum(i.startswith(full[:n]) for i in ids) == 1)
    r = cli("triage", f"  {prefix}\n", "--json")
    assert r.exit_code == 0, r
    assert r.json()["header"]["trace_id"] == full
    # an ambiguous prefix names the candidates
    by4: dict[str, list[str]] = {}
    for i in ids:
        by4.setdefault(i[:4], []).append(i)
    shared, many = next((k, v) for k, v in by4.items() if len(v) > 1)
    amb = cli("triage", shared)
    assert amb.exit_code == 2 and "ambiguous" in amb.stderr and all(m in amb.stderr for m in many[:5])
    assert cli("triage", "zzzzzzzz").exit_code == 1


def test_next_lines_are_working_commands(sandbox: Path, cli) -> None:
    cli("sandbox", "seed", "--scenario", "wrong_recipient")
    k = cli("--incident", "inc-next", "--new", "kill", "--yes")
    assert k.exit_code == 0
    follow = _next_lines(k.stderr)
    assert follow == ["agentfire --incident inc-next freeze --to p50", "agentfire --incident inc-next kill --undo"]

    flagged = next(r for r in cli("traces", "--since", "2d", "--limit", "1000", "--json").json()["traces"]
                   if r["top_finding"] and r["top_finding"]["severity"] == "high")
    tid = flagged["trace_id"]
    step = cli("triage", tid, "--json").json()["verdict"]["step_index"]
    t = cli("--incident", "inc-next", "triage", tid)
    follow = _next_lines(t.stderr)
    assert follow == [f"agentfire --incident inc-next blast --like {tid}:{step} --since 6h",
                      f"agentfire --incident inc-next capture {tid} --step {step}"]
    b = cli(*shlex.split(follow[0])[1:])
    assert b.exit_code == 0, b
    blast_next = _next_lines(b.stderr)
    assert blast_next[0].endswith("--out affected.csv") and f"--like {tid}:{step}" in blast_next[0]
    out = cli(*shlex.split(blast_next[0])[1:])
    assert out.exit_code == 0 and (sandbox / "affected.csv").exists()
    c = cli(*shlex.split(follow[1])[1:], "--expected", "ask first")
    assert c.exit_code == 0, c
    assert _next_lines(c.stderr) == ["agentfire --incident inc-next incident close"]


def test_blast_tool_never_seen_and_a_hit_near_the_window_start(sandbox: Path, cli) -> None:
    cli("sandbox", "seed", "--scenario", "wrong_recipient")
    r = cli("blast", "--tool", "send_emial", "--since", "2d")
    assert r.exit_code == 0
    assert "no trajectory in the window called a tool named 'send_emial'" in r.stderr
    assert "send_email" in r.stderr.split("tools seen:")[1]
    short = cli("blast", "--tool", "send_email", "--since", "1h")  # the incident runs for 6 h
    assert "the incident may have started earlier" in short.stderr
    wide = cli("blast", "--tool", "send_email", "--since", "30d")
    assert "may have started earlier" not in wide.stderr


def test_traces_and_links_on_the_langfuse_fake(sandbox: Path, langfuse_fake: FakeLangfuse) -> None:  # noqa: F811
    rows, truth, files_dir = _seed_rows("wrong_recipient", traces=30, seed=23)
    langfuse_fake.add_rows(rows)
    _set_traces(sandbox, {"kind": "langfuse", "project_id": "cl-proj-7",
                          "ui_url": "https://langfuse.example.org/"})
    env = langfuse_fake.env()
    r = run_agentfire("traces", "--since", "1d", "--limit", "1000", "--json", cwd=sandbox, env=env)
    assert r.exit_code == 0, r
    doc = r.json()
    # the same listing as the files store holding the same rows
    local_cfg = sandbox.parent / "local"
    local_cfg.mkdir()
    (local_cfg / "runbook.yaml").write_text((sandbox / "runbook.yaml").read_text())
    _set_traces(local_cfg, {"kind": "files", "path": str(files_dir), "seed_scenario": None})
    local = run_agentfire("--config", str(local_cfg / "runbook.yaml"), "traces", "--since", "1d",
                          "--limit", "1000", "--json", cwd=sandbox).json()
    assert _comparable(doc) == _comparable(local)
    assert len(doc["traces"]) == len({r["traceId"] for r in rows}) >= 30
    for t in doc["traces"]:
        assert t["url"] == f"https://langfuse.example.org/project/cl-proj-7/traces/{t['trace_id']}"
    failing = truth["failing"][0]["trace_id"]
    tri = run_agentfire("triage", failing, cwd=sandbox, env=env)
    assert f"https://langfuse.example.org/project/cl-proj-7/traces/{failing}" in tri.stdout
    blast = run_agentfire("--wide", "blast", "--tool", "send_email", "--since", "1d", cwd=sandbox,
                          env={**env, "COLUMNS": "300"})
    hit_lines = [line for line in blast.stdout.splitlines() if "send_email" in line and "/traces/" in line]
    assert hit_lines and all(line.split("\t")[0] in line.split("\t")[-1] for line in hit_lines)
    # without a project id the URL cannot be known: no link, no error
    _set_traces(sandbox, {"kind": "langfuse"})
    plain = run_agentfire("traces", "--since", "1d", "--json", cwd=sandbox, env=env).json()
    assert all(t["url"] is None for t in plain["traces"])


def test_traces_and_links_on_phoenix(phoenix_server, sandbox: Path, cli) -> None:  # noqa: F811
    import base64

    import httpx

    rows, truth, files_dir = _seed_rows("wrong_recipient", traces=24, seed=61)
    project = phoenix_server.ingest(rows, project="ux-traces-61")
    _set_traces(sandbox, {"kind": "phoenix", "url": phoenix_server.url, "project": project})
    doc = cli("traces", "--since", "1d", "--limit", "1000", "--json").json()
    cfg = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    cfg["traces"] = {"kind": "files", "path": str(files_dir), "seed_scenario": None}
    local_path = sandbox / "local.yaml"
    local_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    local = cli("--config", str(local_path), "traces", "--since", "1d", "--limit", "1000", "--json").json()
    assert _comparable(doc) == _comparable(local)
    assert len(doc["traces"]) == len({r["traceId"] for r in rows}) >= 24
    # the link names Phoenix's own id of the project (the UI's route), read from its API
    pid = httpx.get(f"{phoenix_server.url}/v1/projects/{project}").json()["data"]["id"]
    assert base64.b64decode(pid).decode().startswith("Project:")
    for t in doc["traces"]:
        assert t["url"] == f"{phoenix_server.url}/projects/{pid}/traces/{t['trace_id']}"
    assert httpx.get(doc["traces"][0]["url"]).status_code == 200
    flagged = next(t for t in doc["traces"] if t["top_finding"] and t["top_finding"]["severity"] == "high")
    tri = cli("triage", flagged["trace_id"])
    assert flagged["url"] in tri.stdout
    cap = cli("--incident", "inc-ph", "--new", "capture", flagged["trace_id"], "--expected", "ask first")
    assert cap.exit_code == 0 and flagged["url"] in cap.stdout


def test_traces_checks_the_runbooks_policies(sandbox: Path, cli) -> None:
    """`traces --finding policy` finds what triage's policy check finds (the runbook's `policies:`)."""
    cli("sandbox", "seed", "--scenario", "wrong_recipient")
    assert cli("traces", "--since", "2d", "--limit", "1000", "--finding", "policy", "--json").json()["traces"] == []
    cfg = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    cfg["policies"] = [{"name": "no outbound mail", "never": ["send_email"]}]
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rows = cli("traces", "--since", "2d", "--limit", "1000", "--finding", "policy", "--json").json()["traces"]
    sent = cli("traces", "--since", "2d", "--limit", "1000", "--tool", "send_email", "--json").json()["traces"]
    assert rows and {r["trace_id"] for r in rows} == {r["trace_id"] for r in sent}
    tri = cli("triage", rows[0]["trace_id"], "--json").json()
    assert any(f["kind"] == "policy" and "no outbound mail" in json.dumps(f) for f in tri["findings"])
