"""Triage on trajectories in the shapes real traces have (issue 10), each detector firing and not.

A real tool call is two observations: the GENERATION whose output is the canonical assistant message
{"role": "assistant", "content": ..., "tool_calls": [{"id", "name", "arguments"}]} and the TOOL that
executed it (input = the arguments, output = the tool's answer, often a plain "Error: ..." string at
level DEFAULT). Users' turns are EVENTs. The fixtures below are Langfuse observation rows read by
agentfire.trajectory.from_observations, the path every trace store goes through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentfire.config import PolicyRule, TriageSection, load_runbook
from agentfire.errors import ConfigError
from agentfire.trajectory import Step, Trajectory, from_observations
from agentfire.triage import triage_trajectory
from agentfire.triage._index import Index
from agentfire.triage._text import call_class, output_error, sql_of
from agentfire.triage.detectors import (
    grounding, loops, policy_violations, prose_vs_action, unreacted_errors,
)

CFG = TriageSection()
LOUD = ("high", "medium")


class Conv:
    """Builds one trace as Langfuse v2 observation rows, in order."""

    def __init__(self, user: str, tid: str = "t-1"):
        self.tid = tid
        self.rows: list[dict[str, Any]] = [{
            "id": f"{tid}-root", "traceId": tid, "type": "AGENT", "name": "agent", "startTime": self._t(0),
            "endTime": self._t(999), "parentObservationId": None, "isRootObservation": True,
            "input": json.dumps({"user": user}), "output": None, "level": "DEFAULT"}]
        self.n = 0
        self.user(user)

    def _t(self, n: int) -> str:
        return f"2026-11-20T09:{n // 60:02d}:{n % 60:02d}Z"

    def _row(self, typ: str, name: str, **kw: Any) -> int:
        self.n += 1
        row = {"id": f"{self.tid}-m{self.n:03d}", "traceId": self.tid, "type": typ, "name": name,
               "startTime": self._t(self.n), "endTime": self._t(self.n), "parentObservationId": f"{self.tid}-root",
               "isRootObservation": False, "level": "DEFAULT", "input": None, "output": None}
        row.update({k: (json.dumps(v) if k in ("input", "output") else v) for k, v in kw.items()})
        self.rows.append(row)
        return self.n

    def user(self, text: str) -> int:
        return self._row("EVENT", "user_message", input=text)

    def system(self, text: str) -> int:
        return self._row("EVENT", "system_prompt", input=text)

    def say(self, text: str, name: str = "llm") -> int:
        return self._row("GENERATION", name, output={"role": "assistant", "content": text, "tool_calls": []})

    def call(self, tool: str, args: dict[str, Any], result: Any, *, text: str | None = None,
             level: str = "DEFAULT") -> tuple[int, int]:
        cid = f"call_{self.n + 1}"
        turn = self._row("GENERATION", "llm", output={"role": "assistant", "content": text, "tool_calls": [
            {"id": cid, "name": tool, "arguments": json.dumps(args)}]})
        done = self._row("TOOL", tool, input=args, output=result, level=level)
        return turn, done

    def traj(self) -> Trajectory:
        return from_observations(self.tid, self.rows)


def loud(findings: list[Any], kind: str | None = None) -> list[Any]:
    return [f for f in findings if f.severity in LOUD and (kind is None or f.kind == kind)]


RES = {"reservation_id": "QX7P2K", "user_id": "ana_lee_42", "flights": [
    {"flight_number": "HAT170", "date": "2024-05-20", "price": 1250}], "payment_methods": ["credit_card_881"]}


# --- errors that were not errors ---------------------------------------------------------------


def test_error_string_on_a_state_change_reported_as_success_is_high_on_the_turn_that_carried_on() -> None:
    c = Conv("Please move my flight QX7P2K to May 21, I'm ana_lee_42")
    c.call("get_reservation_details", {"reservation_id": "QX7P2K"}, RES)
    c.user("yes, go ahead")
    _, failed = c.call("update_reservation_flights", {"reservation_id": "QX7P2K", "date": "2024-05-21",
                                                      "payment_id": "credit_card_881"},
                       "Error: no seats available on HAT170 on 2024-05-21")
    told = c.say("Your flight has been changed successfully to May 21.")
    t = c.traj()
    [f] = loud(unreacted_errors(t, CFG))
    assert (f.step_index, f.call_step_index, f.severity) == (told, failed, "high")
    v = triage_trajectory(t, CFG).verdict
    assert (v.kind, v.step_index, v.call_step_index, v.tool, v.confidence) == (
        "unreacted_error", told, failed, "update_reservation_flights", "high")
    assert v.id == f"t-1-m{told:03d}" and v.call_id == f"t-1-m{failed:03d}"


def test_error_object_and_acknowledged_or_retried_errors() -> None:
    c = Conv("Cancel QX7P2K please, I'm ana_lee_42")
    c.call("get_reservation_details", {"reservation_id": "QX7P2K"}, {"error": "reservation not found"})
    c.say("Sorry, I could not find that reservation. Could you check the id?")
    c.user("It is QX7P2K")
    c.call("cancel_reservation", {"reservation_id": "QX7P2K"}, "Error: upstream timeout")
    c.call("cancel_reservation", {"reservation_id": "QX7P2K"}, {"status": "cancelled"})  # retried: handled
    c.say("Your reservation QX7P2K has been cancelled.")
    t = c.traj()
    assert loud(unreacted_errors(t, CFG)) == []
    assert triage_trajectory(t, CFG).verdict.severity is None
    # the same error object, not acknowledged, on a state change: medium on the turn that went on
    c2 = Conv("Cancel QX7P2K please")
    _, failed = c2.call("cancel_reservation", {"reservation_id": "QX7P2K"}, {"error": "card declined"})
    went_on = c2.say("Is there anything else I can help with today?")
    [f] = loud(unreacted_errors(c2.traj(), CFG))
    assert (f.step_index, f.call_step_index, f.severity) == (went_on, failed, "medium")


def test_output_error_shapes() -> None:
    assert output_error("Error: payment method not found")
    assert output_error("Traceback (most recent call last):\n  File ...\nKeyError: 'x'")
    assert output_error("exitcode: 1 (execution failed)\nCode output: ...")
    assert output_error({"success": False, "message": "nope"}) and output_error({"status": "failed"})
    assert output_error({"errors": ["bad"]})
    assert output_error("Certificate certificate_3221322 added to user noah_9847 with amount 50.") is None
    assert output_error({"error": None, "result": "ok"}) is None and output_error([1, 2]) is None


# --- grounding ---------------------------------------------------------------------------------


def test_grounding_normalises_formats_and_accepts_totals() -> None:
    c = Conv("What does QX7P2K cost? I'm ana_lee_42")
    c.system("Refunds are issued within 7 to 10 business days. Fees: 24 hours free cancellation.")
    c.call("get_reservation_details", {"reservation_id": "QX7P2K"}, RES)
    c.call("get_baggage_fee", {"reservation_id": "QX7P2K"}, {"fee": 150, "insurance": 30})
    c.say("Reservation QX7P2K: flight HAT170 on May 20th costs $1,250.00; with bags the total is $1,400, "
          "bags and insurance together are $180, two bags would be $300. Refunds take 10 days.")
    t = c.traj()
    assert grounding(t, CFG) == []
    # the same facts, one of them not in any source (nor a sum, difference or multiple of two)
    c.say("The fare difference is $977.")
    [f] = grounding(c.traj(), CFG)
    assert f.severity == "medium" and "$977" in f.evidence


def test_grounding_flags_invented_ids_and_amounts() -> None:
    c = Conv("I want a refund for my reservation, I'm ana_lee_42")
    c.call("get_user_details", {"user_id": "ana_lee_42"}, {"reservations": ["QX7P2K"], "payment_methods": ["credit_card_881"]})
    stated = c.say("I see a refund of $480 is due on QX7P2K.")
    decided, called = c.call("cancel_reservation", {"reservation_id": "QX7P2K", "refund_to": "gift_card_5550"}, "ok")
    t = c.traj()
    found = {(f.step_index, f.call_step_index, f.severity): f.evidence for f in grounding(t, CFG)}
    assert (stated, None, "medium") in found and "$480" in found[(stated, None, "medium")]
    assert (decided, called, "high") in found and "gift_card_5550" in found[(decided, called, "high")]
    # switched off in the runbook: nothing
    assert grounding(t, TriageSection(grounding=False)) == []


def test_grounding_knows_an_ids_digits_and_dates_worked_out_from_a_known_one() -> None:
    """Seen on tau-airline's runs: "certificate 7504069" and "the gift card ending in 6644" quote
    ids a tool gave (certificate_7504069, gift_card_9226644); "move it one day later" gives
    2024-05-19 from a flight on 2024-05-18. None of these is an invented fact; a date weeks away
    from every known one, an amount no tool gave, and digits no id holds still are."""
    c = Conv("Please delay my outgoing flight by one day and pay with my certificate. I'm ana_lee_42")
    c.call("get_user_details", {"user_id": "ana_lee_42"},
           {"payment_methods": {"certificate_7504069": {"amount": 250}, "gift_card_9226644": {"amount": 80}}})
    c.call("get_reservation_details", {"reservation_id": "QX7P2K"},
           {"flights": [{"flight_number": "HAT085", "date": "2024-05-18"}]})
    c.say("I will move HAT085 to 2024-05-19 and pay with certificate 7504069; the gift card ending in "
          "6644 stays untouched.")
    assert grounding(c.traj(), CFG) == []
    c.say("Your new flight leaves on June 30 and certificate 7504070 covers $555.")
    [f] = grounding(c.traj(), CFG)
    stated = f.evidence.split(" which appear")[0]  # the facts, before the quoted message
    assert "June 30" in stated and "7504070" in stated and "$555" in stated, f.evidence


# --- policies ----------------------------------------------------------------------------------


RULES = [PolicyRule(name="authenticate first", before=["update_*", "cancel_*"], require=["get_user_details"]),
         PolicyRule(require_confirmation=["cancel_*", "update_*"]),
         PolicyRule(never=["delete_*"], severity="high"),
         PolicyRule(max_calls={"search_*": 2})]


def test_policies_fire_step_by_step_naming_the_rule() -> None:
    c = Conv("cancel QX7P2K")
    d1, c1 = c.call("cancel_reservation", {"reservation_id": "QX7P2K"}, "ok")  # no auth, no confirmation
    c.call("search_flights", {"date": "2024-05-20"}, [])
    c.call("search_flights", {"date": "2024-05-21"}, [])
    d3, c3 = c.call("search_flights", {"date": "2024-05-22"}, [])
    d4, c4 = c.call("delete_user", {"user_id": "ana_lee_42"}, "ok")
    got = {(f.rule, f.step_index, f.call_step_index, f.severity) for f in policy_violations(c.traj(), CFG, RULES)}
    assert got == {("authenticate first", d1, c1, "medium"), ("require_confirmation cancel_*, update_*", d1, c1, "medium"),
                   ("max_calls search_*: 2", d3, c3, "medium"), ("never delete_*", d4, c4, "high")}
    v = triage_trajectory(c.traj(), CFG, policies=RULES).verdict
    assert v.kind == "policy" and v.step_index == d4 and "never delete_*" in v.sentence


def test_policies_kept_give_no_finding() -> None:
    c = Conv("cancel QX7P2K, I'm ana_lee_42")
    c.call("get_user_details", {"user_id": "ana_lee_42"}, {"reservations": ["QX7P2K"]})
    c.say("I will cancel QX7P2K. Shall I proceed?")
    c.user("Yes, please proceed.")
    c.call("cancel_reservation", {"reservation_id": "QX7P2K"}, "ok")
    c.call("search_flights", {"date": "2024-05-20"}, [])
    assert policy_violations(c.traj(), CFG, RULES) == []
    c.user("no wait")  # a "no" just before a change is not a confirmation
    c.call("update_reservation_flights", {"reservation_id": "QX7P2K"}, "ok")
    [f] = policy_violations(c.traj(), CFG, RULES)
    assert f.rule == "require_confirmation cancel_*, update_*"


def test_policies_are_validated_with_file_and_line(tmp_path: Path) -> None:
    base = (Path(__file__).resolve().parent.parent / "runbook.yaml").read_text()
    good = tmp_path / "good" / "runbook.yaml"
    good.parent.mkdir()
    good.write_text(base + "\npolicies:\n  - name: auth first\n    before: [update_*]\n    require: [get_user*]\n"
                    "  - max_calls: {search_*: 5}\n")
    rb = load_runbook(good)
    assert [r.label for r in rb.model.policies] == ["auth first", "max_calls search_*: 5"]
    bad = tmp_path / "bad" / "runbook.yaml"
    bad.parent.mkdir()
    text = base + "\npolicies:\n  - before: [update_*]\n  - never: [x]\n    max_calls: {y: 1}\n"
    bad.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_runbook(bad)
    msg = str(exc.value)
    line = text.splitlines().index("  - before: [update_*]") + 1
    assert f"runbook.yaml:{line}: policies.0" in msg and "require" in msg
    assert "policies.1" in msg and "exactly one" in msg


# --- decisions, calls and the verdict ----------------------------------------------------------


def test_tool_calls_link_to_their_decision_by_id_and_name() -> None:
    steps = [
        Step(index=1, id="g1", parent_id=None, kind="model", name="llm", output={
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "a", "name": "get_order", "arguments": '{"id": 1}'},
                {"id": "b", "name": "get_order", "arguments": {"id": 2}}]}),
        Step(index=2, id="g2", parent_id=None, kind="model", name="llm",
             output={"role": "assistant", "content": "thinking"}),
        Step(index=3, id="t1", parent_id=None, kind="tool", name="get_order", input={"id": 2}, metadata={"tool_call_id": "b"}),
        Step(index=4, id="t2", parent_id=None, kind="tool", name="get_order", input={"id": 1}),
        Step(index=5, id="t3", parent_id=None, kind="tool", name="refund", input={}),  # no id, no name match
    ]
    idx = Index(Trajectory(trace_id="x", steps=steps), CFG)
    assert [idx.decision_of(p) for p in (2, 3, 4)] == [0, 1, 1]  # by id; then the latest turn
    assert idx.calls[0][1]["arguments"] == {"id": 2}


def test_no_detector_fired_points_at_the_last_model_turn_with_confidence_none() -> None:
    c = Conv("When does my flight QX7P2K leave? I'm ana_lee_42")
    c.call("get_reservation_details", {"reservation_id": "QX7P2K"}, RES)
    last = c.say("Your flight HAT170 leaves on 2024-05-20.")
    c.user("thanks")
    v = triage_trajectory(c.traj(), CFG).verdict
    assert (v.kind, v.severity, v.confidence, v.step_index, v.rule) == ("none", None, "none", last, 4)
    assert v.sentence.startswith("No detector fired") and f"step {last}" in v.sentence
    # a place to look, never a finding: no severity, kind none (nothing changed state here)
    assert [(c["step_index"], c["kind"], c["severity"]) for c in v.to_json()["candidates"]] == [(last, "none", None)]


def test_candidates_are_ranked_and_at_most_three() -> None:
    c = Conv("cancel everything")
    found = []
    for n in range(5):
        found.append(c.call("cancel_reservation", {"reservation_id": f"ZZ{n}Q9X"}, "ok")[0])  # invented ids
    v = triage_trajectory(c.traj(), CFG).verdict
    assert v.kind == "ungrounded" and v.step_index == found[0]
    assert [x.step_index for x in v.candidates] == found[:3]
    assert all(x.severity == "high" and x.call_step_index == x.step_index + 1 for x in v.candidates)


# --- prose, loops, SQL --------------------------------------------------------------------------


def test_prose_vs_action_in_real_shape() -> None:
    c = Conv("fix order 123456789")
    promised, called = c.call("update_order", {"order_id": "123456789", "status": "shipped"}, "ok",
                              text="Let me check the order first.")
    [f] = prose_vs_action(c.traj(), CFG)
    assert (f.step_index, f.call_step_index) == (promised, called)


def test_a_user_turn_inside_the_next_prompt_ends_the_promise() -> None:
    """OpenInference-style: no step per user message; the user's reply is the last message of the
    next model turn's input."""
    def turn(i: int, prompt: list[dict[str, Any]], text: str | None, call: str | None) -> Step:
        calls = [{"id": f"c{i}", "name": call, "arguments": "{}"}] if call else []
        return Step(index=i, id=f"s{i}", parent_id=None, kind="model", name="llm", input=prompt,
                    output={"role": "assistant", "content": text, "tool_calls": calls})

    asked = [{"role": "user", "content": "close ticket 7"}]
    steps = [turn(1, asked, "Let me check with you first: close ticket 7?", None),
             turn(2, asked + [{"role": "assistant", "content": "..."}, {"role": "user", "content": "yes"}],
                  None, "update_ticket"),
             Step(index=3, id="s3", parent_id=None, kind="tool", name="update_ticket", input={"id": 7}, output="ok")]
    assert prose_vs_action(Trajectory(trace_id="oi", steps=steps), CFG) == []
    steps[1] = turn(2, asked + [{"role": "assistant", "content": "..."}], None, "update_ticket")
    [f] = prose_vs_action(Trajectory(trace_id="oi", steps=steps), CFG)
    assert (f.step_index, f.call_step_index) == (2, 3)
    # a prompt that is the same every turn (system + the first request) is not a new user turn
    steps[1] = turn(2, asked, None, "update_ticket")
    [f] = prose_vs_action(Trajectory(trace_id="oi", steps=steps), CFG)
    assert (f.step_index, f.call_step_index) == (2, 3)


