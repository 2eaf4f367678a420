"""Langfuse trace store: the v4 observations API, with a fallback to the legacy v3 reads.

v4 (PROVIDERS.md): GET /api/public/v2/observations, cursor pages (limit <= 1000, newest first,
`meta.cursor` absent on the last page), `fields` groups, server-side filters. Rows come back in
the same camelCase shape as the local `files` store, so both go through the one parser
(agentfire.trajectory.from_observations).

v3: a 404 from /v2/observations that mentions "v4 write mode" means the server is v3; the store
then reads GET /api/public/traces/{id} (with observations[]), GET /api/public/traces and
GET /api/public/observations, and maps legacy rows into the v2 row shape (input/output re-encoded
as JSON strings, trace user/session copied onto each row).

HTTP Basic auth (public key : secret key) from the environment; plain httpx, imported lazily;
every request goes through agentfire._http (429 Retry-After honoured, 5xx retried a bounded number
of times). `requests_made` counts every HTTP request sent, retries included.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable

from agentfire import _http
from agentfire.config import LangfuseTraces
from agentfire.providers.traces import TraceNotFound, TraceStoreError, TrajectorySummary, bounded_get
from agentfire.secrets import secret
from agentfire.trajectory import Trajectory, from_observations, iso

if TYPE_CHECKING:
    import httpx

V2_OBSERVATIONS = "/api/public/v2/observations"
OTLP_TRACES = "/api/public/otel/v1/traces"  # the ingestion path (OTLP/HTTP, protobuf)
# everything triage shows for one trajectory
TRAJECTORY_FIELDS = "core,basic,time,io,metadata,model,usage,metrics,trace_context"
# what a window summary needs (user, root, times, cost)
SUMMARY_FIELDS = "core,basic,usage"
PAGE_LIMIT = 1000  # the API's maximum
LEGACY_TRACE_PAGE = 100  # /api/public/traces maximum
LEGACY_OBS_PAGE = 1000
OPEN_TRACE_CONCURRENCY = 8

# query-parameter filters of /v2/observations and the JSON filter condition each becomes
# (a JSON `filter` takes precedence over the query filters, so when one is present they all move
# into it)
_STRING_FILTERS = ("traceId", "type", "name", "userId", "sessionId", "level", "version")


class _V3Server(Exception):
    """/v2/observations answered 404 'not in v4 write mode': read the legacy endpoints."""


class LangfuseTraceStore:
    kind = "langfuse"

    def __init__(
        self, base_url: str, public_key: str, secret_key: str, *, environment: str | None = None,
        timeout_s: float = 10.0, policy: _http.RetryPolicy | None = None,
        requests_per_minute: int | None = None,
    ):
        base = base_url.rstrip("/")
        if base.endswith("/api/public"):
            base = base[: -len("/api/public")]
        self.base = base
        self.target = _without_userinfo(base)  # for messages: never a credential
        self.environment = environment
        self.timeout_s = timeout_s
        # a rate-limited scan waits for the server rather than failing fast
        self.policy = policy or _http.RetryPolicy(max_retries=6, cap_seconds=30.0)
        self.min_interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.requests_made = 0
        self.prices: dict[str, Any] = {}  # runbook.yaml prices: for generations Langfuse left unpriced
        self.api_version: str | None = None  # "v4" or "v3" once known
        self._auth = (public_key, secret_key)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._pace_lock: asyncio.Lock | None = None
        self._next_slot = 0.0

    # --- HTTP -----------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        # a client belongs to one event loop: a store reused across asyncio.run() calls gets a new one
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            import httpx

            self._client_loop = loop
            self._pace_lock = None
            self._client = httpx.AsyncClient(
                base_url=self.base, auth=httpx.BasicAuth(*self._auth),
                timeout=httpx.Timeout(self.timeout_s), headers={"Accept": "application/json"},
                event_hooks={"request": [self._on_request]},
            )
        return self._client

    async def _on_request(self, _request: Any) -> None:
        # every attempt (retries too) is counted and paced
        if self.min_interval:
            if self._pace_lock is None:
                self._pace_lock = asyncio.Lock()
            async with self._pace_lock:
                now = time.monotonic()
                if self._next_slot > now:
                    await asyncio.sleep(self._next_slot - now)
                self._next_slot = max(now, self._next_slot) + self.min_interval
        self.requests_made += 1

    async def _get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        """GET -> parsed JSON. 404 -> None; v3 marker -> _V3Server; else TraceStoreError."""
        where = f"Langfuse at {self.target}"
        r = await bounded_get(self._http(), path, params, where=where, policy=self.policy,
                              timeout_s=self.timeout_s, detail=_detail)
        if r.status_code == 404:
            if path == V2_OBSERVATIONS and "v4 write mode" in r.text:
                raise _V3Server()
            if path == V2_OBSERVATIONS:
                raise TraceStoreError(f"{where}: {path}: {_detail(r)} (is the base URL right?)")
            return None
        if r.status_code in (401, 403):
            raise TraceStoreError(
                f"{where}: authentication refused ({_detail(r)}); check the public/secret key "
                f"environment variables and the base URL"
            )
        if r.status_code != 200:
            raise TraceStoreError(f"{where}: {path}: {_detail(r)}")
        try:
            return r.json()
        except ValueError:
            raise TraceStoreError(f"{where}: {path} answered HTTP 200 with a body that is not JSON") from None

    # --- v4 observation pages ---------------------------------------------------------------

    def _v2_params(self, filters: dict[str, Any], fields: str, start: datetime | None,
                   end: datetime | None, limit: int) -> dict[str, Any]:
        filters = dict(filters or {})
        conditions = list(filters.pop("filter", None) or [])
        unknown = set(filters) - {*_STRING_FILTERS, "isRootObservation", "parentObservationId", "environment"}
        if unknown:
            raise ValueError(f"unknown Langfuse observation filter(s): {', '.join(sorted(unknown))}")
        env = filters.pop("environment", None) or self.environment
        params: dict[str, Any] = {"limit": limit, "fields": fields}
        if not conditions:
            params.update({k: _qv(v) for k, v in filters.items() if v is not None})
            if env:
                params["environment"] = env
            if start is not None:
                params["fromStartTime"] = iso(start)
            if end is not None:
                params["toStartTime"] = iso(end)
            return params
        # the JSON filter takes precedence over query filters: express them all inside it
        for k in _STRING_FILTERS:
            if filters.get(k) is not None:
                conditions.append({"type": "string", "column": k, "operator": "=", "value": filters[k]})
        if filters.get("isRootObservation") is not None:
            conditions.append({"type": "boolean", "column": "isRootObservation", "operator": "=",
                               "value": bool(filters["isRootObservation"])})
        if filters.get("parentObservationId") is not None:
            raise ValueError("parentObservationId cannot be combined with a JSON filter")
        if env:
            conditions.append({"type": "stringOptions", "column": "environment", "operator": "any of",
                               "value": [env] if isinstance(env, str) else list(env)})
        if start is not None:
            conditions.append({"type": "datetime", "column": "startTime", "operator": ">=", "value": iso(start)})
        if end is not None:
            conditions.append({"type": "datetime", "column": "startTime", "operator": "<", "value": iso(end)})
        params["filter"] = json.dumps(conditions)
        return params

    async def iter_observations(
        self, *, filters: dict[str, Any] | None = None, fields: str = TRAJECTORY_FIELDS,
        start: datetime | None = None, end: datetime | None = None, limit: int = PAGE_LIMIT,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of observation rows (v2 row shape) matching `filters`, started in [start, end).

        `filters`: the /v2/observations query filters (traceId, type, name, userId, sessionId,
        level, version, isRootObservation, parentObservationId, environment) and `filter`: a list
        of Langfuse JSON filter conditions. Pages arrive newest first; each is one request.
        On a v3 server the legacy /api/public/observations is paged instead (no userId on rows).
        """
        if self.api_version != "v3":
            try:
                async for page in self._iter_v2(filters or {}, fields, start, end, limit):
                    yield page
                return
            except _V3Server:
                self.api_version = "v3"
        async for page in self._iter_legacy_observations(filters or {}, start, end, min(limit, LEGACY_OBS_PAGE)):
            yield page

    async def _iter_v2(self, filters: dict[str, Any], fields: str, start: datetime | None,
                       end: datetime | None, limit: int) -> AsyncIterator[list[dict[str, Any]]]:
        """/v2/observations pages; raises _V3Server when the first answer says the server is v3."""
        params = self._v2_params(filters, fields, start, end, min(limit, PAGE_LIMIT))
        cursor: str | None = None
        while True:
            try:
                body = await self._get(V2_OBSERVATIONS, dict(params, **({"cursor": cursor} if cursor else {})))
            except _V3Server:
                if cursor is not None:
                    raise TraceStoreError(f"Langfuse at {self.target} switched API versions mid-scan") from None
                raise
            self.api_version = "v4"
            data, cursor = _v2_page(body, self.target)
            if data:
                yield [_normalise_v2(r) for r in data]
            if not cursor:
                return

    async def _iter_legacy_observations(self, filters: dict[str, Any], start: datetime | None,
                                        end: datetime | None, limit: int) -> AsyncIterator[list[dict[str, Any]]]:
        filters = dict(filters)
        conditions = filters.pop("filter", None)
        params: dict[str, Any] = {"limit": limit}
        params.update({k: _qv(v) for k, v in filters.items() if v is not None and k != "isRootObservation"})
        if start is not None:
            params["fromStartTime"] = iso(start)
        if end is not None:
            params["toStartTime"] = iso(end)
        if self.environment:
            params["environment"] = self.environment
        if conditions:
            params["filter"] = json.dumps(conditions)
        page = 1
        while True:
            body = await self._get("/api/public/observations", dict(params, page=page))
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise TraceStoreError(f"Langfuse at {self.target}: /api/public/observations answered without data[]")
            rows = [_legacy_row(o) for o in body["data"] if isinstance(o, dict)]
            want_root = filters.get("isRootObservation")
            if want_root is not None:  # not a legacy query filter: applied here
                rows = [r for r in rows if (not r.get("parentObservationId")) == bool(want_root)]
            if rows:
                yield rows
            meta = body.get("meta") or {}
            if page >= int(meta.get("totalPages") or 0) or not body["data"]:
                return
            page += 1

    # --- one trajectory -----------------------------------------------------------------------

    async def get_trajectory(self, trace_id: str) -> Trajectory:
        rows: list[dict[str, Any]] = []
        if self.api_version != "v3":
            try:
                async for page in self._iter_v2({"traceId": trace_id}, TRAJECTORY_FIELDS, None, None, PAGE_LIMIT):
                    rows.extend(page)
            except _V3Server:
                self.api_version = "v3"
        if self.api_version == "v3":
            return await self._legacy_trajectory(trace_id)
        if not rows:
            raise TraceNotFound(f"trace {trace_id!r} not found in Langfuse at {self.target}")
        return from_observations(trace_id, rows, as_of=datetime.now(timezone.utc),
                                 source=f"langfuse:{self.target}", prices=self.prices)

    async def _legacy_trajectory(self, trace_id: str) -> Trajectory:
        from urllib.parse import quote

        body = await self._get(f"/api/public/traces/{quote(trace_id, safe='')}", {})
        if body is None:
            raise TraceNotFound(f"trace {trace_id!r} not found in Langfuse at {self.target} (v3 API)")
        if not isinstance(body, dict):
            raise TraceStoreError(f"Langfuse at {self.target}: trace {trace_id!r} answered with a non-object")
        rows = [_legacy_row(o, trace=body) for o in body.get("observations") or [] if isinstance(o, dict)]
        traj = from_observations(trace_id, rows, as_of=datetime.now(timezone.utc),
                                 source=f"langfuse:{self.target} (v3 API)", prices=self.prices)
        traj.user_id = traj.user_id or body.get("userId")
        traj.session_id = traj.session_id or body.get("sessionId")
        if not rows:
            traj.problems.append("the trace has no observations")
        return traj

    # --- a window ---------------------------------------------------------------------------

    async def list_trajectories(self, start: datetime, end: datetime) -> list[TrajectorySummary]:
        """Trajectories that started in [start, end): user, start, status, summed totalCost.

        One scan of the window (fields core,basic,usage), then every observation of each
        trajectory still open at `end` (no root seen, or a root without endTime or ending after
        `end`), so costs and statuses are whole.
        """
        by_trace: dict[str, dict[str, dict[str, Any]]] = {}

        def add(rows: Iterable[dict[str, Any]]) -> None:
            for r in rows:
                if r.get("traceId"):
                    by_trace.setdefault(r["traceId"], {})[str(r.get("id"))] = r

        async for page in self.iter_observations(fields=SUMMARY_FIELDS, start=start, end=end):
            add(page)
        users: dict[str, str] = {}
        if self.api_version == "v3":
            users = await self._legacy_users(start, end)
        open_ids = [tid for tid, rows in by_trace.items() if _open_at(rows.values(), end)]
        # one plain traceId query per open trajectory (documented on v4 and v3 alike), a few at once
        gate = asyncio.Semaphore(OPEN_TRACE_CONCURRENCY)

        async def whole(tid: str) -> None:
            async with gate:
                async for page in self.iter_observations(filters={"traceId": tid}, fields=SUMMARY_FIELDS):
                    add(page)

        await asyncio.gather(*(whole(tid) for tid in open_ids))
        as_of = datetime.now(timezone.utc)
        out = []
        for tid, rows in by_trace.items():
            t = from_observations(tid, rows.values(), as_of=as_of, prices=self.prices)
            if t.start is not None and start <= t.start < end:
                out.append(TrajectorySummary(tid, t.user_id or users.get(tid), t.start, t.status, t.cost_usd,
                                              t.cost_known))
        out.sort(key=lambda s: (s.start, s.trace_id))
        return out

    async def _legacy_users(self, start: datetime, end: datetime) -> dict[str, str]:
        """v3 observation rows carry no userId: take it from the trace list of the window."""
        users: dict[str, str] = {}
        page = 1
        while True:
            body = await self._get("/api/public/traces", {
                "page": page, "limit": LEGACY_TRACE_PAGE, "fromTimestamp": iso(start),
                "toTimestamp": iso(end), "fields": "core"})
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise TraceStoreError(f"Langfuse at {self.target}: /api/public/traces answered without data[]")
            users.update({t["id"]: t["userId"] for t in data if isinstance(t, dict) and t.get("userId")})
            if page >= int((body.get("meta") or {}).get("totalPages") or 0) or not data:
                return users
            page += 1

    # --- ingestion (gameday on staging) -----------------------------------------------------------

    def export_otlp(self, rows: list[dict[str, Any]]) -> Any:
        """POST observation rows to the OTLP ingestion endpoint -> agentfire._otlp.ExportResult.

        Span attributes carry the langfuse.* names besides OpenInference's; the environment is the
        one this store reads with (when set), so what is written is what the runbook's reads see.
        `x-langfuse-ingestion-version: 4` asks a v4 server for real-time processing (as the SDK does).
        """
        import base64
        from functools import partial

        import httpx

        from agentfire._otlp import ExportRefused, langfuse_span_attributes, post_otlp

        basic = base64.b64encode(f"{self._auth[0]}:{self._auth[1]}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}", "x-langfuse-ingestion-version": "4"}
        try:
            return post_otlp(self.base + OTLP_TRACES, rows, "agentfire", headers=headers,
                             timeout_s=max(self.timeout_s, 30.0),
                             attributes=partial(langfuse_span_attributes, environment=self.environment))
        except ExportRefused as exc:
            hint = ("; check the public/secret key environment variables and the base URL"
                    if exc.status in (401, 403) else "")
            raise TraceStoreError(f"Langfuse at {self.target}: OTLP ingestion refused: HTTP {exc.status}"
                                  f"{': ' + _message(exc.detail) if _message(exc.detail) else ''}{hint}") from None
        except httpx.HTTPError as exc:
            raise TraceStoreError(f"Langfuse at {self.target}: OTLP ingestion failed: "
                                  f"{type(exc).__name__}: {str(exc)[:200]}") from None

    async def probe(self) -> str:
        async for _page in self.iter_observations(fields="core", limit=1):
            break
        return f"{self.target}: reachable, keys accepted (API {self.api_version or 'v4'})"

    async def aclose(self) -> None:
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None


