"""Minute three: walk one trajectory back from the failure and name the off-rails step.

`triage_trajectory(traj, config)` runs the detectors (agentfire.triage.detectors), diffs against a
golden run when one is given (agentfire.triage.diff) and picks the verdict by these rules, in order:

1. the earliest step with a `high` finding (several kinds on one step: KIND_PRIORITY decides);
   the earliest, because that is where the trajectory committed to the wrong path, and later
   steps (the confident answer, the cleanup query, the next loop round) only follow from it;
2. else the first step where the golden diff diverges;
3. else the earliest step with a `medium` finding;
4. else no off-rails step (`kind` "none").

`run(runbook, trace_id, golden=...)` does the same from the configured trace store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentfire.config import TriageSection
from agentfire.textsafe import cut, neutralise
from agentfire.trajectory import Step, Trajectory, iso
from agentfire.triage._text import model_text, tool_args
from agentfire.triage.detectors import (
    DETECTORS, KIND_PRIORITY, SEVERITIES, Finding, run_detectors,
)
from agentfire.triage.diff import DiffResult, diff, first_step_after

__all__ = ["Finding", "Verdict", "TriageReport", "triage_trajectory", "run", "DETECTORS",
           "SEVERITIES", "inert"]

RULES = {
    1: "earliest step with a high-severity finding",
    2: "first step where the golden run diverges",
    3: "earliest step with a medium-severity finding",
    4: "no finding of medium or high severity and no golden divergence",
}


@dataclass(frozen=True)
class Verdict:
    step_index: int | None
    tool: str | None
    kind: str  # a finding kind, "golden_divergence" or "none"
    sentence: str
    severity: str | None = None
    rule: int = 4

    def to_json(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "tool": self.tool, "kind": self.kind,
                "severity": self.severity, "sentence": self.sentence, "rule": self.rule,
                "rule_text": RULES[self.rule]}


@dataclass
class TriageReport:
    trajectory: Trajectory
    findings: list[Finding]
    verdict: Verdict
    diff: DiffResult | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def trace_id(self) -> str:
        return self.trajectory.trace_id

    def header(self) -> dict[str, Any]:
        t = self.trajectory
        fresh = None
        if t.as_of is not None and t.last_activity is not None:
            fresh = round((t.as_of - t.last_activity).total_seconds(), 1)
        d = t.to_json(steps=False)
        d.update({"tool_calls": len(t.tool_steps), "seconds_since_last_activity": fresh})
        return d

    def step_json(self, s: Step) -> dict[str, Any]:
        origin = self.trajectory.start
        return {
            "index": s.index, "kind": s.kind, "name": s.name, "offset_ms": s.offset_ms(origin),
            "start": iso(s.start), "end": iso(s.end),
            "duration_ms": int((s.end - s.start).total_seconds() * 1000) if s.start and s.end else None,
            "args": tool_args(s) if s.is_tool else None,
            "text": model_text(s) if s.is_model else None,
            "input": None if s.is_tool else s.input if not s.is_model else None,
            "output": s.output if not s.is_model else None,
            "tool_calls": _tool_calls(s.output) if s.is_model else None,
            "level": s.level, "status_message": s.status_message, "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens, "cost_usd": s.cost_usd, "model": s.model,
            "problems": s.problems,
        }

    def to_json(self, *, full: bool = False, limit: int = 2000) -> dict[str, Any]:
        """Header, steps (in order), findings, diff, verdict; every string from the trace
        neutralised (control characters as visible escapes) and, unless `full`, cut to `limit`."""
        lim = None if full else limit
        doc = {
            "trace_id": self.trace_id,
            "header": self.header(),
            "steps": [self.step_json(s) for s in self.trajectory.steps],
            "findings": [f.to_json() for f in self.findings],
            "diff": self.diff.to_json() if self.diff else None,
            "verdict": self.verdict.to_json(),
            "problems": self.problems,
        }
        return inert(doc, lim)


def _tool_calls(output: Any) -> list[dict[str, Any]] | None:
    if isinstance(output, dict) and isinstance(output.get("tool_calls"), list):
        calls = []
        for c in output["tool_calls"]:
            fn = c.get("function", c) if isinstance(c, dict) else {}
            if isinstance(fn, dict):
                calls.append({"name": fn.get("name"), "arguments": fn.get("arguments")})
        return calls
    return None


def inert(value: Any, limit: int | None, depth: int = 0) -> Any:
    """A JSON-able copy with every string neutralised and cut (keys neutralised too)."""
    if isinstance(value, str):
        if value.isprintable() and (limit is None or len(value) <= limit):
            return value  # the common case, checked in C: nothing to neutralise or cut
        return cut(neutralise(value), limit)
    if depth > 40:
        return cut(neutralise(repr(value)), limit)
    if isinstance(value, dict):
        return {(k if isinstance(k, str) and k.isprintable() else neutralise(str(k))): inert(v, limit, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inert(v, limit, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return cut(neutralise(str(value)), limit)


def _label(traj: Trajectory, index: int | None) -> tuple[str | None, str]:
    if index is None:
        return None, "the end of the trajectory"
    try:
        s = traj.step(index)
    except IndexError:
        return None, f"step {index}"
    if s.is_tool:
        return s.name, f"step {index} ({s.name})"
    return None, f"step {index} ({s.kind} call {s.name})"


def choose_verdict(traj: Trajectory, findings: list[Finding], d: DiffResult | None) -> Verdict:
    prio = {k: n for n, k in enumerate(KIND_PRIORITY)}

    def pick(sev: str) -> Finding | None:
        cands = [f for f in findings if f.severity == sev]
        return min(cands, key=lambda f: (f.step_index, prio.get(f.kind, 99))) if cands else None

    def from_finding(f: Finding, rule: int) -> Verdict:
        tool, where = _label(traj, f.step_index)
        also = sorted({g.kind.replace("_", " ") for g in findings
                       if g.step_index == f.step_index and g.kind != f.kind and g.severity != "low"})
        extra = f" (also flagged here: {', '.join(also)})" if also else ""
        return Verdict(f.step_index, tool, f.kind,
                       f"Off the rails at {where}: {f.kind.replace('_', ' ')}: {f.evidence}{extra}.",
                       f.severity, rule)

    f = pick("high")
    if f is not None:
        return from_finding(f, 1)
    if d is not None and d.divergence is not None:
        div = d.divergence
        index = div.step_index
        if index is None:
            nxt = first_step_after(traj, div.after_step)
            index = nxt.index if nxt else None
        tool, where = _label(traj, index)
        return Verdict(index, tool, "golden_divergence",
                       f"Off the rails at {where}: diverges from the golden run ({d.golden}, "
                       f"{d.mode}, args {d.args}): {div.describe()}.", "medium", 2)
    f = pick("medium")
    if f is not None:
        return from_finding(f, 3)
    what = f"{len(findings)} low-severity note(s)" if findings else "no findings"
    hint = "" if d is not None else "; compare with a known-good run: --golden CLASS|TRACE_ID|FILE"
    return Verdict(None, None, "none", f"No off-rails step found ({what}{hint}).", None, 4)


def triage_trajectory(traj: Trajectory, config: TriageSection, golden: Trajectory | None = None, *,
                      mode: str = "strict", args: str = "ignore", golden_label: str = "") -> TriageReport:
    """Findings from every detector, the golden diff (when a golden run is given), the verdict."""
    findings = run_detectors(traj, config)
    d = diff(traj, golden, mode=mode, args=args, golden_label=golden_label) if golden is not None else None
    return TriageReport(traj, findings, choose_verdict(traj, findings, d), d, list(traj.problems))


def run(runbook: Any, trace_id: str, golden: str | Trajectory | None = None, *,
        mode: str = "strict", args: str = "ignore") -> TriageReport:
    """Triage one trace from the runbook's trace store. `golden`: a Trajectory, or a class name,
    trace id or file path (agentfire.golden.resolve). Raises TraceNotFound (exit 1)."""
    import asyncio

    from agentfire import golden as golden_mod
    from agentfire.errors import UsageError
    from agentfire.providers import build
    from agentfire.tracelist import get_trajectory  # the exact id, or a unique prefix
    from agentfire.triage.diff import MODES, parse_args_mode

    if golden is not None:  # bad diff options fail before anything is read
        if mode not in MODES:
            raise UsageError(f"invalid diff mode {mode!r}; valid: {', '.join(MODES)}")
        parse_args_mode(args)

    async def go() -> tuple[Trajectory, Trajectory | None, str]:
        store = build("traces", runbook.traces, runbook)
        try:
            traj = await get_trajectory(store, trace_id)
            if isinstance(golden, str):
                g, label = await golden_mod.resolve(golden, runbook, store)
            else:
                g, label = golden, (golden.trace_id if golden is not None else "")
            return traj, g, label
        finally:
            await store.aclose()

    traj, g, label = asyncio.run(go())
    return triage_trajectory(traj, runbook.model.triage, g, mode=mode, args=args, golden_label=label)