def test_a_search_query_is_not_sql() -> None:
    def tool(name: str, args: dict[str, Any]) -> Step:
        return Step(index=1, id="1", parent_id=None, kind="tool", name=name, input=args)

    assert sql_of(tool("search_kb", {"query": "update my address"})) is None
    assert call_class(tool("search_kb", {"query": "update my address"}), CFG) == "read"
    assert sql_of(tool("search_kb", {"query": "DELETE FROM orders WHERE 1=1"})) is not None
    assert sql_of(tool("run_query", {"query": "update users set plan = 'x'"})) is not None
    assert sql_of(tool("warehouse", {"query": "select 1"})) == "select 1"
    assert call_class(tool("run_sql", {"sql": "DROP TABLE t"}), CFG) == "mutation"


def test_going_through_a_list_is_not_a_loop_but_a_search_going_round_is() -> None:
    ids = ["QX7P2K", "PUNERT", "HSR97W", "SE9KEL", "FDZ0T5"]
    c = Conv("check my bookings, I'm ana_lee_42")
    c.call("get_user_details", {"user_id": "ana_lee_42"}, {"reservations": ids})
    for r in ids:
        c.call("get_reservation_details", {"reservation_id": r}, {"reservation_id": r})
    assert loud(loops(c.traj(), CFG)) == []
    c2 = Conv("find the policy")
    for n in range(5):
        c2.call("search_kb", {"query": f"international returns policy v{n}"}, {"results": []})
    [f] = loops(c2.traj(), CFG)
    assert f.severity == "medium" and f.call_step_index is not None
    # the same read again after a state change is a fresh read, not a loop
    c3 = Conv("move QX7P2K")
    for _ in range(3):
        c3.call("get_reservation_details", {"reservation_id": "QX7P2K"}, RES)
        c3.call("update_reservation_flights", {"reservation_id": "QX7P2K"}, "ok")
    assert [f for f in loops(c3.traj(), CFG) if "get_reservation_details" in f.evidence] == []
    # a calculator working out four different sums (tau-airline: fare differences, bag fees) is
    # work, not a loop; the same sum four times is
    c4 = Conv("what do the changes cost?")
    for expr in ("1936 - 105", "2 * 50", "1831 + 100", "1931 - 250"):
        c4.call("calculate", {"expression": expr}, "ok")
    assert loud(loops(c4.traj(), CFG)) == []
    c5 = Conv("what do the changes cost?")
    for _ in range(4):
        c5.call("calculate", {"expression": "1936 - 105"}, "1831")
    assert [f.severity for f in loops(c5.traj(), CFG)] == ["high"]