# --- row mapping --------------------------------------------------------------------------------


def _without_userinfo(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _qv(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def _detail(response: Any) -> str:
    """HTTP status and the server's message, never a header or a credential."""
    try:
        body = response.json()
    except ValueError:
        body = None
    msg = body.get("message") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}" + (f": {str(msg)[:200]}" if msg else "")


def _message(text: str) -> str:
    """The `message` of a JSON error body (never the rest of it)."""
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    return str(body.get("message"))[:200] if isinstance(body, dict) and body.get("message") else ""


def _v2_page(body: Any, target: str) -> tuple[list[dict[str, Any]], str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise TraceStoreError(f"Langfuse at {target}: /v2/observations answered without data[]")
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    return [r for r in body["data"] if isinstance(r, dict)], meta.get("cursor") or None


def _normalise_v2(row: dict[str, Any]) -> dict[str, Any]:
    # the `model` field group names the model providedModelName (the SDK model calls it model)
    if row.get("model") is None and row.get("providedModelName") is not None:
        row = dict(row, model=row["providedModelName"])
    return row


def _encode_io(value: Any) -> Any:
    # v2 rows carry input/output as raw JSON strings; legacy rows carry parsed values
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _legacy_row(o: dict[str, Any], trace: dict[str, Any] | None = None) -> dict[str, Any]:
    """A legacy ObservationsView mapped into the v2 row shape the parser reads."""
    row = {k: v for k, v in o.items() if k not in ("input", "output", "usage")}
    row["input"], row["output"] = _encode_io(o.get("input")), _encode_io(o.get("output"))
    if not row.get("usageDetails") and isinstance(o.get("usage"), dict):
        u = o["usage"]
        # legacy `usage` is all zeros on observations without usage: not a count of zero tokens
        if any(isinstance(u.get(k), int) and u[k] > 0 for k in ("input", "output", "total")):
            row["usageDetails"] = {k: u[k] for k in ("input", "output", "total") if isinstance(u.get(k), int)}
    if row.get("totalCost") is None:
        total = (o.get("costDetails") or {}).get("total") if isinstance(o.get("costDetails"), dict) else None
        row["totalCost"] = total if total is not None else o.get("calculatedTotalCost")
    if trace is not None:
        row.setdefault("userId", trace.get("userId"))
        row.setdefault("sessionId", trace.get("sessionId"))
        row.setdefault("tags", trace.get("tags"))
        row.setdefault("traceName", trace.get("name"))
    return row


def _open_at(rows: Iterable[dict[str, Any]], end: datetime) -> bool:
    """True when the trajectory may have observations after `end`, or its root was not seen."""
    from agentfire.trajectory import parse_time

    roots = [r for r in rows if (r.get("isRootObservation") if r.get("isRootObservation") is not None
                                 else not r.get("parentObservationId"))]
    if not roots:
        return True
    ends = [parse_time(r.get("endTime")) for r in roots]
    return any(e is None or e > end for e in ends)


def from_config(section: LangfuseTraces, runbook: Any) -> LangfuseTraceStore:
    import os

    from agentfire.errors import ConfigError

    base = section.base_url or os.environ.get(section.base_url_env) or os.environ.get("LANGFUSE_HOST")
    if not base:
        raise ConfigError(
            f"Langfuse base URL: set traces.base_url in runbook.yaml, or ${section.base_url_env} "
            "(or $LANGFUSE_HOST)"
        )
    from agentfire.config import check_url

    check_url(base, schemes=("http", "https"),
              what=f"Langfuse base URL (traces.base_url{'' if section.base_url else ', from $' + section.base_url_env})")
    store = LangfuseTraceStore(
        base,
        secret(section.public_key_env, what="Langfuse public key"),
        secret(section.secret_key_env, what="Langfuse secret key"),
        environment=section.environment, timeout_s=section.timeout_seconds,
        requests_per_minute=section.requests_per_minute,
    )
    store.prices = dict(getattr(getattr(runbook, "model", None), "prices", None) or {})
    return store
