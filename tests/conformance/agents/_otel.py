"""OpenTelemetry set-up shared by the scripted agents: OTLP/HTTP to the collector named by
AGENTFIRE_OTLP_ENDPOINT, with `openinference.project.name` = AGENTFIRE_PROJECT, and a processor that
records which trace ids each run produced (printed as one JSON line per run)."""

from __future__ import annotations

import json
import os
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanProcessor


class RootRecorder(SpanProcessor):
    def __init__(self) -> None:
        self.roots: list[str] = []

    def on_end(self, span) -> None:  # noqa: ANN001
        if span.parent is None:
            tid = format(span.context.trace_id, "032x")
            if tid not in self.roots:
                self.roots.append(tid)


def provider() -> tuple[TracerProvider, RootRecorder]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = os.environ["AGENTFIRE_OTLP_ENDPOINT"]
    project = os.environ.get("AGENTFIRE_PROJECT", "default")
    tp = TracerProvider(resource=Resource.create({"openinference.project.name": project,
                                                  "service.name": "support-agent"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=30)))
    rec = RootRecorder()
    tp.add_span_processor(rec)
    return tp, rec


def report(run_key: str, user: str, trace_ids: list[str], **extra) -> None:  # noqa: ANN003
    print(json.dumps({"run": run_key, "user": user, "trace_ids": trace_ids, **extra}), flush=True)


def selected_runs():
    from scenario import RUNS

    only = set(filter(None, os.environ.get("AGENTFIRE_RUNS", "").split(",")))
    return [r for r in RUNS if not only or r.key in only]


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(2)
