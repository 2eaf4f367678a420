"""Reading one round's trajectories from the configured trace store.

A round reads every trajectory that started in [read_start, now): the files store line by line,
Langfuse and Phoenix with one paged observation scan of that window (not one request per
trajectory), grouped by trace id. A trajectory whose root started before the window shows up
without its root (it looks running); once it has gone quiet it is read whole by id, a bounded
number per round.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from agentfire.trajectory import Trajectory, from_observations, parse_time

MAX_WHOLE_READS = 200  # rootless quiet trajectories read whole by id in one round


async def read_window(store: Any, start: datetime, end: datetime, changed_after: datetime) -> list[Trajectory]:
    """Trajectories that started in [start, end) and have some activity after `changed_after`
    (or no end yet). Raises TraceStoreError when the store cannot be read."""
    if hasattr(store, "iter_rows"):  # the files store (and stores built on it)
        return await asyncio.to_thread(_files_window, store, start, end, changed_after)
    kind = getattr(store, "kind", "")
    if kind == "phoenix":
        return await _phoenix_window(store, start, end, changed_after)
    if hasattr(store, "iter_observations"):
        return await _rows_window(store, start, end, changed_after)
    raise NotImplementedError(f"watch cannot read the {kind!r} trace store in windows")


def _recent_enough(rows: list[dict[str, Any]], changed_after: datetime) -> bool:
    """Some row ended (or started) after `changed_after`, or some row has no end yet."""
    for r in rows:
        end = r.get("endTime")
        if end is None:
            return True
        t = parse_time(end)
        if t is None or t > changed_after:
            return True
    return False


def _build(by_trace: dict[str, list[dict[str, Any]]], start: datetime, end: datetime, changed_after: datetime,
           *, source: str, prices: Any, as_of: datetime) -> list[Trajectory]:
    out = []
    for tid, rows in by_trace.items():
        if not _recent_enough(rows, changed_after):
            continue  # ended before the last round's position: already seen
        t = from_observations(tid, rows, as_of=end, source=source, prices=prices)
        if t.start is None or t.start >= end:
            continue
        out.append(t)
    return out


def _has_root(rows: list[dict[str, Any]]) -> bool:
    for r in rows:
        flag = r.get("isRootObservation")
        if flag is True or (flag is None and not r.get("parentObservationId")):
            return True
    return False


def _files_window(store: Any, start: datetime, end: datetime, changed_after: datetime) -> list[Trajectory]:
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _f, _n, row, _line in store.iter_rows():
        if row is not None:
            tid = row.get("traceId")
            if tid:
                by_trace[tid].append(row)
    return _build(by_trace, start, end, changed_after, source=f"files:{store.path}",
                  prices=getattr(store, "prices", None), as_of=store.as_of())


async def _rows_window(store: Any, start: datetime, end: datetime, changed_after: datetime) -> list[Trajectory]:
    """Langfuse (and any store with iter_observations yielding Langfuse-shaped rows)."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async for page in store.iter_observations(start=start, end=end):
        for r in page:
            tid = r.get("traceId")
            if tid:
                by_trace[str(tid)].append(r)
    as_of = datetime.now(timezone.utc)
    trajs = _build(by_trace, start, end, changed_after, source=f"{store.kind}:{store.target}",
                   prices=getattr(store, "prices", None), as_of=as_of)
    return await _whole_rootless(store, trajs, by_trace, end)


async def _phoenix_window(store: Any, start: datetime, end: datetime, changed_after: datetime) -> list[Trajectory]:
    from agentfire.providers.traces.phoenix import _link_parents, _otel_id

    spans_by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async for page in store.iter_spans(start=start, end=end):
        for s in page:
            spans_by_trace[_otel_id(s)].append(s)
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for spans in spans_by_trace.values():
        rows = _link_parents(spans)
        tid = next((str(r["traceId"]) for r in rows if r.get("traceId")), _otel_id(spans[0]))
        by_trace[tid] = rows
    as_of = datetime.now(timezone.utc)
    trajs = _build(by_trace, start, end, changed_after, source=f"phoenix:{store.target}",
                   prices=getattr(store, "prices", None), as_of=as_of)
    return await _whole_rootless(store, trajs, by_trace, end)


async def _whole_rootless(store: Any, trajs: list[Trajectory], by_trace: dict[str, list[dict[str, Any]]],
                          end: datetime) -> list[Trajectory]:
    """A trajectory seen without its root that has gone quiet started before the window: read it
    whole (bounded), so its verdict sees every step."""
    quiet = [i for i, t in enumerate(trajs) if t.stale and not _has_root(by_trace.get(t.trace_id, []))]
    gate = asyncio.Semaphore(8)

    async def whole(i: int) -> None:
        async with gate:
            whole_t = await store.get_trajectory(trajs[i].trace_id)
            whole_t.as_of = end  # stale or not as of the round's clock, like the window's reads
            trajs[i] = whole_t

    await asyncio.gather(*(whole(i) for i in quiet[:MAX_WHOLE_READS]))
    return trajs
