"""Per-store pushdown: the matching step as the store's own filters, and how to fetch the
candidate trajectories in as few requests as the API allows."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol

from agentfire.blast.signature import StepPattern, is_glob
from agentfire.trajectory import Trajectory, from_observations


class Pushdown(Protocol):
    batch: int  # trace ids per trajectory request

    def scan_filters(self, step: StepPattern) -> dict[str, Any]: ...

    async def trajectories(self, store: Any, trace_ids: list[str], pacer: Any) -> list[Trajectory]: ...


def _json_safe_literal(value: str) -> bool:
    """A value that appears verbatim in the raw JSON text of the input (nothing to escape)."""
    return bool(value) and all(32 <= ord(c) < 127 and c not in '"\\' for c in value)


class LangfusePushdown:
    """Langfuse v2 observations: type, name, level as query filters; with argument values, the
    JSON `filter` (which then carries every condition: the store's _v2_params moves them in)."""

    batch = 50

    def scan_filters(self, step: StepPattern) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        conditions: list[dict[str, Any]] = []
        if step.tool is not None:
            filters["type"] = "TOOL"
            if not is_glob(step.tool):
                filters["name"] = step.tool
            else:
                prefix = step.tool.split("*")[0].split("?")[0].split("[")[0]
                if prefix:
                    conditions.append({"type": "string", "column": "name", "operator": "starts with",
                                       "value": prefix})
        if step.level is not None:
            filters["level"] = step.level.upper()
        for a in step.args:
            # `matches` on input: an indexed, case-insensitive literal search; a sound pre-filter
            # for = and ~ when the value is written unescaped in the JSON text
            if a.op in ("=", "~") and _json_safe_literal(a.value or ""):
                conditions.append({"type": "string", "column": "input", "operator": "matches", "value": a.value})
        if conditions:
            filters["filter"] = conditions
        return filters

    async def trajectories(self, store: Any, trace_ids: list[str], pacer: Any) -> list[Trajectory]:
        from agentfire.blast.remote_scan import paced
        from agentfire.providers.traces import TraceStoreError

        rows: dict[str, list[dict[str, Any]]] = {t: [] for t in trace_ids}
        flt = [{"type": "stringOptions", "column": "traceId", "operator": "any of", "value": trace_ids}]
        batched = len(trace_ids) > 1
        if batched:
            try:
                async for page in paced(store.iter_observations(filters={"filter": flt}), pacer):
                    if any(r.get("traceId") not in rows for r in page):
                        batched = False  # the server ignored the filter: do not page through it all
                        break
                    for r in page:
                        rows[r["traceId"]].append(r)
            except TraceStoreError as exc:
                if "400" not in str(exc):
                    raise
                batched = False  # a server that refuses `traceId any of`
        if not batched:
            out = []
            for t in trace_ids:  # one trajectory a request
                await pacer.acquire()
                out.append(await store.get_trajectory(t))
            return out
        as_of = datetime.now(timezone.utc)
        return [from_observations(t, rs, as_of=as_of, source=f"langfuse:{store.target}")
                for t, rs in rows.items() if rs]


class PhoenixPushdown:
    """Phoenix spans: span_kind TOOL, `attribute=tool.name:NAME` (the tool's real name: span names
    are the framework's, e.g. `execute_tool send_email` or smolagents' `SimpleTool`), status_code
    ERROR for --level ERROR; then each candidate trajectory by trace id.

    Argument conditions are not sent as `attribute=tool.parameters.KEY:VALUE`, on purpose: Phoenix
    splits `tool.parameters` into such keys only for spans that arrived over OTLP; spans posted
    over REST (and instrumentations that keep a JSON string) would be silently missed, and blast
    never trades recall for speed. The rows that come back are matched exactly in Python."""

    batch = 1  # get_trajectory maps ids and links parents; Phoenix has no rate limit to save

    def scan_filters(self, step: StepPattern) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        if step.tool is not None:
            filters["span_kind"] = "TOOL"
            if not is_glob(step.tool):
                filters["attribute"] = f"tool.name:{step.tool}"
        if step.level is not None and step.level.upper() == "ERROR":
            filters["status_code"] = "ERROR"
        return filters

    async def trajectories(self, store: Any, trace_ids: list[str], pacer: Any) -> list[Trajectory]:
        out = []
        for t in trace_ids:
            await pacer.acquire()
            out.append(await store.get_trajectory(t))
        return out


PUSHDOWNS: dict[str, Any] = {"langfuse": LangfusePushdown, "phoenix": PhoenixPushdown}


__all__ = ["Pushdown", "LangfusePushdown", "PhoenixPushdown", "PUSHDOWNS"]
