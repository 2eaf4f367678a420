"""Golden diff: modes strict / unordered / subset / superset, argument matching, the verdict rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentfire.config import TriageSection
from agentfire.errors import StateFileError, UsageError
from agentfire.golden import load_file, save, trajectory_from_json
from agentfire.trajectory import Step, Trajectory
from agentfire.triage import triage_trajectory
from agentfire.triage.diff import diff, parse_args_mode


def traj(*calls: tuple[str, dict[str, Any]], tid: str = "t") -> Trajectory:
    steps = []
    for n, (name, args) in enumerate(calls):
        # a model step before each tool call, so step indexes differ from call positions
        steps.append(Step(index=2 * n + 1, id=f"m{n}", parent_id=None, kind="model", name="chat",
                          output={"content": "ok"}))
        steps.append(Step(index=2 * n + 2, id=f"t{n}", parent_id=None, kind="tool", name=name, input=args))
    return Trajectory(trace_id=tid, steps=steps, status="finished")


GOLD = traj(("lookup_contact", {"name": "Dana"}), ("get_invoice", {"month": "May"}),
            ("send_email", {"to": "dana@cpa.example", "subject": "May"}), tid="gold")


def test_strict_match_and_argument_modes() -> None:
    same_tools = traj(("lookup_contact", {"name": "Ivo"}), ("get_invoice", {"month": "May"}),
                      ("send_email", {"to": "ivo@x.example", "subject": "May"}))
    assert diff(same_tools, GOLD, mode="strict").matched  # default: args ignored
    d = diff(same_tools, GOLD, mode="strict", args="exact")
    assert not d.matched and d.divergence.step_index == 2 and d.divergence.reason == "different call"
    assert d.divergence.expected.args == {"name": "Dana"}
    d = diff(same_tools, GOLD, mode="strict", args="keys:month,subject")
    assert d.matched
    d = diff(same_tools, GOLD, mode="strict", args="keys:to")
    assert not d.matched and d.divergence.step_index == 6 and d.divergence.expected.tool == "send_email"


def test_strict_first_divergence_names_what_was_expected() -> None:
    skipped = traj(("read_inbox", {}), ("get_invoice", {"month": "May"}), ("send_email", {"to": "a@b.example"}))
    d = diff(skipped, GOLD, mode="strict")
    assert (d.divergence.step_index, d.divergence.actual.tool, d.divergence.expected.tool) == (2, "read_inbox", "lookup_contact")
    assert "expected lookup_contact" in d.divergence.describe()
    short = traj(("lookup_contact", {}), ("get_invoice", {}))
    d = diff(short, GOLD, mode="strict")
    assert d.divergence.reason == "missing call" and d.divergence.step_index is None
    assert d.divergence.after_step == 4 and d.divergence.expected.tool == "send_email"
    longer = traj(("lookup_contact", {}), ("get_invoice", {}), ("send_email", {}), ("refund", {}))
    d = diff(longer, GOLD, mode="strict")
    assert d.divergence.reason == "extra call" and d.divergence.step_index == 8


def test_unordered() -> None:
    shuffled = traj(("get_invoice", {}), ("lookup_contact", {}), ("send_email", {}))
    assert diff(shuffled, GOLD, mode="unordered").matched
    assert not diff(shuffled, GOLD, mode="strict").matched
    extra = traj(("get_invoice", {}), ("run_sql", {}), ("lookup_contact", {}), ("send_email", {}))
    d = diff(extra, GOLD, mode="unordered")
    assert d.divergence.reason == "unexpected call" and d.divergence.step_index == 4
    assert d.divergence.expected.tool == "lookup_contact"  # the golden call still owed at that point
    missing = traj(("get_invoice", {}), ("send_email", {}))
    d = diff(missing, GOLD, mode="unordered")
    assert d.divergence.reason == "missing call" and d.divergence.expected.tool == "lookup_contact"


def test_subset_and_superset() -> None:
    fewer = traj(("lookup_contact", {}), ("send_email", {}))
    more = traj(("search_kb", {}), ("lookup_contact", {}), ("get_invoice", {}), ("send_email", {}))
    assert diff(fewer, GOLD, mode="subset").matched
    assert not diff(fewer, GOLD, mode="superset").matched
    d = diff(fewer, GOLD, mode="superset")
    assert d.divergence.expected.tool == "get_invoice" and d.divergence.after_step == 2
    assert diff(more, GOLD, mode="superset").matched
    d = diff(more, GOLD, mode="subset")
    assert not d.matched and d.divergence.actual.tool == "search_kb" and d.divergence.step_index == 2


def test_bad_modes() -> None:
    with pytest.raises(UsageError):
        diff(GOLD, GOLD, mode="fuzzy")
    with pytest.raises(UsageError):
        parse_args_mode("keys:")
    assert parse_args_mode("keys: a, b") == ("keys", ("a", "b"))


def test_verdict_falls_back_to_the_golden_divergence() -> None:
    skipped = traj(("get_invoice", {"month": "May"}), ("send_email", {"to": "dana@cpa.example"}))
    skipped.root_input = {"message": "send the May invoice to dana@cpa.example"}
    report = triage_trajectory(skipped, TriageSection(), GOLD, mode="strict", golden_label="class invoice")
    v = report.verdict
    assert (v.kind, v.rule, v.step_index, v.tool) == ("golden_divergence", 2, 2, "get_invoice")
    assert "expected lookup_contact" in v.sentence and "class invoice" in v.sentence
    assert report.to_json()["diff"]["divergence"]["expected"]["tool"] == "lookup_contact"
    # the run ended before a golden call: the verdict points at the end
    ended = traj(("lookup_contact", {}), ("get_invoice", {}))
    v = triage_trajectory(ended, TriageSection(), GOLD, mode="strict").verdict
    assert v.kind == "golden_divergence" and v.step_index is None


# --- the default mode: state-changing calls by name and arguments, any order, reads ignored ------


def conv(*turns: tuple[str, Any], tid: str = "t") -> Trajectory:
    """Real-trace shape: a GENERATION whose output carries tool_calls, then the TOOL; ("user", text)
    is a user's turn; ("say", text) a model turn that only speaks; ("call", name, args, output)."""
    steps: list[Step] = []

    def add(**kw: Any) -> None:
        steps.append(Step(index=len(steps) + 1, id=f"obs-{len(steps) + 1}", parent_id=None, **kw))

    for n, t in enumerate(turns):
        if t[0] == "user":
            add(kind="other", name="user_message", input=t[1])
        elif t[0] == "say":
            add(kind="model", name="llm", output={"role": "assistant", "content": t[1], "tool_calls": []})
        else:
            _, name, args, out = t
            add(kind="model", name="llm", output={"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{n}", "name": name, "arguments": __import__("json").dumps(args)}]})
            add(kind="tool", name=name, input=args, output=out)
    return Trajectory(trace_id=tid, steps=steps, status="finished",
                      root_input={"user": "change flight R1 to the 20th, I'm user ana_1; and I was promised a $50 certificate"})


