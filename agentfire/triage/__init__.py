"""Minute three: walk one trajectory back from the failure and name the off-rails step.

`triage_trajectory(traj, config)` runs the detectors (agentfire.triage.detectors), checks the
runbook's `policies:`, diffs against a golden run when one is given (agentfire.triage.diff) and
picks the verdict by these rules, in order:

1. the earliest step with a `high` finding (several kinds on one step: KIND_PRIORITY decides);
   the earliest, because that is where the trajectory committed to the wrong path, and later
   steps (the confident answer, the cleanup query, the next loop round) only follow from it;
2. else the first place where the golden diff diverges;
3. else the earliest step with a `medium` finding;
4. else no detector fired: the verdict says so and points at the last model turn as the place to
   start reading, with confidence `none` (`low` when only low notes fired), kind "none".

The verdict names the model turn that made the decision (`step_index`) and, where the evidence is
a tool call, that call (`call_step_index`), with their observation ids; `confidence` says how
strong the evidence is, and `candidates` ranks up to three places to look.

`run(runbook, trace_id, golden=...)` does the same from the configured trace store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentfire.config import TriageSection
from agentfire.textsafe import cut, neutralise
from agentfire.trajectory import Step, Trajectory, iso
from agentfire.triage._index import Index
from agentfire.triage._text import model_text, tool_args, tool_calls_of
from agentfire.triage.detectors import (
    DETECTORS, KIND_PRIORITY, SEVERITIES, Finding, run_detectors,
)
from agentfire.triage.diff import DiffResult, diff, first_step_after

__all__ = ["Candidate", "Finding", "Verdict", "TriageReport", "triage_trajectory", "run", "DETECTORS",
           "SEVERITIES", "inert"]

RULES = {
    1: "earliest step with a high-severity finding",
    2: "first place where the golden run diverges",
    3: "earliest step with a medium-severity finding",
    4: "no detector fired (no medium or high finding, no golden divergence): the last model turn, "
       "where to start reading",
}
CONFIDENCES = ("high", "medium", "low", "none")
MAX_CANDIDATES = 3


@dataclass(frozen=True)
class Candidate:
    step_index: int | None
    call_step_index: int | None
    id: str | None
    call_id: str | None
    kind: str
    severity: str | None
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "call_step_index": self.call_step_index, "id": self.id,
                "call_id": self.call_id, "kind": self.kind, "severity": self.severity,
                "evidence": self.evidence}


@dataclass(frozen=True)
class Verdict:
    step_index: int | None  # the model turn that made the decision (or the step itself)
    tool: str | None  # the tool of the call, when there is one
    kind: str  # a finding kind, "golden_divergence" or "none"
    sentence: str
    severity: str | None = None
    rule: int = 4
    call_step_index: int | None = None  # the executed (or failed) tool call
    id: str | None = None  # observation id of step_index
    call_id: str | None = None  # observation id of call_step_index
    confidence: str = "none"  # one of CONFIDENCES
    candidates: tuple[Candidate, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "call_step_index": self.call_step_index, "id": self.id,
                "call_id": self.call_id, "tool": self.tool, "kind": self.kind,
                "severity": self.severity, "confidence": self.confidence, "sentence": self.sentence,
                "rule": self.rule, "rule_text": RULES[self.rule],
                "candidates": [c.to_json() for c in self.candidates]}


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
            "index": s.index, "id": s.id, "kind": s.kind, "name": s.name, "offset_ms": s.offset_ms(origin),
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
            "tool_call_id": s.tool_call_id, "plumbing": s.plumbing, "not_recorded": s.not_recorded,
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
    """The tool calls of a model turn for JSON, arguments as the trace wrote them."""
    if isinstance(output, dict) and isinstance(output.get("tool_calls"), list):
        calls = []
        for c in output["tool_calls"]:
            fn = c.get("function", c) if isinstance(c, dict) else {}
            if isinstance(fn, dict):
                calls.append({"id": c.get("id") if isinstance(c, dict) else None, "name": fn.get("name"),
                              "arguments": fn.get("arguments")})
        return calls
    calls = tool_calls_of(output)
    if not calls:
        return None
    return [{"id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")} for c in calls]


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


def _label(traj: Trajectory, index: int | None, call: int | None = None) -> tuple[str | None, str]:
    if index is None:
        return None, "the end of the trajectory"
    try:
        s = traj.step(index)
    except IndexError:
        return None, f"step {index}"
    c = None
    if call is not None and call != index:
        try:
            c = traj.step(call)
        except IndexError:
            c = None
    if s.is_tool:
        return s.name, f"step {index} ({s.name})"
    if c is not None:
        return c.name, f"step {index} ({s.kind} turn {s.name}, which called {c.name} at step {call})"
    return None, f"step {index} ({s.kind} turn {s.name})"


def _ids(traj: Trajectory, index: int | None, call: int | None) -> tuple[str | None, str | None]:
    def oid(i: int | None) -> str | None:
        if i is None:
            return None
        try:
            return traj.step(i).id
        except IndexError:
            return None
    return oid(index), oid(call)


def choose_verdict(traj: Trajectory, findings: list[Finding], d: DiffResult | None,
                   idx: Index | None = None) -> Verdict:
    prio = {k: n for n, k in enumerate(KIND_PRIORITY)}
    rank = {s: n for n, s in enumerate(SEVERITIES)}

    def pick(sev: str) -> Finding | None:
        cands = [f for f in findings if f.severity == sev]
        return min(cands, key=lambda f: (f.step_index, prio.get(f.kind, 99))) if cands else None

    # the ranked candidates: high findings, the golden divergences, medium, low; one per step
    ranked: list[tuple[int | None, int | None, str, str | None, str]] = []
    for f in sorted((f for f in findings if f.severity == "high"),
                    key=lambda f: (f.step_index, prio.get(f.kind, 99))):
        ranked.append((f.step_index, f.call_step_index, f.kind, f.severity, f.evidence))
    if d is not None:
        for div in d.differences or ([d.divergence] if d.divergence is not None else []):
            index, call = _divergence_steps(traj, div)
            ranked.append((index, call, "golden_divergence", "medium", div.describe()))
    for sev in ("medium", "low"):
        for f in sorted((f for f in findings if f.severity == sev),
                        key=lambda f: (f.step_index, prio.get(f.kind, 99))):
            ranked.append((f.step_index, f.call_step_index, f.kind, f.severity, f.evidence))
    seen: set[int | None] = set()
    cands: list[Candidate] = []
    for index, call, kind, sev, ev in ranked:
        if index in seen:
            continue
        seen.add(index)
        cands.append(Candidate(index, call, *_ids(traj, index, call), kind, sev, ev))
        if len(cands) == MAX_CANDIDATES:
            break

    def verdict(index: int | None, call: int | None, kind: str, sentence: str, severity: str | None,
                rule: int, confidence: str) -> Verdict:
        tool, _ = _label(traj, index, call)
        oid, cid = _ids(traj, index, call)
        return Verdict(index, tool, kind, sentence, severity, rule, call, oid, cid, confidence, tuple(cands))

    def from_finding(f: Finding, rule: int) -> Verdict:
        _, where = _label(traj, f.step_index, f.call_step_index)
        also = sorted({g.kind.replace("_", " ") for g in findings
                       if g.step_index == f.step_index and g.kind != f.kind and g.severity != "low"})
        extra = f" (also flagged here: {', '.join(also)})" if also else ""
        # two independent kinds of evidence on one step make a medium finding more certain
        confidence = "high" if f.severity == "high" or also else "medium"
        return verdict(f.step_index, f.call_step_index, f.kind,
                       f"Off the rails at {where}: {f.kind.replace('_', ' ')}: {f.evidence}{extra}.",
                       f.severity, rule, confidence)

    f = pick("high")
    if f is not None:
        return from_finding(f, 1)
    if d is not None and d.divergence is not None:
        div = d.divergence
        index, call = _divergence_steps(traj, div)
        _, where = _label(traj, index, call)
        corroborated = any(g.step_index == index and g.severity in ("medium", "high") for g in findings)
        changed = div.actual is not None  # a wrong state change, not only a missing one
        return verdict(index, call, "golden_divergence",
                       f"Off the rails at {where}: diverges from the golden run ({d.golden}, "
                       f"{d.mode}, args {d.args}): {div.describe()}.", "medium", 2,
                       "high" if changed and corroborated else "medium")
    f = pick("medium")
    if f is not None:
        return from_finding(f, 3)
    lows = [g for g in findings if g.severity == "low"]
    what = f"{len(lows)} low-severity note(s)" if lows else "no findings"
    hint = "" if d is not None else "; compare with a known-good run: --golden CLASS|TRACE_ID|FILE"
    idx = idx if idx is not None else Index(traj, TriageSection())
    # Where to start reading when nothing fired: the first state-changing call (its deciding
    # turn), else the last model turn. On the tau-airline dev set's failed runs where nothing fires
    # without a golden run, the golden diff's step is the first state-changing call's turn in
    # 58 of 88 and the last model turn in 19 (bench/triage_devset.py prints both); a run that
    # changed nothing went wrong in what it said last.
    places: list[tuple[int, int | None, str]] = []  # (step, call step, what it is)
    mutations = [p for p in range(len(idx.steps)) if idx.tool[p] and idx.cls[p] == "mutation"]
    if mutations:
        places.append((*idx.at(mutations[0]), "the first state-changing call"))
        if len(mutations) > 1:
            places.append((*idx.at(mutations[-1]), "the last state-changing call"))
    last = idx.last_model_turn()
    if last is not None:
        call = idx.call_of_turn(last)
        places.append((idx.steps[last].index, idx.steps[call].index if call is not None else None,
                       "the last model turn"))
    confidence = "low" if lows else "none"
    if not places:
        return verdict(None, None, "none", f"No detector fired ({what}{hint}).", None, 4, confidence)
    for index, call_index, what_it_is in places:  # after the low notes, as places to look
        if index not in seen and len(cands) < MAX_CANDIDATES:
            seen.add(index)
            cands.append(Candidate(index, call_index, *_ids(traj, index, call_index), "none", None,
                                   f"no finding: {what_it_is}"))
    index, call_index, what_it_is = places[0]
    _, where = _label(traj, index, call_index)
    also = "; ".join(f"{w} is step {i}" for i, _c, w in places[1:] if i != index)
    return verdict(index, call_index, "none",
                   f"No detector fired ({what}{hint}); start reading at {what_it_is}, {where}"
                   + (f" ({also})" if also else "") + ".", None, 4, confidence)


def _divergence_steps(traj: Trajectory, div: Any) -> tuple[int | None, int | None]:
    """(decision step, call step) of a golden divergence."""
    if div.decision_step is not None or div.reason.endswith("state change"):
        return div.decision_step, div.step_index
    index = div.step_index
    if index is None:
        nxt = first_step_after(traj, div.after_step)
        index = nxt.index if nxt else None
    return index, index


def triage_trajectory(traj: Trajectory, config: TriageSection, golden: Trajectory | None = None, *,
                      mode: str = "mutations", args: str | None = None, golden_label: str = "",
                      policies: Any = ()) -> TriageReport:
    """Findings from every detector and policy, the golden diff (when a golden run is given), the
    verdict."""
    idx = Index(traj, config)
    findings = run_detectors(traj, config, policies, idx)
    d = diff(traj, golden, mode=mode, args=args, golden_label=golden_label, config=config, index=idx) \
        if golden is not None else None
    return TriageReport(traj, findings, choose_verdict(traj, findings, d, idx), d, list(traj.problems))


def run(runbook: Any, trace_id: str, golden: str | Trajectory | None = None, *,
        mode: str = "mutations", args: str | None = None) -> TriageReport:
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
        if args is not None:
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

    from agentfire import _gc

    with _gc.paused():  # millions of small acyclic objects at 50k steps: see agentfire._gc
        traj, g, label = asyncio.run(go())
        return triage_trajectory(traj, runbook.model.triage, g, mode=mode, args=args, golden_label=label,
                                 policies=runbook.model.policies)
