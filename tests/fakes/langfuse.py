"""A contract fake of the Langfuse public API (v4 observations, the legacy v3 reads, datasets).

A threaded http.server on 127.0.0.1 (free port) holding observation rows in memory, in the
format of the local `files` store (camelCase Langfuse v2-observation rows, `input`/`output` as
raw JSON strings). It follows /work/shared/specs/langfuse-openapi.yml and PROVIDERS.md:

- GET /api/public/v2/observations: cursor pages (opaque keyset cursor, `meta.cursor` absent on the
  last page), rows newest first, `limit` <= 1000, `fields` groups, the query filters, and the JSON
  `filter` (which takes precedence over the query filters, as the spec says).
- Legacy reads: GET /api/public/traces/{id} (404 when unknown), GET /api/public/traces,
  GET /api/public/observations (page/limit pagination).
- mode="v3": /v2/observations answers 404 "... v4 write mode ...", as a v3 server does.
- Ingestion: POST /api/public/otel/v1/traces (OTLP/HTTP ExportTraceServiceRequest, protobuf or
  JSON, optionally gzip): spans become observation rows the way Langfuse's OTLP mapping does it
  (`otlp_rows`: the langfuse.* attributes first, then OpenInference's), answered `{}`
  (OtelTraceResponse). `ingestion_lag_reads=n`: rows become readable only after n further
  /v2/observations requests (ingestion is asynchronous on a real server).
- Datasets: POST /api/public/v2/datasets (upsert by name), GET /api/public/v2/datasets/{name},
  POST /api/public/dataset-items (upsert by id), GET /api/public/dataset-items.
- Faults: `inject(status, times=, retry_after=, path=)` (status 0: the connection is cut without
  an answer), `latency` seconds per request,
  `rate_limit_per_minute`, `add_rows_after(n, rows)` (rows arriving while a scan runs);
  HTTP Basic auth (401 otherwise); every request is logged (`requests`, `count()`).

Every response body is validated before it is sent: v4 and dataset answers with the `langfuse`
SDK's own models (ObservationsV2Response, Dataset, DatasetItem, PaginatedDatasetItems,
PublicApiError); the legacy answers with small models below that follow the spec's legacy
schemas, because SDK 5.x no longer ships them (tests/test_traces_langfuse.py checks them against
the spec file when it is present). A body that fails validation is answered as HTTP 500 and
recorded in `validation_errors` (the fixture fails the test on teardown).

Usage:
    with FakeLangfuse(rows=rows) as fake:
        fake.base_url, fake.public_key, fake.secret_key
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import pydantic

V2_PATH = "/api/public/v2/observations"
OTEL_PATH = "/api/public/otel/v1/traces"
V4_ONLY_MESSAGE = (
    "The v2 observations API is only available in v4 write mode. This Langfuse instance is not "
    "in v4 write mode; use the v1 endpoints."
)

FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "core": ("id", "traceId", "startTime", "endTime", "projectId", "parentObservationId", "type"),
    "basic": ("name", "level", "statusMessage", "version", "environment", "bookmarked", "public",
              "userId", "sessionId", "isRootObservation"),
    "time": ("completionStartTime", "createdAt", "updatedAt"),
    "io": ("input", "output"),
    "metadata": ("metadata",),
    "model": ("providedModelName", "internalModelId", "modelParameters"),
    "usage": ("usageDetails", "costDetails", "totalCost", "usagePricingTierName"),
    "prompt": ("promptId", "promptName", "promptVersion"),
    "metrics": ("latency", "timeToFirstToken"),
    "trace_context": ("tags", "release", "traceName"),
}
# required by the spec in every row, null unless the `model` group is asked for
ALWAYS_NULL = ("modelId", "inputPrice", "outputPrice", "totalPrice")
QUERY_FILTERS = ("traceId", "type", "name", "userId", "sessionId", "level", "parentObservationId",
                 "isRootObservation", "fromStartTime", "toStartTime", "environment", "version")
FILTER_COLUMNS = {
    "id", "type", "name", "traceId", "startTime", "endTime", "environment", "level",
    "statusMessage", "version", "userId", "sessionId", "isRootObservation", "traceName",
    "traceTags", "tags", "latency", "timeToFirstToken", "tokensPerSecond", "inputTokens",
    "outputTokens", "totalTokens", "tokens", "inputCost", "outputCost", "totalCost", "model",
    "providedModelName", "promptName", "promptVersion", "input", "output", "metadata",
}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _loads(value: Any) -> Any:
    """Legacy endpoints return input/output parsed, OTLP JSON-string attributes (usage/cost details,
    metadata values) are parsed on ingestion; unparsable strings stay strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _is_root(row: dict[str, Any]) -> bool:
    flag = row.get("isRootObservation")
    return bool(flag) if flag is not None else not row.get("parentObservationId")


def _latency(row: dict[str, Any]) -> float | None:
    s, e = _parse_time(row.get("startTime")), _parse_time(row.get("endTime"))
    return (e - s).total_seconds() if s and e else None


def _usage(row: dict[str, Any]) -> dict[str, int]:
    u = row.get("usageDetails")
    return {k: int(v) for k, v in u.items() if isinstance(v, (int, float))} if isinstance(u, dict) else {}


def _cost_details(row: dict[str, Any]) -> dict[str, float]:
    c = row.get("costDetails")
    out = {k: float(v) for k, v in c.items() if isinstance(v, (int, float))} if isinstance(c, dict) else {}
    if "total" not in out and isinstance(row.get("totalCost"), (int, float)):
        out["total"] = float(row["totalCost"])
    return out


def one_write(h: BaseHTTPRequestHandler, body: bytes) -> None:
    """End the headers and send them with the body in one write (one segment for a small
    answer: headers then body as two writes made each keep-alive answer wait ~40 ms for the
    client's delayed ACK)."""
    h._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
    h.flush_headers()


class _CutConnection(Exception):
    """inject(0): close the connection without answering."""


