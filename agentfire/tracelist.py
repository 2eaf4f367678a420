"""`agentfire traces`: find the failing run without a link in the alert (issue 14), and resolve a
trace id given as a unique prefix.

Recent trajectories from the configured store, newest first, each with its status, user, steps,
cost and top triage finding (the same detectors triage runs). Filters: user, a tool it called
(glob), errors, still running, a finding kind. Remote stores (Langfuse, Phoenix) list the
window's trajectories first (one summary each), then read whole trajectories newest first until
enough match, so a busy window costs `--limit` reads, not one per trajectory.
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from agentfire.errors import UsageError
from agentfire.trajectory import Trajectory, iso

MIN_PREFIX = 4
MAX_READS = 500  # whole trajectories read from a remote store for one listing
PREFIX_WINDOW = timedelta(days=1)  # remote stores: a prefix is looked up among the last day's traces


@dataclass
class TraceRow:
    trace_id: str
    start: datetime | None
    status: str
    user_id: str | None
    steps: int
    tool_calls: int
    cost_usd: float
    errors: int
    top_finding: dict[str, Any] | None
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "start": iso(self.start), "status": self.status,
                "user_id": self.user_id, "steps": self.steps, "tool_calls": self.tool_calls,
                "cost_usd": round(self.cost_usd, 6), "errors": self.errors,
                "top_finding": self.top_finding, "url": self.url}


@dataclass
class TracesResult:
    store: str
    start: datetime
    end: datetime
    rows: list[TraceRow] = field(default_factory=list)
    scanned: int = 0  # trajectories in the window
    read: int = 0  # trajectories read whole
    truncated: bool = False  # more would match than --limit (or MAX_READS was reached)
    tools_seen: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"store": self.store, "window": {"start": iso(self.start), "end": iso(self.end)},
                "trajectories_in_window": self.scanned, "read": self.read,
                "truncated": self.truncated, "traces": [r.to_json() for r in self.rows]}


def finding_kinds() -> list[str]:
    from agentfire.triage.detectors import KIND_PRIORITY

    return [k for k in KIND_PRIORITY if k != "golden_divergence"]


def _top(findings: list[Any]) -> Any:
    from agentfire.triage.detectors import KIND_PRIORITY, SEVERITIES

    def rank(f: Any) -> tuple[int, int, int]:
        kind = KIND_PRIORITY.index(f.kind) if f.kind in KIND_PRIORITY else len(KIND_PRIORITY)
        return (SEVERITIES.index(f.severity) if f.severity in SEVERITIES else 9, kind, f.step_index)

    return min(findings, key=rank) if findings else None


def _row(traj: Trajectory, runbook: Any) -> tuple[TraceRow, list[Any]]:
    from agentfire.triage.detectors import run_detectors

    # the team's policies too, as triage and watch check them: `--finding policy` must see them
    findings = run_detectors(traj, runbook.model.triage, runbook.model.policies)
    top = _top([f for f in findings if f.severity != "low"]) or _top(findings)
    errors = sum(1 for s in traj.steps if s.level == "ERROR")
    return TraceRow(
        trace_id=traj.trace_id, start=traj.start, status=traj.status, user_id=traj.user_id,
        steps=len(traj.steps), tool_calls=len(traj.tool_steps), cost_usd=traj.cost_usd or 0.0,
        errors=errors,
        top_finding=({"kind": top.kind, "severity": top.severity, "step": top.step_index}
                     if top is not None else None),
    ), findings


def _matches(traj: Trajectory, row: TraceRow, findings: list[Any], *, tool: str | None,
             errors: bool, running: bool, finding: str | None) -> bool:
    if running and traj.status != "running":
        return False
    if errors and not (traj.status == "error" or row.errors):
        return False
    if tool and not any(fnmatch.fnmatchcase(s.name, tool) for s in traj.tool_steps):
        return False
    if finding and not any(f.kind == finding for f in findings):
        return False
    return True


def recent(runbook: Any, *, since_s: float = 3600, user: str | None = None, tool: str | None = None,
           errors: bool = False, running: bool = False, finding: str | None = None,
           limit: int = 30, now: datetime | None = None) -> TracesResult:
    """The newest `limit` trajectories started in the last `since_s` seconds that pass the filters."""
    if finding is not None and finding not in finding_kinds():
        raise UsageError(f"--finding {finding!r}: unknown kind; valid: {', '.join(finding_kinds())}")
    end = now or datetime.now(timezone.utc)
    start = end - timedelta(seconds=since_s)
    return asyncio.run(_recent(runbook, start, end, user=user, tool=tool, errors=errors,
                               running=running, finding=finding, limit=limit))


async def _recent(runbook: Any, start: datetime, end: datetime, **kw: Any) -> TracesResult:
    from agentfire import providers

    store = providers.build("traces", runbook.traces, runbook)
    try:
        if hasattr(store, "iter_rows"):
            trajectories = await asyncio.to_thread(_files_window, store, start, end)
            return _collect(runbook, store.target if store.kind != "files" else f"files:{store.target}",
                            start, end, trajectories, len(trajectories), **kw)
        summaries = await store.list_trajectories(start, end)
        summaries = sorted(summaries, key=lambda s: (s.start or start), reverse=True)
        if kw.get("user"):
            summaries = [s for s in summaries if s.user_id == kw["user"]]
        if kw.get("running"):
            summaries = [s for s in summaries if s.status == "running"]
        result = TracesResult(f"{store.kind}:{store.target}", start, end, scanned=len(summaries))
        wanted = kw["limit"]
        tools: set[str] = set()
        batch = 8
        for i in range(0, min(len(summaries), MAX_READS), batch):
            chunk = summaries[i:i + batch]
            trajs = await asyncio.gather(*(store.get_trajectory(s.trace_id) for s in chunk),
                                         return_exceptions=True)
            for t in trajs:
                if isinstance(t, BaseException):
                    continue
                result.read += 1
                _add(runbook, result, t, tools, **kw)
            if len(result.rows) > wanted:
                break
        result.truncated = len(result.rows) > wanted or (len(summaries) > MAX_READS and len(result.rows) < wanted)
        result.rows = result.rows[:wanted]
        result.tools_seen = sorted(tools)
        return result
    finally:
        await store.aclose()


def _files_window(store: Any, start: datetime, end: datetime) -> list[Trajectory]:
    from collections import defaultdict

    from agentfire.trajectory import from_observations

    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _f, _n, row, _line in store.iter_rows():
        if row is not None and row.get("traceId"):
            by_trace[row["traceId"]].append(row)
    as_of = store.as_of()
    out = []
    for tid, rows in by_trace.items():
        t = from_observations(tid, rows, as_of=as_of, source=f"files:{store.path}")
        if t.start is not None and start <= t.start < end:
            out.append(t)
    return out


def _collect(runbook: Any, store: str, start: datetime, end: datetime, trajectories: list[Trajectory],
             scanned: int, **kw: Any) -> TracesResult:
    result = TracesResult(store, start, end, scanned=scanned)
    tools: set[str] = set()
    trajectories.sort(key=lambda t: (t.start or start, t.trace_id), reverse=True)
    for t in trajectories:
        if kw.get("user") and t.user_id != kw["user"]:
            continue
        if kw.get("running") and t.status != "running":
            continue
        result.read += 1
        _add(runbook, result, t, tools, **kw)
        if len(result.rows) > kw["limit"]:
            break
    result.truncated = len(result.rows) > kw["limit"]
    result.rows = result.rows[:kw["limit"]]
    result.tools_seen = sorted(tools)
    return result


def _add(runbook: Any, result: TracesResult, traj: Trajectory, tools: set[str], *, user: str | None,
         tool: str | None, errors: bool, running: bool, finding: str | None, limit: int) -> None:
    if user and traj.user_id != user:
        return
    tools.update(s.name for s in traj.tool_steps)
    row, findings = _row(traj, runbook)
    if _matches(traj, row, findings, tool=tool, errors=errors, running=running, finding=finding):
        result.rows.append(row)


# --- a trace id given as a unique prefix ------------------------------------------------------


def clean_id(text: str) -> str:
    """A pasted trace id: surrounding whitespace (and a trailing newline) dropped."""
    return str(text).strip()


async def get_trajectory(store: Any, text: str) -> Trajectory:
    """The trajectory `text` names: its exact id, else the one trace whose id starts with it.
    Several traces with that prefix is a usage error listing them; none is TraceNotFound."""
    from agentfire.providers.traces import TraceNotFound

    trace_id = clean_id(text)
    if not trace_id:
        raise UsageError("empty trace id")
    try:
        return await store.get_trajectory(trace_id)
    except TraceNotFound:
        if len(trace_id) < MIN_PREFIX:
            raise
        found = await _with_prefix(store, trace_id)
        if len(found) == 1:
            return await store.get_trajectory(found[0])
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise UsageError(f"trace id prefix {trace_id!r} is ambiguous: {shown}; give more of it") from None
        raise


async def _with_prefix(store: Any, prefix: str) -> list[str]:
    if hasattr(store, "iter_rows"):
        def scan() -> list[str]:
            ids = set()
            for _f, _n, row, _line in store.iter_rows(needle=prefix):
                tid = row.get("traceId") if row else None
                if isinstance(tid, str) and tid.startswith(prefix):
                    ids.add(tid)
            return sorted(ids)

        return await asyncio.to_thread(scan)
    end = datetime.now(timezone.utc)
    try:
        summaries = await store.list_trajectories(end - PREFIX_WINDOW, end + timedelta(minutes=5))
    except Exception:  # the prefix lookup is a convenience: the not-found error stands
        return []
    return sorted({s.trace_id for s in summaries if s.trace_id.startswith(prefix)})


def resolve_id(runbook: Any, text: str) -> str:
    """The full trace id for `text` (exact or unique prefix), for commands that need only the id."""
    from agentfire import providers

    async def go() -> str:
        store = providers.build("traces", runbook.traces, runbook)
        try:
            return (await get_trajectory(store, text)).trace_id
        finally:
            await store.aclose()

    return asyncio.run(go())


def tools_seen(runbook: Any, start: datetime, end: datetime, *, max_reads: int = 200) -> tuple[list[str], bool]:
    """The tool names called in the window's trajectories (for a `blast --tool` that matched
    nothing), and whether every trajectory was read (a remote store is sampled, newest first)."""

    async def go() -> tuple[list[str], bool]:
        from agentfire import providers

        store = providers.build("traces", runbook.traces, runbook)
        try:
            if hasattr(store, "iter_rows"):
                trajs = await asyncio.to_thread(_files_window, store, start, end)
                return sorted({s.name for t in trajs for s in t.tool_steps}), True
            summaries = sorted(await store.list_trajectories(start, end),
                               key=lambda s: s.start or start, reverse=True)
            names: set[str] = set()
            for s in summaries[:max_reads]:
                try:
                    t = await store.get_trajectory(s.trace_id)
                except Exception:
                    continue
                names.update(x.name for x in t.tool_steps)
            return sorted(names), len(summaries) <= max_reads
        finally:
            await store.aclose()

    return asyncio.run(go())