# --- multi-agent and message-only traces -------------------------------------------------------


def agents_trace(verified: bool) -> Trajectory:
    """An orchestrator and agents exchanging messages (spans whose output is a named assistant
    message), code execution as a tool."""
    def msg(i: int, who: str, text: str) -> Step:
        return Step(index=i, id=f"s{i}", parent_id=None, kind="agent", name=who,
                    output={"role": "assistant", "name": who, "content": text})

    run = ("exitcode: 0 (execution succeeded)\nCode output: 1843" if verified else
           "exitcode: 1 (execution failed)\nTraceback (most recent call last):\n  File \"x.py\"\nKeyError: 'year'")
    steps = [
        msg(1, "Orchestrator", "Coder, compute how many rows the table has."),
        msg(2, "Coder", "```python\nimport pandas as pd\nprint(len(pd.read_csv('t.csv')))\n```"),
        Step(index=3, id="s3", parent_id=None, kind="tool", name="execute_code",
             input={"code": "print(len(pd.read_csv('t.csv')))"}, output=run),
        msg(4, "Coder", "The table has 1843 rows." if verified else "Done: the table has 1843 rows."),
        msg(5, "Orchestrator", "Final answer: 1843"),
    ]
    return Trajectory(trace_id="ma", steps=steps, status="finished", root_input={"task": "count rows of t.csv"})


