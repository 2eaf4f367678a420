"""Observation rows -> OTLP spans with OpenInference attributes (for Phoenix, Langfuse and collectors).

As the OpenInference conventions define them: a tool call's arguments in `input.value` (JSON),
its result in `output.value`, `tool.name`; `tool.parameters` only for the tool's JSON schema (a
row's `metadata.tool_schema`, when it has one), never the arguments.

The rows are the `files` store format (camelCase Langfuse v2-observation rows: id, traceId, type,
name, startTime, endTime, parentObservationId, input/output as JSON strings, userId, sessionId,
model, usageDetails, totalCost, level, statusMessage, metadata). `to_export_request` builds an
ExportTraceServiceRequest (protobuf); `post_otlp` sends it to a collector's /v1/traces.
`langfuse_span_attributes` adds the `langfuse.*` attributes Langfuse's OTLP mapping reads first
(the names of the langfuse SDK's LangfuseOtelSpanAttributes), so type SPAN stays SPAN rather than
the OpenInference CHAIN, and level, usage and cost land in their own fields.

OpenTelemetry ids are bytes (trace 16, span 8): ids that are already hex of that length are used
as they are, any other id is hashed (`otel_trace_id`, `otel_span_id`), and the original ids are
kept in the attributes `agentfire.trace_id` / `agentfire.observation_id` so a store reading the
spans back can name steps as the files store does. A span must have ended to be exported: rows
without a readable endTime (still running) are skipped and listed in the result.

opentelemetry-proto and httpx are imported inside the functions (never at CLI start).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from agentfire.trajectory import parse_time

# Langfuse observation type -> openinference.span.kind (and back, in the phoenix store)
TYPE_TO_SPAN_KIND = {
    "TOOL": "TOOL", "GENERATION": "LLM", "AGENT": "AGENT", "CHAIN": "CHAIN", "SPAN": "CHAIN",
    "EVENT": "CHAIN", "RETRIEVER": "RETRIEVER", "EMBEDDING": "EMBEDDING", "EVALUATOR": "EVALUATOR",
    "GUARDRAIL": "GUARDRAIL",
}
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def otel_trace_id(trace_id: str) -> str:
    """The 32-hex OpenTelemetry trace id for any trace id (hex ids of that length kept)."""
    if len(trace_id) == 32 and _HEX.match(trace_id):
        return trace_id.lower()
    return hashlib.sha256(trace_id.encode()).hexdigest()[:32]


def otel_span_id(observation_id: str) -> str:
    if len(observation_id) == 16 and _HEX.match(observation_id):
        return observation_id.lower()
    return hashlib.sha256(observation_id.encode()).hexdigest()[:16]


@dataclass
class ExportResult:
    exported: int = 0
    traces: int = 0
    skipped: list[str] = field(default_factory=list)  # "observation id: why"
    requests: int = 0
    span_ids: list[tuple[str, str]] = field(default_factory=list)  # (otel trace id, span id) sent

    def summary(self, store: str = "Phoenix") -> str:
        s = f"{self.exported} span(s) of {self.traces} trace(s) exported"
        if self.skipped:
            s += (f"; {len(self.skipped)} row(s) skipped (a span must have ended to be exported: "
                  f"running steps stay invisible in {store} until they end)")
        return s


class ExportRefused(RuntimeError):
    """The collector answered the export with an HTTP error (`status`, its message in `detail`)."""

    def __init__(self, endpoint: str, status: int, detail: str):
        super().__init__(f"OTLP export to {endpoint} refused: HTTP {status} {detail}")
        self.status, self.detail = status, detail


def _mime(text: str) -> str:
    try:
        json.loads(text)
        return "application/json"
    except ValueError:
        return "text/plain"


def span_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """OpenInference attributes for one observation row (plain values; lists of strings allowed)."""
    typ = str(row.get("type") or "").upper()
    kind = TYPE_TO_SPAN_KIND.get(typ, "UNKNOWN")
    attrs: dict[str, Any] = {"openinference.span.kind": kind}
    if row.get("id") is not None:
        attrs["agentfire.observation_id"] = str(row["id"])
    if row.get("traceId") is not None:
        attrs["agentfire.trace_id"] = str(row["traceId"])
    if typ and typ not in TYPE_TO_SPAN_KIND:
        attrs["agentfire.observation_type"] = typ  # keeps an unknown type visible
    for key, attr in (("input", "input"), ("output", "output")):
        value = row.get(key)
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        attrs[f"{attr}.value"] = text
        attrs[f"{attr}.mime_type"] = _mime(text)
    if kind == "TOOL":
        # OpenInference: the call's arguments are input.value (above); `tool.parameters` is the
        # tool's JSON schema, which an observation row does not carry, so it is left out
        attrs["tool.name"] = str(row.get("name") or "")
        schema = (row.get("metadata") or {}).get("tool_schema") if isinstance(row.get("metadata"), dict) else None
        if isinstance(schema, dict):
            attrs["tool.parameters"] = json.dumps(schema, ensure_ascii=False)
    for key, attr in (("userId", "user.id"), ("sessionId", "session.id"), ("model", "llm.model_name")):
        if row.get(key):
            attrs[attr] = str(row[key])
    usage = row.get("usageDetails") if isinstance(row.get("usageDetails"), dict) else {}
    for key, attr in (("input", "llm.token_count.prompt"), ("output", "llm.token_count.completion"),
                      ("total", "llm.token_count.total")):
        if isinstance(usage.get(key), (int, float)):
            attrs[attr] = int(usage[key])
    if isinstance(row.get("totalCost"), (int, float)):
        attrs["llm.cost.total"] = float(row["totalCost"])
    if isinstance(row.get("metadata"), dict) and row["metadata"]:
        attrs["metadata"] = json.dumps(row["metadata"], ensure_ascii=False)
    if row.get("tags"):
        attrs["tag.tags"] = [str(t) for t in row["tags"]]
    level = str(row.get("level") or "DEFAULT").upper()
    if level not in ("DEFAULT", "ERROR"):
        attrs["agentfire.level"] = level  # OpenInference has no WARNING/DEBUG: keep it
    return attrs


def langfuse_span_attributes(row: dict[str, Any], environment: str | None = None) -> dict[str, Any]:
    """span_attributes plus the `langfuse.*` ones (langfuse SDK: LangfuseOtelSpanAttributes).

    Langfuse reads `user.id` / `session.id` as they are; type, input/output, level, status message,
    model, usage and cost from the langfuse.observation.* names (JSON strings, as the SDK sends
    them); metadata per key under langfuse.observation.metadata.KEY. `environment` (what the
    runbook reads with) overrides the row's own.
    """
    attrs = span_attributes(row)
    typ = str(row.get("type") or "").upper()
    if typ in TYPE_TO_SPAN_KIND:
        attrs["langfuse.observation.type"] = typ.lower()
    for key in ("input", "output"):
        if f"{key}.value" in attrs:
            attrs[f"langfuse.observation.{key}"] = attrs[f"{key}.value"]
    attrs["langfuse.observation.level"] = str(row.get("level") or "DEFAULT").upper()
    if row.get("statusMessage"):
        attrs["langfuse.observation.status_message"] = str(row["statusMessage"])
    if row.get("model"):
        attrs["langfuse.observation.model.name"] = str(row["model"])
    usage = row.get("usageDetails") if isinstance(row.get("usageDetails"), dict) else {}
    usage = {k: int(v) for k, v in usage.items() if isinstance(v, (int, float))}
    if usage:
        attrs["langfuse.observation.usage_details"] = json.dumps(usage)
    cost = row.get("costDetails") if isinstance(row.get("costDetails"), dict) else {}
    cost = {k: float(v) for k, v in cost.items() if isinstance(v, (int, float))}
    if "total" not in cost and isinstance(row.get("totalCost"), (int, float)):
        cost["total"] = float(row["totalCost"])
    if cost:
        attrs["langfuse.observation.cost_details"] = json.dumps(cost)
    if isinstance(row.get("metadata"), dict):
        for k, v in row["metadata"].items():
            if v is not None:
                attrs[f"langfuse.observation.metadata.{k}"] = v if isinstance(v, str) else json.dumps(v)
    env = environment or row.get("environment")
    if env:
        attrs["langfuse.environment"] = str(env)
    if row.get("traceName"):
        attrs["langfuse.trace.name"] = str(row["traceName"])
    if row.get("tags"):
        attrs["langfuse.trace.tags"] = [str(t) for t in row["tags"]]
    return attrs


def _any_value(v: Any) -> Any:
    from opentelemetry.proto.common.v1 import common_pb2 as c

    if isinstance(v, bool):
        return c.AnyValue(bool_value=v)
    if isinstance(v, int):
        return c.AnyValue(int_value=v)
    if isinstance(v, float):
        return c.AnyValue(double_value=v)
    if isinstance(v, (list, tuple)):
        return c.AnyValue(array_value=c.ArrayValue(values=[_any_value(x) for x in v]))
    return c.AnyValue(string_value=str(v))


def _key_values(attrs: dict[str, Any]) -> list[Any]:
    from opentelemetry.proto.common.v1 import common_pb2 as c

    return [c.KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _nanos(value: Any) -> int | None:
    t = parse_time(value)
    # integer arithmetic: a float timestamp can land a microsecond early (and a millisecond off
    # once a store truncates to milliseconds)
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000 if t else None


def to_export_request(rows: Iterable[dict[str, Any]], project: str, *,
                      attributes: Callable[[dict[str, Any]], dict[str, Any]] = span_attributes,
                      ) -> tuple[Any, ExportResult]:
    """(ExportTraceServiceRequest, result) for the rows that can be exported (ended spans).

    `attributes` maps a row to its span attributes (span_attributes: OpenInference, for Phoenix).
    """
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2 as tp

    result = ExportResult()
    spans = []
    traces: set[str] = set()
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            result.skipped.append(f"row {n}: not an object")
            continue
        oid = str(row.get("id") or f"row-{n}")
        start, end = _nanos(row.get("startTime")), _nanos(row.get("endTime"))
        if not row.get("traceId"):
            result.skipped.append(f"{oid}: no traceId")
            continue
        if start is None:
            result.skipped.append(f"{oid}: no readable startTime")
            continue
        if end is None:
            result.skipped.append(f"{oid}: still running (no endTime)")
            continue
        level = str(row.get("level") or "DEFAULT").upper()
        status = tp.Status(
            code=tp.Status.STATUS_CODE_ERROR if level == "ERROR" else tp.Status.STATUS_CODE_OK,
            message=str(row.get("statusMessage") or "") if level == "ERROR" else "",
        )
        parent = row.get("parentObservationId")
        span = tp.Span(
            trace_id=bytes.fromhex(otel_trace_id(str(row["traceId"]))),
            span_id=bytes.fromhex(otel_span_id(oid)),
            parent_span_id=bytes.fromhex(otel_span_id(str(parent))) if parent else b"",
            name=str(row.get("name") or "(unnamed)"),
            kind=tp.Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start, end_time_unix_nano=max(end, start),
            attributes=_key_values(attributes(row)), status=status,
        )
        if level != "ERROR" and row.get("statusMessage"):
            span.attributes.extend(_key_values({"agentfire.status_message": str(row["statusMessage"])}))
        spans.append(span)
        traces.add(str(row["traceId"]))
        result.span_ids.append((span.trace_id.hex(), span.span_id.hex()))
    request = ts.ExportTraceServiceRequest(resource_spans=[tp.ResourceSpans(
        resource=resource_pb2.Resource(attributes=_key_values({"openinference.project.name": project})),
        scope_spans=[tp.ScopeSpans(spans=spans)],
    )])
    result.exported, result.traces = len(spans), len(traces)
    return request, result


def post_otlp(url: str, rows: Iterable[dict[str, Any]], project: str, *,
              headers: dict[str, str] | None = None, timeout_s: float = 30.0,
              batch: int = 2000,
              attributes: Callable[[dict[str, Any]], dict[str, Any]] = span_attributes) -> ExportResult:
    """POST the rows as OTLP protobuf to `url` (a base URL; /v1/traces is appended unless given).

    Sent in batches of `batch` rows. Raises ExportRefused (a RuntimeError) on an HTTP refusal.
    """
    import httpx

    endpoint = url.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    rows = list(rows)
    total = ExportResult()
    seen: set[str] = set()
    with httpx.Client(timeout=timeout_s) as client:
        for i in range(0, len(rows), batch):
            chunk = rows[i: i + batch]
            request, part = to_export_request(chunk, project, attributes=attributes)
            total.skipped.extend(part.skipped)
            total.exported += part.exported
            total.span_ids.extend(part.span_ids)
            seen.update(str(r.get("traceId")) for r in chunk if isinstance(r, dict) and r.get("traceId")
                        and _nanos(r.get("endTime")) is not None and _nanos(r.get("startTime")) is not None)
            if not part.exported:
                continue
            r = client.post(endpoint, content=request.SerializeToString(),
                            headers={"Content-Type": "application/x-protobuf", **(headers or {})})
            total.requests += 1
            if r.status_code >= 300:
                raise ExportRefused(endpoint, r.status_code, r.text[:200])
    total.traces = len(seen)
    return total
