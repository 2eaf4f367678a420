"""Arize Phoenix trace store: REST GET /v1/projects/{p}/spans, OpenInference attributes.

Each span is mapped into the observation-row shape of the `files` store (`span_to_row`), so the
one parser (agentfire.trajectory.from_observations) builds the Trajectory and derives status the
same way everywhere: Phoenix only stores ended spans, so a running trajectory shows finished
children and no root span yet.

Mapping: agentfire.providers.traces._conventions.span_to_row reads OpenInference and the OTel
GenAI conventions (tool names from `tool.name` / `gen_ai.tool.name`, arguments from `input.value`
or `gen_ai.tool.call.arguments`, never the `tool.parameters` schema; model turns from
`llm.output_messages.*` / `gen_ai.output.messages`; users, tokens, cost, errors). Spans exported by
agentfire._otlp also carry the original trace and observation ids (`agentfire.trace_id`,
`agentfire.observation_id`), used when present.

Trace ids: Phoenix keys traces by 32-hex OpenTelemetry ids; any other id is looked up by the same
hash agentfire._otlp exports it under.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable
from urllib.parse import quote

from agentfire import _http
from agentfire._otlp import otel_trace_id
from agentfire.config import PhoenixTraces
from agentfire.providers.traces import TraceNotFound, TraceStoreError, TrajectorySummary, _conventions, bounded_get
from agentfire.trajectory import Trajectory, from_observations, iso, parse_time

if TYPE_CHECKING:
    import httpx

PAGE_LIMIT = 1000  # the API's maximum
ID_CHUNK = 50  # trace ids per request (repeatable trace_id)
SPAN_FILTERS = ("trace_id", "span_id", "name", "span_kind", "status_code", "attribute", "parent_id")


class PhoenixTraceStore:
    kind = "phoenix"

    def __init__(self, url: str, project: str, *, api_key: str | None = None,
                 timeout_s: float = 10.0, policy: _http.RetryPolicy | None = None):
        self.base = url.rstrip("/")
        self.project = project
        self.target = f"{self.base} project {project}"
        self.timeout_s = timeout_s
        self.policy = policy or _http.RetryPolicy(max_retries=6, cap_seconds=30.0)
        self.requests_made = 0
        self.prices: dict[str, Any] = {}  # runbook.yaml prices: (Phoenix computes no cost by itself)
        self._api_key = api_key
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        # a client belongs to one event loop: a store reused across asyncio.run() calls gets a new one
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            import httpx

            self._client_loop = loop

            headers = {"Accept": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = httpx.AsyncClient(base_url=self.base, headers=headers,
                                             timeout=httpx.Timeout(self.timeout_s),
                                             event_hooks={"request": [self._count]})
        return self._client

    async def _count(self, _request: Any) -> None:
        self.requests_made += 1

    async def _get(self, path: str, params: list[tuple[str, Any]]) -> Any:
        """GET -> parsed JSON; None on 404; TraceStoreError on anything else that is not 200."""
        where = f"Phoenix at {self.base}"
        r = await bounded_get(self._http(), path, params, where=where, policy=self.policy,
                              timeout_s=self.timeout_s)
        if r.status_code == 404:
            return None
        if r.status_code in (401, 403):
            raise TraceStoreError(f"{where}: authentication refused (HTTP {r.status_code}); check the API key")
        if r.status_code != 200:
            raise TraceStoreError(f"{where}: {path}: HTTP {r.status_code}: {r.text[:200]}")
        try:
            return r.json()
        except ValueError:
            raise TraceStoreError(f"{where}: {path} answered HTTP 200 with a body that is not JSON") from None

    @property
    def _spans_path(self) -> str:
        return f"/v1/projects/{quote(self.project, safe='')}/spans"

    async def iter_spans(self, *, filters: dict[str, Any] | None = None, start: datetime | None = None,
                         end: datetime | None = None, limit: int = PAGE_LIMIT) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of raw Phoenix spans. `filters`: trace_id, span_id, name, span_kind, status_code,
        attribute ("key:value"; lists allowed, repeated), parent_id ("null" for roots).
        A project that does not exist yet (no spans) yields nothing."""
        filters = dict(filters or {})
        unknown = set(filters) - set(SPAN_FILTERS)
        if unknown:
            raise ValueError(f"unknown Phoenix span filter(s): {', '.join(sorted(unknown))}")
        params: list[tuple[str, Any]] = [("limit", min(limit, PAGE_LIMIT))]
        for key, value in filters.items():
            for v in (value if isinstance(value, (list, tuple, set)) else [value]):
                params.append((key, v))
        if start is not None:
            params.append(("start_time", iso(start)))
        if end is not None:
            params.append(("end_time", iso(end)))
        cursor: str | None = None
        while True:
            body = await self._get(self._spans_path, params + ([("cursor", cursor)] if cursor else []))
            if body is None:
                return
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise TraceStoreError(f"Phoenix at {self.base}: spans answered without data[]")
            data = [s for s in body["data"] if isinstance(s, dict)]
            if data:
                yield data
            cursor = body.get("next_cursor")
            if not cursor:
                return

    async def iter_observations(self, *, filters: dict[str, Any] | None = None, start: datetime | None = None,
                                end: datetime | None = None, limit: int = PAGE_LIMIT) -> AsyncIterator[list[dict[str, Any]]]:
        """Like iter_spans, mapped into observation rows (span_to_row). Parent ids stay span ids."""
        async for page in self.iter_spans(filters=filters, start=start, end=end, limit=limit):
            yield [span_to_row(s) for s in page]

    async def get_trajectory(self, trace_id: str) -> Trajectory:
        otel = otel_trace_id(trace_id)
        spans: list[dict[str, Any]] = []
        async for page in self.iter_spans(filters={"trace_id": otel}):
            spans.extend(page)
        if not spans:
            raise TraceNotFound(f"trace {trace_id!r} not found in Phoenix at {self.target}")
        rows = _link_parents(spans)
        return from_observations(trace_id, rows, as_of=datetime.now(timezone.utc),
                                 source=f"phoenix:{self.target}", prices=self.prices)

    async def list_trajectories(self, start: datetime, end: datetime) -> list[TrajectorySummary]:
        """Trajectories that started in [start, end): one scan of the window's spans, then every
        span of the trajectories still open at `end` (no root seen, or a root ending after it)."""
        spans_by_trace: dict[str, list[dict[str, Any]]] = {}
        async for page in self.iter_spans(start=start, end=end):
            for s in page:
                spans_by_trace.setdefault(_otel_id(s), []).append(s)
        open_ids = [tid for tid, spans in spans_by_trace.items() if _open_at(spans, end)]
        for i in range(0, len(open_ids), ID_CHUNK):
            chunk = open_ids[i: i + ID_CHUNK]
            for tid in chunk:
                spans_by_trace[tid] = []
            async for page in self.iter_spans(filters={"trace_id": chunk}):
                for s in page:
                    spans_by_trace[_otel_id(s)].append(s)
        as_of = datetime.now(timezone.utc)
        out = []
        for spans in spans_by_trace.values():
            rows = _link_parents(spans)
            tid = next((str(r["traceId"]) for r in rows if r.get("traceId")), _otel_id(spans[0]))
            t = from_observations(tid, rows, as_of=as_of, prices=self.prices)
            if t.start is not None and start <= t.start < end:
                out.append(TrajectorySummary(tid, t.user_id, t.start, t.status, t.cost_usd, t.cost_known))
        out.sort(key=lambda s: (s.start, s.trace_id))
        return out

    async def probe(self) -> str:
        body = await self._get(f"/v1/projects/{quote(self.project, safe='')}", [])
        if body is None:
            raise TraceStoreError(f"Phoenix at {self.base}: project {self.project!r} does not exist "
                                  "(it appears with its first span)")
        return f"{self.target}: reachable"

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None


