"""The Langfuse trace store against the contract fake (tests/fakes/langfuse.py).

The fake validates every answer with the langfuse SDK's models; `langfuse_fake` fails a test if
any answer drifted.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agentfire import _http
from agentfire.errors import ConfigError
from agentfire.providers.traces import TraceNotFound, TraceStoreError
from agentfire.providers.traces.files import FilesTraceStore
from agentfire.providers.traces.langfuse import LangfuseTraceStore
from agentfire.trajectory import from_observations, iso
from tests.fakes.langfuse import V2_PATH, FakeLangfuse, langfuse_fake  # noqa: F401

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def trajectory_rows(trace_id: str, *, user: str = "u-1", start: datetime = T0, tools: int = 3,
                    running: bool = False, cost: float = 0.01) -> list[dict[str, Any]]:
    """A support-agent trajectory: root AGENT, then per turn a GENERATION and a TOOL call."""
    root = f"{trace_id}-root"
    rows: list[dict[str, Any]] = [{
        "id": root, "traceId": trace_id, "type": "AGENT", "name": "support-agent",
        "startTime": iso(start), "endTime": None if running else iso(start + timedelta(seconds=tools * 2 + 1)),
        "userId": user, "sessionId": f"s-{user}", "input": json.dumps({"ticket": "where is my refund?"}),
        "output": None if running else json.dumps("done"),
    }]
    for i in range(tools):
        t = start + timedelta(seconds=2 * i + 1)
        rows.append({
            "id": f"{trace_id}-gen-{i}", "traceId": trace_id, "parentObservationId": root,
            "type": "GENERATION", "name": "plan", "startTime": iso(t),
            "endTime": iso(t + timedelta(milliseconds=400)), "userId": user, "model": "gpt-4o",
            "input": json.dumps([{"role": "user", "content": f"turn {i}"}]),
            "output": json.dumps({"text": f"I will call the tool ({i})"}),
            "usageDetails": {"input": 100 * (i + 1), "output": 20}, "totalCost": cost,
        })
        rows.append({
            "id": f"{trace_id}-tool-{i}", "traceId": trace_id, "parentObservationId": root,
            "type": "TOOL", "name": "send_email" if i == tools - 1 else "search_inbox",
            "startTime": iso(t + timedelta(milliseconds=500)), "endTime": iso(t + timedelta(milliseconds=900)),
            "userId": user, "input": json.dumps({"to": "landlord@example.com", "n": i, "opts": {"cc": [1, 2]}}),
            "output": json.dumps({"ok": True}), "metadata": {"region": "eu-west"},
        })
    return rows


def store_for(fake: FakeLangfuse, **kw: Any) -> LangfuseTraceStore:
    kw.setdefault("policy", _http.RetryPolicy(max_retries=3, cap_seconds=2.0, base_seconds=0.01))
    return LangfuseTraceStore(fake.base_url, fake.public_key, fake.secret_key, **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _get(store: LangfuseTraceStore, trace_id: str):
    try:
        return await store.get_trajectory(trace_id)
    finally:
        await store.aclose()


def steps_view(traj) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.to_json().items()} for s in traj.steps]


def test_pages_newest_first_reassembled_like_the_files_store(langfuse_fake: FakeLangfuse, tmp_path: Path) -> None:
    rows = trajectory_rows("tr-big", tools=1200)  # 2401 observations -> 3 pages of 1000
    langfuse_fake.add_rows(rows + trajectory_rows("tr-other", user="u-2"))
    store = store_for(langfuse_fake)
    traj = run(_get(store, "tr-big"))
    assert store.requests_made == 3 == langfuse_fake.count(V2_PATH)
    # every page asked for this trace only, with the cursor of the previous page
    qs = [r.query for r in langfuse_fake.requests]
    assert all(q["traceId"] == ["tr-big"] and q["limit"] == ["1000"] for q in qs)
    assert "cursor" not in qs[0] and all("cursor" in q for q in qs[1:])
    assert len(traj.steps) == 2400 and [s.index for s in traj.steps] == list(range(1, 2401))
    assert traj.steps[0].id == "tr-big-gen-0" and traj.steps[-1].name == "send_email"
    starts = [s.start for s in traj.steps]
    assert starts == sorted(starts)
    # the same rows through the files store give the same trajectory
    (tmp_path / "obs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    local = FilesTraceStore(tmp_path).get_trajectory_sync("tr-big")
    assert steps_view(traj) == steps_view(local)
    assert (traj.user_id, traj.session_id, traj.status, round(traj.cost_usd, 6)) == (
        local.user_id, local.session_id, local.status, round(local.cost_usd, 6)) == ("u-1", "s-u-1", "finished", 12.0)
    assert traj.steps[1].input == {"to": "landlord@example.com", "n": 0, "opts": {"cc": [1, 2]}}
    assert traj.steps[0].input_tokens == 100 and traj.steps[0].model == "gpt-4o"
    assert traj.steps[1].metadata == {"region": "eu-west"}
    assert traj.source.startswith("langfuse:") and traj.as_of is not None


def test_fake_pages_are_newest_first_with_a_keyset_cursor(langfuse_fake: FakeLangfuse) -> None:
    import httpx

    langfuse_fake.add_rows(trajectory_rows("tr-a", tools=5))
    with httpx.Client(base_url=langfuse_fake.base_url, auth=(langfuse_fake.public_key, langfuse_fake.secret_key)) as c:
        first = c.get(V2_PATH, params={"limit": 4}).json()
        second = c.get(V2_PATH, params={"limit": 4, "cursor": first["meta"]["cursor"]}).json()
        last = c.get(V2_PATH, params={"limit": 100, "cursor": second["meta"]["cursor"]}).json()
    times = [r["startTime"] for page in (first, second, last) for r in page["data"]]
    assert times == sorted(times, reverse=True) and len(times) == 11
    assert "cursor" not in last["meta"]  # absent on the last page
    assert set(first["data"][0]) >= {"id", "traceId", "name", "userId", "isRootObservation"}
    assert "input" not in first["data"][0]  # default fields are core,basic


def test_legacy_v3_fallback(tmp_path: Path) -> None:
    rows = trajectory_rows("tr-v3", tools=2)
    with FakeLangfuse(rows, mode="v3") as fake:
        store = store_for(fake)
        traj = run(_get(store, "tr-v3"))
        assert store.api_version == "v3"
        assert fake.count(V2_PATH) == 1 and fake.count("/api/public/traces/tr-v3") == 1
        with pytest.raises(TraceNotFound, match=r"'nope' not found in Langfuse at http://127\.0\.0\.1:\d+ \(v3 API\)"):
            run(_get(store_for(fake), "nope"))
        assert not fake.validation_errors
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    local = FilesTraceStore(tmp_path).get_trajectory_sync("tr-v3")
    assert steps_view(traj) == steps_view(local)
    assert traj.user_id == "u-1" and traj.status == "finished"


def test_429_retry_after_is_honoured(langfuse_fake: FakeLangfuse) -> None:
    langfuse_fake.add_rows(trajectory_rows("tr-1"))
    langfuse_fake.inject(429, times=2, retry_after=1, path=V2_PATH)
    store = store_for(langfuse_fake)
    t = time.monotonic()
    traj = run(_get(store, "tr-1"))
    waited = time.monotonic() - t
    assert len(traj.steps) == 6
    assert [r.status for r in langfuse_fake.requests] == [429, 429, 200]
    assert store.requests_made == 3
    assert waited >= 1.9  # two Retry-After: 1 waits (a lower bound: sleeping is never shorter)


def test_5xx_is_retried_then_succeeds_or_fails_with_a_clear_error(langfuse_fake: FakeLangfuse) -> None:
    langfuse_fake.add_rows(trajectory_rows("tr-1"))
    langfuse_fake.inject(503, times=2, path=V2_PATH)
    store = store_for(langfuse_fake)
    assert len(run(_get(store, "tr-1")).steps) == 6 and store.requests_made == 3
    langfuse_fake.inject(500, times=50, path=V2_PATH)
    store = store_for(langfuse_fake, policy=_http.RetryPolicy(max_retries=2, cap_seconds=0.05, base_seconds=0.01))
    with pytest.raises(TraceStoreError, match=r"Langfuse at http://127\.0\.0\.1:\d+: HTTP 500: injected HTTP 500 after 3 tries"):
        run(_get(store, "tr-1"))
    assert store.requests_made == 3


def test_unknown_trace_is_not_found_naming_the_store(langfuse_fake: FakeLangfuse) -> None:
    langfuse_fake.add_rows(trajectory_rows("tr-1"))
    with pytest.raises(TraceNotFound) as err:
        run(_get(store_for(langfuse_fake), "tr-missing"))
    assert str(err.value) == f"trace 'tr-missing' not found in Langfuse at {langfuse_fake.base_url}"
    assert err.value.exit_code == 1


def test_malformed_rows_still_render_with_problems(langfuse_fake: FakeLangfuse) -> None:
    rows = trajectory_rows("tr-bad", tools=2)
    rows[1]["input"] = '{"role": "user", "content": '  # cut JSON
    rows[2]["type"] = "WIDGET"  # a type this version does not know
    rows[3]["endTime"] = None  # a step without an end
    langfuse_fake.add_rows(rows)
    traj = run(_get(store_for(langfuse_fake), "tr-bad"))
    assert len(traj.steps) == 4
    assert traj.steps[0].input == '{"role": "user", "content": '  # shown raw
    assert traj.steps[1].kind == "other"
    assert any("input not valid JSON" in p for p in traj.problems)
    assert any("unknown observation type 'WIDGET'" in p for p in traj.problems)


def test_credentials_never_appear_in_errors(langfuse_fake: FakeLangfuse) -> None:
    wrong = LangfuseTraceStore(langfuse_fake.base_url, langfuse_fake.public_key, "sk-lf-WRONG-secret-value")
    with pytest.raises(TraceStoreError) as err:
        run(_get(wrong, "tr-1"))
    msg = str(err.value)
    assert "authentication refused (HTTP 401" in msg and langfuse_fake.base_url in msg
    assert "sk-lf-WRONG" not in msg and langfuse_fake.public_key not in msg
    from tests.conftest import free_port

    down = LangfuseTraceStore(f"http://127.0.0.1:{free_port()}", "pk-lf-x", "sk-lf-secret-down",
                              policy=_http.RetryPolicy(max_retries=1, cap_seconds=0.05, base_seconds=0.01))
    with pytest.raises(TraceStoreError, match="is unreachable: ConnectError") as err:
        run(_get(down, "tr-1"))
    assert "sk-lf-secret-down" not in str(err.value) and "pk-lf-x" not in str(err.value)


def test_list_trajectories_window_costs_and_status(langfuse_fake: FakeLangfuse, tmp_path: Path) -> None:
    rows = (
        trajectory_rows("tr-done", user="u-1", start=T0 + timedelta(minutes=5), tools=2, cost=0.5)
        + trajectory_rows("tr-running", user="u-2", start=T0 + timedelta(minutes=10), running=True)
        + trajectory_rows("tr-before", user="u-3", start=T0 - timedelta(minutes=1), tools=60)
        + trajectory_rows("tr-after", user="u-4", start=T0 + timedelta(hours=2))
        # crosses the window's end: its last steps start after `end`, its cost must be whole
        + trajectory_rows("tr-long", user="u-5", start=T0 + timedelta(minutes=59, seconds=58), tools=4, cost=1.0)
    )
    # a running trajectory whose root was not exported yet: only children exist
    rows += [r for r in trajectory_rows("tr-noroot", user="u-6", start=T0 + timedelta(minutes=20)) if r["type"] != "AGENT"]
    langfuse_fake.add_rows(rows)
    store = store_for(langfuse_fake)
    end = T0 + timedelta(hours=1)
    got = run(_list(store, T0, end))
    assert [(s.trace_id, s.user_id, s.status) for s in got] == [
        ("tr-done", "u-1", "finished"), ("tr-running", "u-2", "running"),
        ("tr-noroot", "u-6", "running"), ("tr-long", "u-5", "finished")]
    costs = {s.trace_id: round(s.cost_usd, 6) for s in got}
    assert costs == {"tr-done": 1.0, "tr-running": 0.03, "tr-noroot": 0.03, "tr-long": 4.0}
    # the window scan asked only for the summary field groups
    assert {q["fields"][0] for q in (r.query for r in langfuse_fake.requests)} == {"core,basic,usage"}
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert FilesTraceStore(tmp_path).list_trajectories_sync(T0, end) == got


async def _list(store: LangfuseTraceStore, start: datetime, end: datetime):
    try:
        return await store.list_trajectories(start, end)
    finally:
        await store.aclose()


def test_list_trajectories_on_a_v3_server() -> None:
    rows = trajectory_rows("tr-1", user="u-1", start=T0 + timedelta(minutes=1)) + \
        trajectory_rows("tr-2", user="u-2", start=T0 + timedelta(minutes=2), running=True)
    with FakeLangfuse(rows, mode="v3") as fake:
        got = run(_list(store_for(fake), T0, T0 + timedelta(hours=1)))
        assert not fake.validation_errors
    assert [(s.trace_id, s.user_id, s.status) for s in got] == [("tr-1", "u-1", "finished"), ("tr-2", "u-2", "running")]


def test_iter_observations_pushes_filters_down(langfuse_fake: FakeLangfuse) -> None:
    langfuse_fake.add_rows(trajectory_rows("tr-1", user="u-1", tools=5) + trajectory_rows("tr-2", user="u-2", tools=5))
    store = store_for(langfuse_fake)

    async def scan(**kw: Any) -> list[dict[str, Any]]:
        out = []
        async for page in store.iter_observations(**kw):
            out.extend(page)
        return out

    tools = run(scan(filters={"type": "TOOL", "name": "send_email"}, fields="core,basic,io"))
    assert sorted(r["id"] for r in tools) == ["tr-1-tool-4", "tr-2-tool-4"]
    q = langfuse_fake.requests[-1].query
    assert q["type"] == ["TOOL"] and q["name"] == ["send_email"] and q["fields"] == ["core,basic,io"]
    # with a JSON filter the query filters move inside it (the spec: `filter` takes precedence)
    cond = [{"type": "string", "column": "input", "operator": "matches", "value": '"n": 3'}]
    hits = run(scan(filters={"type": "TOOL", "userId": "u-2", "filter": cond}, start=T0, end=T0 + timedelta(hours=1)))
    assert [r["id"] for r in hits] == ["tr-2-tool-3"]
    q = langfuse_fake.requests[-1].query
    assert "type" not in q and "fromStartTime" not in q
    cols = {c["column"] for c in json.loads(q["filter"][0])}
    assert cols == {"input", "type", "userId", "startTime"}


def test_rows_arriving_during_a_scan_are_not_duplicated(langfuse_fake: FakeLangfuse) -> None:
    langfuse_fake.add_rows(trajectory_rows("tr-old", tools=10))
    # newer rows land after the first page; an older one too (a late export)
    late = trajectory_rows("tr-new", start=T0 + timedelta(hours=1), tools=2)
    late.append(dict(trajectory_rows("tr-late", start=T0 - timedelta(hours=1), tools=1)[1]))
    langfuse_fake.add_rows_after(1, late)
    store = store_for(langfuse_fake)

    async def scan() -> list[str]:
        ids = []
        async for page in store.iter_observations(fields="core", limit=5):
            ids.extend(r["id"] for r in page)
        return ids

    ids = run(scan())
    assert len(ids) == len(set(ids))
    assert {f"tr-old-tool-{i}" for i in range(10)} <= set(ids)
    assert "tr-late-gen-0" in ids  # older than the cursor: still ahead of the scan
    assert not any(i.startswith("tr-new") for i in ids)  # newer than the cursor: behind it


def test_client_side_pacing_spaces_requests(langfuse_fake: FakeLangfuse) -> None:
    langfuse_fake.add_rows(trajectory_rows("tr-1", tools=5))
    store = store_for(langfuse_fake, requests_per_minute=600)  # one per 0.1 s

    async def scan() -> int:
        n = 0
        async for page in store.iter_observations(fields="core", limit=2):
            n += len(page)
        await store.aclose()
        return n

    t = time.monotonic()
    assert run(scan()) == 11
    elapsed = time.monotonic() - t
    assert langfuse_fake.count(V2_PATH) == 6 == store.requests_made
    assert elapsed >= 0.5  # 6 requests, each slot 0.1 s after the previous one (a lower bound)


def test_fake_rate_limit_per_minute_answers_429_with_the_cloud_body() -> None:
    import httpx

    with FakeLangfuse(rate_limit_per_minute=2) as fake:
        with httpx.Client(base_url=fake.base_url, auth=(fake.public_key, fake.secret_key)) as c:
            assert [c.get(V2_PATH).status_code for _ in range(2)] == [200, 200]
            r = c.get(V2_PATH)
    assert r.status_code == 429 and float(r.headers["Retry-After"]) > 50
    body = r.json()
    assert body["code"] == "rate_limited" and body["details"]["retryAfterSeconds"] >= 50


def test_fake_cannot_drift_a_row_outside_the_sdk_model_is_a_500() -> None:
    rows = trajectory_rows("tr-1")
    rows[1]["level"] = "LOUD"  # not an ObservationLevel
    with FakeLangfuse(rows) as fake:
        store = store_for(fake, policy=_http.RetryPolicy(max_retries=0))
        with pytest.raises(TraceStoreError, match="HTTP 500"):
            run(_get(store, "tr-1"))
        assert fake.validation_errors and "ObservationsV2Response" in fake.validation_errors[0]


def test_fake_datasets_upsert_by_id_and_list_by_source_trace(langfuse_fake: FakeLangfuse) -> None:
    import httpx

    with httpx.Client(base_url=langfuse_fake.base_url, auth=(langfuse_fake.public_key, langfuse_fake.secret_key)) as c:
        assert c.post("/api/public/dataset-items", json={"datasetName": "regr", "id": "x"}).status_code == 404
        ds = c.post("/api/public/v2/datasets", json={"name": "regr"}).json()
        assert c.post("/api/public/v2/datasets", json={"name": "regr"}).json()["id"] == ds["id"]
        for value in (1, 2):
            r = c.post("/api/public/dataset-items", json={
                "datasetName": "regr", "id": "case-1", "input": {"q": value}, "sourceTraceId": "tr-1"})
            assert r.status_code == 200
        items = c.get("/api/public/dataset-items", params={"datasetName": "regr", "sourceTraceId": "tr-1"}).json()
        assert items["meta"]["totalItems"] == 1 and items["data"][0]["input"] == {"q": 2}
        assert c.post("/api/public/dataset-items", json={"id": "no-dataset-name"}).status_code == 400


def test_legacy_models_follow_the_spec_when_it_is_present() -> None:
    spec = Path("/work/shared/specs/langfuse-openapi.yml")
    if not spec.is_file():
        pytest.skip("the Langfuse OpenAPI spec is not on this machine")
    import yaml

    from tests.fakes import langfuse as fake_mod

    schemas = yaml.safe_load(spec.read_text())["components"]["schemas"]
    view_required = set(schemas["Observation"]["required"]) | set(schemas["ObservationsView"]["required"])
    assert view_required <= set(fake_mod.LegacyObservationsView.model_fields)
    assert set(schemas["Trace"]["required"]) <= set(fake_mod.LegacyTrace.model_fields)
    assert set(schemas["utilsMetaResponse"]["required"]) <= set(fake_mod.LegacyMeta.model_fields)
    assert set(schemas["TraceWithFullDetails"]["required"]) <= set(fake_mod.LegacyTraceWithFullDetails.model_fields)
    assert set(schemas["Traces"]["required"]) <= set(fake_mod.LegacyTraces.model_fields)


def test_from_config_reads_env_and_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire.config import LangfuseTraces
    from agentfire.providers.traces.langfuse import from_config

    section = LangfuseTraces(kind="langfuse")
    for k in ("LANGFUSE_BASE_URL", "LANGFUSE_HOST", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ConfigError, match=r"\$LANGFUSE_BASE_URL \(or \$LANGFUSE_HOST\)"):
        from_config(section, None)
    monkeypatch.setenv("LANGFUSE_HOST", "https://cloud.langfuse.com/")
    with pytest.raises(ConfigError, match=r"\$LANGFUSE_PUBLIC_KEY is not set"):
        from_config(section, None)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-1")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-2")
    store = from_config(section, None)
    assert store.target == "https://cloud.langfuse.com" and "sk-lf-2" not in repr(vars(store).get("target"))


def test_doctor_probes_the_configured_langfuse_store(sandbox: Path, langfuse_fake: FakeLangfuse,
                                                     monkeypatch: pytest.MonkeyPatch, cli) -> None:
    text = (sandbox / "runbook.yaml").read_text()
    start = text.index("traces:")
    end = text.index("\n\n", start)
    (sandbox / "runbook.yaml").write_text(text[:start] + "traces:\n  kind: langfuse\n" + text[end:])
    for k, v in langfuse_fake.env().items():
        monkeypatch.setenv(k, v)
    r = cli("doctor", "--json")
    doc = r.json()
    checks = doc["checks"] if isinstance(doc, dict) else doc
    traces = [c for c in checks if c["area"] == "traces"]
    assert traces and traces[0]["ok"] is True and "reachable, keys accepted (API v4)" in traces[0]["detail"]
    assert langfuse_fake.secret_key not in r.stdout + r.stderr


def test_fake_validation_agrees_with_the_sdk_parser(langfuse_fake: FakeLangfuse) -> None:
    import pydantic

    from tests.fakes.langfuse import validate_body, validate_body_with_sdk_parser

    langfuse_fake.add_rows(trajectory_rows("tr-1", tools=2))
    good = langfuse_fake._v2_observations({"fields": ["core,basic,time,io,metadata,model,usage,metrics,trace_context"]})
    row = good["data"][0]
    bads = [dict(row, level="LOUD"), {k: v for k, v in row.items() if k != "startTime"},
            dict(row, usageDetails={"input": "many"}), dict(row, startTime="yesterday")]
    for model, body, ok in [("ObservationsV2Response", good, True)] + [
            ("ObservationsV2Response", {"data": [b], "meta": {}}, False) for b in bads]:
        for check in (validate_body, validate_body_with_sdk_parser):
            if ok:
                check(model, body)
            else:
                with pytest.raises(pydantic.ValidationError):
                    check(model, body)


def test_a_cut_connection_is_retried(langfuse_fake: FakeLangfuse) -> None:
    langfuse_fake.add_rows(trajectory_rows("tr-1"))
    langfuse_fake.inject(0, times=1, path=V2_PATH)
    store = store_for(langfuse_fake)
    assert len(run(_get(store, "tr-1")).steps) == 6
    assert langfuse_fake.count(V2_PATH) == 2 and store.requests_made == 2


def test_fake_latency_applies_to_every_request() -> None:
    with FakeLangfuse(trajectory_rows("tr-1"), latency=0.05) as fake:
        store = store_for(fake)
        t = time.monotonic()
        run(_get(store, "tr-1"))
        run(_get(store, "tr-1"))
        assert time.monotonic() - t >= 0.1 and store.requests_made == 2


def test_a_hanging_langfuse_is_a_clear_error_within_its_timeout(sandbox: Path, cli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts the connection and never answers: triage ends, exit 1, one line."""
    import socket
    import threading

    import yaml

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        cfg = yaml.safe_load((sandbox / "runbook.yaml").read_text())
        cfg["traces"] = {"kind": "langfuse", "base_url": f"http://127.0.0.1:{listener.getsockname()[1]}",
                         "timeout_seconds": 0.5}
        cfg["kill"] = {"deadline_seconds": 20, "max_retries": 1, "retry_cap_seconds": 0.2}
        (sandbox / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-hang")
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-hang-secret")
        started = time.monotonic()
        r = cli("triage", "0123456789abcdef0123456789abcdef")
        took = time.monotonic() - started
    finally:
        stop.set()
        t.join(timeout=2)
        for c in held:
            c.close()
        listener.close()
    assert r.exit_code == 1, r
    assert "no answer within 0.5 s" in r.stderr and "Traceback" not in r.stderr
    assert "sk-lf-hang-secret" not in r.stderr + r.stdout
    assert took < 10, took  # bounded: one timeout retried once, never a hang
