"""Minute four: the blast radius. Every trajectory in the window that matches the signature,
with its user, whether it is still running, and the matching step.

`run(runbook, signature, window)` picks the scan for the runbook's trace store: DuckDB over the
local files store (agentfire.blast.files_scan); Langfuse and Phoenix through their stores' paged
APIs with the signature pushed into server-side filters (agentfire.blast.remote_scan). Stores without a pushdown scan here are refused
with a clear message rather than scanned naively.
"""

from __future__ import annotations

from typing import Any

from agentfire.blast.result import BlastResult, Gap, Hit, ScanStats, write_out
from agentfire.blast.signature import Signature, from_document, from_flags, load_file
from agentfire.blast.window import Window, resolve
from agentfire.errors import NotDoneError

__all__ = ["run", "BlastResult", "Hit", "Gap", "ScanStats", "Signature", "Window", "resolve",
           "from_flags", "from_document", "load_file", "write_out", "journal_fields"]


def run(runbook: Any, sig: Signature, window: Window, *, hook: Any = None) -> BlastResult:
    section = runbook.traces
    kind = getattr(section, "kind", None)
    if kind == "files":
        from agentfire.blast import files_scan

        path = runbook.resolve_path(section.path)
        if getattr(section, "seed_scenario", None) and not files_scan.holds_data(path):
            # the embedded sandbox: the store's provider seeds it on first use (its module, with
            # asyncio and the trajectory parser, is imported only then: 20-30 ms of a start)
            from agentfire.providers.traces.files import from_config

            path = from_config(section, runbook).path
        return files_scan.scan(path, sig, window, hook=hook)
    from agentfire.blast.pushdown import PUSHDOWNS

    if kind in PUSHDOWNS:
        from agentfire.blast import remote_scan
        from agentfire.providers import build

        store = build("traces", section, runbook)
        return remote_scan.scan(store, PUSHDOWNS[kind](), sig, window, hook=hook)
    raise NotDoneError(
        f"blast has no server-side scan for the {kind!r} trace store yet; "
        "run the query from `agentfire blast --emit-sql clickhouse|duckdb` on your own engine"
    )


def journal_fields(result: BlastResult) -> dict[str, Any]:
    """What the incident journal keeps of a blast (counts and ids, not arguments)."""
    return {
        "signature": result.signature.to_json(), "window": result.window.to_json(),
        "store": result.store, **result.summary_json(),
        "still_open_trace_ids": result.still_open_ids[:200],
        "unscanned": [g.to_json() for g in result.gaps],
    }
