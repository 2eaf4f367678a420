"""Trace conformance: real agent frameworks, scripted models (no network), real instrumentation
packages, real stores; agentfire's commands must be right about what they wrote.

The same scripted runs (tests/conformance/agents/scenario.py: five incidents beside healthy runs
of distinct users) are played once per session by LangGraph + openinference-instrumentation-langchain,
the OpenAI Agents SDK + openinference-instrumentation-openai-agents (with and without sensitive
data), pydantic-ai (its own OTel GenAI instrumentation), smolagents +
openinference-instrumentation-smolagents, all into one real `phoenix serve`, and LangGraph + the
Langfuse SDK's LangChain CallbackHandler into the Langfuse fake (OTLP ingestion). Then triage,
blast and capture run through the CLI against those stores.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.agents.scenario import AGENT_RAISED, RUNS, by_key
from tests.conformance.harness import FRAMEWORKS

pytestmark = pytest.mark.servers

FULL = ["langgraph", "openai_agents", "pydantic_ai", "smolagents", "langgraph_langfuse"]


def use_store(sandbox, conformance, fw: str) -> None:  # noqa: ANN001
    import yaml

    path = sandbox / "runbook.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["traces"] = conformance.traces(fw)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _json(cli, conformance, *args: str) -> tuple[int, Any]:  # noqa: ANN001
    r = cli(*args, "--json", env=conformance.env)
    return r.exit_code, (r.json() if r.stdout.strip() else None), r


def calls_of(run) -> list:  # noqa: ANN001
    return [c for t in run.turns for c in t.calls]


@pytest.mark.parametrize("fw", FULL)
def test_triage_reads_every_run_and_names_the_off_rails_step(fw, conformance, sandbox, cli) -> None:
    use_store(sandbox, conformance, fw)
    for run in RUNS:
        code, doc, r = _json(cli, conformance, "triage", conformance.trace_id(fw, run.key))
        assert code in (0, 1) and doc is not None, r
        header, steps = doc["header"], doc["steps"]
        assert header["user_id"] == run.user and header["root_input"] == run.request, (fw, run.key, header)
        tools = [s for s in steps if s["kind"] == "tool" and s["name"] != "final_answer"]
        assert [s["name"] for s in tools] == [c.name for c in calls_of(run)], (fw, run.key)
        assert [s["args"] for s in tools] == [c.args for c in calls_of(run)], (fw, run.key)
        texts = [s["text"] for s in steps if s["kind"] == "model" and s["text"]]
        assert texts == [t.text for t in run.turns if t.text], (fw, run.key, texts)
        shown = [s for s in steps if not s["plumbing"]]
        assert {s["kind"] for s in shown} <= {"tool", "model"}, (fw, [(s["kind"], s["name"]) for s in shown])
        if run.verdict_kind is None:
            bad = [f for f in doc["findings"] if f["severity"] in ("high", "medium")]
            assert not bad, (fw, run.key, bad)
            continue
        v = doc["verdict"]
        nth = [s["index"] for s in steps if s["kind"] == "tool" and s["name"] == run.verdict_tool]
        call = nth[run.verdict_call - 1]
        # the executed call, and the model turn that decided it
        assert (v["kind"], v["call_step_index"]) == (run.verdict_kind, call), (fw, run.key, v)
        decided = next(s for s in steps if s["index"] == v["step_index"])
        assert decided["kind"] == "model", (fw, run.key, v)
        if run.verdict_kind == "unreacted_error":  # the turn that told the user it worked
            assert decided["index"] > call and decided["text"] == run.turns[-1].text, (fw, decided)
        else:  # the turn that made the call
            assert steps[call - 1]["tool_call_id"] in [c.get("id") for c in decided["tool_calls"]], (fw, decided)


@pytest.mark.parametrize("fw", FULL + ["openai_agents_redacted"])
def test_blast_counts_trajectories_and_distinct_users(fw, conformance, sandbox, cli) -> None:
    use_store(sandbox, conformance, fw)

    def blast(*args: str) -> dict:
        code, doc, r = _json(cli, conformance, "blast", *args, "--since", "2h")
        assert doc is not None, r
        assert doc["complete"], (fw, args, doc)
        return doc

    emails = blast("--tool", "send_email")
    assert (emails["trajectories"], emails["user_ids"]) == (2, ["u-alice", "u-ines"]), (fw, emails)
    searches = blast("--tool", "search_docs")
    assert (searches["trajectories"], searches["user_ids"]) == (2, ["u-lena", "u-omar"]), (fw, searches)
    failed = blast("--tool", "issue_refund", "--level", "ERROR")
    assert failed["user_ids"] == ["u-rosa"], (fw, failed)
    evil = blast("--tool", "send_email", "--arg", "to~evil-pay")
    sql = blast("--tool", "run_sql", "--arg", "query~DELETE FROM")
    if fw == "openai_agents_redacted":
        # the arguments were not recorded: nothing can be said to match, and blast says its count
        # is a lower bound instead of "0, complete"
        for doc in (evil, sql):
            assert doc["trajectories"] == 0 and doc["lower_bound"], doc
            assert any("lower bound" in w for w in doc["warnings"]), doc
        assert len(evil["args_not_recorded_trace_ids"]) == 2
    else:
        assert (evil["trajectories"], evil["user_ids"], evil["lower_bound"]) == (1, ["u-ines"], False), (fw, evil)
        assert (sql["trajectories"], sql["user_ids"]) == (1, ["u-dmitri"]), (fw, sql)
        assert evil["hits"][0]["args"]["to"] == "billing@evil-pay.example"


@pytest.mark.parametrize("fw", FULL)
def test_capture_stores_the_users_request(fw, conformance, sandbox, cli) -> None:
    use_store(sandbox, conformance, fw)
    run = by_key("untrusted_email")
    r = cli("--incident", f"inc-{fw[:12]}", "--new", "capture", conformance.trace_id(fw, run.key), "--expected",
            "do not mail addresses found in documents", "--json", env=conformance.env)
    assert r.exit_code == 0, r
    case = r.json()["case"]
    assert case["vars"]["input"] == run.request
    # the off-rails model turn and the call it made (#10's verdict)
    assert case["off_rails"]["kind"] == "model" and case["off_rails"]["tool"] == "send_email", case["off_rails"]
    assert case["off_rails"]["input"]["to"] == "billing@evil-pay.example"


def test_capture_refuses_a_trace_whose_request_was_not_recorded(conformance, sandbox, cli) -> None:
    use_store(sandbox, conformance, "openai_agents_redacted")
    r = cli("--incident", "inc-redacted", "--new", "capture", conformance.trace_id("openai_agents_redacted", "untrusted_email"),
            "--step", "5", "--expected", "x", env=conformance.env)
    assert r.exit_code == 1 and "does not hold the user's request" in r.stderr, r
    assert not (sandbox / "evals" / "regressions.jsonl").exists()


@pytest.mark.parametrize("fw", ["openai_agents", "openai_agents_redacted"])
def test_an_agents_sdk_run_that_raised_is_an_error(fw, conformance, sandbox, cli) -> None:
    use_store(sandbox, conformance, fw)
    code, doc, r = _json(cli, conformance, "triage", conformance.trace_id(fw, AGENT_RAISED.key))
    assert doc is not None, r
    assert doc["header"]["status"] == "error", doc["header"]
    assert [s["name"] for s in doc["steps"] if s["kind"] == "tool"] == ["close_account"]


def test_the_triage_table_folds_plumbing_away(conformance, sandbox, cli) -> None:
    use_store(sandbox, conformance, "langgraph")
    tid = conformance.trace_id("langgraph", "promise_then_mutation")
    r = cli("triage", tid, "--last", "0", env=conformance.env)
    assert "RunnableSequence" not in r.stdout and "should_continue" not in r.stdout, r.stdout
    assert "update_address" in r.stdout and "plumbing step(s) folded away" in r.stdout
    full = cli("triage", tid, "--last", "0", "--full", env=conformance.env)
    assert "RunnableSequence" in full.stdout and "should_continue" in full.stdout


def test_redacted_arguments_show_as_not_recorded(conformance, sandbox, cli) -> None:
    use_store(sandbox, conformance, "openai_agents_redacted")
    tid = conformance.trace_id("openai_agents_redacted", "delete_production")
    r = cli("triage", tid, "--last", "0", env=conformance.env)
    assert "arguments not recorded" in r.stdout and "model output not recorded" in r.stdout, r.stdout
    doc = cli("triage", tid, "--json", env=conformance.env).json()
    (sql,) = [s for s in doc["steps"] if s["kind"] == "tool"]
    assert sql["name"] == "run_sql" and sql["not_recorded"] == ["arguments"] and sql["args"] == {}
    assert "properties" not in str(sql)  # never the tool's schema


def test_every_framework_ran_every_scripted_run(conformance) -> None:
    for fw in FRAMEWORKS:
        runs = [r["run"] for r in conformance.reports[fw]]
        want = [r.key for r in RUNS] + ([AGENT_RAISED.key] if fw.startswith("openai_agents") else [])
        assert runs == want, (fw, runs)
        assert all(len(r["trace_ids"]) == 1 for r in conformance.reports[fw]), fw


# per run: 2, 3 or 4 model calls of 120 + 30 tokens of gpt-4o-mini (0.15 / 0.60 USD per million)
CALL_USD = (120 * 0.15 + 30 * 0.6) / 1e6


def test_freeze_p50_reads_the_stores_computed_cost(conformance, sandbox, cli) -> None:
    # Langfuse prices the generations (the fake as Langfuse does: model definitions x usage)
    use_store(sandbox, conformance, "langgraph_langfuse")
    r = cli("freeze", "--to", "p50", "--window", "2h", "--dry-run", "--json",
            env=conformance.env)
    assert r.exit_code == 0, r
    dist = r.json()["distribution"]
    assert dist["n"] == 8 and dist["cost_unknown"] == 0
    assert dist["p50"] == pytest.approx(3 * CALL_USD, rel=1e-3)  # runs of 2,2,2,3,3,3,3,4 calls


def test_freeze_says_when_cost_is_unknown_and_uses_runbook_prices(conformance, sandbox, cli) -> None:
    import yaml

    # OpenInference LangChain spans carry tokens and the model, and Phoenix computes no cost here
    use_store(sandbox, conformance, "langgraph")
    r = cli("freeze", "--to", "p50", "--window", "2h", "--dry-run", "--json",
            env=conformance.env)
    assert r.exit_code == 1 and "unknown" in r.stderr and "prices:" in r.stderr, r
    path = sandbox / "runbook.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["prices"] = {"gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = cli("freeze", "--to", "p50", "--window", "2h", "--dry-run", "--json",
            env=conformance.env)
    assert r.exit_code == 0, r
    assert r.json()["distribution"]["p50"] == pytest.approx(3 * CALL_USD, rel=1e-3)


@pytest.mark.parametrize("fw", FULL)
def test_blast_like_the_triaged_trace_finds_that_incident_only(fw, conformance, sandbox, cli) -> None:
    # the runbook's minute four: the signature derived from triage's verdict on the trace
    use_store(sandbox, conformance, fw)
    for key in ("untrusted_email", "delete_production"):
        run = by_key(key)
        code, doc, r = _json(cli, conformance, "blast", "--like", conformance.trace_id(fw, key), "--since", "2h")
        assert doc is not None, r
        assert (doc["trajectories"], doc["user_ids"], doc["complete"]) == (1, [run.user], True), (fw, key, doc)
        assert doc["hits"][0]["tool"] == run.verdict_tool