GOLD_M = conv(("call", "get_reservation", {"id": "R1"}, None),
              ("call", "update_flights", {"reservation_id": "R1", "flights": [{"number": "F20", "date": "2024-05-20"}],
                                          "payment_id": "card_7"}, None),
              ("call", "send_certificate", {"user_id": "ana_1", "amount": 50}, None), tid="gold")
RESERVATION = {"id": "R1", "flights": [{"number": "F10", "date": "2024-05-10"}], "payment": ["card_7"]}
FLIGHTS = [{"number": "F20", "date": "2024-05-20", "price": 120}, {"number": "F21", "date": "2024-05-21", "price": 90}]


def test_mutations_mode_ignores_reads_order_and_extra_arguments() -> None:
    good = conv(("say", "Let me look."), ("call", "search_flights", {"date": "2024-05-20"}, FLIGHTS),
                ("call", "get_reservation", {"id": "R1"}, RESERVATION),
                ("call", "get_reservation", {"id": "R1"}, RESERVATION), ("user", "yes"),
                ("call", "send_certificate", {"user_id": "ana_1", "amount": "50.00"}, "ok"),
                ("call", "update_flights", {"reservation_id": "r1", "flights": [
                    {"number": "F20", "date": "2024-05-20", "origin": "JFK"}], "payment_id": "card_7"}, "ok"))
    d = diff(good, GOLD_M)
    assert d.mode == "mutations" and d.matched and d.divergence is None, d.to_json()
    assert d.expected_tools == ["update_flights", "send_certificate"]
    report = triage_trajectory(good, TriageSection(), GOLD_M)
    assert report.verdict.kind == "none" and report.verdict.severity is None


