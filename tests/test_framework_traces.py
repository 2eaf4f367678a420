"""The mapping of real instrumentations' traces, on recorded fixtures (fast; no server, no framework).

tests/fixtures/frameworks/<framework>.json hold what the real frameworks and their real
instrumentation packages wrote for the scripted runs of tests/conformance/agents/scenario.py
(LangGraph + openinference-instrumentation-langchain, the OpenAI Agents SDK +
openinference-instrumentation-openai-agents with and without sensitive data, pydantic-ai's own OTel
GenAI instrumentation, smolagents + openinference-instrumentation-smolagents: the spans as a real
Phoenix's REST API returned them; LangGraph + the Langfuse SDK's CallbackHandler: the observations
the Langfuse fake made of its OTLP export). Recorded by `python -m tests.conformance.harness record`;
tests/conformance/ checks the same against live runs.
"""

from __future__ import annotations

import pytest

from agentfire.config import TriageSection
from agentfire.triage import triage_trajectory
from tests.conformance.agents.scenario import AGENT_RAISED, RUNS, by_key
from tests.conformance.fixtures import trajectories

FULL = ["langgraph", "openai_agents", "pydantic_ai", "smolagents", "langgraph_langfuse"]
ALL = FULL + ["openai_agents_redacted"]
_cache: dict[str, dict] = {}


def trajs(name: str) -> dict:
    if name not in _cache:
        _cache[name] = trajectories(name)
    return _cache[name]


def calls_of(run) -> list:  # noqa: ANN001
    return [c for t in run.turns for c in t.calls]


def tools(t) -> list:  # noqa: ANN001
    # smolagents closes every run with its own final_answer tool (the answer is its argument)
    return [s for s in t.tool_steps if s.name != "final_answer"]


@pytest.mark.parametrize("fw", ALL)
def test_every_run_is_read_with_its_user_and_real_tool_names(fw: str) -> None:
    ts = trajs(fw)
    assert set(ts) >= {r.key for r in RUNS}
    for run in RUNS:
        t = ts[run.key]
        assert t.user_id == run.user, (fw, run.key)
        assert t.status == "finished", (fw, run.key, t.status)
        # tool.name / gen_ai.tool.name, not the span name (`SimpleTool`, `execute_tool send_email`)
        assert [s.name for s in tools(t)] == [c.name for c in calls_of(run)], (fw, run.key)


@pytest.mark.parametrize("fw", FULL)
def test_tool_arguments_model_text_and_the_users_request(fw: str) -> None:
    for run in RUNS:
        t = trajs(fw)[run.key]
        assert [s.input for s in tools(t)] == [c.args for c in calls_of(run)], (fw, run.key)
        assert all(not s.not_recorded for s in t.steps if s.kind in ("tool", "model")), (fw, run.key)
        assert t.root_input == run.request, (fw, run.key, t.root_input)
        models = [s for s in t.steps if s.is_model]
        assert len(models) == len(run.turns), (fw, run.key)
        for s, turn in zip(models, run.turns):
            out = s.output
            assert set(out) == {"role", "content", "tool_calls"} and out["role"] == "assistant", (fw, out)
            if turn.text:
                assert out["content"] == turn.text, (fw, run.key, out)
            names = [c["name"] for c in out["tool_calls"] if c["name"] != "final_answer"]
            assert names == [c.name for c in turn.calls], (fw, run.key, out)
            for c, want in zip(out["tool_calls"], turn.calls):
                assert c["arguments"] == want.args and c["id"], (fw, c)


@pytest.mark.parametrize("fw", FULL)
def test_each_tool_step_names_the_model_call_it_executed(fw: str) -> None:
    for run in RUNS:
        t = trajs(fw)[run.key]
        decided: dict[str, int] = {}
        for s in t.steps:
            if s.is_model:
                for c in s.output["tool_calls"]:
                    decided[c["id"]] = s.index
            elif s.is_tool:
                assert s.tool_call_id in decided, (fw, run.key, s.name, s.tool_call_id)
                assert decided[s.tool_call_id] < s.index


