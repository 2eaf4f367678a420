"""Blast over Langfuse (v4 `GET /api/public/v2/observations`), the signature pushed to the server.

- Phase 1 (the scan): only observations that can be the matching step: `type=TOOL&name=...`,
  `level`, the window as `fromStartTime`/`toStartTime`, and the same conditions again as the JSON
  `filter` (which takes precedence on the server) with `input matches` literals for argument
  values. Rows that come back are re-checked exactly in Python; the server filter only prunes.
  The window is split into slices paged concurrently (cursor pages, newest first).
- Phase 2: the full trajectories of the candidates, 50 trace ids a request (`traceId any of`), to check the sequence, the
  trajectory-wide conditions and the status. Memory grows with the hits, not with the window.
- Pacing: at most `rate_per_minute` requests in any 60 s (Langfuse Cloud: 1000/min on v2
  observations): the scan slows down rather than fails. 429/5xx: bounded retries honouring
  Retry-After (agentfire._http). A slice whose retries run out becomes a named gap in the result.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from datetime import datetime, timezone
from typing import Any, Callable

from agentfire.blast.result import BlastResult, Gap, Hit, ScanStats
from agentfire.blast.signature import Signature, StepPattern, glob_regex, is_glob
from agentfire.blast.window import Window
from agentfire.trajectory import _step, from_observations, iso, parse_time

PATH = "/api/public/v2/observations"
PAGE_LIMIT = 1000
SCAN_FIELDS = "core,basic,io"
TRACE_FIELDS = "core,basic,io,metadata,model,usage"
HIT_BATCH = 50  # trace ids per trajectory request (a JSON filter `traceId any of`)


class Pacer:
    """At most `rate` requests in any sliding `per` seconds; waits instead of failing."""

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


def _json_safe_literal(value: str) -> bool:
    """A value that appears verbatim inside the raw JSON text of the input (nothing escaped)."""
    return bool(value) and all(32 <= ord(c) < 127 and c not in '"\\' for c in value)


def server_filters(step: StepPattern, window: Window, environment: str | None) -> tuple[dict[str, str], list[dict]]:
    """Query parameters and the equivalent JSON filter for the matching step."""
    params: dict[str, str] = {"fromStartTime": iso(window.start) or "", "toStartTime": iso(window.end) or ""}
    flt: list[dict[str, Any]] = [
        {"type": "datetime", "column": "startTime", "operator": ">=", "value": params["fromStartTime"]},
        {"type": "datetime", "column": "startTime", "operator": "<", "value": params["toStartTime"]},
    ]
    if step.tool is not None:
        params["type"] = "TOOL"
        flt.append({"type": "string", "column": "type", "operator": "=", "value": "TOOL"})
        if not is_glob(step.tool):
            params["name"] = step.tool
            flt.append({"type": "string", "column": "name", "operator": "=", "value": step.tool})
        else:
            prefix = step.tool.split("*")[0].split("?")[0].split("[")[0]
            if prefix:
                flt.append({"type": "string", "column": "name", "operator": "starts with", "value": prefix})
    if step.level is not None:
        params["level"] = step.level.upper()
        flt.append({"type": "string", "column": "level", "operator": "=", "value": step.level.upper()})
    if environment:
        params["environment"] = environment
        flt.append({"type": "stringOptions", "column": "environment", "operator": "any of", "value": [environment]})
    for a in step.args:
        # `matches` on input is a case-insensitive literal search: a sound pre-filter for
        # = and ~ whose value is written unescaped in the JSON text
        if a.op in ("=", "~") and _json_safe_literal(a.value or ""):
            flt.append({"type": "string", "column": "input", "operator": "matches", "value": a.value})
    return params, flt


class LangfuseScan:
    def __init__(self, base_url: str, auth: tuple[str, str], *, timeout: float = 10.0,
                 concurrency: int = 8, slices: int = 8, rate_per_minute: int = 1000,
                 environment: str | None = None, deadline_s: float = 600.0,
                 client: Any = None, retry: Any = None):
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.concurrency = concurrency
        self.slices = slices
        self.pacer = Pacer(rate_per_minute)
        self.environment = environment
        self.deadline = time.monotonic() + deadline_s
        self._client = client
        self.retry = retry
        self.stats = ScanStats(engine="langfuse v2 observations")
        self.sem = asyncio.Semaphore(concurrency)

    async def _get(self, params: dict[str, str]) -> dict[str, Any]:
        from agentfire import _http

        await self.pacer.acquire()
        async with self.sem:
            self.stats.requests += 1
            kwargs: dict[str, Any] = {"params": params}
            if self.retry is not None:
                kwargs["policy"] = self.retry
            resp = await _http.request(self._client, "GET", self.base_url + PATH,
                                       deadline=self.deadline, **kwargs)
        if resp.status_code != 200:
            raise ScanFailed(f"HTTP {resp.status_code} from {PATH}: {resp.text[:200]}", resp.status_code)
        return resp.json()

    async def _pages(self, params: dict[str, str]):  # type: ignore[no-untyped-def]
        cursor = None
        while True:
            p = dict(params, limit=str(PAGE_LIMIT))
            if cursor:
                p["cursor"] = cursor
            doc = await self._get(p)
            self.stats.pages += 1
            yield doc.get("data") or []
            cursor = (doc.get("meta") or {}).get("cursor")
            if not cursor:
                return

    async def scan_slice(self, sig: Signature, win: Window, found: dict[str, str],
                         gaps: list[Gap], on_page: Callable[[Window, datetime], None]) -> None:
        params, flt = server_filters(sig.last, win, self.environment)
        params = dict(params, fields=SCAN_FIELDS, filter=json.dumps(flt, separators=(",", ":")))
        oldest = win.end  # newest-first pages: [oldest, end) is covered so far
        try:
            async for rows in self._pages(params):
                for row in rows:
                    self.stats.rows_scanned += 1
                    t = parse_time(row.get("startTime"))
                    if t is not None and t < oldest:
                        oldest = max(t, win.start)
                    if t is None or not win.start <= t < win.end:
                        continue
                    if sig.last.holds(_step(str(row.get("id")), row)) and row.get("traceId"):
                        found.setdefault(row["traceId"], iso(t) or "")
                on_page(win, oldest)
        except (ScanFailed, *_transport_errors()) as exc:
            gaps.append(Gap(win.start, oldest, _reason(exc)))

    async def trajectory_rows(self, trace_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        params = {"traceId": trace_id, "fields": TRACE_FIELDS}
        async for page in self._pages(params):
            rows.extend(page)
        return rows

    async def run(self, sig: Signature, window: Window, hook: Any = None) -> BlastResult:
        import httpx

        started = time.monotonic()
        own = self._client is None
        if own:
            self._client = httpx.AsyncClient(auth=self.auth, timeout=self.timeout)
        result = BlastResult(signature=sig, window=window, store=f"langfuse:{self.base_url}", hits=[],
                             stats=self.stats, as_of=datetime.now(timezone.utc))
        found: dict[str, str] = {}
        gaps: list[Gap] = []
        covered: dict[Window, float] = {}
        span = (window.end - window.start).total_seconds()

        def on_page(win: Window, oldest: datetime) -> None:
            covered[win] = (win.end - oldest).total_seconds()
            if hook:
                hook({"fraction": 0.8 * sum(covered.values()) / span, "pages": self.stats.pages,
                      "hits": len(found), "covered_to": None})

        try:
            slices = window.split(self.slices)
            await asyncio.gather(*(self.scan_slice(sig, w, found, gaps, on_page) for w in slices))
            self.stats.candidates = len(found)
            await self._fetch_hits(sig, window, found, result, hook)
        finally:
            if own:
                await self._client.aclose()
        result.gaps = sorted(gaps + result.gaps, key=lambda g: g.start)
        result.hits.sort(key=lambda h: (h.hit_at or window.start, h.trace_id))
        self.stats.seconds = time.monotonic() - started
        if self.pacer.waited:
            result.warnings.append(f"paced under the rate limit: waited {self.pacer.waited:.1f} s in total")
        return result

    async def _fetch_hits(self, sig: Signature, window: Window, found: dict[str, str],
                          result: BlastResult, hook: Any) -> None:
        """Whole trajectories of the candidates, HIT_BATCH trace ids per paged request
        (JSON filter `traceId any of`); a server that refuses that filter gets one trace a request."""
        ids = sorted(found)
        batches = [ids[i:i + HIT_BATCH] for i in range(0, len(ids), HIT_BATCH)]
        done = 0

        async def batch(tids: list[str]) -> None:
            nonlocal done
            by_trace: dict[str, list[dict[str, Any]]] = {t: [] for t in tids}
            try:
                try:
                    flt = [{"type": "stringOptions", "column": "traceId", "operator": "any of", "value": tids}]
                    async for page in self._pages({"filter": json.dumps(flt, separators=(",", ":")),
                                                   "fields": TRACE_FIELDS}):
                        for row in page:
                            if row.get("traceId") in by_trace:
                                by_trace[row["traceId"]].append(row)
                except ScanFailed as exc:
                    if exc.status != 400:
                        raise
                    for t in tids:
                        by_trace[t] = await self.trajectory_rows(t)
            except (ScanFailed, *_transport_errors()) as exc:
                for t in tids:
                    at = parse_time(found[t]) or window.start
                    result.gaps.append(Gap(at, at, f"trajectory {t} could not be read: {_reason(exc)}"))
                return
            for tid, rows in by_trace.items():
                traj = from_observations(tid, [_normalise(r) for r in rows], as_of=result.as_of,
                                         source=result.store)
                step = sig.match_step(traj, (window.start, window.end))
                if step is not None:
                    result.hits.append(Hit(tid, traj.user_id, traj.start, traj.status, step.index,
                                           step.name, step.input, step.start))
            done += len(tids)
            if hook:
                hook({"fraction": 0.8 + 0.2 * done / max(1, len(ids)), "pages": self.stats.pages,
                      "hits": len(result.hits), "covered_to": window.end})

        await asyncio.gather(*(batch(b) for b in batches))


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    # the v2 `model` field group calls the model providedModelName
    if row.get("model") is None and row.get("providedModelName") is not None:
        return dict(row, model=row["providedModelName"])
    return row


class ScanFailed(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    from agentfire._http import RetriesExhausted

    return (httpx.TransportError, RetriesExhausted, asyncio.TimeoutError)


def _reason(exc: BaseException) -> str:
    from agentfire._http import RetriesExhausted

    if isinstance(exc, RetriesExhausted):
        return f"Langfuse answered HTTP {exc.response.status_code} after {exc.tries} tries"
    if isinstance(exc, asyncio.TimeoutError):
        return "the scan deadline passed"
    return f"{type(exc).__name__}: {exc}"


def from_config(section: Any, runbook: Any, **kw: Any) -> LangfuseScan:
    import os

    from agentfire.errors import ConfigError
    from agentfire.secrets import secret

    base = section.base_url or os.environ.get(section.base_url_env) or os.environ.get("LANGFUSE_HOST")
    if not base:
        raise ConfigError(f"traces.base_url is not set and ${section.base_url_env} is empty (the Langfuse URL)")
    auth = (secret(section.public_key_env, what="Langfuse public key"),
            secret(section.secret_key_env, what="Langfuse secret key"))
    return LangfuseScan(base, auth, timeout=section.timeout_seconds, environment=section.environment, **kw)


def scan(section: Any, runbook: Any, sig: Signature, window: Window, *, hook: Any = None, **kw: Any) -> BlastResult:
    return asyncio.run(from_config(section, runbook, **kw).run(sig, window, hook))


__all__ = ["LangfuseScan", "Pacer", "server_filters", "scan", "from_config", "glob_regex"]
