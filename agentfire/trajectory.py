"""One trajectory model (DESIGN.md): every trace store converts into Trajectory and Step.

Triage, blast, freeze and capture see only these. `from_observations` builds a Trajectory from
Langfuse v2-observation-shaped rows (camelCase dicts, `input`/`output` as raw JSON strings), the
format of the Langfuse API and of the local `files` store; other stores map into the same rows or
build Steps directly.

Step indexes are 1-based (people say "step 7"). A malformed row never stops the walk: what could
not be read is kept in `problems` and shown.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

STEP_KINDS = ("tool", "model", "agent", "other")
TYPE_TO_KIND = {
    "TOOL": "tool", "GENERATION": "model", "AGENT": "agent", "SPAN": "other", "CHAIN": "other",
    "EVENT": "other", "RETRIEVER": "other", "EVALUATOR": "other", "EMBEDDING": "other",
    "GUARDRAIL": "other",
}
STATUSES = ("running", "finished", "error")
# A trajectory with no finished root is "running"; if nothing happened in it for this long it is
# still reported running (it may resume), but `stale` says so.
STALE_AFTER = timedelta(minutes=15)


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=timezone.utc)
        except (ValueError, OverflowError, OSError):  # NaN, nanoseconds, out of the calendar
            return None
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    return None


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Step:
    index: int
    id: str
    parent_id: str | None
    kind: str  # one of STEP_KINDS
    name: str
    input: Any = None
    output: Any = None
    start: datetime | None = None
    end: datetime | None = None
    level: str = "DEFAULT"
    status_message: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # the model's id for the call this tool step executed (links a decision to its execution)
    tool_call_id: str | None = None
    # framework plumbing (graph nodes, chains, prompts, turns): folded away in tables
    plumbing: bool = False
    # what the tracer left out (redacted): "arguments", "output"; the value is then None
    not_recorded: list[str] = field(default_factory=list)

    @property
    def is_tool(self) -> bool:
        return self.kind == "tool"

    @property
    def is_model(self) -> bool:
        return self.kind == "model"

    def offset_ms(self, origin: datetime | None) -> int | None:
        if origin is None or self.start is None:
            return None
        return int((self.start - origin).total_seconds() * 1000)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"], d["end"] = iso(self.start), iso(self.end)
        return d


@dataclass
class Trajectory:
    trace_id: str
    user_id: str | None = None
    session_id: str | None = None
    name: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    status: str = "running"  # one of STATUSES
    cost_usd: float = 0.0
    root_input: Any = None
    root_output: Any = None
    model: str | None = None
    steps: list[Step] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    last_activity: datetime | None = None
    as_of: datetime | None = None  # when the store was read (freshness)
    source: str = ""  # which store, for messages
    problems: list[str] = field(default_factory=list)
    # False when some model step has no cost (the store computed none, runbook.yaml `prices:` has
    # no price for its model): cost_usd is then a lower bound
    cost_known: bool = True

    @property
    def tool_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "tool"]

    def __repr__(self) -> str:
        # short: asyncio formats the repr of a finished task's result when asyncio.run restores
        # the SIGINT handler, and the dataclass repr of 50,000 steps took seconds
        return f"Trajectory(trace_id={self.trace_id!r}, status={self.status!r}, steps={len(self.steps)})"

    @property
    def duration_ms(self) -> int | None:
        end = self.end or self.last_activity
        if self.start is None or end is None:
            return None
        return int((end - self.start).total_seconds() * 1000)

    @property
    def stale(self) -> bool:
        if self.status != "running" or self.last_activity is None:
            return False
        now = self.as_of or datetime.now(timezone.utc)
        return now - self.last_activity > STALE_AFTER

    def step(self, index: int) -> Step:
        for s in self.steps:
            if s.index == index:
                return s
        raise IndexError(f"trajectory {self.trace_id} has no step {index} (1..{len(self.steps)})")

    def to_json(self, *, steps: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "trace_id": self.trace_id, "user_id": self.user_id, "session_id": self.session_id,
            "name": self.name, "start": iso(self.start), "end": iso(self.end),
            "status": self.status, "stale": self.stale, "cost_usd": round(self.cost_usd, 6),
            "duration_ms": self.duration_ms, "model": self.model, "root_input": self.root_input,
            "root_output": self.root_output, "metadata": self.metadata, "tags": self.tags,
            "last_activity": iso(self.last_activity), "as_of": iso(self.as_of),
            "source": self.source, "problems": self.problems, "step_count": len(self.steps),
            "cost_known": self.cost_known,
        }
        if steps:
            d["steps"] = [s.to_json() for s in self.steps]
        return d


# --- Langfuse v2-observation rows -> Trajectory ------------------------------------------


# Deeper JSON than this is cut there: every later walk over a value (rendering, detectors, the
# golden file, the eval set) recurses, and real tool arguments are a few levels deep.
MAX_DEPTH = 64
CUT_MARK = f"… (nested deeper than {MAX_DEPTH} levels; cut)"


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 0)]
    while stack:  # iterative: the check itself must not recurse
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d >= limit:
                return True
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


def _cut_deep(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        return CUT_MARK
    if isinstance(value, dict):
        return {k: _cut_deep(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_deep(v, depth + 1) for v in value]
    return value


def shallow(value: Any) -> tuple[Any, str | None]:
    """`value` with anything nested deeper than MAX_DEPTH cut (and a problem saying so)."""
    if isinstance(value, (dict, list)) and _too_deep(value):
        return _cut_deep(value), f"nested deeper than {MAX_DEPTH} levels; cut there"
    return value, None


def parse_io(value: Any) -> tuple[Any, str | None]:
    """Langfuse v2 returns input/output as raw JSON strings. Returns (value, problem)."""
    if not isinstance(value, str):
        return shallow(value)
    text = value.strip()
    if not text:
        return value, None
    if text[0] in '{["' or text in ("null", "true", "false") or text[0].isdigit() or text[0] == "-":
        try:
            parsed = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return value, "not valid JSON; shown raw"
        if text.count("{") + text.count("[") > MAX_DEPTH:  # cheap pre-check before the walk
            return shallow(parsed)
        return parsed, None
    return value, None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _tokens(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    inp = usage.get("input", usage.get("prompt_tokens", usage.get("promptTokens")))
    out = usage.get("output", usage.get("completion_tokens", usage.get("completionTokens")))
    return _int(inp), _int(out)


def _usd(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)  # `true` is JSON, not a price


def _cost(row: dict[str, Any]) -> float | None:
    total = row.get("totalCost")
    if _usd(total):
        return float(total)
    details = row.get("costDetails")
    if isinstance(details, dict):
        if _usd(details.get("total")):
            return float(details["total"])
        vals = [v for v in details.values() if _usd(v)]
        return float(sum(vals)) if vals else None
    return None


def _is_root(row: dict[str, Any]) -> bool:
    flag = row.get("isRootObservation")
    if flag is not None:
        return bool(flag)
    return not row.get("parentObservationId")


def from_observations(
    trace_id: str, rows: Iterable[dict[str, Any]], *, as_of: datetime | None = None, source: str = "",
    prices: dict[str, Any] | None = None,
) -> Trajectory:
    """Build one Trajectory from its observation rows (any order, duplicates by id collapsed).

    `prices` (runbook.yaml `prices:`, model name or glob -> USD per million input/output tokens)
    prices the model steps the store left without a cost."""
    as_of = as_of or datetime.now(timezone.utc)
    traj = Trajectory(trace_id=trace_id, as_of=as_of, source=source)
    by_id: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            traj.problems.append(f"row {n + 1}: not an object; skipped")
            continue
        oid = str(row.get("id") or f"row-{n + 1}")
        prev = by_id.get(oid)
        # newer version of the same observation (an update after end) wins
        if prev is None or str(row.get("updatedAt") or "") >= str(prev.get("updatedAt") or ""):
            by_id[oid] = row

    root: dict[str, Any] | None = None
    roots = [r for r in by_id.values() if _is_root(r)]
    if roots:
        roots.sort(key=lambda r: (parse_time(r.get("startTime")) or as_of))
        root = roots[0]
    users = Counter(r.get("userId") for r in by_id.values() if r.get("userId"))
    sessions = Counter(r.get("sessionId") for r in by_id.values() if r.get("sessionId"))
    traj.user_id = users.most_common(1)[0][0] if users else None
    traj.session_id = sessions.most_common(1)[0][0] if sessions else None
    for r in by_id.values():
        if r.get("tags") and not traj.tags:
            traj.tags = list(r["tags"])
        if r.get("traceName") and not traj.name:
            traj.name = r["traceName"]

    from agentfire.providers.traces import _conventions

    steps: list[Step] = []
    for oid, r in by_id.items():
        if r is root:
            continue
        steps.append(_step(oid, r))
    # same-millisecond ties go to the span tree (parents first), not to the random ids
    steps = _conventions.order_by_tree(steps, as_of)
    for i, s in enumerate(steps, 1):
        s.index = i
    traj.steps = steps

    starts = [t for t in (s.start for s in steps) if t] + (
        [parse_time(root.get("startTime"))] if root and parse_time(root.get("startTime")) else []
    )
    ends = [t for s in steps for t in (s.end, s.start) if t]
    traj.start = min(starts) if starts else None
    root_end = parse_time(root.get("endTime")) if root else None
    activity = ends + ([root_end] if root_end else [])
    traj.last_activity = max(activity) if activity else traj.start
    traj.cost_known = _price(steps, prices)
    traj.cost_usd = sum(s.cost_usd or 0.0 for s in steps) + ((_cost(root) or 0.0) if root else 0.0)
    models = Counter(s.model for s in steps if s.model)
    traj.model = models.most_common(1)[0][0] if models else None

    if root is None:
        traj.status = "running"
        traj.problems.append("no root observation yet: the trajectory is still running (or its root was lost)")
    else:
        traj.name = traj.name or root.get("name")
        traj.root_input, p1 = parse_io(root.get("input"))
        traj.root_output, p2 = parse_io(root.get("output"))
        for p, what in ((p1, "input"), (p2, "output")):
            if p:
                traj.problems.append(f"root {what}: {p}")
        traj.metadata, p3 = shallow(root.get("metadata") if isinstance(root.get("metadata"), dict) else {})
        if p3:
            traj.problems.append(f"root metadata: {p3}")
        traj.end = parse_time(root.get("endTime"))
        if traj.end is None:
            traj.status = "running"
        elif (root.get("level") or "").upper() == "ERROR":
            traj.status = "error"
        else:
            traj.status = "finished"
    # framework envelopes, the canonical model turn, the user's request, agent errors, plumbing
    _conventions.normalise(traj, root)
    for s in steps:
        for p in s.problems:
            traj.problems.append(f"step {s.index} ({s.name}): {p}")
    return traj


def _step(oid: str, r: dict[str, Any]) -> Step:
    problems: list[str] = []
    typ = str(r.get("type") or "").upper()
    kind = TYPE_TO_KIND.get(typ)
    if kind is None:
        problems.append(f"unknown observation type {typ or '(none)'!r}; treated as 'other'")
        kind = "other"
    inp, p = parse_io(r.get("input"))
    if p:
        problems.append(f"input {p}")
    out, p = parse_io(r.get("output"))
    if p:
        problems.append(f"output {p}")
    start, end = parse_time(r.get("startTime")), parse_time(r.get("endTime"))
    if start is None:
        problems.append("no readable startTime")
    metadata, p = shallow(r.get("metadata") if isinstance(r.get("metadata"), dict) else {})
    if p:
        problems.append(f"metadata {p}")
    tin, tout = _tokens(r.get("usageDetails") or r.get("usage"))
    level = str(r.get("level") or "DEFAULT").upper()
    return Step(
        index=0, id=oid, parent_id=r.get("parentObservationId"), kind=kind,
        name=str(r.get("name") or "(unnamed)"), input=inp, output=out, start=start, end=end,
        level=level, status_message=r.get("statusMessage"), input_tokens=tin, output_tokens=tout,
        cost_usd=_cost(r), model=r.get("model"),
        metadata=metadata, problems=problems,
        not_recorded=[str(x) for x in r.get("notRecorded") or []],
    )


def _price(steps: list[Step], prices: dict[str, Any] | None) -> bool:
    """Price unpriced model steps from `prices`; False when some model step stays without cost."""
    from fnmatch import fnmatchcase

    known = True
    for s in steps:
        if s.kind != "model" or s.cost_usd is not None:
            continue
        if s.input_tokens is None and s.output_tokens is None:
            continue  # nothing to price: no usage recorded
        price = None
        for pattern, p in (prices or {}).items():
            if s.model and (s.model == pattern or fnmatchcase(s.model, pattern)):
                price = p
                break
        if price is None:
            known = False
            continue
        get = (lambda k: getattr(price, k, None) if not isinstance(price, dict) else price.get(k))
        s.cost_usd = ((s.input_tokens or 0) * float(get("input_per_million") or 0)
                      + (s.output_tokens or 0) * float(get("output_per_million") or 0)) / 1e6
        s.metadata = dict(s.metadata, cost_source="runbook prices")
    return known
