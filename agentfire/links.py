"""Links to a trace in its store's UI (issues 11 and 14): wherever triage, blast, capture and
traces print a trace id, the Langfuse or Phoenix page of that trace comes with it.

- Langfuse: `{ui_url or base_url}/project/{project_id}/traces/{trace_id}`; the project id is
  configured (`traces.project_id`: the API cannot be asked without the secret key's project).
- Phoenix: `{ui_url or url}/projects/{project id}/traces/{trace_id}`; the project's id (the UI's
  node id, e.g. UHJvamVjdDox) is configured or read once from `GET /v1/projects/{name}`.
- The files store has no UI: no links.

A link is a convenience: a lookup that fails (Phoenix down) gives no link, never an error, and a
URL never carries credentials.
"""

from __future__ import annotations

import os
from typing import Any, Callable
from urllib.parse import quote, urlsplit, urlunsplit

Linker = Callable[[str], "str | None"]


def _no_link(_trace_id: str) -> None:
    return None


def _clean(url: str) -> str:
    """No userinfo (credentials) and no trailing slash."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def linker(runbook: Any) -> Linker:
    """A function trace id -> UI URL (or None) for the runbook's trace store."""
    section = runbook.traces
    kind = getattr(section, "kind", None)
    if kind == "langfuse":
        base = section.ui_url or section.base_url or os.environ.get(section.base_url_env) \
            or os.environ.get("LANGFUSE_HOST")
        if not base or not section.project_id:
            return _no_link
        root = f"{_clean(base)}/project/{quote(section.project_id, safe='')}/traces/"
        return lambda trace_id: root + quote(str(trace_id), safe="")
    if kind == "phoenix":
        project_id = section.project_id or phoenix_project_id(section)
        if not project_id:
            return _no_link
        # a node id is base64 ("UHJvamVjdDox", "...Ng=="): its padding stays as the UI writes it
        root = f"{_clean(section.ui_url or section.url)}/projects/{quote(project_id, safe='=')}/traces/"
        return lambda trace_id: root + quote(str(trace_id), safe="")
    return _no_link


_phoenix_ids: dict[tuple[str, str], str | None] = {}


def phoenix_project_id(section: Any, timeout_s: float = 3.0) -> str | None:
    """The Phoenix project's node id, from its REST API (cached per process); None if unreadable."""
    key = (section.url, section.project)
    if key in _phoenix_ids:
        return _phoenix_ids[key]
    pid: str | None = None
    try:
        import httpx

        headers = {"Accept": "application/json"}
        if section.api_key_env and os.environ.get(section.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[section.api_key_env]}"
        r = httpx.get(f"{section.url.rstrip('/')}/v1/projects/{quote(section.project, safe='')}",
                      headers=headers, timeout=timeout_s)
        if r.status_code == 200:
            data = r.json().get("data") or {}
            pid = data.get("id") if isinstance(data.get("id"), str) else None
    except Exception:  # a link is a convenience; the command's own work goes on
        pid = None
    _phoenix_ids[key] = pid
    return pid
