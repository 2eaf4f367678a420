"""Arize Phoenix trace store: REST GET /v1/projects/{p}/spans, OpenInference attributes.

Each span is mapped into the observation-row shape of the `files` store (`span_to_row`), so the
one parser (agentfire.trajectory.from_observations) builds the Trajectory and derives status the
same way everywhere: Phoenix only stores ended spans, so a running trajectory shows finished
children and no root span yet.

Mapping (OpenInference): openinference.span.kind TOOL/LLM/AGENT/CHAIN -> tool/model/agent/other;
`tool.name`; tool arguments from `tool.parameters` (a JSON string), else `input.value`, else the
flattened `tool.parameters.*` keys Phoenix makes out of it; `input.value` / `output.value`;
`user.id`, `session.id`; `llm.token_count.prompt|completion|total`; `llm.model_name`;
`llm.cost.total`; status ERROR -> level ERROR with the status message; `metadata` (JSON string or
flattened `metadata.*`). Spans exported by agentfire._otlp also carry the original trace and
observation ids (`agentfire.trace_id`, `agentfire.observation_id`), used when present.

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
from agentfire.providers.traces import TraceNotFound, TraceStoreError, TrajectorySummary, bounded_get
from agentfire.trajectory import Trajectory, from_observations, iso, parse_time

if TYPE_CHECKING:
    import httpx

PAGE_LIMIT = 1000  # the API's maximum
ID_CHUNK = 50  # trace ids per request (repeatable trace_id)
SPAN_KIND_TO_TYPE = {
    "TOOL": "TOOL", "LLM": "GENERATION", "AGENT": "AGENT", "CHAIN": "CHAIN",
    "RETRIEVER": "RETRIEVER", "EMBEDDING": "EMBEDDING", "EVALUATOR": "EVALUATOR",
    "GUARDRAIL": "GUARDRAIL",
}
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
                                 source=f"phoenix:{self.target}")

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
            t = from_observations(tid, rows, as_of=as_of)
            if t.start is not None and start <= t.start < end:
                out.append(TrajectorySummary(tid, t.user_id, t.start, t.status, t.cost_usd))
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


# --- span -> observation row ---------------------------------------------------------------


def _flatten(attrs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested attribute dicts (some Phoenix versions) -> dotted keys, as the REST API sends them."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _unflatten(flat: dict[str, Any], prefix: str) -> Any:
    """The dotted keys under `prefix.` rebuilt into a nested value (digit keys become lists)."""
    root: dict[str, Any] = {}
    for k, v in flat.items():
        if not k.startswith(prefix + "."):
            continue
        parts = k[len(prefix) + 1:].split(".")
        node = root
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = v
    return _lists(root) if root else None


def _lists(v: Any) -> Any:
    if isinstance(v, dict):
        v = {k: _lists(x) for k, x in v.items()}
        if v and all(k.isdigit() for k in v):
            return [v[k] for k in sorted(v, key=int)]
    return v


def _as_json_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def span_to_row(span: dict[str, Any]) -> dict[str, Any]:
    """One Phoenix REST span as an observation row of the `files` store format."""
    attrs = _flatten(span.get("attributes") or {})
    ctx = span.get("context") or {}
    kind = str(span.get("span_kind") or attrs.get("openinference.span.kind") or "").upper()
    typ = attrs.get("agentfire.observation_type") or SPAN_KIND_TO_TYPE.get(kind, "SPAN")
    inp = attrs.get("input.value")
    if typ == "TOOL":
        params = attrs.get("tool.parameters")
        if params is not None:
            inp = _as_json_text(params)
        elif inp is None:
            inp = _as_json_text(_unflatten(attrs, "tool.parameters"))
    usage = {k: n for k, n in (("input", _int(attrs.get("llm.token_count.prompt"))),
                                ("output", _int(attrs.get("llm.token_count.completion"))),
                                ("total", _int(attrs.get("llm.token_count.total")))) if n is not None}
    metadata = attrs.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = {"metadata": metadata}
    if metadata is None:
        metadata = _unflatten(attrs, "metadata")
    status = str(span.get("status_code") or "").upper()
    level = "ERROR" if status == "ERROR" else str(attrs.get("agentfire.level") or "DEFAULT")
    message = span.get("status_message") or attrs.get("agentfire.status_message") or None
    cost = attrs.get("llm.cost.total")
    tags = attrs.get("tag.tags")
    return {
        "id": str(attrs.get("agentfire.observation_id") or ctx.get("span_id") or span.get("id")),
        "traceId": str(attrs.get("agentfire.trace_id") or ctx.get("trace_id") or ""),
        "spanId": ctx.get("span_id"),
        "parentObservationId": span.get("parent_id"),
        "isRootObservation": span.get("parent_id") is None,
        "type": typ, "name": span.get("name") or attrs.get("tool.name"),
        "startTime": span.get("start_time"), "endTime": span.get("end_time"),
        "input": _as_json_text(inp), "output": _as_json_text(attrs.get("output.value")),
        "userId": attrs.get("user.id"), "sessionId": attrs.get("session.id"),
        "model": attrs.get("llm.model_name"), "usageDetails": usage or None,
        "totalCost": float(cost) if isinstance(cost, (int, float)) else None,
        "level": level, "statusMessage": message,
        "metadata": metadata if isinstance(metadata, dict) else {},
        "tags": list(tags) if isinstance(tags, list) else None,
    }


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
    return PhoenixTraceStore(section.url, section.project, api_key=api_key,
                             timeout_s=section.timeout_seconds)