class HttpAnswer(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _bad(message: str) -> HttpAnswer:
    return HttpAnswer(400, {"message": message})


# --- legacy response models (the spec's legacy schemas; SDK 5.x no longer ships them) ---------

_LEGACY = pydantic.ConfigDict(extra="allow")


class LegacyUsage(pydantic.BaseModel):
    model_config = _LEGACY
    input: int
    output: int
    total: int
    unit: Optional[str]


class LegacyObservationsView(pydantic.BaseModel):
    """Schemas `Observation` + `ObservationsView`: every required key present (nullable ones may be null)."""

    model_config = _LEGACY
    id: str
    traceId: Optional[str]
    type: str
    name: Optional[str]
    startTime: datetime
    endTime: Optional[datetime]
    completionStartTime: Optional[datetime]
    model: Optional[str]
    modelParameters: Any
    input: Any
    version: Optional[str]
    metadata: Any
    output: Any
    usage: LegacyUsage
    level: str
    statusMessage: Optional[str]
    parentObservationId: Optional[str]
    promptId: Optional[str]
    usageDetails: dict[str, int]
    costDetails: dict[str, float]
    environment: str
    promptName: Optional[str]
    promptVersion: Optional[int]
    modelId: Optional[str]
    inputPrice: Optional[float]
    outputPrice: Optional[float]
    totalPrice: Optional[float]
    calculatedInputCost: Optional[float]
    calculatedOutputCost: Optional[float]
    calculatedTotalCost: Optional[float]
    latency: Optional[float]
    timeToFirstToken: Optional[float]

    @pydantic.field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v not in ("DEBUG", "DEFAULT", "WARNING", "ERROR"):
            raise ValueError(f"level {v!r} is not an ObservationLevel")
        return v


class LegacyTrace(pydantic.BaseModel):
    """Schema `Trace`."""

    model_config = _LEGACY
    id: str
    timestamp: datetime
    name: Optional[str]
    input: Any = None
    output: Any = None
    sessionId: Optional[str]
    release: Optional[str]
    version: Optional[str]
    userId: Optional[str]
    metadata: Any = None
    tags: list[str]
    public: bool
    environment: str


class LegacyTraceWithFullDetails(LegacyTrace):
    htmlPath: str
    latency: Optional[float] = None
    totalCost: Optional[float] = None
    observations: list[LegacyObservationsView]
    scores: list[Any]


class LegacyTraceWithDetails(LegacyTrace):
    htmlPath: str
    latency: Optional[float] = None
    totalCost: Optional[float] = None
    observations: Optional[list[str]] = None
    scores: Optional[list[str]] = None


class LegacyMeta(pydantic.BaseModel):
    model_config = _LEGACY
    page: int
    limit: int
    totalItems: int
    totalPages: int


class LegacyTraces(pydantic.BaseModel):
    model_config = _LEGACY
    data: list[LegacyTraceWithDetails]
    meta: LegacyMeta


class LegacyObservationsViews(pydantic.BaseModel):
    model_config = _LEGACY
    data: list[LegacyObservationsView]
    meta: LegacyMeta


class LegacyError(pydantic.BaseModel):
    model_config = _LEGACY
    message: str


def _sdk(name: str) -> Any:
    import langfuse.api as api

    return getattr(api, name)


def validate_body(model: str | type[pydantic.BaseModel], body: Any) -> None:
    """Raise pydantic.ValidationError when `body` does not fit the model (SDK name or class).

    SDK models name their JSON keys through the SDK's own FieldMetadata(alias=...), which its
    parse_obj_as resolves in pure Python (0.7 s for a 1,000-row page). The keys are renamed here
    with the same metadata, then pydantic validates: the same check, fast enough for benchmarks
    (tests/test_traces_langfuse.py checks that both agree).
    """
    if isinstance(model, str):
        cls = _sdk(model)
        cls.model_validate(_dealias(cls, body))
    else:
        model.model_validate(body)


def validate_body_with_sdk_parser(model: str, body: Any) -> None:
    """The SDK's own (slow) de-aliasing parse, for cross-checking validate_body."""
    from langfuse.api.core.pydantic_utilities import parse_obj_as

    parse_obj_as(_sdk(model), body)


_ALIASES: dict[type, dict[str, tuple[str, Any]]] = {}


def _inner_model(annotation: Any) -> tuple[Any, bool]:
    """(pydantic model inside Optional[...] / List[...] / Annotated[...] or None, is_list)."""
    import typing

    is_list = False
    for _ in range(6):
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, typing.List):
            is_list = True
        if origin is None or not args:
            break
        annotation = args[0]
    ok = isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)
    return (annotation if ok else None), is_list


def _aliases(cls: type) -> dict[str, tuple[str, Any]]:
    """JSON key -> (field name, nested model or None) from the SDK's FieldMetadata."""
    if cls not in _ALIASES:
        table: dict[str, tuple[str, Any]] = {}
        for name, info in cls.model_fields.items():
            alias = next((getattr(m, "alias", None) for m in info.metadata if getattr(m, "alias", None)), None)
            inner, _is_list = _inner_model(info.annotation)
            table[alias or name] = (name, inner)
        _ALIASES[cls] = table
    return _ALIASES[cls]


