"""Golden diff: align a trajectory's tool calls with a known-good run's.

Modes (as LangChain agentevals' trajectory match): `strict` same calls in the same order;
`unordered` same calls in any order; `subset` every actual call is one the golden run made (no
extra calls); `superset` every golden call was made (extra calls allowed). Arguments: `exact`
(equal after JSON normalisation), `ignore` (tool names only), or `keys:a,b` (only those
arguments compared). Unlike agentevals, the result names the first divergent step and what was
expected there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentfire.errors import UsageError
from agentfire.trajectory import Step, Trajectory
from agentfire.triage._text import canonical, tool_args

MODES = ("strict", "unordered", "subset", "superset")


def parse_args_mode(spec: str) -> tuple[str, tuple[str, ...]]:
    """'exact' | 'ignore' | 'keys:a,b' -> (mode, keys)."""
    spec = (spec or "").strip()
    if spec in ("exact", "ignore"):
        return spec, ()
    if spec.startswith("keys:"):
        keys = tuple(k.strip() for k in spec[5:].split(",") if k.strip())
        if keys:
            return "keys", keys
    raise UsageError(f"invalid argument matching {spec!r}: use exact, ignore or keys:NAME[,NAME...]")


@dataclass(frozen=True)
class Call:
    position: int  # 1-based in the tool-call sequence
    step_index: int
    tool: str
    args: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "step_index": self.step_index, "tool": self.tool,
                "args": self.args}


@dataclass
class Divergence:
    reason: str  # 'different call', 'unexpected call', 'missing call', 'extra call'
    step_index: int | None  # the actual step where it diverged (None: the run ended first)
    actual: Call | None
    expected: Call | None
    after_step: int | None = None  # for a missing call: the last actual step before it

    def describe(self) -> str:
        exp = f"{self.expected.tool}" if self.expected else "nothing (the golden run had ended)"
        if self.actual is None:
            where = f"after step {self.after_step}" if self.after_step else "at the start"
            return f"{self.reason}: expected {exp} {where}, but the trajectory has no such call"
        return f"{self.reason} at step {self.actual.step_index}: {self.actual.tool}, expected {exp}"

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "step_index": self.step_index, "after_step": self.after_step,
                "actual": self.actual.to_json() if self.actual else None,
                "expected": self.expected.to_json() if self.expected else None,
                "description": self.describe()}


@dataclass
class DiffResult:
    mode: str
    args: str
    golden: str  # what the golden run was (class file, trace id)
    matched: bool
    divergence: Divergence | None
    expected_tools: list[str] = field(default_factory=list)
    actual_tools: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "args": self.args, "golden": self.golden, "matched": self.matched,
                "divergence": self.divergence.to_json() if self.divergence else None,
                "expected_tools": self.expected_tools, "actual_tools": self.actual_tools}


def calls_of(traj: Trajectory) -> list[Call]:
    return [Call(n, s.index, s.name, tool_args(s)) for n, s in enumerate(traj.tool_steps, 1)]


def _args_equal(a: dict[str, Any], b: dict[str, Any], mode: str, keys: tuple[str, ...]) -> bool:
    if mode == "ignore":
        return True
    if mode == "keys":
        return all(canonical(a.get(k)) == canonical(b.get(k)) for k in keys)
    return canonical(a) == canonical(b)


def diff(actual: Trajectory, golden: Trajectory, *, mode: str = "strict", args: str = "ignore",
         golden_label: str = "") -> DiffResult:
    if mode not in MODES:
        raise UsageError(f"invalid diff mode {mode!r}; valid: {', '.join(MODES)}")
    amode, keys = parse_args_mode(args)
    act, exp = calls_of(actual), calls_of(golden)

    def same(a: Call, e: Call) -> bool:
        return a.tool == e.tool and _args_equal(a.args, e.args, amode, keys)

    div: Divergence | None = None
    if mode == "strict":
        for i in range(max(len(act), len(exp))):
            a = act[i] if i < len(act) else None
            e = exp[i] if i < len(exp) else None
            if a is not None and e is not None and same(a, e):
                continue
            if a is None:
                div = Divergence("missing call", None, None, e, after_step=act[-1].step_index if act else None)
            elif e is None:
                div = Divergence("extra call", a.step_index, a, None)
            else:
                div = Divergence("different call", a.step_index, a, e)
            break
    else:
        unmatched = list(exp)
        first_extra: tuple[Call, Call | None] | None = None
        last_matched: dict[int, int] = {}  # expected position -> actual step that matched it
        for a in act:
            hit = next((e for e in unmatched if same(a, e)), None)
            if hit is None:
                if first_extra is None:
                    # what was expected there: the first golden call not matched at that point
                    first_extra = (a, unmatched[0] if unmatched else None)
            else:
                unmatched.remove(hit)
                last_matched[hit.position] = a.step_index
        if first_extra is not None and mode in ("unordered", "subset"):
            div = Divergence("unexpected call", first_extra[0].step_index, *first_extra)
        elif unmatched and mode in ("unordered", "superset"):
            e = unmatched[0]
            before = [s for p, s in last_matched.items() if p < e.position]
            div = Divergence("missing call", None, None, e, after_step=max(before) if before else None)
    return DiffResult(mode, args, golden_label or golden.trace_id, div is None, div,
                      [c.tool for c in exp], [c.tool for c in act])


def first_step_after(traj: Trajectory, index: int | None) -> Step | None:
    """The tool step following `index` (where a missing call should have been made)."""
    for s in traj.tool_steps:
        if index is None or s.index > index:
            return s
    return None