@pytest.mark.parametrize("fw", ALL)
def test_plumbing_is_folded_away_and_kept(fw: str) -> None:
    for run in RUNS:
        t = trajs(fw)[run.key]
        shown = [s for s in t.steps if not s.plumbing]
        assert {s.kind for s in shown} <= {"tool", "model"}, (fw, [(s.kind, s.name) for s in shown])
        assert len([s for s in shown if s.is_model]) == len(run.turns), (fw, run.key)
        hidden = [s.name for s in t.steps if s.plumbing]
        if fw in ("langgraph", "langgraph_langfuse"):
            assert {"RunnableSequence", "should_continue", "agent", "tools"} <= set(hidden)
        if fw.startswith("openai_agents"):
            assert {"turn", "support-agent"} <= set(hidden)
        if fw == "smolagents":
            assert "Step 1" in hidden
        assert t.to_json()["step_count"] == len(t.steps)  # --json keeps them


@pytest.mark.parametrize("fw", ALL)
def test_parents_come_before_their_children(fw: str) -> None:
    # Langfuse keeps milliseconds: LangGraph's node, its RunnableSequence and its prompt share one
    for t in trajs(fw).values():
        pos = {s.id: s.index for s in t.steps}
        for s in t.steps:
            if s.parent_id in pos:
                assert pos[s.parent_id] < s.index, (fw, s.name)


def _verdict(t):  # noqa: ANN001, ANN202
    return triage_trajectory(t, TriageSection())


@pytest.mark.parametrize("fw", FULL)
def test_triage_names_the_off_rails_step_of_every_incident(fw: str) -> None:
    for run in RUNS:
        t = trajs(fw)[run.key]
        result = _verdict(t)
        if run.verdict_kind is None:
            bad = [f for f in result.findings if f.severity in ("high", "medium")]
            assert not bad, (fw, run.key, bad)
            continue
        v = result.verdict
        assert v.step_index is not None, (fw, run.key, v.sentence)
        # the verdict names the executed call and the model turn that decided it
        nth = [s.index for s in t.tool_steps if s.name == run.verdict_tool]
        call = nth[run.verdict_call - 1]
        assert (v.kind, v.call_step_index) == (run.verdict_kind, call), (fw, run.key, v.sentence)
        decided = t.step(v.step_index)
        assert decided.is_model, (fw, run.key, v.sentence)
        if run.verdict_kind == "unreacted_error":  # the turn that told the user it worked
            assert decided.index > call and decided.output["content"] == run.turns[-1].text
        else:  # the turn that made the call
            assert t.step(call).tool_call_id in [c["id"] for c in decided.output["tool_calls"]], (fw, run.key)


def test_redacted_arguments_are_marked_not_recorded_never_the_schema() -> None:
    # trace_include_sensitive_data=False: only the tool's schema (tool.parameters) is left
    for run in RUNS:
        t = trajs("openai_agents_redacted")[run.key]
        for s in t.tool_steps:
            assert s.input is None and s.not_recorded == ["arguments"], (run.key, s.name, s.input)
        for s in t.steps:
            if s.is_model:
                assert s.output is None and "output" in s.not_recorded
        assert t.root_input is None


def test_redacted_healthy_runs_get_no_finding_above_low() -> None:
    for run in RUNS:
        if run.verdict_kind is None:
            bad = [f for f in _verdict(trajs("openai_agents_redacted")[run.key]).findings
                   if f.severity in ("high", "medium")]
            assert not bad, (run.key, bad)


@pytest.mark.parametrize("fw", ["openai_agents", "openai_agents_redacted"])
def test_an_agent_that_raised_under_an_ok_root_is_an_error(fw: str) -> None:
    t = trajs(fw)[AGENT_RAISED.key]
    assert t.user_id == AGENT_RAISED.user
    assert t.status == "error" and any("failed" in p for p in t.problems)
    assert [s.name for s in t.tool_steps] == ["close_account"] and t.tool_steps[0].level == "ERROR"


def test_a_langchain_one_argument_tool_gets_its_argument_name_from_the_calling_model_turn() -> None:
    # openinference-instrumentation-langchain records `lookup_order("42")` as input.value '42'
    raw = [s for s in __import__("tests.conformance.fixtures", fromlist=["load"]).load("langgraph")["spans"]
           if s["attributes"].get("tool.name") == "lookup_order"]
    assert raw and all(s["attributes"]["input.value"] in ("42", "77") for s in raw)
    t = trajs("langgraph")["healthy_refund"]
    assert t.tool_steps[0].input == {"order_id": "77"}
    assert by_key("healthy_refund").turns[0].calls[0].args == {"order_id": "77"}