def _dealias(cls: type, obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    table = _aliases(cls)
    out = {}
    for key, value in obj.items():
        name, inner = table.get(key, (key, None))
        if inner is not None:
            value = [_dealias(inner, v) for v in value] if isinstance(value, list) else _dealias(inner, value)
        out[name] = value
    return out


# --- the fake ---------------------------------------------------------------------------------


@dataclass
class Fault:
    status: int
    times: int
    retry_after: float | None = None
    path: str = ""  # prefix; "" matches every path
    body: Any = None


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int = 0
    at: float = 0.0


@dataclass
class _Scheduled:
    after: int
    rows: list[dict[str, Any]]
    path: str


class FakeLangfuse:
    def __init__(
        self,
        rows: list[dict[str, Any]] | None = None,
        *,
        mode: str = "v4",
        public_key: str = "pk-lf-fake-public",
        secret_key: str = "sk-lf-fake-secret-0123456789",
        project_id: str = "proj-fake",
        latency: float = 0.0,
        rate_limit_per_minute: int | None = None,
        ingestion_lag_reads: int = 0,
    ):
        if mode not in ("v4", "v3"):
            raise ValueError("mode is 'v4' or 'v3'")
        self.mode = mode
        self.public_key, self.secret_key, self.project_id = public_key, secret_key, project_id
        self.latency = latency
        self.rate_limit_per_minute = rate_limit_per_minute
        self.ingestion_lag_reads = ingestion_lag_reads
        self.ingested_spans = 0
        self.ingestion_headers: list[dict[str, str]] = []
        self.lock = threading.RLock()
        self.rows: list[dict[str, Any]] = []
        # indexes, so the fake's own work per request stays small next to a 50 ms latency
        self._by_trace: dict[str, list[dict[str, Any]]] = {}
        self._newest_first: list[tuple[tuple[str, str], dict[str, Any]]] | None = None
        self._legacy_docs: dict[str, dict[str, Any]] | None = None
        self.requests: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self.validation_errors: list[str] = []
        self.datasets: dict[str, dict[str, Any]] = {}
        self.dataset_items: dict[str, dict[str, Any]] = {}
        self._scheduled: list[_Scheduled] = []
        self._window: list[float] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if rows:
            self.add_rows(rows)

    # --- control ------------------------------------------------------------------------------

    def start(self) -> "FakeLangfuse":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # keep-alive answers must not wait for the client's delayed ACK (Nagle): the
            # configured latency is the latency a client sees
            disable_nagle_algorithm = True

            def log_message(self, *_a: Any) -> None:
                return None

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeLangfuse":
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The environment a client needs: LANGFUSE_BASE_URL / _PUBLIC_KEY / _SECRET_KEY."""
        return {"LANGFUSE_BASE_URL": self.base_url, "LANGFUSE_PUBLIC_KEY": self.public_key,
                "LANGFUSE_SECRET_KEY": self.secret_key}

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            for r in rows:
                row = dict(r)
                row.setdefault("projectId", self.project_id)
                self.rows.append(row)
                self._by_trace.setdefault(str(row.get("traceId")), []).append(row)
            self._newest_first = None
            self._legacy_docs = None

    def add_rows_after(self, n_requests: int, rows: list[dict[str, Any]], path: str = V2_PATH) -> None:
        """Append `rows` right after the n-th further request to `path` has been answered."""
        with self.lock:
            done = self.count(path)
            self._scheduled.append(_Scheduled(done + n_requests, list(rows), path))

    def inject(self, status: int, *, times: int = 1, retry_after: float | None = None,
               path: str = "", body: Any = None) -> None:
        """The next `times` requests whose path starts with `path` get `status` (429 with the
        Cloud body and Retry-After; 0 cuts the connection without an answer)."""
        with self.lock:
            self.faults.append(Fault(status, times, retry_after, path, body))

    def count(self, path: str = "", method: str | None = None) -> int:
        """Requests answered whose path starts with `path` (all when empty)."""
        with self.lock:
            return sum(1 for r in self.requests
                       if r.path.startswith(path) and (method is None or r.method == method))

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()

    # --- HTTP plumbing ------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        logged = LoggedRequest(method, path, query, at=time.monotonic())
        body_in: Any = None
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        arrived = time.monotonic()
        try:
            if method == "POST" and path == OTEL_PATH:
                body_in = (raw, {k.lower(): v for k, v in h.headers.items()})
            elif raw:
                try:
                    body_in = json.loads(raw)
                except ValueError:
                    raise _bad("request body is not JSON") from None
            self._gate(h, path)
            status, body, headers = 200, self._route(method, path, query, body_in), {}
        except HttpAnswer as ans:
            status, body, headers = ans.status, ans.body, ans.headers
        except _CutConnection:
            with self.lock:
                self.requests.append(logged)
            if self.latency:
                time.sleep(max(0.0, self.latency - (time.monotonic() - arrived)))
            h.close_connection = True
            return
        except Exception as exc:  # a bug in the fake must be loud, not a hang
            status, body, headers = 500, {"message": f"fake crashed: {type(exc).__name__}: {exc}"}, {}
            with self.lock:
                self.validation_errors.append(f"{method} {path}: crash {type(exc).__name__}: {exc}")
        data = json.dumps(body).encode()
        logged.status = status
        with self.lock:
            self.requests.append(logged)
            due = [s for s in self._scheduled if self.count(s.path) >= s.after]
            for s in due:
                self._scheduled.remove(s)
        for s in due:
            self.add_rows(s.rows)
        if self.latency:  # the answer leaves `latency` after the request came in, the fake's own work included
            time.sleep(max(0.0, self.latency - (time.monotonic() - arrived)))
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            h.send_header(k, v)
        one_write(h, data)

    def _gate(self, h: BaseHTTPRequestHandler, path: str) -> None:
        """Auth, injected faults and the rate limit, in the order a real gateway applies them."""
        with self.lock:
            for f in self.faults:
                if f.times > 0 and path.startswith(f.path):
                    f.times -= 1
                    if f.status == 0:
                        raise _CutConnection()
                    if f.status == 429:
                        raise self._rate_limited(f.retry_after if f.retry_after is not None else 1)
                    headers = {"Retry-After": _fmt(f.retry_after)} if f.retry_after is not None else {}
                    raise HttpAnswer(f.status, f.body or {"message": f"injected HTTP {f.status}"}, headers)
            if self.rate_limit_per_minute:
                now = time.monotonic()
                self._window = [t for t in self._window if now - t < 60]
                if len(self._window) >= self.rate_limit_per_minute:
                    raise self._rate_limited(max(0.001, self._window[0] + 60 - now))
                self._window.append(now)
        expected = "Basic " + base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()
        if h.headers.get("Authorization") != expected:
            raise HttpAnswer(401, {"message": "Invalid credentials. Confirm that you've configured the correct host."})

    def _rate_limited(self, seconds: float) -> HttpAnswer:
        body = {"message": "Rate limit exceeded", "code": "rate_limited",
                "details": {"retryAfterSeconds": max(1, math.ceil(seconds))}}
        self._check("PublicApiError", body, "429")
        return HttpAnswer(429, body, {"Retry-After": _fmt(seconds)})

    def _check(self, model: str | type[pydantic.BaseModel], body: Any, what: str) -> Any:
        try:
            validate_body(model, body)
        except pydantic.ValidationError as exc:
            msg = f"{what}: response does not fit {getattr(model, '__name__', model)}: {exc}"
            self.validation_errors.append(msg)
            raise HttpAnswer(500, {"message": "fake drift: " + msg[:500]}) from None
        return body

    def _route(self, method: str, path: str, q: dict[str, list[str]], body: Any) -> Any:
        if method == "POST" and path == OTEL_PATH:
            return self._check("OtelTraceResponse", self._ingest_otlp(*body), path)
        if method == "GET" and path == V2_PATH:
            if self.mode == "v3":
                raise HttpAnswer(404, self._check(LegacyError, {"message": V4_ONLY_MESSAGE}, "404"))
            return self._check("ObservationsV2Response", self._v2_observations(q), path)
        if method == "GET" and path == "/api/public/traces":
            return self._check(LegacyTraces, self._legacy_traces(q), path)
        if method == "GET" and path.startswith("/api/public/traces/"):
            return self._check(LegacyTraceWithFullDetails, self._legacy_trace(unquote(path.rsplit("/", 1)[1])), path)
        if method == "GET" and path == "/api/public/observations":
            return self._check(LegacyObservationsViews, self._legacy_observations(q), path)
        if method == "POST" and path == "/api/public/v2/datasets":
            return self._check("Dataset", self._create_dataset(body), path)
        if method == "GET" and path.startswith("/api/public/v2/datasets/"):
            name = unquote(path.rsplit("/", 1)[1])
            if name not in self.datasets:
                raise HttpAnswer(404, {"message": f"Dataset {name} not found"})
            return self._check("Dataset", self.datasets[name], path)
        if method == "POST" and path == "/api/public/dataset-items":
            return self._check("DatasetItem", self._upsert_item(body), path)
        if method == "GET" and path == "/api/public/dataset-items":
            return self._check("PaginatedDatasetItems", self._list_items(q), path)
        raise HttpAnswer(404, {"message": f"no route {method} {path}"})

    # --- OTLP ingestion -----------------------------------------------------------------------

    def _ingest_otlp(self, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts

        if headers.get("content-encoding", "").lower() == "gzip":
            import gzip

            try:
                raw = gzip.decompress(raw)
            except OSError:
                raise _bad("Content-Encoding gzip but the body is not gzip") from None
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        request = ts.ExportTraceServiceRequest()
        try:
            if ctype == "application/x-protobuf":
                request.ParseFromString(raw)
            elif ctype == "application/json":
                json_format.Parse(raw.decode(), request)
            else:
                raise _bad(f"unsupported Content-Type {ctype!r}: application/x-protobuf or application/json")
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
            raise _bad(f"not an ExportTraceServiceRequest: {exc}") from None
        rows = otlp_rows(request)
        for r in rows:  # what the store will serve must fit the SDK's model
            self._check("ObservationV2", self._v2_row(dict(r, projectId=self.project_id),
                                                      list(FIELD_GROUPS), set()), OTEL_PATH)
        with self.lock:
            self.ingested_spans += len(rows)
            self.ingestion_headers.append(headers)
        self.add_rows_after(self.ingestion_lag_reads, rows)
        return {}

    # --- v2 observations ----------------------------------------------------------------------

    def _v2_observations(self, q: dict[str, list[str]]) -> dict[str, Any]:
        one = {k: v[-1] for k, v in q.items()}
        limit = _int_param(one, "limit", 50)
        if not 1 <= limit <= 1000:
            raise _bad("limit must be between 1 and 1000")
        if one.get("parseIoAsJson", "false").lower() == "true":
            raise _bad("parseIoAsJson is deprecated: input/output are always returned as raw strings")
        groups = [g.strip() for g in (one.get("fields") or "core,basic").split(",") if g.strip()]
        unknown = [g for g in groups if g not in FIELD_GROUPS]
        if unknown:
            raise _bad(f"unknown field group(s) {unknown}; valid: {', '.join(FIELD_GROUPS)}")
        expand = {k for k in (one.get("expandMetadata") or "").split(",") if k}
        if one.get("filter"):
            match = _json_filter(one["filter"])  # takes precedence over the query filters
        else:
            match = _query_filter(q)
        after = _decode_cursor(one["cursor"]) if one.get("cursor") else None
        with self.lock:
            if not one.get("filter") and one.get("traceId"):
                candidates = sorted(((_order_key(r), r) for r in self._by_trace.get(one["traceId"], [])),
                                    key=lambda kr: kr[0], reverse=True)
            else:
                candidates = self._sorted()
        rows: list[dict[str, Any]] = []
        for key, r in candidates:  # newest first: stop one row past the page
            if after is not None and key >= after:
                continue
            if match(r):
                rows.append(r)
                if len(rows) > limit:
                    break
        page = rows[:limit]
        meta: dict[str, Any] = {}
        if len(rows) > limit:
            meta["cursor"] = _encode_cursor(_order_key(page[-1]))
        return {"data": [self._v2_row(r, groups, expand) for r in page], "meta": meta}

    def _v2_row(self, r: dict[str, Any], groups: list[str], expand: set[str]) -> dict[str, Any]:
        full = {
            "id": r.get("id"), "traceId": r.get("traceId"), "startTime": r.get("startTime"),
            "endTime": r.get("endTime"), "projectId": r.get("projectId"),
            "parentObservationId": r.get("parentObservationId"), "type": r.get("type"),
            "name": r.get("name"), "level": r.get("level") or "DEFAULT",
            "statusMessage": r.get("statusMessage"), "version": r.get("version"),
            "environment": r.get("environment") or "default", "bookmarked": False, "public": False,
            "userId": r.get("userId"), "sessionId": r.get("sessionId"),
            "isRootObservation": _is_root(r),
            "completionStartTime": r.get("completionStartTime"),
            "createdAt": r.get("createdAt") or r.get("startTime"),
            "updatedAt": r.get("updatedAt") or r.get("endTime") or r.get("startTime"),
            "input": r.get("input"), "output": r.get("output"),
            "metadata": _truncate_metadata(r.get("metadata"), expand),
            "providedModelName": r.get("providedModelName", r.get("model")),
            "internalModelId": None, "modelParameters": r.get("modelParameters"),
            "usageDetails": _usage(r), "costDetails": _cost_details(r),
            "totalCost": r.get("totalCost"), "usagePricingTierName": None,
            "promptId": None, "promptName": None, "promptVersion": None,
            "latency": _latency(r), "timeToFirstToken": None,
            "tags": r.get("tags") or [], "release": r.get("release"), "traceName": r.get("traceName"),
        }
        out = {k: full[k] for g in ["core", *groups] for k in FIELD_GROUPS[g]}
        out.update({k: None for k in ALWAYS_NULL})
        return out

    # --- legacy (v3) reads --------------------------------------------------------------------

    def _sorted(self) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        """Every row newest first, with its order key (cached until rows are added)."""
        with self.lock:
            if self._newest_first is None:
                self._newest_first = sorted(((_order_key(r), r) for r in self.rows),
                                            key=lambda kr: kr[0], reverse=True)
            return self._newest_first

    def _trace_rows(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._by_trace.get(trace_id, []))

    def _legacy_trace_doc(self, trace_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        roots = sorted((r for r in rows if _is_root(r)), key=_order_key)
        root = roots[0] if roots else None
        users = Counter(r["userId"] for r in rows if r.get("userId"))
        sessions = Counter(r["sessionId"] for r in rows if r.get("sessionId"))
        starts = [t for t in (_parse_time(r.get("startTime")) for r in rows) if t]
        costs = [c for c in (_cost_details(r).get("total") for r in rows) if c is not None]
        src = root or {}
        return {
            "id": trace_id,
            "timestamp": src.get("startTime") or _iso(min(starts) if starts else EPOCH),
            "name": src.get("traceName") or src.get("name"),
            "input": _loads(src.get("input")), "output": _loads(src.get("output")),
            "sessionId": sessions.most_common(1)[0][0] if sessions else None,
            "release": src.get("release"), "version": src.get("version"),
            "userId": users.most_common(1)[0][0] if users else None,
            "metadata": src.get("metadata"), "tags": list(src.get("tags") or []),
            "public": False, "environment": src.get("environment") or "default",
            "htmlPath": f"/project/{self.project_id}/traces/{trace_id}",
            "latency": _latency(src) if root else None,
            "totalCost": sum(costs) if costs else 0.0,
        }

    def _legacy_trace(self, trace_id: str) -> dict[str, Any]:
        rows = self._trace_rows(trace_id)
        if not rows:
            raise HttpAnswer(404, {"message": f"Trace {trace_id} not found within authorized project"})
        doc = self._legacy_trace_doc(trace_id, rows)
        doc["observations"] = [_legacy_view(r) for r in sorted(rows, key=_order_key)]
        doc["scores"] = []
        return doc

    def _legacy_traces(self, q: dict[str, list[str]]) -> dict[str, Any]:
        one = {k: v[-1] for k, v in q.items()}
        page, limit = _int_param(one, "page", 1), _int_param(one, "limit", 50)
        if page < 1 or not 1 <= limit <= 100:
            raise _bad("page must be >= 1 and limit between 1 and 100")
        with self.lock:
            if self._legacy_docs is None:
                self._legacy_docs = {tid: self._legacy_trace_doc(tid, rows) for tid, rows in self._by_trace.items()}
            cached = dict(self._legacy_docs)
        frm, to = _time_param(one, "fromTimestamp"), _time_param(one, "toTimestamp")
        docs = []
        for tid, base in cached.items():
            doc = dict(base)
            rows = self._by_trace[tid]
            ts = _parse_time(doc["timestamp"]) or EPOCH
            if (frm and ts < frm) or (to and ts >= to):
                continue
            if one.get("userId") and doc["userId"] != one["userId"]:
                continue
            if one.get("name") and doc["name"] != one["name"]:
                continue
            if one.get("sessionId") and doc["sessionId"] != one["sessionId"]:
                continue
            doc["observations"] = [str(r.get("id")) for r in rows]
            doc["scores"] = []
            docs.append(doc)
        docs.sort(key=lambda d: (_parse_time(d["timestamp"]) or EPOCH, d["id"]), reverse=True)
        return _page(docs, page, limit)

    def _legacy_observations(self, q: dict[str, list[str]]) -> dict[str, Any]:
        one = {k: v[-1] for k, v in q.items()}
        page, limit = _int_param(one, "page", 1), _int_param(one, "limit", 50)
        if page < 1 or not 1 <= limit <= 1000:
            raise _bad("page must be >= 1 and limit between 1 and 1000")
        if one.get("filter"):
            match = _json_filter(one["filter"])
        else:
            match = _query_filter({k: v for k, v in q.items() if k not in ("isRootObservation",)})
        with self.lock:
            rows = [r for _k, r in self._sorted() if match(r)]
        doc = _page(rows, page, limit)
        doc["data"] = [_legacy_view(r) for r in doc["data"]]
        return doc

    # --- datasets -----------------------------------------------------------------------------

    def _create_dataset(self, body: Any) -> dict[str, Any]:
        try:
            validate_body("CreateDatasetRequest", body)
        except pydantic.ValidationError as exc:
            raise _bad(f"invalid body: {exc}") from None
        now = _iso(datetime.now(timezone.utc))
        with self.lock:
            prev = self.datasets.get(body["name"])
            doc = {
                "id": prev["id"] if prev else f"ds-{uuid.uuid4().hex[:12]}", "name": body["name"],
                "description": body.get("description"), "metadata": body.get("metadata"),
                "inputSchema": body.get("inputSchema"),
                "expectedOutputSchema": body.get("expectedOutputSchema"),
                "projectId": self.project_id, "createdAt": prev["createdAt"] if prev else now,
                "updatedAt": now,
            }
            self.datasets[body["name"]] = doc
        return doc

    def _upsert_item(self, body: Any) -> dict[str, Any]:
        try:
            validate_body("CreateDatasetItemRequest", body)
        except pydantic.ValidationError as exc:
            raise _bad(f"invalid body: {exc}") from None
        with self.lock:
            ds = self.datasets.get(body["datasetName"])
            if ds is None:
                raise HttpAnswer(404, {"message": f"Dataset {body['datasetName']} not found"})
            now = _iso(datetime.now(timezone.utc))
            item_id = body.get("id") or f"item-{uuid.uuid4().hex[:12]}"
            prev = self.dataset_items.get(item_id)
            if prev is not None and prev["datasetId"] != ds["id"]:
                raise HttpAnswer(409, {"message": f"dataset item {item_id} belongs to another dataset"})
            doc = {
                "id": item_id, "status": body.get("status") or "ACTIVE",
                "input": body.get("input"), "expectedOutput": body.get("expectedOutput"),
                "metadata": body.get("metadata"), "sourceTraceId": body.get("sourceTraceId"),
                "sourceObservationId": body.get("sourceObservationId"), "datasetId": ds["id"],
                "datasetName": ds["name"], "createdAt": prev["createdAt"] if prev else now,
                "updatedAt": now, "mediaReferences": [],
            }
            self.dataset_items[item_id] = doc
        return doc

    def _list_items(self, q: dict[str, list[str]]) -> dict[str, Any]:
        one = {k: v[-1] for k, v in q.items()}
        page, limit = _int_param(one, "page", 1), _int_param(one, "limit", 50)
        with self.lock:
            items = [i for i in self.dataset_items.values()
                     if all(not one.get(k) or i.get(f) == one[k] for k, f in (
                         ("datasetName", "datasetName"), ("sourceTraceId", "sourceTraceId"),
                         ("sourceObservationId", "sourceObservationId")))]
        if one.get("datasetName") and one["datasetName"] not in self.datasets:
            raise HttpAnswer(404, {"message": f"Dataset {one['datasetName']} not found"})
        items.sort(key=lambda i: i["createdAt"], reverse=True)
        return _page(items, page, limit)


# --- OTLP spans -> observation rows -------------------------------------------------------------

OBSERVATION_TYPES = ("SPAN", "GENERATION", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EVALUATOR",
                     "EMBEDDING", "GUARDRAIL")
# Langfuse's mapping of openinference.span.kind, used when langfuse.observation.type is absent
OPENINFERENCE_TYPES = {"LLM": "GENERATION", "TOOL": "TOOL", "AGENT": "AGENT", "CHAIN": "CHAIN",
                       "RETRIEVER": "RETRIEVER", "RERANKER": "RETRIEVER", "EMBEDDING": "EMBEDDING",
                       "EVALUATOR": "EVALUATOR", "GUARDRAIL": "GUARDRAIL"}
LEVELS = ("DEBUG", "DEFAULT", "WARNING", "ERROR")


def _otel_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_otel_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _otel_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which) if which else None


def _nanos_iso(nanos: int) -> str | None:
    from datetime import timedelta

    return _iso(EPOCH + timedelta(microseconds=nanos // 1000)) if nanos else None


# Langfuse prices a generation at ingestion when the SDK sent no cost: the model name is matched
# against its model definitions (USD per token; these two are Langfuse's defaults) and the usage
# multiplied out into costDetails (input, output, total), which the API returns as costDetails /
# totalCost (legacy: calculatedTotalCost). Unknown models stay without cost.
MODEL_PRICES = {"gpt-4o-mini": (0.15e-6, 0.6e-6), "gpt-4o": (2.5e-6, 10e-6)}


def inferred_cost(model: Any, usage: Any) -> dict[str, float]:
    price = MODEL_PRICES.get(str(model or "").split("/")[-1])
    if price is None or not isinstance(usage, dict):
        return {}
    inp, out = usage.get("input"), usage.get("output")
    if not isinstance(inp, (int, float)) and not isinstance(out, (int, float)):
        return {}
    cost = {"input": float(inp or 0) * price[0], "output": float(out or 0) * price[1]}
    cost["total"] = cost["input"] + cost["output"]
    return cost


def otlp_rows(request: Any) -> list[dict[str, Any]]:
    """ExportTraceServiceRequest -> observation rows, as Langfuse's OTLP ingestion maps them:
    ids from the span/trace/parent ids (hex); the langfuse.* attributes first, then
    OpenInference's (openinference.span.kind, input.value, output.value, user.id, session.id,
    llm.model_name, llm.token_count.*); a span with ERROR status is level ERROR with the status
    message; environment from langfuse.environment or the resource's deployment.environment."""
    rows = []
    for rs in request.resource_spans:
        res = {kv.key: _otel_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                a = {kv.key: _otel_value(kv.value) for kv in sp.attributes}
                if len(sp.trace_id) != 16 or len(sp.span_id) != 8:
                    raise _bad("span with an invalid trace or span id")
                error = sp.status.code == 2  # STATUS_CODE_ERROR
                level = str(a.get("langfuse.observation.level") or ("ERROR" if error else "DEFAULT")).upper()
                if level not in LEVELS:
                    raise _bad(f"langfuse.observation.level {level!r} is not one of {', '.join(LEVELS)}")
                model = (a.get("langfuse.observation.model.name") or a.get("gen_ai.request.model")
                         or a.get("llm.model_name"))
                typ = str(a.get("langfuse.observation.type") or "").upper()
                if typ not in OBSERVATION_TYPES:
                    typ = (OPENINFERENCE_TYPES.get(str(a.get("openinference.span.kind") or "").upper())
                           or ("GENERATION" if model else "SPAN"))
                usage = _loads(a.get("langfuse.observation.usage_details"))
                if not isinstance(usage, dict):
                    usage = {k: a[f"llm.token_count.{t}"] for k, t in (
                        ("input", "prompt"), ("output", "completion"), ("total", "total"))
                        if isinstance(a.get(f"llm.token_count.{t}"), int)}
                cost = _loads(a.get("langfuse.observation.cost_details"))
                cost = {k: float(v) for k, v in cost.items()} if isinstance(cost, dict) else {}
                if not cost and typ == "GENERATION":
                    cost = inferred_cost(model, usage)
                prefix = "langfuse.observation.metadata."
                metadata = {k[len(prefix):]: _loads(v) for k, v in a.items() if k.startswith(prefix)}
                parent = sp.parent_span_id.hex() or None

                def first(*keys: str) -> Any:
                    return next((a[k] for k in keys if a.get(k) not in (None, "")), None)

                rows.append({
                    "id": sp.span_id.hex(), "traceId": sp.trace_id.hex(), "parentObservationId": parent,
                    "isRootObservation": parent is None, "type": typ, "name": sp.name,
                    "startTime": _nanos_iso(sp.start_time_unix_nano),
                    "endTime": _nanos_iso(sp.end_time_unix_nano),
                    "level": level,
                    "statusMessage": first("langfuse.observation.status_message") or sp.status.message or None,
                    "input": first("langfuse.observation.input", "input.value"),
                    "output": first("langfuse.observation.output", "output.value"),
                    "userId": first("langfuse.user.id", "user.id"),
                    "sessionId": first("langfuse.session.id", "session.id"),
                    "model": model, "usageDetails": usage, "costDetails": cost,
                    "totalCost": cost.get("total", sum(cost.values()) if cost else None),
                    "metadata": metadata,
                    "environment": (a.get("langfuse.environment") or res.get("deployment.environment.name")
                                    or res.get("deployment.environment") or "default"),
                    "traceName": a.get("langfuse.trace.name") or (sp.name if parent is None else None),
                    "tags": list(a.get("langfuse.trace.tags") or []),
                })
    return rows


# --- helpers ----------------------------------------------------------------------------------


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


def _int_param(one: dict[str, str], name: str, default: int) -> int:
    try:
        return int(one[name]) if one.get(name) not in (None, "") else default
    except ValueError:
        raise _bad(f"{name} must be an integer") from None


def _time_param(one: dict[str, str], name: str) -> datetime | None:
    if not one.get(name):
        return None
    t = _parse_time(one[name])
    if t is None:
        raise _bad(f"{name} must be an ISO 8601 datetime")
    return t


def _order_key(r: dict[str, Any]) -> tuple[str, str]:
    # ISO strings normalised to UTC milliseconds sort like the times they name
    return (_iso(_parse_time(r.get("startTime")) or EPOCH) or "", str(r.get("id") or ""))


def _encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        a, b = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return (str(a), str(b))
    except Exception:
        raise _bad("invalid cursor") from None


def _page(items: list[Any], page: int, limit: int) -> dict[str, Any]:
    total = len(items)
    return {"data": items[(page - 1) * limit: page * limit],
            "meta": {"page": page, "limit": limit, "totalItems": total,
                     "totalPages": math.ceil(total / limit) if total else 0}}


def _truncate_metadata(md: Any, expand: set[str]) -> Any:
    if not isinstance(md, dict):
        return md
    out = {}
    for k, v in md.items():
        s = v if isinstance(v, str) else json.dumps(v)
        out[k] = v if (k in expand or len(s) <= 200) else s[:200] + "..."
    return out


def _legacy_view(r: dict[str, Any]) -> dict[str, Any]:
    usage = _usage(r)
    cost = _cost_details(r)
    return {
        "id": str(r.get("id")), "traceId": r.get("traceId"), "type": str(r.get("type")),
        "name": r.get("name"), "startTime": r.get("startTime"), "endTime": r.get("endTime"),
        "completionStartTime": r.get("completionStartTime"), "model": r.get("model"),
        "modelParameters": r.get("modelParameters"), "input": _loads(r.get("input")),
        "version": r.get("version"), "metadata": r.get("metadata"), "output": _loads(r.get("output")),
        "usage": {"input": usage.get("input", 0), "output": usage.get("output", 0),
                  "total": usage.get("total", usage.get("input", 0) + usage.get("output", 0)),
                  "unit": "TOKENS" if usage else None},
        "level": r.get("level") or "DEFAULT", "statusMessage": r.get("statusMessage"),
        "parentObservationId": r.get("parentObservationId"), "promptId": None,
        "usageDetails": usage, "costDetails": cost, "environment": r.get("environment") or "default",
        "promptName": None, "promptVersion": None, "modelId": None, "inputPrice": None,
        "outputPrice": None, "totalPrice": None, "calculatedInputCost": cost.get("input"),
        "calculatedOutputCost": cost.get("output"), "calculatedTotalCost": cost.get("total"),
        "latency": _latency(r), "timeToFirstToken": None,
    }


# --- filters ----------------------------------------------------------------------------------


def _query_filter(q: dict[str, list[str]]) -> Callable[[dict[str, Any]], bool]:
    """The plain query-parameter filters (AND)."""
    one = {k: v[-1] for k, v in q.items()}
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for key in ("traceId", "type", "name", "userId", "sessionId", "version"):
        if one.get(key):
            checks.append(lambda r, k=key, v=one[key]: r.get(k) == v)
    if one.get("level"):
        checks.append(lambda r, v=one["level"]: (r.get("level") or "DEFAULT") == v)
    if "parentObservationId" in one:
        v = one["parentObservationId"]
        checks.append(lambda r, v=v: (r.get("parentObservationId") or "") == v)
    if one.get("isRootObservation"):
        want = one["isRootObservation"].lower() == "true"
        checks.append(lambda r, w=want: _is_root(r) == w)
    envs = [e for e in q.get("environment", []) if e]
    if envs:
        checks.append(lambda r, e=envs: (r.get("environment") or "default") in e)
    frm, to = _time_param(one, "fromStartTime"), _time_param(one, "toStartTime")
    if frm:
        checks.append(lambda r, t=frm: (_parse_time(r.get("startTime")) or EPOCH) >= t)
    if to:
        checks.append(lambda r, t=to: (_parse_time(r.get("startTime")) or EPOCH) < t)
    return lambda r: all(c(r) for c in checks)


def _column(r: dict[str, Any], col: str) -> Any:
    if col in ("traceTags", "tags"):
        return r.get("tags") or []
    if col in ("model", "providedModelName"):
        return r.get("providedModelName", r.get("model"))
    if col == "level":
        return r.get("level") or "DEFAULT"
    if col == "environment":
        return r.get("environment") or "default"
    if col == "isRootObservation":
        return _is_root(r)
    if col == "latency":
        return _latency(r)
    u = _usage(r)
    if col == "inputTokens":
        return u.get("input")
    if col == "outputTokens":
        return u.get("output")
    if col in ("totalTokens", "tokens"):
        return u.get("total", (u.get("input") or 0) + (u.get("output") or 0)) if u else None
    c = _cost_details(r)
    if col in ("inputCost", "outputCost", "totalCost"):
        return c.get(col[:-4] if col != "totalCost" else "total")
    return r.get(col)


def _string_op(op: str, have: Any, want: Any, *, ci: bool) -> bool:
    if have is None:
        return op == "does not contain"
    h, w = str(have), str(want)
    if ci:
        h, w = h.lower(), w.lower()
    if op == "=":
        return h == w
    if op in ("contains", "matches"):
        return w in h
    if op == "does not contain":
        return w not in h
    if op == "starts with":
        return h.startswith(w)
    if op == "ends with":
        return h.endswith(w)
    raise _bad(f"operator {op!r} is not valid for a string filter")


def _json_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    try:
        conds = json.loads(text)
    except ValueError:
        raise _bad("filter is not valid JSON") from None
    if not isinstance(conds, list) or not all(isinstance(c, dict) for c in conds):
        raise _bad("filter must be a JSON array of conditions")
    io_ops = [(c.get("column"), c.get("operator")) for c in conds if c.get("column") in ("input", "output")]
    if io_ops and not any(op in ("=", "matches") for _col, op in io_ops):
        raise _bad("an input/output filter must be accompanied by at least one '=' or 'matches' "
                   "filter on input or output")
    checks = [_condition(c) for c in conds]
    return lambda r: all(c(r) for c in checks)


def _condition(c: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    typ, col, op, value = c.get("type"), c.get("column"), c.get("operator"), c.get("value")
    if col not in FILTER_COLUMNS:
        raise _bad(f"unknown filter column {col!r}")
    if op == "matches" and col not in ("input", "output", "metadata"):
        raise _bad("the 'matches' operator is only supported for input, output and metadata")
    if typ == "string":
        ci = op in ("contains", "does not contain", "starts with", "ends with") or (
            op == "matches" and col in ("input", "output"))
        return lambda r: _string_op(op, _column(r, col), value, ci=ci)
    if typ == "stringObject":
        key = c.get("key")
        if not key:
            raise _bad("stringObject filters need a 'key'")

        def meta(r: dict[str, Any]) -> bool:
            md = r.get("metadata") if isinstance(r.get("metadata"), dict) else {}
            return _string_op(op, md.get(key), value, ci=op != "matches" and op != "=")
        return meta
    if typ == "datetime":
        t = _parse_time(value) if isinstance(value, str) else None
        if t is None or op not in (">", "<", ">=", "<="):
            raise _bad("datetime filters need an ISO value and one of > < >= <=")
        return lambda r: _cmp(op, _parse_time(_column(r, col)), t)
    if typ in ("number", "numberObject"):
        if not isinstance(value, (int, float)) or op not in ("=", ">", "<", ">=", "<="):
            raise _bad("number filters need a numeric value and one of = > < >= <=")
        if typ == "numberObject":
            key = c.get("key")
            return lambda r: _cmp(op, (r.get("metadata") or {}).get(key), value)
        return lambda r: _cmp(op, _column(r, col), value)
    if typ in ("stringOptions", "categoryOptions"):
        if op not in ("any of", "none of") or not isinstance(value, list):
            raise _bad("options filters need a list value and 'any of' or 'none of'")
        return lambda r: (_column(r, col) in value) == (op == "any of")
    if typ == "arrayOptions":
        if op not in ("any of", "none of", "all of") or not isinstance(value, list):
            raise _bad("arrayOptions filters need a list value and 'any of', 'none of' or 'all of'")
        def arr(r: dict[str, Any]) -> bool:
            have = set(_column(r, col) or [])
            if op == "all of":
                return set(value) <= have
            return bool(have & set(value)) == (op == "any of")
        return arr
    if typ == "boolean":
        if op not in ("=", "<>"):
            raise _bad("boolean filters need '=' or '<>'")
        return lambda r: (bool(_column(r, col)) == bool(value)) == (op == "=")
    if typ == "null":
        if op not in ("is null", "is not null"):
            raise _bad("null filters need 'is null' or 'is not null'")
        return lambda r: (_column(r, col) in (None, "")) == (op == "is null")
    raise _bad(f"unknown filter type {typ!r}")


def _cmp(op: str, have: Any, want: Any) -> bool:
    if have is None:
        return False
    try:
        return {"=": have == want, ">": have > want, "<": have < want,
                ">=": have >= want, "<=": have <= want}[op]
    except TypeError:
        return False


# --- pytest fixture ---------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # importable outside pytest (bench/ scripts)
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def langfuse_fake():
        """A running FakeLangfuse (mode v4, no rows); fails the test if any answer drifted."""
        fake = FakeLangfuse().start()
        try:
            yield fake
        finally:
            fake.stop()
        assert not fake.validation_errors, fake.validation_errors
