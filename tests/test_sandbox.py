"""Sandbox incidents: deterministic, realistic, ground truth consistent with the data."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agentfire.errors import UsageError
from agentfire.providers.traces.files import FilesTraceStore
from agentfire.sandbox import SCENARIOS, load_truth, scenarios, seed_store
from agentfire.trajectory import parse_time

NOW = datetime(2026, 11, 23, 23, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("store")
    for name in SCENARIOS:
        seed_store(d, name, traces=200, seed=7, now=NOW)
    return d


def test_scenarios_listed() -> None:
    assert set(scenarios()) == {"wrong_recipient", "destructive_sql", "runaway_loop", "papered_error"}
    assert all(isinstance(v, str) and v for v in scenarios().values())


def test_deterministic_for_seed_and_now(tmp_path: Path) -> None:
    a = seed_store(tmp_path / "a", "wrong_recipient", traces=120, seed=3, now=NOW)
    b = seed_store(tmp_path / "b", "wrong_recipient", traces=120, seed=3, now=NOW)
    c = seed_store(tmp_path / "c", "wrong_recipient", traces=120, seed=4, now=NOW)
    assert a.data_file.read_bytes() == b.data_file.read_bytes()
    assert a.truth == b.truth
    assert a.data_file.read_bytes() != c.data_file.read_bytes()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_truth_matches_data(seeded: Path, scenario: str) -> None:
    truth = load_truth(seeded, scenario)
    store = FilesTraceStore(seeded)
    assert truth["scenario"] == scenario and truth["seed"] == 7
    assert truth["window"] == {"from": "2026-11-23T17:00:00.000Z", "to": "2026-11-23T23:00:00.000Z"}
    assert len(truth["failing"]) >= 6
    assert len(truth["still_running"]) >= 3
    assert truth["affected_users"] == sorted({f["user_id"] for f in truth["failing"]})
    assert set(truth["examples"]) <= {f["trace_id"] for f in truth["failing"]}
    for f in truth["failing"]:
        t = store.get_trajectory_sync(f["trace_id"])
        # the off-rails step is the model turn that decided; the call step is the tool call it made
        # (papered_error: the turn that carried on past the failed call, and that call)
        decided, call = t.step(f["off_rails_step"]), t.step(f["off_rails_call_step"])
        assert decided.kind == "model" and call.kind == "tool"
        assert call.name == f["off_rails_tool"] == truth["signature"]["tool"]
        if scenario == "papered_error":
            assert call.index < decided.index and "successfully" in decided.output["content"]
        else:
            assert decided.index == call.index - 1
            assert decided.output["tool_calls"][0]["name"] == call.name  # the canonical model turn (#11)
        assert (t.status == "running") == f["still_running"] == (f["trace_id"] in truth["still_running"])
        if not f["still_running"]:
            assert f["off_rails_step"] < len(t.steps), "the off-rails step is upstream of the last step"
        assert t.user_id == f["user_id"]


def test_rows_are_langfuse_shaped_and_in_window(seeded: Path) -> None:
    rows = [json.loads(line) for line in (seeded / "papered_error.jsonl").read_text().splitlines()]
    traces = {r["traceId"] for r in rows}
    assert len(traces) == 200 + 2  # + two normal ones in progress
    kinds = {r["type"] for r in rows}
    assert kinds == {"AGENT", "GENERATION", "TOOL", "SPAN"}
    for r in rows[:300]:
        assert isinstance(r["input"], str) and isinstance(r["output"], str)
        json.loads(r["input"])
        assert r["isRootObservation"] == (r["type"] == "AGENT")
        start = parse_time(r["startTime"])
        assert NOW - timedelta(hours=6) <= start <= NOW
        if r["type"] == "GENERATION":
            assert r["usageDetails"]["input"] > 0 and r["model"]
    tools = {r["name"] for r in rows if r["type"] == "TOOL"}
    assert {"search_kb", "read_inbox", "lookup_contact", "send_email", "run_sql", "refund", "get_order"} <= tools


def test_rootless_running_trajectories_exist(seeded: Path) -> None:
    truth = load_truth(seeded, "runaway_loop")
    store = FilesTraceStore(seeded)
    problems = [store.get_trajectory_sync(t).problems for t in truth["still_running"]]
    assert any(any("no root" in p for p in ps) for ps in problems)
    assert any(not ps for ps in problems)  # a root without endTime


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown scenario"):
        seed_store(tmp_path, "nope")
    with pytest.raises(UsageError, match="at least"):
        seed_store(tmp_path, "runaway_loop", traces=3)
