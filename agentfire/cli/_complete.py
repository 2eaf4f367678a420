"""Shell completion of values (issue 14): regions, scenarios, incident ids, golden classes and
recent trace ids. Installed with `agentfire --install-completion`.

Each completer reads the runbook named by --config / AGENTFIRE_CONFIG (or the nearest
runbook.yaml) and never raises: a completion that cannot be computed offers nothing.
"""

from __future__ import annotations

import os
from typing import Any

RECENT_TRACES = 40


def _runbook(ctx: Any) -> Any:
    from agentfire.config import load_runbook

    config = None
    try:
        config = ctx.find_root().params.get("config")
    except Exception:
        config = None
    return load_runbook(config or os.environ.get("AGENTFIRE_CONFIG"))


def _safe(fn: Any) -> Any:
    def complete(ctx: Any, incomplete: str) -> list[str]:
        try:
            return [v for v in fn(ctx, incomplete or "") if v.startswith(incomplete or "")]
        except Exception:  # completion must never print a traceback into the shell
            return []

    complete.__name__ = fn.__name__
    return complete


@_safe
def regions(ctx: Any, incomplete: str) -> list[str]:
    names = list(_runbook(ctx).regions)
    # NAME[,NAME...]: complete the last name of a list
    head, _, last = incomplete.rpartition(",")
    if head:
        return [f"{head},{n}" for n in names if n.startswith(last) and n not in head.split(",")]
    return ["all", *names]


@_safe
def scenarios(ctx: Any, incomplete: str) -> list[str]:
    from agentfire.sandbox import scenarios as names

    return list(names()) + ["all"]


@_safe
def incidents(ctx: Any, incomplete: str) -> list[str]:
    from agentfire.journal import list_incidents

    return list(list_incidents(_runbook(ctx).journal_dir))


@_safe
def golden_classes(ctx: Any, incomplete: str) -> list[str]:
    from agentfire import golden

    d = golden.golden_dir(_runbook(ctx))
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


@_safe
def trace_ids(ctx: Any, incomplete: str) -> list[str]:
    """The newest trace ids in a files store (a remote store is not asked from a shell prompt)."""
    rb = _runbook(ctx)
    if getattr(rb.traces, "kind", None) != "files":
        return []
    from agentfire.providers.traces.files import FilesTraceStore
    from agentfire.trajectory import parse_time

    store = FilesTraceStore(rb.resolve_path(rb.traces.path))
    newest: dict[str, Any] = {}
    for _f, _n, row, _line in store.iter_rows(needle=incomplete or None):
        if not row:
            continue
        tid = row.get("traceId")
        if isinstance(tid, str) and tid.startswith(incomplete):
            t = parse_time(row.get("startTime"))
            if t is not None and (tid not in newest or t > newest[tid]):
                newest[tid] = t
    return [t for t, _ in sorted(newest.items(), key=lambda kv: kv[1], reverse=True)[:RECENT_TRACES]]


# parameter name -> completer; applied to every command by tidy_metavars
BY_NAME = {
    "region": regions, "scenario": scenarios, "incident": incidents, "golden": golden_classes,
    "class_name": golden_classes, "trace_id": trace_ids, "trace": trace_ids, "like": trace_ids,
}
