"""Golden diff: align a trajectory's tool calls with a known-good run's.

The default mode, `mutations`, compares what a run changed: its state-changing calls (the
configured mutation globs, plus any tool the golden run calls that is not a read, a handoff or a
pure tool) by name and arguments, in any order, ignoring reads, and ignoring calls whose output
was an error (they changed nothing). Arguments match when every argument the golden call sets has
the same value (numbers and strings normalised; extra arguments are allowed). It names the first
state-changing call that is not in the golden run or whose arguments differ (which argument,
expected and got), else the first golden one that was never made.

The other modes (as LangChain agentevals' trajectory match): `strict` same calls in the same order;
`unordered` same calls in any order; `subset` every actual call is one the golden run made (no
extra calls); `superset` every golden call was made (extra calls allowed). Arguments: `exact`
(equal after JSON normalisation), `ignore` (tool names only), or `keys:a,b` (only those
arguments compared). Unlike agentevals, the result names the first divergent step and what was
expected there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentfire.config import TriageSection
from agentfire.errors import UsageError
from agentfire.trajectory import Step, Trajectory
from agentfire.triage._text import canonical, name_class, tool_args

MODES = ("mutations", "strict", "unordered", "subset", "superset")


def parse_args_mode(spec: str | None) -> tuple[str, tuple[str, ...]]:
    """'exact' | 'ignore' | 'golden' | 'keys:a,b' -> (mode, keys). None: 'golden' (the keys the
    golden call sets) for the mutations mode, 'ignore' for the others."""
    spec = (spec or "").strip()
    if spec in ("exact", "ignore", "golden"):
        return spec, ()
    if spec.startswith("keys:"):
        keys = tuple(k.strip() for k in spec[5:].split(",") if k.strip())
        if keys:
            return "keys", keys
    raise UsageError(f"invalid argument matching {spec!r}: use exact, golden, ignore or keys:NAME[,NAME...]")


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
    argument: str | None = None  # for a different call: the first argument that differs
    expected_value: Any = None
    got_value: Any = None
    decision_step: int | None = None  # the model turn to blame (set by the mutations mode)

    def describe(self) -> str:
        exp = f"{self.expected.tool}" if self.expected else "nothing (the golden run had ended)"
        if self.argument is not None and self.actual is not None:
            return (f"{self.reason} at step {self.actual.step_index}: {self.actual.tool} with "
                    f"{self.argument}={_show(self.got_value)}, the golden run has {self.argument}="
                    f"{_show(self.expected_value)}")
        if self.reason == "unexpected state change" and self.actual is not None:
            return (f"{self.reason} at step {self.actual.step_index}: {self.actual.tool} "
                    f"{_show(self.actual.args)}, which the golden run never makes")
        if self.reason == "missing state change" and self.expected is not None:
            return (f"{self.reason}: the golden run makes {self.expected.tool} {_show(self.expected.args)}; "
                    "this run never does")
        if self.actual is None:
            where = f"after step {self.after_step}" if self.after_step else "at the start"
            return f"{self.reason}: expected {exp} {where}, but the trajectory has no such call"
        return f"{self.reason} at step {self.actual.step_index}: {self.actual.tool}, expected {exp}"

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "step_index": self.step_index, "after_step": self.after_step,
                "decision_step": self.decision_step,
                "actual": self.actual.to_json() if self.actual else None,
                "expected": self.expected.to_json() if self.expected else None,
                "argument": self.argument, "expected_value": self.expected_value, "got_value": self.got_value,
                "description": self.describe()}


def _show(value: Any, limit: int = 80) -> str:
    text = canonical(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class DiffResult:
    mode: str
    args: str
    golden: str  # what the golden run was (class file, trace id)
    matched: bool
    divergence: Divergence | None
    expected_tools: list[str] = field(default_factory=list)
    actual_tools: list[str] = field(default_factory=list)
    differences: list[Divergence] = field(default_factory=list)  # every one (mutations mode)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "args": self.args, "golden": self.golden, "matched": self.matched,
                "divergence": self.divergence.to_json() if self.divergence else None,
                "differences": [d.to_json() for d in self.differences],
                "expected_tools": self.expected_tools, "actual_tools": self.actual_tools}


def calls_of(traj: Trajectory) -> list[Call]:
    return [Call(n, s.index, s.name, tool_args(s)) for n, s in enumerate(traj.tool_steps, 1)]


def _args_equal(a: dict[str, Any], b: dict[str, Any], mode: str, keys: tuple[str, ...]) -> bool:
    if mode == "ignore":
        return True
    if mode == "keys":
        return all(canonical(a.get(k)) == canonical(b.get(k)) for k in keys)
    if mode == "golden":  # every argument the golden call (b) sets, normalised
        return first_difference(b, a) is None
    return canonical(a) == canonical(b)


def diff(actual: Trajectory, golden: Trajectory, *, mode: str = "mutations", args: str | None = None,
         golden_label: str = "", config: TriageSection | None = None, index: Any = None) -> DiffResult:
    if mode not in MODES:
        raise UsageError(f"invalid diff mode {mode!r}; valid: {', '.join(MODES)}")
    if args is None:
        args = "golden" if mode == "mutations" else "ignore"
    amode, keys = parse_args_mode(args)
    if mode == "mutations":
        return _diff_mutations(actual, golden, config or TriageSection(), amode, keys, args,
                               golden_label or golden.trace_id, index)
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


# --- the mutations mode -------------------------------------------------------------------------

_MISSING = object()


def _norm(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return round(float(v), 6)
    if isinstance(v, str):
        t = v.strip()
        num = t.replace(",", "").lstrip("$")
        try:
            return round(float(num), 6) if num and num[0] in "-.0123456789" else t.casefold()
        except ValueError:
            return t.casefold()
    return v


def first_difference(golden: Any, actual: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """(argument path, expected, got) of the first value the golden arguments set that the actual
    ones do not match; None when they match. Extra keys in `actual` are allowed."""
    if isinstance(golden, dict):
        if not isinstance(actual, dict):
            return path or "(arguments)", golden, actual
        for k, v in golden.items():
            sub = f"{path}.{k}" if path else str(k)
            got = actual.get(k, _MISSING)
            if got is _MISSING:
                if v in (None, "", [], {}):
                    continue
                return sub, v, None
            d = first_difference(v, got, sub)
            if d is not None:
                return d
        return None
    if isinstance(golden, list):
        if not isinstance(actual, list) or len(actual) != len(golden):
            return path or "(arguments)", golden, actual
        for i, (g, a) in enumerate(zip(golden, actual)):
            d = first_difference(g, a, f"{path}[{i}]")
            if d is not None:
                return d
        return None
    return None if _norm(golden) == _norm(actual) else (path or "(value)", golden, actual)


def _args_match(g: Call, a: Call, amode: str, keys: tuple[str, ...]) -> bool:
    return g.tool == a.tool and _args_equal(a.args, g.args, amode, keys)


def _diff_mutations(actual: Trajectory, golden: Trajectory, cfg: TriageSection, amode: str,
                    keys: tuple[str, ...], args_label: str, label: str, idx: Any = None) -> DiffResult:
    from agentfire.triage._index import Index

    gold_names = {s.name for s in golden.tool_steps
                  if name_class(s.name, cfg) in ("mutation", "other")}
    exp = [c for c in calls_of(golden) if c.tool in gold_names]
    if idx is None or idx.traj is not actual or idx.cfg is not cfg:
        idx = Index(actual, cfg)
    act: list[Call] = []
    positions: dict[int, int] = {}  # step index -> position in the index
    n = 0
    for p, s in enumerate(idx.steps):
        if not idx.tool[p]:
            continue
        n += 1
        if (idx.cls[p] == "mutation" or s.name in gold_names) and idx.cls[p] not in ("handoff", "read", "pure") \
                and idx.error[p] is None:
            act.append(Call(n, s.index, s.name, idx.args[p] or {}))
            positions[s.index] = p
    unmatched = list(exp)
    extra: list[Call] = []
    for a in act:
        hit = next((g for g in unmatched if _args_match(g, a, amode, keys)), None)
        if hit is None:
            extra.append(a)
        else:
            unmatched.remove(hit)
    diffs: list[Divergence] = []
    for a in extra:
        same = next((g for g in unmatched if g.tool == a.tool), None)
        decision = idx.steps[idx.decision_of(positions[a.step_index])].index
        if same is not None:
            unmatched.remove(same)
            d = first_difference(same.args, a.args) if amode != "ignore" else None
            arg, want, got = d if d is not None else (None, None, None)
            diffs.append(Divergence("different state change", a.step_index, a, same, argument=arg,
                                    expected_value=want, got_value=got, decision_step=decision))
        else:
            diffs.append(Divergence("unexpected state change", a.step_index, a, None, decision_step=decision))
    for g in unmatched:
        diffs.append(Divergence("missing state change", None, None, g, decision_step=_missed_at(idx, g)))
    div = diffs[0] if diffs else None
    return DiffResult("mutations", args_label, label, div is None, div,
                      [c.tool for c in exp], [c.tool for c in act], diffs)


def _missed_at(idx: Any, g: Call) -> int | None:
    """Where a golden state change was not made: the first model turn, after everything the call
    needs had appeared (its argument values in a message or tool output), that did something else
    (answered, handed off, changed something else); else the last model turn."""
    from agentfire.triage.grounding import Facts, facts_in

    needed = list(facts_in(g.args))
    start = 0
    if needed:
        facts = idx.facts()
        if all(k in facts.first for k in needed):
            start = max(0, (max(facts.first[k] for k in needed) + 1) // 2)
        else:
            start = len(idx.steps)
    for p in idx.model_positions:
        if p < start:
            continue
        ex = idx.executed[p]
        if not ex or any(idx.cls[q] not in ("read", "pure") for q in ex):
            return idx.steps[p].index
    last = idx.last_model_turn()
    return idx.steps[last].index if last is not None else None
