"""Blast over a remote trace store (Langfuse, Phoenix) through the store's own paged API
(`iter_observations(filters=, start=, end=)`), with the signature pushed into the server's filters.

- Phase 1 (the scan): only observations that can be the matching step, per store
  (agentfire.blast.pushdown): Langfuse `type=TOOL&name=...&level=...` plus the JSON `filter`
  with `input matches` literals; Phoenix `span_kind`, `name`, `status_code`. Every row that comes
  back is re-checked exactly in Python (the server filter only prunes). The window is split into
  slices paged concurrently.
- Phase 2: the whole trajectories of the candidates only (Langfuse: 50 trace ids a request with a
  `traceId any of` filter; Phoenix: `trace_id` repeated), to check sequences, trajectory-wide
  conditions and status. Memory grows with the hits, not with the window.
- Pacing: at most `rate_per_minute` pages in any 60 s (Langfuse Cloud allows 1000/min on v2
  observations): the scan waits rather than fails. 429/5xx get the store's bounded retries
  (agentfire._http, honouring Retry-After). A slice whose retries run out becomes a named gap:
  the part of it not yet covered (pages come newest first), never a silently partial count.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

from agentfire.blast.pushdown import Pushdown
from agentfire.blast.result import BlastResult, Gap, Hit, ScanStats
from agentfire.blast.signature import Signature
from agentfire.blast.window import Window
from agentfire.providers.traces import TraceNotFound, TraceStoreError
from agentfire.trajectory import Step, Trajectory, iso, parse_time

DEFAULT_RATE_PER_MINUTE = 1000
SLICES = 8


class Pacer:
    """At most `rate` acquisitions in any sliding `per` seconds; waits instead of failing."""

    def __init__(self, rate: int, per: float = 60.0):
        self.rate, self.per = rate, per
        self.sent: collections.deque[float] = collections.deque()
        self.lock = asyncio.Lock()
        self.waited = 0.0

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                while self.sent and now - self.sent[0] >= self.per:
                    self.sent.popleft()
                if len(self.sent) < self.rate:
                    self.sent.append(now)
                    return
                wait = self.per - (now - self.sent[0]) + 0.001
                self.waited += wait
                await asyncio.sleep(wait)


async def paced(pages: AsyncIterator[list[dict[str, Any]]], pacer: Pacer) -> AsyncIterator[list[dict[str, Any]]]:
    """Each page pulled from the store is one request: wait for the pacer before pulling it."""
    while True:
        await pacer.acquire()
        try:
            page = await pages.__anext__()
        except StopAsyncIteration:
            return
        yield page


def _row_step(row: dict[str, Any]) -> Step:
    from agentfire.providers.traces._conventions import normalise_step
    from agentfire.trajectory import _step  # the one row parser, for a row seen alone

    step = _step(str(row.get("id")), row)
    normalise_step(step)  # framework envelopes (smolagents {"args","kwargs"}, ToolMessage...)
    return step


def _candidate(pattern: Any, step: Step) -> bool:
    """Phase 1: a row that can be the matching step. Arguments a row alone cannot show (not
    recorded, or a bare value whose name is in the calling model turn) are checked in phase 2,
    on the whole trajectory."""
    if pattern.args and (not isinstance(step.input, dict) or "arguments" in step.not_recorded):
        return replace(pattern, args=()).holds(step)
    return pattern.holds(step)


def args_not_recorded(sig: Signature, traj: Trajectory) -> Step | None:
    """A step that would match an argument condition of `sig` but whose arguments the tracer did
    not record (the count that misses it is a lower bound)."""
    for pattern in sig.steps:
        if not pattern.args:
            continue
        bare = replace(pattern, args=())
        for s in traj.steps:
            if "arguments" in s.not_recorded and bare.holds(s):
                return s
    return None


class RemoteScan:
    def __init__(self, store: Any, pushdown: Pushdown, *, slices: int = SLICES,
                 rate_per_minute: int = DEFAULT_RATE_PER_MINUTE):
        self.store = store
        self.pushdown = pushdown
        self.slices = slices
        self.pacer = Pacer(rate_per_minute)
        self.stats = ScanStats(engine=f"{store.kind} (server-side filters)")

    async def scan_slice(self, sig: Signature, win: Window, found: dict[str, datetime],
                         gaps: list[Gap], on_page: Callable[[Window, datetime], None]) -> None:
        filters = self.pushdown.scan_filters(sig.last)
        oldest = win.end  # pages come newest first: [oldest, end) is covered so far
        pages = self.store.iter_observations(filters=filters, start=win.start, end=win.end)
        try:
            async for rows in paced(pages, self.pacer):
                self.stats.pages += 1
                for row in rows:
                    self.stats.rows_scanned += 1
                    t = parse_time(row.get("startTime"))
                    if t is None or not win.start <= t < win.end:
                        continue
                    oldest = min(oldest, t)
                    if row.get("traceId") and _candidate(sig.last, _row_step(row)):
                        tid = str(row["traceId"])
                        found[tid] = min(found.get(tid, t), t)
                on_page(win, oldest)
        except TraceStoreError as exc:
            gaps.append(Gap(win.start, oldest, str(exc)))

    async def run(self, sig: Signature, window: Window, hook: Any = None) -> BlastResult:
        started = time.monotonic()
        result = BlastResult(signature=sig, window=window, store=f"{self.store.kind}:{self.store.target}",
                             hits=[], stats=self.stats, as_of=datetime.now(timezone.utc))
        found: dict[str, datetime] = {}
        gaps: list[Gap] = []
        covered: dict[Window, float] = {}
        span = max((window.end - window.start).total_seconds(), 1e-9)

        def on_page(win: Window, oldest: datetime) -> None:
            covered[win] = (win.end - oldest).total_seconds()
            if hook:
                low = min((w.end - timedelta_s(c) for w, c in covered.items()), default=window.end)
                hook({"fraction": 0.8 * sum(covered.values()) / span, "pages": self.stats.pages,
                      "hits": len(found), "covered_to": low})

        try:
            await asyncio.gather(*(self.scan_slice(sig, w, found, gaps, on_page)
                                   for w in window.split(self.slices)))
            self.stats.candidates = len(found)
            await self._fetch_hits(sig, window, found, result, hook)
        finally:
            self.stats.requests = getattr(self.store, "requests_made", 0)
            await self.store.aclose()
        result.gaps = sorted(gaps + result.gaps, key=lambda g: g.start)
        if result.args_not_recorded:
            n = len(result.args_not_recorded)
            result.warnings.append(
                f"the count is a lower bound: {n} more trajector{'y' if n == 1 else 'ies'} called "
                f"{sig.last.tool or 'the tool'} with arguments the tracer did not record (redacted), "
                "so the argument conditions could not be checked there")
        result.hits.sort(key=lambda h: (h.hit_at or window.start, h.trace_id))
        self.stats.seconds = time.monotonic() - started
        if self.pacer.waited:
            result.warnings.append(f"paced under the rate limit: waited {self.pacer.waited:.1f} s in total")
        return result

    async def _fetch_hits(self, sig: Signature, window: Window, found: dict[str, datetime],
                          result: BlastResult, hook: Any) -> None:
        ids = sorted(found)
        size = self.pushdown.batch
        batches = [ids[i:i + size] for i in range(0, len(ids), size)]
        done = 0

        async def batch(tids: list[str]) -> None:
            nonlocal done
            try:
                trajectories = await self.pushdown.trajectories(self.store, tids, self.pacer)
            except (TraceStoreError, TraceNotFound) as exc:
                for t in tids:
                    result.gaps.append(Gap(found[t], found[t], f"trajectory {t} could not be read: {exc}"))
                return
            for traj in trajectories:
                self._add_hit(sig, window, traj, result)
            done += len(tids)
            if hook:
                hook({"fraction": 0.8 + 0.2 * done / max(1, len(ids)), "pages": self.stats.pages,
                      "hits": len(result.hits), "covered_to": window.end})

        await asyncio.gather(*(batch(b) for b in batches))

    @staticmethod
    def _add_hit(sig: Signature, window: Window, traj: Trajectory, result: BlastResult) -> None:
        step = sig.match_step(traj, (window.start, window.end))
        if step is not None:
            result.hits.append(Hit(traj.trace_id, traj.user_id, traj.start, traj.status, step.index,
                                   step.name, step.input, step.start))
        elif args_not_recorded(sig, traj) is not None:
            result.args_not_recorded.append(traj.trace_id)


def timedelta_s(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


def scan(store: Any, pushdown: Pushdown, sig: Signature, window: Window, *, hook: Any = None,
         **kw: Any) -> BlastResult:
    return asyncio.run(RemoteScan(store, pushdown, **kw).run(sig, window, hook))


__all__ = ["RemoteScan", "Pacer", "scan", "iso"]