def test_multi_agent_failed_execution_that_the_next_agent_builds_on() -> None:
    t = agents_trace(verified=False)
    report = triage_trajectory(t, CFG)
    v = report.verdict
    assert v.step_index == 4 and v.call_step_index == 3 and v.severity in LOUD
    assert "Coder" in v.sentence or "execute_code" in v.sentence
    kinds = {f.kind for f in loud(report.findings)}
    assert {"unreacted_error", "ungrounded"} <= kinds  # it built on a failure and asserted a number no tool gave


def test_multi_agent_healthy_run_has_no_alarm_and_still_names_a_place_to_read() -> None:
    t = agents_trace(verified=True)
    report = triage_trajectory(t, CFG)
    assert loud(report.findings) == []
    v = report.verdict
    assert v.kind == "none" and v.step_index == 5 and v.confidence == "none"
    # a framework's plumbing span echoing the last message is not an agent's turn
    t.steps.append(Step(index=6, id="s6", parent_id=None, kind="agent", name="graph", plumbing=True,
                        output={"role": "assistant", "content": "Final answer: 1843"}))
    assert triage_trajectory(t, CFG).verdict.step_index == 5


def message_only(run_output: str, after: str) -> Trajectory:
    """Every message a model turn named after its agent (as a message-only trace maps), the code
    runner's result included."""
    turns = [("Orchestrator", "Coder, count the rows of t.csv."),
             ("Coder", "```python\nimport pandas as pd\nprint(len(pd.read_csv('t.csv')))\n```"),
             ("Computer_terminal", run_output),
             ("Coder", after),
             ("Orchestrator", "FINAL ANSWER: see above")]
    steps = [Step(index=i, id=f"m{i}", parent_id=None, kind="model", name=who,
                  output={"role": "assistant", "content": text, "tool_calls": []})
             for i, (who, text) in enumerate(turns, 1)]
    return Trajectory(trace_id="mo", steps=steps, status="finished", root_input={"task": "count rows of t.csv"})