# --- span -> observation row: agentfire.providers.traces._conventions (one place for every store)

span_to_row = _conventions.span_to_row


def _otel_id(span: dict[str, Any]) -> str:
    return str((span.get("context") or {}).get("trace_id") or "")


def _link_parents(spans: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with parentObservationId naming the parent's observation id (not its span id)."""
    rows = [span_to_row(s) for s in spans]
    by_span = {r["spanId"]: r["id"] for r in rows if r.get("spanId")}
    for r in rows:
        if r["parentObservationId"] in by_span:
            r["parentObservationId"] = by_span[r["parentObservationId"]]
    return rows


def _open_at(spans: Iterable[dict[str, Any]], end: datetime) -> bool:
    roots = [s for s in spans if s.get("parent_id") is None]
    if not roots:
        return True
    return any((parse_time(s.get("end_time")) or end) > end for s in roots) or any(
        parse_time(s.get("end_time")) is None for s in roots)


def from_config(section: PhoenixTraces, runbook: Any) -> PhoenixTraceStore:
    from agentfire.secrets import secret

    api_key = secret(section.api_key_env, what="Phoenix API key") if section.api_key_env else None
    store = PhoenixTraceStore(section.url, section.project, api_key=api_key,
                              timeout_s=section.timeout_seconds)
    store.prices = dict(getattr(getattr(runbook, "model", None), "prices", None) or {})
    return store