def test_model_tokens_are_read_and_pydantic_ai_cost_is_the_instrumentations_own() -> None:
    for fw in FULL:
        t = trajs(fw)["healthy_search"]
        models = [s for s in t.steps if s.is_model]
        assert all((s.input_tokens, s.output_tokens) == (120, 30) for s in models), fw
        assert all(s.model == "gpt-4o-mini" for s in models), fw
    # pydantic-ai prices its calls (genai-prices) into `operation.cost`
    t = trajs("pydantic_ai")["healthy_search"]
    assert t.cost_usd == pytest.approx(2 * (120 * 0.15 + 30 * 0.6) / 1e6)


def test_cost_is_unknown_without_a_price_and_computed_from_runbook_prices() -> None:
    from agentfire.config import ModelPrice
    from agentfire.providers.traces.phoenix import _link_parents
    from tests.conformance.fixtures import AS_OF, load
    from agentfire.trajectory import from_observations

    doc = load("langgraph")
    (tid,) = next(r["trace_ids"] for r in doc["reports"] if r["run"] == "healthy_search")
    rows = _link_parents([s for s in doc["spans"] if s["context"]["trace_id"] == tid])
    # OpenInference LangChain spans carry tokens and the model, no cost
    t = from_observations(tid, rows, as_of=AS_OF)
    assert (t.cost_usd, t.cost_known, t.to_json()["cost_known"]) == (0.0, False, False)
    priced = from_observations(tid, rows, as_of=AS_OF, prices={
        "gpt-4o-*": ModelPrice(input_per_million=0.15, output_per_million=0.6)})
    assert priced.cost_known and priced.cost_usd == pytest.approx(2 * (120 * 0.15 + 30 * 0.6) / 1e6)
    assert all(s.metadata.get("cost_source") == "runbook prices" for s in priced.steps if s.is_model)
    # a store's own cost wins over the table (pydantic-ai's operation.cost)
    assert trajs("pydantic_ai")["healthy_search"].cost_known


def test_langfuse_computed_cost_is_read() -> None:
    # Langfuse prices generations at ingestion; the Langfuse SDK sent tokens and the model only
    for run in RUNS:
        t = trajs("langgraph_langfuse")[run.key]
        assert t.cost_known and t.cost_usd == pytest.approx(len(run.turns) * (120 * 0.15 + 30 * 0.6) / 1e6)


def test_golden_diff_across_frameworks() -> None:
    # a known-good run recorded by one framework, diffed against runs of the others: the same
    # tool calls match; the incident diverges at the call whose arguments differ
    from agentfire.golden import trajectory_from_json
    from agentfire.triage.diff import diff

    golden = trajectory_from_json(trajs("pydantic_ai")["healthy_search"].to_json())
    assert [s.plumbing for s in golden.steps] == [s.plumbing for s in trajs("pydantic_ai")["healthy_search"].steps]
    for fw in ("langgraph", "openai_agents", "langgraph_langfuse"):
        same = diff(trajs(fw)["healthy_search"], golden, mode="strict", args="exact")
        assert same.matched, (fw, same.to_json())
        looped = diff(trajs(fw)["repeated_search"], golden, mode="strict", args="exact")
        assert not looped.matched and looped.divergence.actual.tool == "search_docs", (fw, looped.to_json())


# --- verdicts that depended on detector logic (issue #10's detectors), not on the mapping -------


# a trajectory that ended in error on a failed tool call (no model turn after it) (#10)
@pytest.mark.parametrize("fw", ["openai_agents", "openai_agents_redacted"])
def test_detector_names_the_failed_call_of_a_run_that_raised(fw: str) -> None:
    t = trajs(fw)[AGENT_RAISED.key]
    v = _verdict(t).verdict
    assert v.call_step_index == t.tool_steps[0].index and v.severity in ("high", "medium"), v.sentence


# arguments the tracer did not record (Step.not_recorded) are unknown, not equal (#10)
def test_loop_evidence_does_not_claim_equal_arguments_when_none_were_recorded() -> None:
    t = trajs("openai_agents_redacted")["repeated_search"]
    loops = [f for f in _verdict(t).findings if f.kind == "loop"]
    assert loops and all("same arguments" not in f.evidence for f in loops), [f.evidence for f in loops]


def test_an_error_on_plumbing_is_not_folded_away() -> None:
    # the Agents SDK's agent span carries the run's error: shown, while its turns stay folded
    t = trajs("openai_agents")[AGENT_RAISED.key]
    agent = next(s for s in t.steps if s.name == "support-agent")
    assert agent.level == "ERROR" and not agent.plumbing
    assert all(s.plumbing for s in t.steps if s.name in ("turn", "Agent workflow"))