def test_message_only_trace_a_failed_execution_reported_as_success() -> None:
    t = message_only("exitcode: 1 (execution failed)\nCode output: Traceback (most recent call last):\n"
                     "  File \"<stdin>\", line 1\nFileNotFoundError: t.csv", "It worked: the file has 1843 rows.")
    v = triage_trajectory(t, CFG).verdict
    assert (v.kind, v.step_index, v.call_step_index, v.confidence) == ("unreacted_error", 4, 3, "high")
    assert "Computer_terminal" in v.sentence
    ok = message_only("exitcode: 0 (execution succeeded)\nCode output: 1843", "The file has 1843 rows.")
    report = triage_trajectory(ok, CFG)
    assert loud(report.findings) == [] and report.verdict.kind == "none" and report.verdict.step_index == 5
    # an agent that saw the failure and said so is not a finding
    fixed = message_only("exitcode: 1 (execution failed)\nCode output: FileNotFoundError: t.csv",
                         "The file is missing; I cannot count the rows.")
    assert loud(triage_trajectory(fixed, CFG).findings) == []


# --- the real tau-airline trajectories (../shared/datasets, beside the checkout) ----------------


def test_on_real_airline_runs_no_false_alarm_and_nothing_fired_points_at_the_first_state_change() -> None:
    """200 real runs of a gpt-4o airline agent (tau-bench): no solved run gets a medium or high
    verdict; a failed run's quoted ids and worked-out dates are not "ungrounded"; where nothing
    fires, the verdict points at the first state-changing call's turn, which is the golden
    diff's step in most failed runs (bench/triage_devset.py prints the figures)."""
    from collections import defaultdict

    data = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tau-airline"
    if not (data / "cases.json").is_file():
        pytest.skip(f"{data} is not here")
    cases = json.loads((data / "cases.json").read_text())
    rows: dict[str, list] = defaultdict(list)
    for line in (data / "observations.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[r["traceId"]].append(r)
    alarms, ungrounded, pointed, agreed = [], 0, 0, 0
    for c in cases:
        traj = from_observations(c["trace"], rows[c["trace"]])
        v = triage_trajectory(traj, CFG).verdict
        if c["reward"] >= 1:
            if v.severity in ("medium", "high"):
                alarms.append((c["trace"], v.sentence))
            continue
        ungrounded += v.kind == "ungrounded"
        if v.kind != "none":
            continue
        idx = Index(traj, CFG)
        muts = [p for p in range(len(idx.steps)) if idx.tool[p] and idx.cls[p] == "mutation"]
        if muts:
            assert (v.step_index, v.call_step_index) == idx.at(muts[0]), c["trace"]
        golden = triage_trajectory(traj, CFG, from_observations(c["golden"], rows[c["golden"]])).verdict
        if golden.kind == "golden_divergence":
            pointed += 1
            agreed += v.step_index == golden.step_index
    assert alarms == []
    assert ungrounded <= 5, ungrounded  # 15 before ids' digits and near dates counted as grounded
    assert pointed >= 80 and agreed / pointed >= 0.55, (agreed, pointed)  # 62/99 measured
