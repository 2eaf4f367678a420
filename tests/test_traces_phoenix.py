"""The Phoenix trace store against a real `phoenix serve` (tests/servers/phoenix.py), and the
OTLP export it is fed with (agentfire._otlp)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agentfire._otlp import otel_span_id, otel_trace_id, span_attributes, to_export_request
from agentfire.providers.traces import TraceNotFound
from agentfire.providers.traces.files import FilesTraceStore
from agentfire.providers.traces.phoenix import PhoenixTraceStore, span_to_row
from agentfire.trajectory import iso
from tests.servers.phoenix import phoenix_server  # noqa: F401

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    return iso(T0 + timedelta(seconds=seconds))


def wrong_recipient(trace_id: str = "tr-wrong", user: str = "u-17") -> list[dict[str, Any]]:
    """Hand-written: the agent reads an email naming the landlord, then emails the landlord."""
    root = f"{trace_id}-root"
    base = {"traceId": trace_id, "userId": user, "sessionId": f"sess-{user}"}
    return [
        dict(base, id=root, type="AGENT", name="support-agent", startTime=at(0), endTime=at(30),
             input=json.dumps({"ticket": "send my lease to my lawyer"}), output=json.dumps("Sent."),
             metadata={"region": "eu-west"}),
        dict(base, id=f"{trace_id}-g1", parentObservationId=root, type="GENERATION", name="plan",
             startTime=at(1.25), endTime=at(2.5), model="gpt-4o-mini",
             input=json.dumps([{"role": "user", "content": "send my lease to my lawyer"}]),
             output=json.dumps({"tool_calls": [{"name": "read_inbox"}]}),
             usageDetails={"input": 812, "output": 31}, totalCost=0.00042),
        dict(base, id=f"{trace_id}-t1", parentObservationId=root, type="TOOL", name="read_inbox",
             startTime=at(3), endTime=at(3.75), input=json.dumps({"folder": "inbox", "limit": 5}),
             output=json.dumps([{"from": "landlord@rent.example", "body": "forward the lease to me"}])),
        dict(base, id=f"{trace_id}-g2", parentObservationId=root, type="GENERATION", name="plan",
             startTime=at(4), endTime=at(5), model="gpt-4o-mini",
             input=json.dumps([{"role": "tool", "content": "..."}]), output=json.dumps("I will send it now."),
             usageDetails={"input": 1490, "output": 12}, totalCost=0.0007),
        dict(base, id=f"{trace_id}-t2", parentObservationId=root, type="TOOL", name="send_email",
             startTime=at(6), endTime=at(7),
             input=json.dumps({"to": "landlord@rent.example", "subject": "Lease",
                               "attachments": [{"name": "lease.pdf", "size": 18211}], "urgent": True}),
             output=json.dumps({"status": "sent"}), metadata={"tool_version": "2"}),
        dict(base, id=f"{trace_id}-t3", parentObservationId=root, type="TOOL", name="crm_update",
             startTime=at(8), endTime=at(8.5), input=json.dumps({"id": 7}), output=None,
             level="ERROR", statusMessage="HTTP 503 from crm"),
        dict(base, id=f"{trace_id}-g3", parentObservationId=root, type="GENERATION", name="answer",
             startTime=at(9), endTime=at(10), model="gpt-4o-mini", level="WARNING",
             statusMessage="finish_reason=length",
             input=json.dumps("..."), output=json.dumps("Done! Your lawyer has it."),
             usageDetails={"input": 1600, "output": 9}, totalCost=0.0008),
    ]


def still_running(trace_id: str = "tr-running", user: str = "u-3") -> list[dict[str, Any]]:
    root = f"{trace_id}-root"
    base = {"traceId": trace_id, "userId": user}
    return [
        dict(base, id=root, type="AGENT", name="support-agent", startTime=at(100), endTime=None),
        dict(base, id=f"{trace_id}-t1", parentObservationId=root, type="TOOL", name="run_sql",
             startTime=at(101), endTime=at(102), input=json.dumps({"sql": "DELETE FROM orders", "db": "prod"}),
             output=json.dumps({"rows": 1200})),
        dict(base, id=f"{trace_id}-t2", parentObservationId=root, type="TOOL", name="run_sql",
             startTime=at(103), endTime=None, input=json.dumps({"sql": "SELECT 1"})),
    ]


def comparable(traj) -> list[dict[str, Any]]:
    return [s.to_json() for s in traj.steps]


def files_store(tmp_path: Path, rows: list[dict[str, Any]]) -> FilesTraceStore:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return FilesTraceStore(tmp_path)


async def _read(store: PhoenixTraceStore, trace_id: str):
    try:
        return await store.get_trajectory(trace_id)
    finally:
        await store.aclose()


# --- without a server ----------------------------------------------------------------------


def test_otlp_export_skips_running_rows_and_says_so() -> None:
    request, result = to_export_request(still_running(), "p")
    assert result.exported == 1 and result.traces == 1
    assert sorted(result.skipped) == ["tr-running-root: still running (no endTime)",
                                      "tr-running-t2: still running (no endTime)"]
    assert "running steps stay invisible" in result.summary()
    rs = request.resource_spans[0]
    assert rs.resource.attributes[0].key == "openinference.project.name"
    span = rs.scope_spans[0].spans[0]
    assert span.trace_id.hex() == otel_trace_id("tr-running") and span.span_id.hex() == otel_span_id("tr-running-t1")
    assert span.parent_span_id.hex() == otel_span_id("tr-running-root")
    hexid = "0af7651916cd43dd8448eb211c80319c"
    assert otel_trace_id(hexid.upper()) == hexid and otel_span_id("b7ad6b7169203331") == "b7ad6b7169203331"


def test_openinference_attributes_for_a_tool_and_a_generation() -> None:
    rows = wrong_recipient()
    tool = span_attributes(rows[4])
    assert tool["openinference.span.kind"] == "TOOL" and tool["tool.name"] == "send_email"
    # OpenInference: arguments in input.value; tool.parameters is only ever the tool's schema
    assert json.loads(tool["input.value"])["to"] == "landlord@rent.example" and "tool.parameters" not in tool
    schema = {"type": "object", "properties": {"to": {"type": "string"}}}
    with_schema = span_attributes(dict(rows[4], metadata={"tool_schema": schema}))
    assert json.loads(with_schema["tool.parameters"]) == schema and with_schema["input.value"] == tool["input.value"]
    assert tool["input.mime_type"] == "application/json" and tool["user.id"] == "u-17"
    gen = span_attributes(rows[1])
    assert gen["openinference.span.kind"] == "LLM" and gen["llm.model_name"] == "gpt-4o-mini"
    assert (gen["llm.token_count.prompt"], gen["llm.token_count.completion"]) == (812, 31)


def test_span_to_row_reads_arguments_from_input_value_never_the_tool_parameters_schema() -> None:
    # OpenInference: `tool.parameters` is the tool's JSON schema (Phoenix flattens it into
    # tool.parameters.*); the arguments of the call are in input.value
    span = {"name": "send_email", "context": {"trace_id": "ab" * 16, "span_id": "cd" * 8},
            "span_kind": "TOOL", "parent_id": "ef" * 8, "start_time": "2026-11-23T09:00:00+00:00",
            "end_time": "2026-11-23T09:00:01.250000+00:00", "status_code": "ERROR", "status_message": "bounced",
            "attributes": {"tool.name": "send_email", "input.value": '{"to": "a@b.example"}',
                           "tool.parameters.type": "object", "tool.parameters.properties.to.type": "string",
                           "user.id": "u-1", "session.id": "s-1", "metadata.tier": "gold"}}
    row = span_to_row(span)
    assert json.loads(row["input"]) == {"to": "a@b.example"} and "notRecorded" not in row
    assert (row["type"], row["level"], row["statusMessage"], row["userId"], row["sessionId"]) == (
        "TOOL", "ERROR", "bounced", "u-1", "s-1")
    assert row["metadata"] == {"tier": "gold"} and row["isRootObservation"] is False
    assert row["id"] == "cd" * 8 and row["traceId"] == "ab" * 16
    # a tracer that redacted the arguments: only the schema is left, and the row says so
    span["attributes"] = {"tool.name": "send_email", "tool.parameters": '{"type": "object", "properties": {"to": {}}}'}
    row = span_to_row(span)
    assert row["input"] is None and row["notRecorded"] == ["arguments"]
    # nested attributes (as some Phoenix versions send them) read the same
    span["attributes"] = {"input": {"value": '{"to": "n@e.example"}'}, "llm": {"token_count": {"prompt": 5}}}
    row = span_to_row(span)
    assert json.loads(row["input"]) == {"to": "n@e.example"}
    span["span_kind"] = "LLM"
    assert span_to_row(span)["usageDetails"] == {"input": 5}
    for kind, typ in (("LLM", "GENERATION"), ("AGENT", "AGENT"), ("CHAIN", "CHAIN"), ("RERANKER", "RETRIEVER"),
                      ("PROMPT", "SPAN")):
        span["span_kind"] = kind
        assert span_to_row(span)["type"] == typ


# --- against the real server ------------------------------------------------------------------


def test_get_trajectory_matches_the_files_store(phoenix_server, tmp_path: Path) -> None:
    rows = wrong_recipient()
    project = phoenix_server.ingest(rows)
    store = PhoenixTraceStore(phoenix_server.url, project)
    traj = asyncio.run(_read(store, "tr-wrong"))
    local = files_store(tmp_path, rows).get_trajectory_sync("tr-wrong")
    assert comparable(traj) == comparable(local)
    send = traj.steps[3]
    assert (send.index, send.kind, send.name) == (4, "tool", "send_email")
    assert send.input == {"to": "landlord@rent.example", "subject": "Lease",
                          "attachments": [{"name": "lease.pdf", "size": 18211}], "urgent": True}
    err = traj.steps[4]
    assert (err.level, err.status_message) == ("ERROR", "HTTP 503 from crm")
    assert (traj.steps[0].input_tokens, traj.steps[0].output_tokens, traj.steps[0].model) == (812, 31, "gpt-4o-mini")
    for attr in ("user_id", "session_id", "status", "start", "end", "root_input", "root_output", "metadata", "model"):
        assert getattr(traj, attr) == getattr(local, attr), attr
    assert round(traj.cost_usd, 8) == round(local.cost_usd, 8) == 0.00192
    assert traj.source.startswith(f"phoenix:{phoenix_server.url} project {project}")
    # a 32-hex OpenTelemetry id finds the same trajectory
    by_otel = asyncio.run(_read(PhoenixTraceStore(phoenix_server.url, project), otel_trace_id("tr-wrong")))
    assert [s.name for s in by_otel.steps] == [s.name for s in traj.steps]


def test_running_trajectory_and_window_listing(phoenix_server, tmp_path: Path) -> None:
    early = wrong_recipient("tr-early", user="u-0")
    for r in early:  # an hour before the window
        for k in ("startTime", "endTime"):
            if r.get(k):
                r[k] = iso(datetime.fromisoformat(r[k].replace("Z", "+00:00")) - timedelta(hours=1))
    # Phoenix keys traces globally (across projects): ids unique to this test
    rows = wrong_recipient("tr-wrong-w", user="u-17") + still_running() + early
    project = phoenix_server.ingest(rows)
    store = PhoenixTraceStore(phoenix_server.url, project)
    running = asyncio.run(_read(store, "tr-running"))
    assert running.status == "running" and [s.name for s in running.steps] == ["run_sql"]
    assert any("no root observation yet" in p for p in running.problems)

    async def window():
        try:
            return await store.list_trajectories(T0, T0 + timedelta(hours=1))
        finally:
            await store.aclose()

    got = asyncio.run(window())
    assert [(s.trace_id, s.user_id, s.status) for s in got] == [
        ("tr-wrong-w", "u-17", "finished"), ("tr-running", "u-3", "running")]
    # the files store over the rows Phoenix could take (ended spans) lists the same
    ended = [r for r in rows if r.get("endTime")]
    assert files_store(tmp_path, ended).list_trajectories_sync(T0, T0 + timedelta(hours=1)) == got


def test_unknown_trace_and_unknown_project_are_not_found(phoenix_server) -> None:
    project = phoenix_server.ingest(wrong_recipient("tr-x"))
    with pytest.raises(TraceNotFound, match=rf"'tr-nope' not found in Phoenix at {phoenix_server.url} project {project}"):
        asyncio.run(_read(PhoenixTraceStore(phoenix_server.url, project), "tr-nope"))
    with pytest.raises(TraceNotFound, match="project no-such-project"):
        asyncio.run(_read(PhoenixTraceStore(phoenix_server.url, "no-such-project"), "tr-x"))


def test_iter_observations_pushes_span_filters_down(phoenix_server) -> None:
    project = phoenix_server.ingest(wrong_recipient("tr-a", user="u-a") + wrong_recipient("tr-b", user="u-b"))
    store = PhoenixTraceStore(phoenix_server.url, project)

    async def scan(filters: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        try:
            async for page in store.iter_observations(filters=filters):
                out.extend(page)
        finally:
            await store.aclose()
        return out

    hits = asyncio.run(scan({"span_kind": "TOOL", "name": "send_email", "attribute": "user.id:u-b"}))
    assert [(r["id"], r["userId"]) for r in hits] == [("tr-b-t2", "u-b")]
    assert json.loads(hits[0]["input"])["to"] == "landlord@rent.example"
    errors = asyncio.run(scan({"status_code": "ERROR"}))
    assert sorted(r["id"] for r in errors) == ["tr-a-t3", "tr-b-t3"]
    roots = asyncio.run(scan({"parent_id": "null"}))
    assert sorted(r["id"] for r in roots) == ["tr-a-root", "tr-b-root"]
    assert store.requests_made == 3


@pytest.mark.parametrize("scenario", ["wrong_recipient", "destructive_sql", "runaway_loop", "papered_error"])
def test_sandbox_scenarios_read_the_same_from_phoenix_and_the_files_store(phoenix_server, scenario: str) -> None:
    from agentfire.config import TriageSection
    from agentfire.triage import triage_trajectory

    seeded = phoenix_server.seed_scenario(scenario, traces=40)
    files = FilesTraceStore(seeded.path)
    phoenix = PhoenixTraceStore(phoenix_server.url, seeded.project)
    trace_ids = sorted({r["traceId"] for r in seeded.rows})
    failing = {f["trace_id"]: f for f in seeded.truth["failing"]}

    async def read_all():
        try:
            return [await phoenix.get_trajectory(t) for t in trace_ids]
        finally:
            await phoenix.aclose()

    for remote in asyncio.run(read_all()):
        local = files.get_trajectory_sync(remote.trace_id)
        assert comparable(remote) == comparable(local), remote.trace_id
        assert remote.status == local.status, remote.trace_id
        if local.status != "running":  # a running root cannot be exported: headers differ only then
            for attr in ("user_id", "session_id", "start", "end", "root_input", "model", "metadata"):
                assert getattr(remote, attr) == getattr(local, attr), (remote.trace_id, attr)
            assert round(remote.cost_usd, 6) == round(local.cost_usd, 6)
        if remote.trace_id in failing:
            a, b = triage_trajectory(remote, TriageSection()), triage_trajectory(local, TriageSection())
            assert (a.verdict.step_index, a.verdict.tool, a.verdict.kind) == (
                b.verdict.step_index, b.verdict.tool, b.verdict.kind), remote.trace_id
            assert a.verdict.step_index == failing[remote.trace_id]["off_rails_step"]
    window = seeded.truth["window"]
    start, end = (datetime.fromisoformat(window[k].replace("Z", "+00:00")) for k in ("from", "to"))

    async def listing():
        try:
            return await phoenix.list_trajectories(start, end)
        finally:
            await phoenix.aclose()

    remote_list = {s.trace_id: s for s in asyncio.run(listing())}
    local_list = {s.trace_id: s for s in files.list_trajectories_sync(start, end)}
    assert remote_list.keys() == local_list.keys()
    assert {t for t, s in remote_list.items() if s.status == "running"} == {
        t for t, s in local_list.items() if s.status == "running"} >= set(seeded.truth["still_running"])


def test_doctor_probes_the_configured_phoenix_project(phoenix_server, sandbox: Path, cli) -> None:
    seeded = phoenix_server.seed_scenario("wrong_recipient", traces=40)
    text = (sandbox / "runbook.yaml").read_text()
    start = text.index("traces:")
    end = text.index("\n\n", start)
    section = f"traces:\n  kind: phoenix\n  url: {phoenix_server.url}\n  project: {seeded.project}\n"
    (sandbox / "runbook.yaml").write_text(text[:start] + section + text[end:])
    check = [c for c in cli("doctor", "--json").json()["checks"] if c["area"] == "traces"][0]
    assert check["ok"] is True and check["detail"] == f"{phoenix_server.url} project {seeded.project}: reachable"
    (sandbox / "runbook.yaml").write_text(text[:start] + section.replace(seeded.project, "nope") + text[end:])
    check = [c for c in cli("doctor", "--json").json()["checks"] if c["area"] == "traces"][0]
    assert check["ok"] is False and "project 'nope' does not exist" in check["detail"]
