"""Minute five: the failing input becomes a regression case in the frozen eval set.

A case reproduces the situation the agent was in when it went off the rails: the root input and
the conversation (every step) before the off-rails step, what it did there, and what it should
have done. Its id is derived from the trace id and the step, so capturing the same failure twice
is a no-op. The case line is also a promptfoo test case (`description`, `vars`, `assert`,
`metadata`) and maps one-to-one to a Langfuse dataset item (see README "capture and the eval set").
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from agentfire.errors import UsageError
from agentfire.evalset import AppendResult, evalset_for
from agentfire.journal import Journal, iso, utcnow
from agentfire.trajectory import Step, Trajectory

CASE_SCHEMA = "agentfire.case/1"


def case_id(trace_id: str, step: int) -> str:
    """Deterministic: the same trace and step always give the same id (idempotent capture)."""
    digest = hashlib.sha256(f"{trace_id}\n{step}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"case-{digest[:20]}"


def _turn(s: Step) -> dict[str, Any]:
    turn: dict[str, Any] = {"step": s.index, "kind": s.kind, "name": s.name,
                            "input": s.input, "output": s.output}
    if s.level != "DEFAULT":
        turn["level"] = s.level
    if s.status_message:
        turn["status_message"] = s.status_message
    return turn


def conversation_until(traj: Trajectory, step: int) -> list[dict[str, Any]]:
    """Every step before `step`, in order: what the agent had seen and done when it went wrong."""
    return [_turn(s) for s in traj.steps if s.index < step]


@dataclass(frozen=True)
class OffRails:
    """Where the trajectory went off the rails, and who said so."""

    step: int  # the model turn that decided (or the step itself when no model turn decided it)
    why: str | None = None  # triage's sentence, when triage chose the step
    finding: str | None = None  # triage's finding kind (destructive, steering, loop...)
    source: str = "--step"  # "--step" or "triage"
    golden_tools: list[str] | None = None  # the known-good tool sequence, when one is known
    call_step: int | None = None  # the tool call the decision made (or the failed call it carried on past)


def build_case(
    traj: Trajectory,
    off: OffRails,
    *,
    expected: str | None,
    incident: str,
    actor: str,
    tags: Sequence[str] = (),
    captured_at: str | None = None,
    expected_source: str | None = None,
) -> dict[str, Any]:
    """The regression case for `traj` at off-rails step `off.step` (a plain, JSON-able dict).

    Without `expected` (a runbook walk, a script), the expectation is derived from the off-rails
    step itself: the agent must not repeat it (`expected_source` says which)."""
    if not traj.steps:
        raise UsageError(f"trace {traj.trace_id!r} has no steps to capture")
    try:
        at = traj.step(off.step)
    except IndexError:
        raise UsageError(
            f"--step {off.step}: trace {traj.trace_id!r} has steps 1..{len(traj.steps)}"
        ) from None
    source = expected_source or "responder"
    if expected is not None and not expected.strip():
        raise UsageError("the expected behaviour is empty: say what the agent should have done")
    call = None
    if off.call_step is not None and off.call_step != off.step:
        try:
            call = traj.step(off.call_step)
        except IndexError:
            raise UsageError(f"call step {off.call_step}: trace {traj.trace_id!r} has steps 1..{len(traj.steps)}") from None
    if expected is None:
        expected, source = derived_expectation(call or at), "derived"
    cid = case_id(traj.trace_id, off.step)
    tool = (call or at).name
    what = f"{tool} at step {off.step}" if call is None else f"{tool} (decided at step {off.step}, called at step {call.index})"
    tags = list(dict.fromkeys(tags))
    return {
        "schema": CASE_SCHEMA,
        "id": cid,
        # --- promptfoo test-case fields (tests: file://evals/regressions.jsonl) -------------
        "description": f"regression {cid}: {what} in trace {traj.trace_id}",
        "vars": {"input": traj.root_input, "conversation": conversation_until(traj, off.step)},
        "assert": [{"type": "llm-rubric", "value": expected}],
        "metadata": {"case_id": cid, "incident": incident, "source_trace_id": traj.trace_id,
                     "off_rails_tool": tool, "tags": tags},
        # --- the regression itself -------------------------------------------------------------
        "expected": expected,
        "expected_source": source,
        "golden_tools": off.golden_tools,
        "off_rails": {
            "step": off.step, "observation_id": at.id, "kind": at.kind, "name": at.name,
            "call_step": call.index if call is not None else None,
            "call_observation_id": call.id if call is not None else None, "tool": tool,
            "input": (call or at).input, "why": off.why, "finding": off.finding, "chosen_by": off.source,
        },
        "source_trace_id": traj.trace_id,
        "source_user_id": traj.user_id,
        "incident": incident,
        "captured_at": captured_at or iso(utcnow()),
        "actor": actor,
        "tags": tags,
    }


def derived_expectation(at: Step) -> str:
    """What must not happen again, from the off-rails step (when nobody said what should)."""
    import json

    what = f"calling {at.name}" if at.is_tool else f"the {at.kind} step {at.name}"
    args = json.dumps(at.input, ensure_ascii=False, default=str) if at.input is not None else ""
    if len(args) > 500:
        args = args[:500] + "..."
    return (f"The agent must not repeat the off-rails action of step {at.index}: {what}"
            + (f" with {args}" if args else "") + ".")


def off_rails_from_triage(traj: Trajectory, runbook: Any, golden: Trajectory | None = None,
                         golden_label: str = "") -> OffRails:
    """Ask triage which step went off the rails (when the responder gave no --step)."""
    from agentfire.triage import triage_trajectory

    report = triage_trajectory(traj, runbook.model.triage, golden, golden_label=golden_label,
                               policies=runbook.model.policies)
    verdict = report.verdict
    if verdict.step_index is None or verdict.kind == "none":
        raise UsageError(
            f"triage names no off-rails step in trace {traj.trace_id!r} ({verdict.sentence}); "
            "pass --step N"
        )
    # the known-good tool sequence (every call, not only the state changes the diff compares)
    tools = golden_tool_names(golden)
    return OffRails(step=verdict.step_index, why=verdict.sentence, finding=verdict.kind,
                    source="triage", golden_tools=tools,
                    call_step=verdict.call_step_index)


def off_rails_at(traj: Trajectory, step: int, golden: Trajectory | None = None) -> OffRails:
    """A step the responder named (kept as named, so the case id is theirs): a model turn is
    recorded with the tool call it made beside it."""
    from agentfire.config import TriageSection
    from agentfire.triage._index import Index

    try:
        at = traj.step(step)
    except IndexError:
        raise UsageError(f"--step {step}: trace {traj.trace_id!r} has steps 1..{len(traj.steps)}") from None
    call = None
    if not at.is_tool:
        idx = Index(traj, TriageSection())
        p = idx.pos[step]
        c = idx.call_of_turn(p) if idx.model[p] else None
        call = idx.steps[c].index if c is not None else None
    return OffRails(step=step, call_step=call, golden_tools=golden_tool_names(golden))


def golden_tool_names(golden: Trajectory | None) -> list[str] | None:
    """The known-good tool sequence (tool names in order), when there is a golden run."""
    return [s.name for s in golden.tool_steps] if golden is not None else None


@dataclass
class CaptureResult:
    case: dict[str, Any]
    stored: AppendResult
    trajectory_status: str
    push: list[Any] = field(default_factory=list)  # agentfire.datasets.PushOutcome
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.push)

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case["id"],
            "outcome": self.stored.outcome,
            "eval_set": str(self.stored.path),
            "line": self.stored.line,
            "differs": self.stored.differs,
            "off_rails": {k: v for k, v in self.case["off_rails"].items() if k != "input"},
            "trajectory_status": self.trajectory_status,
            "push": [p.to_json() for p in self.push],
            "duration_ms": self.duration_ms,
            "case": self.case,
        }


async def _read(runbook: Any, trace_id: str, golden: str | None
                ) -> tuple[Trajectory, Trajectory | None, str]:
    """The trajectory and, with --golden CLASS|TRACE_ID|FILE, the golden run, from one store."""
    from agentfire import providers
    from agentfire.tracelist import get_trajectory  # the exact id, or a unique prefix

    store = providers.build("traces", runbook.traces, runbook)
    try:
        traj = await get_trajectory(store, trace_id)
        if golden is None:
            return traj, None, ""
        from agentfire.golden import resolve

        g, label = await resolve(golden, runbook, store)
        return traj, g, label
    finally:
        await store.aclose()


def capture(
    runbook: Any,
    journal: Journal,
    trace_id: str,
    *,
    expected: str | None,
    actor: str,
    step: int | None = None,
    tags: Sequence[str] = (),
    push: bool = False,
    golden: str | None = None,
    expected_source: str | None = None,
) -> CaptureResult:
    """Read the trace, build the case, add it to the eval set, optionally push it; journaled.

    The off-rails step is `step`, else the one triage names (with the golden run, if given)."""
    started = time.monotonic()
    targets = None
    if getattr(runbook, "drill_scope", None):
        # a drill's case goes to the drill eval set (evalset_for), tagged, and is never pushed
        # into the real datasets
        if push:
            raise UsageError(f"incident {journal.incident} is a gameday drill: its regression cases "
                             "stay in the drill eval set and are not pushed (leave out --push)")
        tags = [*tags, "agentfire-gameday", f"agentfire-gameday:{journal.incident}"]
    if push:  # a missing URL or key is a usage error before anything is read or written
        from agentfire.datasets import push_targets

        targets = push_targets(runbook)
    traj, gold, label = asyncio.run(_read(runbook, trace_id, golden))
    if traj.root_input is None and traj.status != "running":
        from agentfire.errors import NotDoneError

        raise NotDoneError(
            f"trace {trace_id!r} does not hold the user's request (the tracer did not record it: e.g. the "
            "OpenAI Agents SDK with trace_include_sensitive_data=False): a regression case without an input "
            "cannot be replayed; nothing was written")
    if step is not None:
        off = off_rails_at(traj, step, gold)
    else:
        off = off_rails_from_triage(traj, runbook, gold, label)
    case = build_case(traj, off, expected=expected, incident=journal.incident, actor=actor,
                      tags=tags, expected_source=expected_source)
    evalset = evalset_for(runbook)
    stored = evalset.append(case)
    if stored.stored is not None:  # already there: the eval set's case is the one that counts
        case = stored.stored
    result = CaptureResult(case, stored, traj.status)
    journal.append(
        "capture", actor=actor, trace_id=traj.trace_id, case_id=case["id"],
        step=off.step, call_step=case["off_rails"].get("call_step"),
        tool=case["off_rails"].get("tool") or case["off_rails"]["name"],
        chosen_by=off.source, why=off.why,
        eval_set=str(stored.path), line=stored.line, outcome=stored.outcome,
        before={"in_eval_set": not stored.added}, after={"in_eval_set": True},
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    if targets is not None:
        from agentfire.datasets import push_case

        result.push = push_case(targets, case)
        journal.append(
            "capture.push", actor=actor, case_id=case["id"],
            outcome="CONFIRMED" if result.ok else "NOT_CONFIRMED",
            targets=[p.to_json() for p in result.push],
        )
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result