def test_mutations_mode_names_the_argument_and_the_deciding_turn() -> None:
    wrong = conv(("call", "get_reservation", {"id": "R1"}, RESERVATION),
                 ("call", "search_flights", {"date": "2024-05-21"}, FLIGHTS),
                 ("call", "update_flights", {"reservation_id": "R1", "flights": [{"number": "F21", "date": "2024-05-21"}],
                                             "payment_id": "card_7"}, "ok"),
                 ("call", "send_certificate", {"user_id": "ana_1", "amount": 50}, "ok"))
    d = diff(wrong, GOLD_M)
    div = d.divergence
    assert div.reason == "different state change" and div.argument == "flights[0].number"
    assert (div.expected_value, div.got_value) == ("F20", "F21")
    assert (div.decision_step, div.step_index) == (5, 6)  # the GENERATION that decided, the TOOL that ran
    v = triage_trajectory(wrong, TriageSection(), GOLD_M, golden_label="gold").verdict
    assert (v.kind, v.step_index, v.call_step_index, v.tool) == ("golden_divergence", 5, 6, "update_flights")
    assert (v.id, v.call_id) == ("obs-5", "obs-6") and v.confidence in ("medium", "high")
    assert "flights[0].number" in v.sentence and "F21" in v.sentence


def test_mutations_mode_unexpected_missing_and_failed_calls() -> None:
    # a failed call changed nothing; a golden state change never made; an extra one made
    run = conv(("call", "get_reservation", {"id": "R1"}, RESERVATION),
               ("call", "update_flights", {"reservation_id": "R1", "flights": [{"number": "F20", "date": "2024-05-20"}],
                                           "payment_id": "card_7"}, "Error: payment method not found"),
               ("say", "I could not change the flight."),
               ("call", "cancel_reservation", {"reservation_id": "R1"}, "ok"),
               ("say", "Your reservation is cancelled."))
    d = diff(run, GOLD_M)
    reasons = [x.reason for x in d.differences]
    assert reasons == ["unexpected state change", "missing state change", "missing state change"]
    assert d.divergence.actual.tool == "cancel_reservation" and d.divergence.decision_step == 6
    missing = d.differences[1]
    assert missing.expected.tool == "update_flights" and missing.step_index is None
    assert missing.decision_step is not None and run.step(missing.decision_step).is_model
    # other modes stay available
    assert diff(run, GOLD_M, mode="superset").divergence.reason == "missing call"


def test_handoffs_and_pure_tools_are_not_state_changes() -> None:
    gold = conv(("call", "calculate", {"expression": "1+1"}, "2"), tid="g")
    run = conv(("call", "transfer_to_human_agents", {"summary": "user wants a refund"}, "Transfer successful"),
               ("say", "A colleague will take over."))
    d = diff(run, gold)
    assert d.matched and d.expected_tools == [] and d.actual_tools == []


def test_golden_files_round_trip(tmp_path: Path) -> None:
    path, outcome = save(tmp_path, GOLD, "invoice", actor="me")
    assert outcome == "saved" and save(tmp_path, GOLD, "invoice", actor="me")[1] == "unchanged"
    other = traj(("search_kb", {}), tid="other")
    with pytest.raises(UsageError, match="--replace"):
        save(tmp_path, other, "invoice", actor="me")
    assert save(tmp_path, other, "invoice", actor="me", replace=True)[1] == "replaced"
    loaded = load_file(path)
    assert loaded.trace_id == "other" and [s.name for s in loaded.tool_steps] == ["search_kb"]
    assert trajectory_from_json(GOLD.to_json()).tool_steps[2].input == {"to": "dana@cpa.example", "subject": "May"}
    with pytest.raises(UsageError):
        save(tmp_path, GOLD, "../escape", actor="me")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(StateFileError):
        load_file(tmp_path / "bad.json")
