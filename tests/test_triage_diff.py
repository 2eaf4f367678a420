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
    assert diff(same_tools, GOLD).matched  # default: args ignored
    d = diff(same_tools, GOLD, args="exact")
    assert not d.matched and d.divergence.step_index == 2 and d.divergence.reason == "different call"
    assert d.divergence.expected.args == {"name": "Dana"}
    d = diff(same_tools, GOLD, args="keys:month,subject")
    assert d.matched
    d = diff(same_tools, GOLD, args="keys:to")
    assert not d.matched and d.divergence.step_index == 6 and d.divergence.expected.tool == "send_email"


def test_strict_first_divergence_names_what_was_expected() -> None:
    skipped = traj(("read_inbox", {}), ("get_invoice", {"month": "May"}), ("send_email", {"to": "a@b.example"}))
    d = diff(skipped, GOLD)
    assert (d.divergence.step_index, d.divergence.actual.tool, d.divergence.expected.tool) == (2, "read_inbox", "lookup_contact")
    assert "expected lookup_contact" in d.divergence.describe()
    short = traj(("lookup_contact", {}), ("get_invoice", {}))
    d = diff(short, GOLD)
    assert d.divergence.reason == "missing call" and d.divergence.step_index is None
    assert d.divergence.after_step == 4 and d.divergence.expected.tool == "send_email"
    longer = traj(("lookup_contact", {}), ("get_invoice", {}), ("send_email", {}), ("refund", {}))
    d = diff(longer, GOLD)
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
    report = triage_trajectory(skipped, TriageSection(), GOLD, golden_label="class invoice")
    v = report.verdict
    assert (v.kind, v.rule, v.step_index, v.tool) == ("golden_divergence", 2, 2, "get_invoice")
    assert "expected lookup_contact" in v.sentence and "class invoice" in v.sentence
    assert report.to_json()["diff"]["divergence"]["expected"]["tool"] == "lookup_contact"
    # the run ended before a golden call: the verdict points at the end
    ended = traj(("lookup_contact", {}), ("get_invoice", {}))
    v = triage_trajectory(ended, TriageSection(), GOLD).verdict
    assert v.kind == "golden_divergence" and v.step_index is None


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
